"""The embeddable widget on someone else's page (issue #9): Shadow DOM isolation both ways, the
callbacks (with a real call to the demo agent), open/close/toggle/destroy and mounting again,
theme and options, setUser / setAttributes, and the zh-CN locale with no English left over.

Pages are /widget/blank.html (no Segue styles) with the host page's own styles added by the test;
the agent is the real console. Every wait is generous; nothing asserts timing.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.async_api import Page, expect

from chat_pages import (
    CUSTOMER_CALL, WAIT_MS, accept_offer, agent_call, agent_login, agent_send, audio_grows, eventually, panel, set_presence,
    answer_call, close_conversation, press_call, slot_grows, widget_message,
    wait_js,
)
from media.ice import set_loopback_only
from server.auth import sign_identity

pytestmark = pytest.mark.browser

# A host page that styles everything it can: none of it may reach inside the widget.
HOSTILE_CSS = """
* { letter-spacing: 3px !important; box-sizing: content-box; }
html { font-size: 8px; }
body { margin: 13px; font: italic 22px/3 "Times New Roman", serif; color: rgb(200, 0, 200); text-transform: uppercase; }
textarea { border: 5px dotted rgb(255, 0, 0); font: italic 30px serif; background: rgb(255, 255, 0); padding: 20px; }
button { background: rgb(0, 255, 0) !important; font-size: 40px; border: 6px solid rgb(0, 0, 255); border-radius: 0; }
div, span, section, form, ol, li { margin: 7px; padding: 9px; }
segue-widget { display: none; }
"""

# The computed properties compared between a plain page and the hostile one.
PROPS = ["border-top-style", "border-top-width", "border-top-color", "font-size", "font-style", "font-family", "line-height",
         "letter-spacing", "text-transform", "background-color", "color", "padding-top", "margin-top", "box-sizing"]

WIDGET_STYLES_JS = """(props) => {
    const root = document.querySelector("segue-widget").shadowRoot;
    const out = {};
    for (const sel of ["#segue-launcher", "#segue-start-text", "#segue-start-btn", "#segue-input", "#segue-send", ".segue-panel-head"]) {
        const cs = getComputedStyle(root.querySelector(sel));
        out[sel] = Object.fromEntries(props.map((p) => [p, cs.getPropertyValue(p)]));
    }
    return out;
}"""

HOST_STYLES_JS = """(props) => {
    const pick = (el) => { const cs = getComputedStyle(el); return Object.fromEntries(props.map((p) => [p, cs.getPropertyValue(p)])); };
    return { body: pick(document.body), textarea: pick(document.querySelector("#host-text")),
             button: pick(document.querySelector("#host-button")), sheets: document.styleSheets.length };
}"""

MOUNT_JS = """async (options) => {
    const { mountChatWidget } = await import("/sdk/widget.js");
    window.calls = { ready: [], message: [], callState: [], end: [] };
    window.segueWidget = mountChatWidget({
        queue: "general",
        ...options,
        onReady: (w) => window.calls.ready.push(w === window.segueWidget),
        onMessage: (event, conversation) => window.calls.message.push(
            { text: event.data.text, author: event.author.kind, conversation: conversation.id }),
        onCallState: (state, call) => window.calls.callState.push({ state, conversation: call.conversationId }),
        onConversationEnd: (summary, conversation) => window.calls.end.push(
            { state: summary.state, id: summary.id, same: summary.id === conversation.id }),
    });
}"""


async def _blank(page: Page, base_url: str, css: str | None = None) -> None:
    await page.goto(base_url + "widget/blank.html")
    await page.evaluate("""(css) => {
        // a constructed stylesheet: the page's CSP (style-src 'self') refuses inline <style>
        if (css) { const sheet = new CSSStyleSheet(); sheet.replaceSync(css); document.adoptedStyleSheets = [sheet]; }
        const text = document.createElement("textarea"); text.id = "host-text"; document.body.append(text);
        const button = document.createElement("button"); button.id = "host-button"; button.textContent = "host"; document.body.append(button);
    }""", css)


async def _mount(page: Page, **options: Any) -> None:
    await page.evaluate(MOUNT_JS, options)
    await expect(page.locator("#segue-status")).to_have_attribute("data-state", "online", timeout=WAIT_MS)
    await wait_js(page, "() => window.calls.ready.length === 1")


async def _start_chat(page: Page, text: str, name: str | None = None) -> str:
    if await page.locator("#segue-panel").is_hidden():
        await page.click("#segue-launcher")
    if name:
        await page.fill("#segue-start-name", name)
    await page.fill("#segue-start-text", text)
    await page.click("#segue-start-btn")
    await expect(widget_message(page, text)).to_have_count(1, timeout=WAIT_MS)
    return await page.evaluate("window.segueWidget.conversation.id")


async def test_shadow_dom_keeps_host_and_widget_styles_apart(segue: Any, new_page: Any) -> None:
    # The widget's look on a page with no styles of its own ...
    plain = await new_page()
    await _blank(plain, segue.url)
    await _mount(plain)
    await plain.click("#segue-launcher")
    reference = await plain.evaluate(WIDGET_STYLES_JS, PROPS)

    # ... is the same on a page that styles textarea, button, *, body and even the host element.
    page = await new_page()
    await _blank(page, segue.url, HOSTILE_CSS)
    host_before = await page.evaluate(HOST_STYLES_JS, PROPS)
    await _mount(page)
    await page.click("#segue-launcher")
    await expect(page.locator("#segue-panel")).to_be_visible(timeout=WAIT_MS)
    assert await page.evaluate(WIDGET_STYLES_JS, PROPS) == reference
    # the host page's rules really are in force on the host page's own elements
    assert host_before["textarea"]["border-top-style"] == "dotted" and host_before["body"]["margin-top"] == "13px"

    # The widget changed nothing on the host page: no stylesheet added, body and controls as before.
    host_after = await page.evaluate(HOST_STYLES_JS, PROPS)
    assert host_after == host_before
    placement = await page.evaluate("""() => {
        const host = document.querySelector("segue-widget");
        return { open: host.shadowRoot.mode, inDocument: document.querySelectorAll("link[href*='widget.css']").length,
                 inShadow: host.shadowRoot.querySelectorAll("link[href$='/sdk/widget.css']").length,
                 hostDisplay: getComputedStyle(host).display };
    }""")
    assert placement == {"open": "open", "inDocument": 0, "inShadow": 1, "hostDisplay": "block"}
    for p in (plain, page):
        assert p.segue_errors == [], p.segue_errors


async def test_callbacks_open_close_destroy_and_mount_again(segue: Any, new_page: Any) -> None:
    set_loopback_only(True)  # the server's aiortc legs gather 127.0.0.1 (Chromium: --allow-loopback)
    try:
        customer, agent = await new_page(), await new_page()
        await _blank(customer, segue.url)
        await _mount(customer)
        assert await customer.evaluate("window.calls.ready") == [True]

        # open / close / toggle
        panel_el = customer.locator("#segue-panel")
        await expect(panel_el).to_be_hidden()
        await customer.evaluate("window.segueWidget.toggle()")
        await expect(panel_el).to_be_visible()
        await expect(customer.locator("#segue-launcher")).to_have_attribute("aria-expanded", "true")
        await customer.evaluate("window.segueWidget.close()")
        await expect(panel_el).to_be_hidden()
        await customer.evaluate("window.segueWidget.open()")
        await expect(panel_el).to_be_visible()
        await customer.evaluate("window.segueWidget.toggle()")
        await expect(panel_el).to_be_hidden()

        # onMessage: ours and the agent's, each once, with the conversation
        cid = await _start_chat(customer, "is my bike ready?")
        await agent_login(agent, segue.url)
        await set_presence(agent, "available")
        await accept_offer(agent, cid)
        # trackPages (default on): the agent sees the page the widget was mounted on
        pages = await agent.evaluate(f"() => window.segueConsole.panels.get({cid!r}).conversation.customer.pages.map((p) => p.url)")
        assert pages == [segue.url + "widget/blank.html"], pages
        await agent_send(agent, cid, "yes, since this morning")
        await expect(widget_message(customer, "yes, since this morning")).to_have_count(1, timeout=WAIT_MS)
        assert await customer.evaluate("window.calls.message") == [
            {"text": "is my bike ready?", "author": "customer", "conversation": cid},
            {"text": "yes, since this morning", "author": "agent", "conversation": cid},
        ]

        # onCallState through a real call: requested, active (audio flows), none after the hang-up
        await customer.click("#segue-call")
        bar = await answer_call(agent, cid)
        await audio_grows(customer, CUSTOMER_CALL, "customer hears the agent")
        await bar.locator(".call-hangup").click()
        await expect(customer.locator("#segue-callbar")).to_have_attribute("data-state", "none", timeout=WAIT_MS)
        await wait_js(customer, "() => window.calls.callState.length >= 3")
        states = await customer.evaluate("window.calls.callState")
        assert [s["state"] for s in states] == ["requested", "active", "none"], states
        assert all(s["conversation"] == cid for s in states)

        # onConversationEnd: once, when the agent closes the conversation
        assert await customer.evaluate("window.calls.end") == []
        await close_conversation(agent, cid, "resolved")
        await expect(customer.locator("#segue-rating")).to_be_visible(timeout=WAIT_MS)
        await wait_js(customer, "() => window.calls.end.length === 1")
        assert await customer.evaluate("window.calls.end") == [{"state": "closed", "id": cid, "same": True}]

        # destroy: the host element goes, the socket closes, the widget's listeners are gone
        gone = await customer.evaluate("""() => {
            const w = window.segueWidget;
            const socket = w.customer.socket;
            w.destroy();
            // a message event on the old client reaches nobody now
            w.customer.emit("message", { data: { text: "late" }, author: { kind: "agent" } }, w.conversation, {});
            return { hosts: document.querySelectorAll("segue-widget").length, connected: socket.connected,
                     socket: w.customer.socket, messages: window.calls.message.length };
        }""")
        assert gone == {"hosts": 0, "connected": False, "socket": None, "messages": 2}

        # mounting again works: online, the remembered (closed) conversation with its rating form
        await customer.evaluate(MOUNT_JS, {})
        await expect(customer.locator("#segue-status")).to_have_attribute("data-state", "online", timeout=WAIT_MS)
        await customer.evaluate("window.segueWidget.open()")
        await expect(widget_message(customer, "yes, since this morning")).to_have_count(1, timeout=WAIT_MS)
        await expect(customer.locator("#segue-rating")).to_be_visible(timeout=WAIT_MS)
        assert await customer.evaluate("document.querySelectorAll('segue-widget').length") == 1
        for p in (customer, agent):
            assert p.segue_errors == [], p.segue_errors
    finally:
        set_loopback_only(False)


async def test_theme_launcher_and_bad_options(segue: Any, new_page: Any) -> None:
    page = await new_page(color_scheme="dark")
    await _blank(page, segue.url)
    await _mount(page, theme={"accent": "rgb(10, 124, 89)", "position": "bottom-left", "mode": "auto"}, launcher=False)
    await expect(page.locator("#segue-launcher")).to_have_count(0)
    await page.evaluate("window.segueWidget.open()")
    look = await page.evaluate("""() => {
        const root = document.querySelector("segue-widget").shadowRoot;
        const cs = (sel) => getComputedStyle(root.querySelector(sel));
        const box = root.querySelector(".segue-panel").getBoundingClientRect();
        return { head: cs(".segue-panel-head").backgroundColor, card: cs(".segue-panel").backgroundColor,
                 side: box.right < innerWidth / 2 ? "left" : box.left > innerWidth / 2 ? "right" : "middle" };
    }""")
    assert look == {"head": "rgb(10, 124, 89)", "card": "rgb(28, 33, 43)", "side": "left"}

    # light mode stays light under a dark preference; bottom-right is the default
    light = await new_page(color_scheme="dark")
    await _blank(light, segue.url)
    await _mount(light, theme={"mode": "light"})
    await light.click("#segue-launcher")
    card = await light.evaluate("""() => {
        const root = document.querySelector("segue-widget").shadowRoot;
        const box = root.querySelector(".segue-panel").getBoundingClientRect();
        return [getComputedStyle(root.querySelector(".segue-panel")).backgroundColor, box.left > innerWidth / 2];
    }""")
    assert card == ["rgb(255, 255, 255)", True]
    # dark mode is dark under a light preference, and auto follows it (one palette, two switches)
    for mode, expected in (("dark", "rgb(28, 33, 43)"), ("auto", "rgb(255, 255, 255)")):
        other = await new_page(color_scheme="light")
        await _blank(other, segue.url)
        await _mount(other, theme={"mode": mode})
        await other.click("#segue-launcher")
        colours = await other.evaluate("""() => {
            const root = document.querySelector("segue-widget").shadowRoot;
            const cs = (sel) => getComputedStyle(root.querySelector(sel));
            return [cs(".segue-panel").backgroundColor, cs(".segue-panel").color];
        }""")
        assert colours == [expected, "rgb(230, 233, 240)" if mode == "dark" else "rgb(29, 36, 51)"], (mode, colours)

    # bad options are refused with the option named
    errors = await page.evaluate("""async () => {
        const { mountChatWidget } = await import("/sdk/widget.js");
        const tries = [{ theme: { position: "top" } }, { theme: { mode: "sepia" } }, { theme: { accent: "not a colour" } },
                       { onMessage: "yes" }, { attributes: { plan: { nested: 1 } } }, { messages: { "widget.nope": "x" } }];
        return tries.map((options) => { try { mountChatWidget(options).destroy(); return "mounted"; } catch (e) { return e.message; } });
    }""")
    assert [e.split(" ")[0] for e in errors] == ["theme.position", "theme.mode", "theme.accent", "onMessage", "attributes.plan", "messages:"]
    assert await page.evaluate("document.querySelectorAll('segue-widget').length") == 1
    for p in (page, light):
        assert p.segue_errors == [], p.segue_errors


async def test_set_attributes_then_set_user_merges_the_anonymous_chat(start_segue: Any, new_page: Any) -> None:
    secret = "shop-secret-for-embed-tests"
    segue = await start_segue({"auth.sites": {"shop": secret}})
    page = await new_page()
    await _blank(page, segue.url)
    await _mount(page, attributes={"plan": "pro"}, trackPages=False)
    cid = await _start_chat(page, "asked before signing in", name="Anon")
    # trackPages: false records no page view (the agent's view of the customer has no pages)
    agent = await new_page()
    await agent_login(agent, segue.url)
    await set_presence(agent, "available")
    await accept_offer(agent, cid)
    pages = await agent.evaluate(f"() => window.segueConsole.panels.get({cid!r}).conversation.customer.pages")
    assert pages == [], pages
    assert (await page.evaluate("window.segueWidget.customer.session"))["verified"] is False

    # a forged identity is refused with a clear error; the widget stays the anonymous visitor
    identity = sign_identity(secret, id="u-7", name="Grace Hopper", email="grace@example.com")
    refused = await page.evaluate("""async (identity) => {
        try { await window.segueWidget.setUser({ site: "shop", identity: { ...identity, name: "Mallory" } }); return null; }
        catch (e) { return e.code; }
    }""", identity)
    assert refused == "bad_identity"
    await expect(page.locator("#segue-status")).to_have_attribute("data-state", "online", timeout=WAIT_MS)
    assert (await page.evaluate("window.segueWidget.customer.session"))["verified"] is False

    # setAttributes: merged over the `attributes` option (applied after connect, before any
    # setAttributes call); null deletes a key; a value that is not text, number or boolean is refused
    result = await page.evaluate("() => window.segueWidget.setAttributes({ vip: true, seats: 3 })")
    assert result["attributes"] == {"plan": "pro", "vip": True, "seats": 3}
    result = await page.evaluate("() => window.segueWidget.setAttributes({ vip: null })")
    assert result["attributes"] == {"plan": "pro", "seats": 3}
    bad = await page.evaluate("""async () => {
        try { await window.segueWidget.setAttributes({ when: new Date() }); return null; } catch (e) { return e.message; }
    }""")
    assert bad.startswith("setAttributes(attributes).when")

    session = await page.evaluate("(identity) => window.segueWidget.setUser({ site: 'shop', identity })", identity)
    assert session["verified"] is True and session["name"] == "Grace Hopper"
    # the chat goes on in the same conversation, as the verified customer
    await page.fill("#segue-input", "now signed in")
    await page.press("#segue-input", "Enter")
    await expect(page.locator(".segue-msg--mine[data-event-id]").filter(has_text="now signed in")).to_have_count(1, timeout=WAIT_MS)

    # the anonymous conversation is the identity's now: another device with the identity finds it
    other = await new_page()
    await _blank(other, segue.url)
    await other.evaluate("""async (identity) => {
        const { mountChatWidget } = await import("/sdk/widget.js");
        window.segueWidget = mountChatWidget({ site: "shop", identity });
    }""", identity)
    await expect(other.locator("#segue-status")).to_have_attribute("data-state", "online", timeout=WAIT_MS)
    ids = await other.evaluate("async () => (await window.segueWidget.customer.listConversations()).map((c) => c.id)")
    assert cid in ids

    for p in (page, other, agent):
        assert p.segue_errors == [], p.segue_errors


async def test_video_call_button_starts_a_video_conversation_with_cameras_on(segue: Any, new_page: Any) -> None:
    """The header's "Video call" (widget.call({video: true})): a conversation on the video channel
    straight into a call; once the agent accepts, both cameras are on and the visitor sees
    themselves (self-view) with the Video toggle pressed."""
    set_loopback_only(True)
    try:
        customer, agent = await new_page(), await new_page()
        await _blank(customer, segue.url)
        await _mount(customer)
        await customer.click("#segue-launcher")
        cid = await press_call(customer, "#segue-video-call")
        created = await customer.evaluate(
            "() => window.segueWidget.conversation.events.find((e) => e.type === 'conversation.created')")
        assert created["data"]["channel"] == "video", created
        await expect(customer.locator("#segue-video-call")).to_be_hidden()

        await agent_login(agent, segue.url)
        await set_presence(agent, "available")
        await accept_offer(agent, cid)
        bar = panel(agent, cid).locator(".segue-call")

        async def answered() -> bool:
            # the console may answer a call conversation with the offer; else the bar's Accept does
            state = await bar.evaluate("""(b) => {
                const incoming = b.querySelector(".segue-call-incoming");
                if (!incoming.hidden) b.querySelector(".call-accept").click();
                return b.dataset.state;
            }""")
            return state == "active"

        await eventually(answered, what="the agent answers the video call")
        await slot_grows(agent, agent_call(cid), "camera", "the agent sees the customer's camera", by=10, field="frames")
        await slot_grows(customer, CUSTOMER_CALL, "camera", "the customer sees the agent's camera", by=10, field="frames")
        mine = customer.locator("#segue-callbar")
        await expect(mine.locator(".segue-call-tile--self")).to_be_visible(timeout=WAIT_MS)
        await expect(mine.locator(".call-video")).to_have_attribute("aria-pressed", "true", timeout=WAIT_MS)
        states = await customer.evaluate("window.calls.callState.map((s) => s.state)")
        assert states[:2] == ["requested", "active"], states
        for p in (customer, agent):
            assert p.segue_errors == [], p.segue_errors
    finally:
        set_loopback_only(False)


# English that may remain in a zh-CN widget: the demo agent's name (names are not translated).
ALLOWED_WORDS = {"Demo", "Agent"}

VISIBLE_WORDS_JS = """() => {
    const root = document.querySelector("segue-widget").shadowRoot;
    const out = [];
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
        if (n.parentElement.closest(".segue-msg-text")) continue;   // what people typed
        if (n.textContent.trim()) out.push(n.textContent.trim());
    }
    for (const el of root.querySelectorAll("*")) {
        for (const a of ["placeholder", "aria-label", "title"]) if (el.hasAttribute(a)) out.push(el.getAttribute(a));
    }
    return out;
}"""


async def test_zh_cn_widget_has_no_english_left(segue: Any, new_page: Any) -> None:
    set_loopback_only(True)
    try:
        customer, agent = await new_page(), await new_page()
        await _blank(customer, segue.url)
        await _mount(customer, locale="zh-CN")
        await customer.click("#segue-launcher")
        assert await customer.evaluate("window.segueWidget.t.locale") == "zh-CN"
        await expect(customer.locator("#segue-start-btn")).to_have_text("开始对话")

        # pre-chat, waiting (the banner, once), chat with the agent, then a call
        cid = await _start_chat(customer, "你好，我的刹车有异响", name="小王")
        await expect(customer.locator("#segue-position")).to_contain_text("排队", timeout=WAIT_MS)
        assert await customer.locator("#segue-log .segue-system").filter(has_text="等待").count() == 0
        await agent_login(agent, segue.url)
        await set_presence(agent, "available")
        await accept_offer(agent, cid)
        await agent_send(agent, cid, "Hello, let me check")
        await expect(widget_message(customer, "Hello, let me check")).to_have_count(1, timeout=WAIT_MS)
        await expect(customer.locator("#segue-log .segue-system").filter(has_text="加入了对话")).to_have_count(1, timeout=WAIT_MS)
        await customer.click("#segue-call")
        await answer_call(agent, cid)
        await audio_grows(customer, CUSTOMER_CALL, "customer hears the agent")
        await expect(customer.locator("#segue-callbar .segue-call-status")).to_contain_text("通话中", timeout=WAIT_MS)
        await expect(customer.locator("#segue-callbar .call-video")).to_have_text("视频")
        await expect(customer.locator("#segue-log .segue-system").filter(has_text="语音通话已开始")).to_have_count(1, timeout=WAIT_MS)

        texts = await customer.evaluate(VISIBLE_WORDS_JS)
        english = sorted({w for t in texts for w in re.findall(r"[A-Za-z]+", t)} - ALLOWED_WORDS)
        assert english == [], (english, texts)
        assert "Demo Agent" in texts  # the agent's name (allowed) is really there: the check sees the log

        # setLocale: the same widget in English, the conversation and the call still there
        await customer.evaluate("window.segueWidget.setLocale('en')")
        await expect(customer.locator("#segue-send")).to_have_text("Send")
        await expect(customer.locator("#segue-callbar .segue-call-status")).to_contain_text("In call", timeout=WAIT_MS)
        await expect(widget_message(customer, "Hello, let me check")).to_have_count(1)
        for p in (customer, agent):
            assert p.segue_errors == [], p.segue_errors
    finally:
        set_loopback_only(False)


async def test_zh_cn_catalogue_is_complete_and_keeps_the_placeholders(segue: Any, new_page: Any) -> None:
    """Every message the widget, the call bar and the event descriptions use has a zh-CN text with
    no English in it and exactly the English text's placeholders (a misspelt {name} would show)."""
    page = await new_page()
    await page.goto(segue.url + "widget/blank.html")
    rows = await page.evaluate("""async () => {
        const { MESSAGE_KEYS, translator, resolveLocale, addLocale } = await import("/sdk/i18n.js");
        const en = translator("en"), zh = translator("zh-CN");
        const refused = (() => { try { addLocale("fr", { "widget.titel": "x" }); return null; } catch (e) { return e.message; } })();
        return {
            rows: MESSAGE_KEYS.map((key) => ({ key, en: en(key), zh: zh(key) })),
            resolved: ["zh", "zh-Hans-CN", "zh-SG", "zh-TW", "zh-Hant-HK", "en-GB", "fr", ""].map(resolveLocale),
            refused,
        };
    }""")
    prefixes = ("widget.", "error.", "receipt.", "channel.", "media.", "who.", "event.", "reason.", "transfer.", "call.", "callbar.")
    mine = [r for r in rows["rows"] if r["key"].startswith(prefixes)]
    assert len(mine) > 150
    placeholders = re.compile(r"\{(\w+)\}")
    problems = []
    for r in mine:
        bare = placeholders.sub("", r["zh"])
        if re.search(r"[A-Za-z]", bare):
            problems.append(("english", r["key"], r["zh"]))
        if sorted(placeholders.findall(r["zh"])) != sorted(placeholders.findall(r["en"])):
            problems.append(("placeholders", r["key"], r["zh"]))
    assert problems == []
    assert rows["resolved"] == ["zh-CN", "zh-CN", "zh-CN", "en", "en", "en", "en", "en"]
    assert rows["refused"].startswith("addLocale: unknown message keys widget.titel")
    assert page.segue_errors == []
