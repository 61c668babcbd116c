"""Drive the customer widget (/widget/) and the agent console (/agent/) in Chromium.

Shared by test_chat*.py, test_widget*.py and test_agent*.py. Every wait is generous (no timing
assertions): a step that never happens fails with Playwright's timeout and a clear selector.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Any, AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from playwright.async_api import Page, expect

WAIT_MS = 20_000


# --- customer widget ------------------------------------------------------------------------------

async def open_widget(page: Page, base_url: str) -> None:
    await page.goto(base_url + "widget/")
    await expect(page.locator("#segue-status")).to_have_attribute("data-state", "online", timeout=WAIT_MS)
    if await page.locator("#segue-panel").is_hidden():
        await page.click("#segue-launcher")
    await expect(page.locator("#segue-panel")).to_be_visible(timeout=WAIT_MS)


async def start_chat(page: Page, text: str, name: str | None = None) -> str:
    """Start a conversation from the pre-chat form; returns the conversation id."""
    if name:
        await page.fill("#segue-start-name", name)
    await page.fill("#segue-start-text", text)
    await page.click("#segue-start-btn")
    await expect(page.locator("#segue-composer")).to_be_visible(timeout=WAIT_MS)
    await expect(widget_message(page, text)).to_have_count(1, timeout=WAIT_MS)
    return await page.evaluate("window.segueWidget.conversation.id")


async def mount_identified_widget(page: Page, base_url: str, identity: dict[str, Any]) -> None:
    """The embedding snippet as a shop page runs it, with an identity its server signed
    (``auth.sites`` names the site ``shop``); returns once the widget is connected."""
    await page.goto(base_url + "widget/blank.html")
    await page.evaluate("""async (identity) => {
        const { mountChatWidget } = await import("/widget/widget.js");
        window.segueWidget = mountChatWidget({ site: "shop", identity, queue: "general" });
    }""", identity)
    await expect(page.locator("#segue-status")).to_have_attribute("data-state", "online", timeout=WAIT_MS)


async def customer_send(page: Page, text: str) -> None:
    await page.fill("#segue-input", text)
    await page.press("#segue-input", "Enter")
    # stored (it has its event id), not just shown as pending
    await expect(page.locator(".segue-msg--mine[data-event-id]").filter(has_text=text).first).to_be_visible(timeout=WAIT_MS)


def widget_message(page: Page, text: str) -> Any:
    return page.locator("#segue-log .segue-msg .segue-msg-text").filter(has_text=text)


async def widget_log(page: Page) -> list[dict[str, str]]:
    """Every item of the customer's log: id, kind (message/system), text."""
    return await page.eval_on_selector_all(
        "#segue-log > li",
        """els => els.map(e => ({
            id: e.dataset.eventId || '',
            kind: e.classList.contains('segue-msg') ? 'message' : 'system',
            text: (e.querySelector('.segue-msg-text') || e).textContent,
        }))""",
    )


# --- agent console --------------------------------------------------------------------------------

async def _sign_in(page: Page, url: str, shown: str, username: str, password: str) -> None:
    """The agent console and the wallboard share one login form; ``shown`` appears once in."""
    await page.goto(url)
    await page.fill("#login-username", username)
    await page.fill("#login-password", password)
    await page.click("#login-submit")
    await expect(page.locator(shown)).to_be_visible(timeout=WAIT_MS)
    await expect(page.locator("#connection")).to_have_attribute("data-state", "online", timeout=WAIT_MS)


async def agent_login(page: Page, base_url: str, username: str = "demo", password: str = "demo") -> None:
    await _sign_in(page, base_url + "agent/", "#console", username, password)


async def set_presence(page: Page, status: str) -> None:
    await page.select_option("#presence", status)
    await expect(page.locator("#presence")).to_have_value(status, timeout=WAIT_MS)


async def accept_offer(page: Page, conversation_id: str | None = None) -> str:
    """Accept an offer (the one for ``conversation_id``, or the first); returns the conversation id."""
    selector = f'.offer[data-conversation-id="{conversation_id}"]' if conversation_id else ".offer"
    offer = page.locator(selector).first
    await expect(offer).to_be_visible(timeout=WAIT_MS)
    cid = await offer.get_attribute("data-conversation-id")
    await offer.locator(".offer-accept").click()
    await expect(panel(page, cid).locator(".conv-composer")).to_be_visible(timeout=WAIT_MS)
    return cid


def panel(page: Page, conversation_id: str) -> Any:
    return page.locator(f'.conv-panel[data-conversation-id="{conversation_id}"]')


def panel_item(page: Page, conversation_id: str, text: str) -> Any:
    return panel(page, conversation_id).locator(".conv-log > li").filter(has_text=text)


async def agent_send(page: Page, conversation_id: str, text: str, mode: str = "reply") -> None:
    p = panel(page, conversation_id)
    await p.locator(f'.mode-btn[data-mode="{mode}"]').click()
    await p.locator(".conv-input").fill(text)
    await p.locator(".conv-input").press("Enter")
    await expect(p.locator(".conv-log > li[data-event-id]").filter(has_text=text).first).to_be_visible(timeout=WAIT_MS)


async def close_conversation(page: Page, conversation_id: str, disposition: str | None = None,
                             tags: str | None = None) -> None:
    """The agent closes a conversation with its column's Close dialog (wrap-up disposition and tags optional)."""
    await panel(page, conversation_id).locator(".conv-close").click()
    if disposition:
        await page.select_option("#close-disposition", disposition)
    if tags:
        await page.fill("#close-tags", tags)
    await page.click("#close-submit")
    await expect(page.locator("#close-dialog")).to_be_hidden(timeout=WAIT_MS)


async def available_agent(new_page: Any, base_url: str, username: str = "demo", password: str = "demo",
                          **page_options: Any) -> Page:
    """A new page (``page_options``: e.g. a viewport) with the agent signed in to the console and available."""
    page = await new_page(**page_options)
    await agent_login(page, base_url, username, password)
    await set_presence(page, "available")
    return page


async def chat_with_demo(segue: Any, new_page: Any, text: str, name: str | None = None,
                         agent_page: dict[str, Any] | None = None) -> tuple[Page, Page, str]:
    """A customer starts a chat on the widget (``text``, pre-chat ``name``), the demo agent signs
    in (on a page made with ``agent_page`` options), goes available and accepts: (customer page,
    agent page, conversation id)."""
    customer = await new_page()
    await open_widget(customer, segue.url)
    cid = await start_chat(customer, text, name=name)
    agent = await available_agent(new_page, segue.url, **(agent_page or {}))
    await accept_offer(agent, cid)
    return customer, agent, cid


async def panel_event_ids(page: Page, conversation_id: str) -> list[str]:
    return await panel(page, conversation_id).locator(".conv-log > li[data-event-id]").evaluate_all(
        "els => els.map(e => e.dataset.eventId)")


# --- supervisor wallboard -------------------------------------------------------------------------

async def board_login(page: Page, base_url: str, username: str = "demo", password: str = "demo") -> None:
    await _sign_in(page, base_url + "supervisor/", "#board", username, password)


def board_row(page: Page, conversation_id: str) -> Any:
    return page.locator(f'#conversations tr[data-conversation-id="{conversation_id}"]')


# --- calls (getStats through each page's SegueCall) ------------------------------------------------

CUSTOMER_CALL = "window.segueWidget.call"


def agent_call(conversation_id: str) -> str:
    """The console panel's SegueCall, as a JS expression."""
    return f"window.segueConsole.panels.get({conversation_id!r}).call"


def monitor_call(conversation_id: str) -> str:
    """The wallboard's SegueMonitor for a conversation, as a JS expression."""
    return f"window.segueBoard.client.monitors.get({conversation_id!r})"


# inbound/outbound RTP counters of a SegueCall's RTCPeerConnection, by kind
STATS_JS = """async (call) => {
  const out = {audio: {in: 0, out: 0, packets: 0}, video: {in: 0, frames: 0}, state: call && call.pc ? call.pc.connectionState : null};
  if (!call || !call.pc) return out;
  (await call.pc.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "audio") { out.audio.in += s.bytesReceived || 0; out.audio.packets += s.packetsReceived || 0; }
    if (s.type === "outbound-rtp" && s.kind === "audio") out.audio.out += s.bytesSent || 0;
    if (s.type === "inbound-rtp" && s.kind === "video") { out.video.in += s.bytesReceived || 0; out.video.frames += s.framesDecoded || 0; }
  });
  return out;
}"""

# what arrived on one transceiver of a SegueCall (call._tx[slot]: audio, camera, screen, supervisor;
# a SegueMonitor's: audio = the customer, agent = the agent), found by its mid
SLOT_STATS_JS = """async ([call, slot]) => {
  const out = {bytes: 0, frames: 0, state: call && call.pc ? call.pc.connectionState : null};
  const tx = call && call.pc && call._tx && call._tx[slot];
  if (!tx || tx.mid == null) return out;
  (await call.pc.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp" && s.mid === tx.mid) { out.bytes += s.bytesReceived || 0; out.frames += s.framesDecoded || 0; }
  });
  return out;
}"""


async def stats(page: Page, call_expr: str) -> dict[str, Any]:
    return await page.evaluate(f"() => ({STATS_JS})({call_expr})")


async def slot_stats(page: Page, call_expr: str, slot: str) -> dict[str, Any]:
    return await page.evaluate(f"(slot) => ({SLOT_STATS_JS})([{call_expr}, slot])", slot)


def redis_drops_first(monkeypatch: pytest.MonkeyPatch, target: Any, method: str, failures: float,
                      note: Callable[..., Any] = lambda *args: args[-1], when: Callable[..., bool] = lambda *args: True,
                      before: Callable[[int], Awaitable[None]] | None = None) -> list[Any]:
    """Make the node's ``target.method`` (e.g. the signaling service's ``resume``) fail its first
    ``failures`` calls the way it does when Redis drops the node's connection (the namespace answers
    ``unavailable``; a connect is refused ``unavailable``). Only calls ``when(*args)`` picks count;
    returns the list of ``note(*args)`` for each of them (by default the last argument: ``after``).
    ``before(n)`` runs before the n-th call fails (e.g. to hold it until something happened)."""
    original = getattr(target, method)
    noted: list[Any] = []

    async def blinking(*args: Any, **kwargs: Any) -> Any:
        if when(*args):
            noted.append(note(*args))
            if len(noted) <= failures:
                if before is not None:
                    await before(len(noted))
                raise aioredis.ConnectionError("Connection closed by server.")
        return await original(*args, **kwargs)

    monkeypatch.setattr(target, method, blinking)
    return noted


async def eventually(check: Any, timeout: float = 45.0, what: str = "condition") -> Any:
    """Poll ``check()`` until it returns something truthy (generous deadline, no timing asserted)."""
    last = None
    for _ in range(int(timeout / 0.5)):
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.5)
    raise AssertionError(f"{what} not met in time (last: {last!r})")


async def wait_js(page: Page, expression: str, timeout: float = 30_000, arg: Any = None) -> None:
    """Poll a JavaScript predicate (an expression, or a function of ``arg``) until it is truthy.

    Playwright's ``wait_for_function`` evaluates its predicate with ``eval`` inside the page, which
    Segue's Content-Security-Policy (no 'unsafe-eval') blocks; ``page.evaluate`` runs through the
    DevTools protocol instead, so this works with the pages' real CSP on. Only the truth of the
    value crosses back (a widget or a connection object would not serialise)."""
    text = expression.strip()
    is_function = text.startswith(("function", "async")) or (text.startswith("(") and "=>" in text)
    predicate = f"async (arg) => !!(await ({text})(arg))" if is_function else f"() => !!({text})"
    deadline = asyncio.get_running_loop().time() + timeout / 1000
    while not await page.evaluate(predicate, arg):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{text} still false after {timeout / 1000:.0f} s")
        await asyncio.sleep(0.1)


async def audio_grows(page: Page, call_expr: str, what: str, by: int = 4000) -> dict[str, Any]:
    """Inbound audio bytes on this page grow by `by` (and the connection is up)."""
    first = await stats(page, call_expr)

    async def grown() -> Any:
        now = await stats(page, call_expr)
        return now if now["state"] == "connected" and now["audio"]["in"] >= first["audio"]["in"] + by else None

    return await eventually(grown, what=what)


async def slot_grows(page: Page, call_expr: str, slot: str, what: str, by: int = 4000, field: str = "bytes") -> dict[str, Any]:
    """What arrives on one transceiver (bytes, or decoded ``frames``) grows by `by`."""
    first = await slot_stats(page, call_expr, slot)

    async def grown() -> Any:
        now = await slot_stats(page, call_expr, slot)
        return now if now["state"] == "connected" and now[field] >= first[field] + by else None

    return await eventually(grown, what=what)


async def press_call(customer: Page, button: str = "#segue-call", widget: str = "window.segueWidget") -> str:
    """The visitor presses a call button of the widget ("Call us", or ``#segue-video-call``) and it
    says Calling: the conversation id (a call from the web starts a conversation). ``widget``: the
    expression that names the mounted widget (``Segue.widget`` with the one-script-tag snippet)."""
    await expect(customer.locator(button)).to_be_enabled(timeout=WAIT_MS)
    await customer.click(button)
    await expect(customer.locator("#segue-callbar .segue-call-status")).to_contain_text("Calling", timeout=WAIT_MS)
    return await customer.evaluate(f"{widget}.conversation.id")


async def answer_call(agent: Page, conversation_id: str) -> Any:
    """The agent accepts the incoming call in the conversation's panel: its call bar."""
    bar = panel(agent, conversation_id).locator(".segue-call")
    await expect(bar.locator(".segue-call-incoming")).to_be_visible(timeout=WAIT_MS)
    await bar.locator(".call-accept").click()
    return bar


async def start_voice_call(customer: Page, agent: Page, conversation_id: str) -> None:
    """The customer presses "Call us" in the open conversation, the agent accepts; audio flows both ways."""
    await press_call(customer)
    bar = await answer_call(agent, conversation_id)
    await audio_grows(customer, CUSTOMER_CALL, "customer hears the agent")
    await audio_grows(agent, agent_call(conversation_id), "agent hears the customer")
    await expect(customer.locator("#segue-callbar .segue-call-status")).to_contain_text("In call", timeout=WAIT_MS)
    await expect(bar.locator(".segue-call-status")).to_contain_text("In call", timeout=WAIT_MS)


# --- REST --------------------------------------------------------------------------------------------

async def rest_login(base_url: str, username: str = "demo", password: str = "demo") -> str:
    async with aiohttp.ClientSession() as http:
        async with http.post(base_url + "api/v1/auth/login", json={"username": username, "password": password}) as r:
            body = await r.json()
            assert r.status == 200, body
            return body["token"]


async def create_agent(base_url: str, username: str, password: str, name: str, **extra: Any) -> dict[str, Any]:
    """Create an agent through the REST API as the demo agent (a supervisor)."""
    token = await rest_login(base_url)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        body = {"username": username, "password": password, "name": name, **extra}
        async with http.post(base_url + "api/v1/agents", json=body) as r:
            data = await r.json()
            assert r.status in (200, 201), data
            return data.get("agent", data)


async def create_canned(base_url: str, title: str, text: str) -> dict[str, Any]:
    token = await rest_login(base_url)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        async with http.post(base_url + "api/v1/canned", json={"title": title, "text": text}) as r:
            data = await r.json()
            assert r.status in (200, 201), data
            return data.get("reply", data)


# --- another site ---------------------------------------------------------------------------------

@contextlib.asynccontextmanager
async def other_origin(add_routes: Callable[[web.UrlDispatcher], Any]) -> AsyncIterator[str]:
    """Another site on this machine, for embedding tests: a small aiohttp server whose routes
    ``add_routes`` adds, reached as ``http://localhost:<its port>`` (the node is
    ``http://127.0.0.1:<port>``: another origin). Yields that origin."""
    app = web.Application()
    add_routes(app.router)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://localhost:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


# --- a page's language (test_console_locale.py, test_home_locale.py) --------------------------------

# Every text node of the page (hidden ones too: dialogs and messages shown later), and every
# placeholder, title and aria-label, plus the document title. Skipped: what people typed
# (messages, notes), the demo login's credentials, the customer's id and the page trail's URLs.
PAGE_WORDS_JS = """() => {
    const typed = ".segue-msg-text, .ev-internal-text, code, .conv-who-id, .conv-page-url";
    const out = [document.title];
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
        const el = n.parentElement;
        if (!el || el.closest("script, style") || el.closest(typed)) continue;
        if (n.textContent.trim()) out.push(n.textContent.trim());
    }
    for (const el of document.body.querySelectorAll("*")) {
        for (const a of ["placeholder", "aria-label", "title"]) if (el.hasAttribute(a)) out.push(el.getAttribute(a));
    }
    return out;
}"""


def english_words(texts: list[str], allowed: set[str]) -> list[str]:
    """Latin-letter words left in `texts` (URLs taken out first), less the allowed ones."""
    words = {w for t in texts for w in re.findall(r"[A-Za-z]+", re.sub(r"https?://\S+", "", t))}
    return sorted(words - allowed)


async def no_english(page: Any, allowed: set[str]) -> list[str]:
    """Fail with the English words left on `page` (and the texts holding them); returns its texts."""
    texts = await page.evaluate(PAGE_WORDS_JS)
    left = english_words(texts, allowed)
    assert left == [], (left, [t for t in texts if any(w in t for w in left)])
    return texts
