"""The pages under their Content-Security-Policy in real Chromium (issue #13): the console, the
wallboard and the customer widget run with no violation; another site cannot frame the console;
the console's "Log out" ends the token on the server."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from playwright.async_api import Page, expect

from chat_pages import (WAIT_MS, accept_offer, agent_login, agent_send, board_login, eventually, open_widget,
                        set_presence, start_chat)
from segue_clients import http

pytestmark = pytest.mark.browser

# every violation the page reports, recorded before any page script runs
RECORD_VIOLATIONS = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push(`${e.violatedDirective} blocked ${e.blockedURI || "inline"} at ${e.sourceFile}:${e.lineNumber}`);
});
"""


async def watched(new_page: Any) -> Page:
    page = await new_page(bypass_csp=False)  # the pages' own CSP applies
    await page.add_init_script(RECORD_VIOLATIONS)
    messages: list[str] = []
    page.on("console", lambda msg: messages.append(msg.text) if msg.type in ("error", "warning") else None)
    page.csp_console = messages  # type: ignore[attr-defined]
    return page


async def violations(page: Page) -> list[str]:
    reported = await page.evaluate("window.__csp")
    in_console = [m for m in page.csp_console if "Content Security Policy" in m]  # type: ignore[attr-defined]
    return reported + in_console


async def test_console_wallboard_and_widget_run_under_the_csp(segue: Any, new_page: Any) -> None:
    for path in ("agent/", "supervisor/", ""):
        status, _ = await http("GET", segue.url + path)
        assert status == 200
    customer, agent, board = await watched(new_page), await watched(new_page), await watched(new_page)
    await open_widget(customer, segue.url)
    cid = await start_chat(customer, "hello under a CSP", name="Ada")
    await agent.goto(segue.url + "agent/")
    await expect(agent.locator("#demo-login")).to_contain_text("demo / demo", timeout=WAIT_MS)  # the demo is on
    await agent_login(agent, segue.url)
    await set_presence(agent, "available")
    await accept_offer(agent, cid)
    await agent_send(agent, cid, "a reply")
    await agent_send(agent, cid, "a note", mode="note")
    await board_login(board, segue.url)
    await expect(board.locator(f'#conversations tr[data-conversation-id="{cid}"]')).to_contain_text("Ada", timeout=WAIT_MS)
    await agent.goto(segue.url)  # the start page too
    for page in (customer, agent, board):
        assert await violations(page) == [], await violations(page)
        assert page.segue_errors == []  # type: ignore[attr-defined]

    async def headers(path: str) -> Any:
        response = await board.request.get(segue.url + path)
        return response.headers

    console = await headers("agent/")
    assert "frame-ancestors 'self'" in console["content-security-policy"]
    assert "script-src 'self'" in console["content-security-policy"]
    assert "'unsafe-inline'" not in console["content-security-policy"]
    assert console["x-content-type-options"] == "nosniff" and console["referrer-policy"] == "no-referrer"
    assert "frame-ancestors 'self'" in (await headers("supervisor/"))["content-security-policy"]
    widget = await headers("widget/")
    assert "frame-ancestors" not in widget.get("content-security-policy", "")  # embeddable anywhere
    assert "x-frame-options" not in widget and (await headers("sdk/widget.js"))["x-content-type-options"] == "nosniff"


async def test_another_site_cannot_frame_the_console(segue: Any, new_page: Any, aiohttp_server: Any) -> None:
    # another site (another origin: its own port) whose page frames the console, the wallboard,
    # and the customer widget's blank page
    html = "<!doctype html><title>other site</title>" + "".join(
        f'<iframe src="{segue.url}{path}"></iframe>' for path in ("agent/", "supervisor/", "widget/blank.html"))

    async def framer(_request: web.Request) -> web.Response:
        return web.Response(text=html, content_type="text/html")

    other = web.Application()
    other.router.add_get("/", framer)
    site = await aiohttp_server(other)
    page = await watched(new_page)
    await page.goto(str(site.make_url("/")))

    def loaded(path: str) -> bool:
        return any(f.url == segue.url + path for f in page.frames)

    await eventually(lambda: _true(loaded("widget/blank.html")), what="the widget's page framed by another site")
    await eventually(lambda: _true(sum(f.url.startswith("chrome-error:") for f in page.frames) == 2),
                     what="the console and the wallboard refused in frames of another site")
    assert not loaded("agent/") and not loaded("supervisor/")
    assert any("frame-ancestors" in m for m in page.csp_console), page.csp_console  # type: ignore[attr-defined]
    # while a page of the console's own origin may frame it
    same = await new_page(bypass_csp=False)
    await same.goto(segue.url + "widget/blank.html")
    await same.evaluate("""(src) => { const f = document.createElement("iframe"); f.src = src;
                                      document.body.append(f); }""", segue.url + "agent/")
    frame = await (await same.wait_for_selector("iframe")).content_frame()
    assert frame is not None
    await expect(frame.locator("#login-username")).to_be_visible(timeout=WAIT_MS)


async def _true(value: bool) -> bool:
    return value


async def test_logging_out_of_the_console_ends_the_token(segue: Any, new_page: Any) -> None:
    page = await watched(new_page)
    await agent_login(page, segue.url)
    token = await page.evaluate("JSON.parse(sessionStorage.getItem('segue.agent.token'))")
    status, _ = await http("GET", segue.url + "api/v1/me", token=token)
    assert status == 200
    await page.click("#logout")
    await expect(page.locator("#login-username")).to_be_visible(timeout=WAIT_MS)

    async def ended() -> bool:
        status, body = await http("GET", segue.url + "api/v1/me", token=token)
        return status == 401 and body["error"]["code"] == "bad_token"

    await eventually(ended, what="the token refused after logging out")
    assert page.segue_errors == []  # type: ignore[attr-defined]
