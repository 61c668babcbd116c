"""The SDK as other sites use it, in Chromium: the one-tag embed (window.Segue, SRI, calls queued
before the widget loads), the docs' snippets on a page of another origin, the headless example
page chatting with a real agent, and the TypeScript declarations checked against the modules."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import expect

from server.sdk import SDK_DIR, sdk_version
from server.sri import docs_block, integrity
from chat_pages import WAIT_MS, wait_js
from sdk_typecheck import declared_api
from segue_clients import World

pytestmark = pytest.mark.browser

VERSION = sdk_version()
EMBED = f"/sdk/{VERSION}/embed.js"


async def _blank(segue, new_page):
    page = await new_page()
    await page.goto(segue.url + "widget/blank.html")
    return page


async def _add_embed(page, *, value: str | None = None, data: dict[str, str] | None = None) -> None:
    """Insert the documented tag: <script src=... integrity=... crossorigin=anonymous async data-...>."""
    await page.evaluate(
        """([src, value, data]) => {
            const s = document.createElement("script");
            s.src = src; s.integrity = value; s.crossOrigin = "anonymous"; s.async = true;
            for (const [k, v] of Object.entries(data)) s.setAttribute("data-" + k, v);
            // "load" or "error" (a refused integrity fires error), awaited by the tests
            window.__embedResult = new Promise((r) => { s.onload = () => r("load"); s.onerror = () => r("error"); });
            document.head.append(s);
        }""",
        [EMBED, value or integrity((SDK_DIR / "embed.js").read_bytes()), data or {}],
    )


async def test_one_script_tag_mounts_the_widget_from_its_own_folder(segue, new_page) -> None:
    page = await _blank(segue, new_page)
    await _add_embed(page, data={"segue-auto": "", "queue": "general", "title": "Ask Northwind"})
    assert await page.evaluate("window.__embedResult") == "load"
    await wait_js(page, "window.Segue && window.Segue.widget", timeout=WAIT_MS)
    found = await page.evaluate("""async () => {
        const w = await Segue.init();            // again: the same widget
        return {
            same: w === Segue.widget,
            url: w.customer.url,
            origin: location.origin,
            attached: w.element.isConnected,
            modules: performance.getEntriesByType("resource").map((e) => new URL(e.name).pathname),
        };
    }""")
    assert found["same"] and found["attached"]
    assert found["url"] == found["origin"]  # url defaults to where embed.js came from
    # the widget's modules came from the same versioned folder as the tag
    assert f"/sdk/{VERSION}/widget.js" in found["modules"], found["modules"]
    assert f"/sdk/{VERSION}/segue.js" in found["modules"], found["modules"]
    await page.evaluate("Segue.open()")
    await expect(page.locator("#segue-panel")).to_be_visible(timeout=WAIT_MS)
    await expect(page.locator("#segue-status")).to_have_attribute("data-state", "online", timeout=WAIT_MS)
    await page.evaluate("Segue('close')")
    await expect(page.locator("#segue-panel")).to_be_hidden(timeout=WAIT_MS)
    assert page.segue_errors == []


async def test_calls_made_before_the_script_loads_are_queued(segue, new_page) -> None:
    page = await _blank(segue, new_page)
    # the documented stub, then calls, then the async tag (no data-segue-auto)
    await page.evaluate("""() => {
        window.Segue = window.Segue || function () { (Segue.q = Segue.q || []).push(arguments); };
        Segue("init", { queue: "general" });
        Segue("open");
    }""")
    await _add_embed(page)
    assert await page.evaluate("window.__embedResult") == "load"
    await expect(page.locator("#segue-panel")).to_be_visible(timeout=WAIT_MS)
    result = await page.evaluate("""async () => {
        const unknown = await Segue("explode").then(() => "resolved", (e) => e.message);
        return { unknown, stubReplaced: typeof Segue.init === "function" };
    }""")
    assert result["stubReplaced"]
    assert "unknown method" in result["unknown"] and "explode" in result["unknown"]
    assert page.segue_errors == []


async def test_methods_wait_for_init_and_destroy_allows_a_new_widget(segue, new_page) -> None:
    page = await _blank(segue, new_page)
    await _add_embed(page)
    assert await page.evaluate("window.__embedResult") == "load"
    result = await page.evaluate("""async () => {
        const opened = Segue.open();                 // before init: waits for the widget
        const before = Segue.widget;
        const first = await Segue.init({ queue: "general" });
        await opened;
        await Segue.destroy();
        const gone = !first.element.isConnected && Segue.widget === null;
        const second = await Segue.init({ queue: "general" });
        return { before, gone, fresh: second !== first && second.element.isConnected };
    }""")
    assert result == {"before": None, "gone": True, "fresh": True}
    assert page.segue_errors == []


async def test_a_file_that_does_not_match_its_integrity_is_refused(segue, new_page) -> None:
    page = await _blank(segue, new_page)
    await _add_embed(page, value=integrity(b"not the served bytes"), data={"segue-auto": ""})
    assert await page.evaluate("window.__embedResult") == "error"
    assert await page.evaluate("typeof window.Segue") == "undefined"


async def test_headless_example_page_chats_with_an_agent(segue, new_page) -> None:
    world = World(segue)
    try:
        token = await world.add_agent("ada", name="Ada Agent")
        agent = await world.agent(token)
        page = await new_page()
        await page.goto(segue.url + "sdk/examples/headless.html")
        await expect(page.locator("#status")).to_have_attribute("data-state", "online", timeout=WAIT_MS)
        await expect(page.locator("#send")).to_have_text("Send")
        await page.fill("#text", "My <b>bike</b> squeaks")
        await page.click("#send")
        mine = page.locator('#log li[data-author="customer"]')
        await expect(mine).to_have_text("You: My <b>bike</b> squeaks", timeout=WAIT_MS)  # text, not HTML
        cid = await page.evaluate("window.segueHeadless.conversation.id")

        await agent.next("offer", lambda p: p["conversation"]["id"] == cid)
        accepted = await agent.ok("offer.accept", {"conversation_id": cid})
        assert "My <b>bike</b> squeaks" in [e["data"].get("text") for e in accepted["events"]]
        await agent.ok("message.send", {"conversation_id": cid, "text": "Let's have a look"})
        await expect(page.locator('#log li[data-author="agent"]')).to_have_text("Ada Agent: Let's have a look", timeout=WAIT_MS)
        await expect(page.locator('#log li[data-author="system"]')).to_have_text("Ada Agent joined the conversation")
        assert await page.locator("b").count() == 0
        assert page.segue_errors == []
    finally:
        await world.close()


async def test_declarations_match_the_modules(segue, new_page) -> None:
    """Every export and class member the .d.ts files declare exists at run time (on a real
    instance), and every export of those modules is declared."""
    declared = declared_api()
    page = await new_page()
    await page.goto(segue.url + "widget/blank.html")
    report = await page.evaluate("""async (declared) => {
        const problems = [];
        const mods = {};
        for (const file of Object.keys(declared)) mods[file] = await import(`/sdk/${file}`);
        const S = mods["segue.js"], C = mods["call.js"];
        const fakeSocket = { connected: false, on() {}, off() {}, emit() {} };
        const client = { emit() {}, connected: false, socket: fakeSocket, request: async () => ({}), agent: { id: "a" } };
        const agent = new S.SegueAgent({ url: location.origin });
        const call = new C.SegueCall(client, "c_1");
        const make = {
            Emitter: () => new S.Emitter(),
            SegueError: () => new S.SegueError("invalid", "x", { field: "f", event: "e" }),
            Conversation: () => new S.Conversation(client, "c_1"),
            CustomerConversation: () => new S.CustomerConversation(client, "c_1"),
            AgentConversation: () => new S.AgentConversation(client, "c_1"),
            SegueCustomer: () => new S.SegueCustomer({ url: location.origin }),
            SegueAgent: () => agent,
            Offer: () => new S.Offer(agent, { conversation: { id: "c_1" } }),
            SegueCall: () => call,
            SegueMonitor: () => new C.SegueMonitor(client, "c_2"),
            CallBar: () => new mods["call-ui.js"].CallBar(call, { kind: "customer" }),
            ChatWidget: () => mods["widget.js"].mountChatWidget({ url: location.origin }),
        };
        for (const [file, api] of Object.entries(declared)) {
            const runtime = Object.keys(mods[file]).sort();
            for (const name of api.exports) if (!runtime.includes(name)) problems.push(`${file}: ${name} is declared, not exported`);
            for (const name of runtime) if (!api.exports.includes(name)) problems.push(`${file}: ${name} is exported, not declared`);
            for (const [cls, members] of Object.entries(api.classes)) {
                if (!make[cls]) { problems.push(`${file}: no instance recipe for ${cls} in this test`); continue; }
                const obj = make[cls]();
                for (const m of members.instance) if (!(m in obj)) problems.push(`${file}: ${cls}.${m} is declared, missing`);
                for (const m of members.static) if (!(m in mods[file][cls])) problems.push(`${file}: static ${cls}.${m} is declared, missing`);
            }
        }
        return problems;
    }""", declared)
    assert report == [], "\n".join(report)


def _snippets(base: str) -> tuple[str, str]:
    """docs/sdk.md's two install snippets (script tag; import map + module), for a node at ``base``."""
    block = docs_block(base_url=base)
    html = re.findall(r"```html\n(.*?)```", block, re.S)
    assert len(html) == 2, block
    return html[0], html[1]


async def _another_site(aiohttp_server, pages: dict[str, str]) -> str:
    """A second web server (another origin: another port on this machine) serving ``pages``."""
    from aiohttp import web

    async def serve(request: web.Request) -> web.Response:
        body = pages[request.match_info["name"]]
        return web.Response(content_type="text/html",
                            text=f"<!doctype html><html><head><meta charset='utf-8'></head><body>{body}</body></html>")

    app = web.Application()
    app.router.add_get("/{name}", serve)
    server = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/")


async def _site_page(new_page):
    page = await new_page()
    page.console_lines = []  # type: ignore[attr-defined]
    page.on("console", lambda message: page.console_lines.append(f"{message.type}: {message.text}"))
    return page


async def test_the_documented_snippets_work_on_another_site(segue, new_page, aiohttp_server) -> None:
    """The docs' snippets, with this node's URL, on a page of another origin: the script tag and
    the import map (every module pinned) each mount a connected widget; a pinned hash that does not
    match the served file stops the module graph."""
    base = segue.url.rstrip("/")
    tag, modules = _snippets(base)
    segue_js = f"{base}/sdk/{VERSION}/segue.js"
    good = integrity((SDK_DIR / "segue.js").read_bytes())
    assert f'"{segue_js}": "{good}"' in modules
    tampered = modules.replace(f'"{segue_js}": "{good}"', f'"{segue_js}": "{integrity(b"other bytes")}"')
    site = await _another_site(aiohttp_server, {
        "shop-tag.html": tag,
        "shop-modules.html": modules,
        "shop-tampered.html": tampered + "<script>window.__loaded = true;</script>",
        # the tag's own import() of the modules obeys the page's import map too
        "shop-tag-tampered.html": tampered.split("<script type=\"module\">")[0] + tag,
    })
    assert site != base

    for name in ("tag", "modules"):
        page = await _site_page(new_page)
        await page.goto(f"{site}/shop-{name}.html")
        try:
            await expect(page.locator("#segue-launcher")).to_be_visible(timeout=WAIT_MS)
        except AssertionError:
            raise AssertionError(f"{name}: no widget; console: {page.console_lines}") from None
        await expect(page.locator("#segue-status")).to_have_attribute("data-state", "online", timeout=WAIT_MS)
        assert page.segue_errors == [], (name, page.segue_errors)

    page = await _site_page(new_page)
    await page.goto(f"{site}/shop-tampered.html", wait_until="load")
    assert await page.evaluate("window.__loaded") is True
    assert await page.locator("segue-widget").count() == 0
    assert any("integrity" in line and "segue.js" in line for line in page.console_lines), page.console_lines

    page = await _site_page(new_page)
    await page.goto(f"{site}/shop-tag-tampered.html")
    await wait_js(page, "typeof window.Segue === 'function'", timeout=WAIT_MS)
    error = await page.evaluate("Segue.init().then(() => 'mounted', (e) => String(e))")
    assert error != "mounted"
    assert await page.locator("segue-widget").count() == 0
    assert any("integrity" in line and "segue.js" in line for line in page.console_lines), page.console_lines
    assert await page.evaluate("typeof customElements") == "object"  # the page itself works
