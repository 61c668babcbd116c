"""Issue #9, "Cross-origin embed, in Chromium", end to end, as a developer following docs/sdk.md.

A shop on another origin (http://localhost:<port>, a small aiohttp server started here; Segue is
http://127.0.0.1:<port>) pastes the one-script-tag snippet *read from docs/sdk.md* (the host
replaced, as the docs say; the integrity attribute kept: a snippet or hash that drifts from the
served file fails here), with the documented queueing stub before it for the options a tag cannot
carry (`onMessage`, `onCallState`) and `Segue("setAttributes", ...)`. The visitor browses three
pages of the shop, opens the chat on the last one, chats with the demo agent in the console and
escalates to a video call. Checked on the way:

- frames flow both ways (getStats: decoded camera frames grow; the video elements have a size);
- the widget changes no computed style of the shop's page (body, its own textarea and button,
  measured before the snippet and after the call), and the shop's stylesheet (textarea, button,
  input, `*`, body rules) does not change the widget (compared with the same widget on a page of
  the same shop without that stylesheet);
- `onMessage` and `onCallState` fire;
- the agent sees the attributes the shop set and the three pages the visitor viewed.

Every wait is generous; nothing asserts timing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
from aiohttp import web
from playwright.async_api import Page, expect

from chat_pages import (
    WAIT_MS, accept_offer, agent_call, agent_login, agent_send, eventually, panel, set_presence, slot_grows,
    answer_call, other_origin, press_call, widget_message,
    wait_js,
)
from media.ice import set_loopback_only
from server.sdk import sdk_version
from signaling import SIGNALING

pytestmark = pytest.mark.browser

DOCS = Path(__file__).resolve().parents[2] / "docs" / "sdk.md"
DOCS_HOST = "https://segue.example.com"  # the docs' placeholder for "your Segue node"

# The shop's own stylesheet: it styles everything it can, the widget's kinds of elements included.
SITE_CSS = """
* { letter-spacing: 3px; box-sizing: content-box; }
html { font-size: 8px; }
body { margin: 13px; font: italic 22px/3 "Times New Roman", serif; color: rgb(200, 0, 200); text-transform: uppercase; }
textarea { border: 5px dotted rgb(255, 0, 0); font: italic 30px serif; background: rgb(255, 255, 0); padding: 20px; }
input { border: 4px dashed rgb(255, 0, 0); font-size: 28px; }
button { background: rgb(0, 255, 0) !important; font-size: 40px; border: 6px solid rgb(0, 0, 255); border-radius: 0; color: rgb(1, 2, 3); }
div, span, section, form, header, ol, li, p { margin: 7px; padding: 9px; }
"""

# The computed properties compared (host page: before / after; widget: plain page / styled page).
PROPS = ["margin-top", "margin-left", "padding-top", "border-top-style", "border-top-width", "border-top-color",
         "font-size", "font-style", "font-family", "line-height", "letter-spacing", "text-transform",
         "background-color", "color", "box-sizing", "display", "width", "height"]

HOST_STYLES_JS = """(props) => {
    const pick = (el) => { const cs = getComputedStyle(el); return Object.fromEntries(props.map((p) => [p, cs.getPropertyValue(p)])); };
    return { body: pick(document.body), html: pick(document.documentElement), textarea: pick(document.querySelector("#host-text")),
             button: pick(document.querySelector("#host-button")), h1: pick(document.querySelector("h1")),
             sheets: document.styleSheets.length, adopted: document.adoptedStyleSheets.length };
}"""

WIDGET_PARTS = ["#segue-launcher", "#segue-start-text", "#segue-start-name", "#segue-start-btn", "#segue-input",
                "#segue-send", ".segue-panel-head", ".segue-panel"]

# In a chat (the composer shown), measured with nothing focused (a focused field has the accent border).
CHAT_PARTS = ["#segue-composer", "#segue-input", "#segue-send", "#segue-log"]

WIDGET_STYLES_JS = """([parts, props]) => {
    const root = document.querySelector("segue-widget").shadowRoot;
    root.activeElement?.blur();
    const out = {};
    for (const sel of parts) {
        const cs = getComputedStyle(root.querySelector(sel));
        out[sel] = Object.fromEntries(props.map((p) => [p, cs.getPropertyValue(p)]));
    }
    return out;
}"""

# One template for every page of the shop. {head}: the stylesheet link (left out on the plain page);
# {setup}: the page's calls through the documented queueing stub; {snippet}: docs/sdk.md's tag.
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<link rel="icon" href="data:,">
{head}
</head>
<body>
<nav><a id="nav-home" href="/">Home</a> <a id="nav-pricing" href="/pricing">Pricing</a> <a id="nav-cart" href="/cart">Cart</a></nav>
<h1>{title}</h1>
<form><textarea id="host-text">Gift message</textarea> <button id="host-button" type="button">Add to cart</button></form>
<script>
  // the test's probe, not the shop's code: the page's styles before any Segue script ran
  window.hostBefore = ({host_styles})({props});
</script>
<script>
  window.seen = {{ messages: [], callStates: [] }};
  window.Segue = window.Segue || function () {{ (Segue.q = Segue.q || []).push(arguments); }};
  Segue("init", {{
    queue: "general",
    onMessage: (event, conversation) => seen.messages.push({{ author: event.author.kind, text: event.data.text, conversation: conversation.id }}),
    onCallState: (state, call) => seen.callStates.push({{ state, conversation: call.conversationId }}),
  }});
{setup}
</script>
{snippet}
</body></html>
"""

SHOP = {
    # path: (title, the page's setAttributes call or "")
    "/": ("Northwind Bikes", 'Segue("setAttributes", { plan: "pro" });'),
    "/pricing": ("Pricing · Northwind Bikes", ""),
    "/cart": ("Your cart · Northwind Bikes", 'Segue("setAttributes", { cart_value: 129.5, order_id: "A-1001" });'),
}


def docs_script_tag(node: str) -> str:
    """The one-script-tag snippet of docs/sdk.md, as a developer copies it: the docs' placeholder
    host replaced with this node (the docs say "replace https://segue.example.com with your Segue node")."""
    text = DOCS.read_text(encoding="utf-8")
    start = text.index("One script tag", text.index("<!-- sri:begin"))
    block = re.search(r"```html\n(.*?)```", text[start:], re.S)
    assert block, "docs/sdk.md: no html block after 'One script tag'"
    tag = block.group(1).strip()
    assert tag.startswith("<script src=") and tag.count("<script") == 1, tag
    assert DOCS_HOST in tag and 'integrity="sha384-' in tag, tag
    return tag.replace(DOCS_HOST, node)


@pytest.fixture
async def shop(segue: Any) -> AsyncIterator[str]:
    """The shop on another origin: the same machine, reached as ``localhost`` on its own port."""
    tag = docs_script_tag(segue.url.rstrip("/"))
    probe = {"host_styles": HOST_STYLES_JS, "props": json.dumps(PROPS)}

    def render(title: str, setup: str, styled: bool) -> str:
        head = '<link rel="stylesheet" href="/site.css">' if styled else ""
        return PAGE.format(title=title, head=head, setup="  " + setup, snippet=tag, **probe)

    async def page(request: web.Request) -> web.Response:
        path = request.path
        if path == "/plain":  # the same shop page without the shop's stylesheet: the widget's reference look
            return web.Response(text=render("Plain · Northwind Bikes", "", styled=False), content_type="text/html")
        if path not in SHOP:
            raise web.HTTPNotFound()
        title, setup = SHOP[path]
        return web.Response(text=render(title, setup, styled=True), content_type="text/html")

    async def css(_request: web.Request) -> web.Response:
        return web.Response(text=SITE_CSS, content_type="text/css")

    def routes(router: web.UrlDispatcher) -> None:
        router.add_get("/site.css", css)
        router.add_get("/{tail:.*}", page)

    async with other_origin(routes) as origin:
        yield origin


async def _shop_page(new_page: Any) -> Page:
    page = await new_page()
    page.console_errors = []  # type: ignore[attr-defined]
    page.on("console", lambda m: m.type == "error" and page.console_errors.append(m.text))
    return page


async def _widget_online(page: Page) -> str:
    """The snippet mounted the widget and it is connected: the visitor's customer id."""
    try:
        await expect(page.locator("#segue-status")).to_have_attribute("data-state", "online", timeout=WAIT_MS)
    except AssertionError:
        raise AssertionError(f"no connected widget on {page.url}; console: {page.console_errors}") from None
    return await page.evaluate("Segue.widget.customer.session.customer_id")


async def test_a_shop_embeds_the_documented_snippet_and_its_visitor_gets_chat_video_and_context(
        segue: Any, new_page: Any, shop: str) -> None:
    node = segue.url.rstrip("/")
    assert node.startswith("http://127.0.0.1:") and shop.startswith("http://localhost:")
    store = segue.app[SIGNALING].store
    set_loopback_only(True)  # the server's aiortc legs gather 127.0.0.1 (Chromium: --allow-loopback)
    try:
        # The widget's look on a page of the shop without the shop's stylesheet (the reference).
        plain = await _shop_page(new_page)
        await plain.goto(shop + "/plain")
        await _widget_online(plain)
        await plain.click("#segue-launcher")
        await expect(plain.locator("#segue-panel")).to_be_visible(timeout=WAIT_MS)
        reference = await plain.evaluate(WIDGET_STYLES_JS, [WIDGET_PARTS, PROPS])
        # ... and in a chat, waiting for an agent (then this visitor ends it: no agent sees it)
        await plain.fill("#segue-start-text", "Is the Roadster in stock?")
        await plain.click("#segue-start-btn")
        await expect(widget_message(plain, "Is the Roadster in stock?")).to_have_count(1, timeout=WAIT_MS)
        await expect(plain.locator("#segue-position")).to_be_visible(timeout=WAIT_MS)
        reference_chat = await plain.evaluate(WIDGET_STYLES_JS, [CHAT_PARTS, PROPS])
        await plain.click("#segue-end")
        await expect(plain.locator("#segue-composer")).to_be_hidden(timeout=WAIT_MS)

        # The visitor browses: home, pricing, cart (by the shop's links), the widget on each page.
        customer = await _shop_page(new_page)
        await customer.goto(shop + "/")
        visitor = await _widget_online(customer)
        # the tag's script and the widget's modules came from the node's versioned folder
        loaded = await customer.evaluate("performance.getEntriesByType('resource').map((e) => e.name)")
        version = sdk_version()
        for file in ("embed.js", "widget.js", "segue.js", "widget.css"):
            assert f"{node}/sdk/{version}/{file}" in loaded, (file, loaded)
        assert await customer.evaluate("Segue.widget.customer.url") == node  # url: where embed.js came from

        async def stored(url: str, attribute: str | None = None) -> bool:
            """The widget's page view (and the page's attributes) reached the server: safe to leave."""
            pages = [p["url"] for p in await store.pages(visitor)]
            attrs = await store.customer_attributes(visitor)
            return url in pages and (attribute is None or attribute in attrs)

        await eventually(lambda: stored(shop + "/", "plan"), what="home page view and plan stored")
        await customer.click("#nav-pricing")
        await customer.wait_for_url(shop + "/pricing")
        assert await _widget_online(customer) == visitor  # the same visitor on every page of the shop
        await eventually(lambda: stored(shop + "/pricing"), what="pricing page view stored")
        await customer.click("#nav-cart")
        await customer.wait_for_url(shop + "/cart")
        assert await _widget_online(customer) == visitor
        await eventually(lambda: stored(shop + "/cart", "order_id"), what="cart page view and attributes stored")

        # The shop's rules are in force on its own elements, and the widget left them as they were.
        host_before = await customer.evaluate("window.hostBefore")
        assert host_before["textarea"]["border-top-style"] == "dotted" and host_before["body"]["margin-top"] == "13px"
        assert host_before["button"]["background-color"] == "rgb(0, 255, 0)"

        # The visitor opens the chat: the widget looks exactly as on the page without the shop's styles.
        await customer.click("#segue-launcher")
        await expect(customer.locator("#segue-panel")).to_be_visible(timeout=WAIT_MS)
        styled = await customer.evaluate(WIDGET_STYLES_JS, [WIDGET_PARTS, PROPS])
        for part in WIDGET_PARTS:
            assert styled[part] == reference[part], (part, styled[part], reference[part])

        await customer.fill("#segue-start-name", "Ada")
        await customer.fill("#segue-start-text", "Is the Roadster in stock?")
        await customer.click("#segue-start-btn")
        await expect(widget_message(customer, "Is the Roadster in stock?")).to_have_count(1, timeout=WAIT_MS)
        cid = await customer.evaluate("Segue.widget.conversation.id")
        await expect(customer.locator("#segue-position")).to_be_visible(timeout=WAIT_MS)
        styled_chat = await customer.evaluate(WIDGET_STYLES_JS, [CHAT_PARTS, PROPS])
        for part in CHAT_PARTS:
            assert styled_chat[part] == reference_chat[part], (part, styled_chat[part], reference_chat[part])

        # The demo agent takes it in the console (Segue's own origin).
        agent = await new_page()
        await agent_login(agent, segue.url)
        await set_presence(agent, "available")
        await accept_offer(agent, cid)

        # The agent sees the shop's attributes and the three pages, newest first.
        section = panel(agent, cid).locator(".conv-customer")
        await expect(section).to_be_visible(timeout=WAIT_MS)
        await expect(section.locator('.conv-attribute[data-key="plan"] dd')).to_have_text("pro", timeout=WAIT_MS)
        await expect(section.locator('.conv-attribute[data-key="cart_value"] dd')).to_have_text("129.5", timeout=WAIT_MS)
        await expect(section.locator('.conv-attribute[data-key="order_id"] dd')).to_have_text("A-1001", timeout=WAIT_MS)
        pages = section.locator(".conv-page")
        await expect(pages).to_have_count(3, timeout=WAIT_MS)
        await expect(pages.locator(".conv-page-url")).to_have_text([shop + "/cart", shop + "/pricing", shop + "/"])
        await expect(pages.locator(".conv-page-title")).to_have_text([SHOP["/cart"][0], SHOP["/pricing"][0], SHOP["/"][0]])

        # Chat both ways; onMessage fires for both messages.
        await agent_send(agent, cid, "Yes, two left in your size")
        await expect(widget_message(customer, "Yes, two left in your size")).to_have_count(1, timeout=WAIT_MS)
        await wait_js(customer, "() => seen.messages.length >= 2", timeout=WAIT_MS)
        assert await customer.evaluate("seen.messages") == [
            {"author": "customer", "text": "Is the Roadster in stock?", "conversation": cid},
            {"author": "agent", "text": "Yes, two left in your size", "conversation": cid},
        ]

        # Escalation: the visitor presses "Video call" in the chat; the agent accepts.
        await expect(customer.locator("#segue-video-call")).to_be_visible(timeout=WAIT_MS)
        assert await press_call(customer, "#segue-video-call", widget="Segue.widget") == cid
        bar = await answer_call(agent, cid)

        # Frames flow both ways: decoded camera frames grow, and each side's video element has a size.
        customer_call = "Segue.widget.currentCall"
        await slot_grows(agent, agent_call(cid), "camera", "the agent sees the visitor's camera", by=10, field="frames")
        await slot_grows(customer, customer_call, "camera", "the visitor sees the agent's camera", by=10, field="frames")
        await expect(customer.locator("#segue-callbar .segue-call-status")).to_contain_text("In call", timeout=WAIT_MS)
        size = "(v) => v.videoWidth > 0 && v.videoHeight > 0 ? [v.videoWidth, v.videoHeight] : null"
        await eventually(lambda: customer.locator("#segue-callbar .segue-call-video").evaluate(size),
                         what="the visitor's video element shows the agent")
        await eventually(lambda: bar.locator(".segue-call-video").evaluate(size),
                         what="the agent's video element shows the visitor")
        await expect(customer.locator("#segue-callbar .segue-call-tile--self")).to_be_visible(timeout=WAIT_MS)

        # The visitor hangs up; onCallState saw the whole call, in order, for this conversation.
        await customer.locator("#segue-callbar .call-hangup").click()
        await expect(customer.locator("#segue-callbar")).to_have_attribute("data-state", "none", timeout=WAIT_MS)
        await wait_js(customer, "() => seen.callStates.length >= 3", timeout=WAIT_MS)
        states = await customer.evaluate("seen.callStates")
        assert [s["state"] for s in states] == ["requested", "active", "none"], states
        assert all(s["conversation"] == cid for s in states), states
        # the chat goes on after the call
        await agent_send(agent, cid, "Anything else?")
        await expect(widget_message(customer, "Anything else?")).to_have_count(1, timeout=WAIT_MS)

        # After all that, the shop's page computes exactly as before the snippet ran.
        host_after = await customer.evaluate(HOST_STYLES_JS, PROPS)
        assert host_after == host_before
        placement = await customer.evaluate("""() => ({
            hosts: document.querySelectorAll("segue-widget").length,
            inDocument: document.querySelectorAll("link[href*='/sdk/'], style").length,
            mode: document.querySelector("segue-widget").shadowRoot.mode,
        })""")
        assert placement == {"hosts": 1, "inDocument": 0, "mode": "open"}

        for p in (plain, customer):
            assert p.segue_errors == [], p.segue_errors
            assert p.console_errors == [], p.console_errors
        assert agent.segue_errors == [], agent.segue_errors
    finally:
        set_loopback_only(False)
