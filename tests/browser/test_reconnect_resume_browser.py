"""The resume after a reconnect (docs/sdk.md "Resume"), when the node cannot answer it at first.

A page whose socket dropped asks, once it is back, for what it missed (``conversation.resume`` /
``conversation.open`` with ``after``). If Redis blinks at that moment the node answers
``unavailable``; the SDK asks again from the same point (pushes that arrive meanwhile move the last
id past what is missing), shows every message once, and when the retries are spent says so in the
page's language and keeps the point for the next resume (a reload included).

The node's resume fails the way it does when its Redis connection drops (``ConnectionError``, which
the namespace answers ``unavailable``); everything else is real: node, Redis, Chromium pages.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from playwright.async_api import Page, expect

from chat_pages import (
    WAIT_MS, agent_send, chat_with_demo, customer_send, eventually, panel, panel_event_ids, panel_item,
    redis_drops_first, wait_js, widget_log, widget_message,
)
from signaling import SIGNALING

pytestmark = pytest.mark.browser

WIDGET = "window.segueWidget.customer"
CONSOLE = "window.segueConsole.agent"


async def drop_and_hold(page: Page, client: str) -> None:
    """Close the page's connection (as a network drop does) and keep it down until ``come_back``."""
    await page.evaluate(f"() => {{ const s = {client}.socket; s.io.reconnection(false); s.io.engine.close(); }}")
    await wait_js(page, f"!{client}.connected")


async def come_back(page: Page, client: str) -> None:
    """Let the page reconnect: Socket.IO connects again and the server sends a new ``session``."""
    await page.evaluate(f"() => {{ const s = {client}.socket; s.io.reconnection(true); s.connect(); }}")


def first_ask_made(asked: list[str | None]) -> Any:
    async def check() -> bool:
        return bool(asked)
    return check


def messages(log: list[dict[str, str]]) -> list[str]:
    return [item["text"] for item in log if item["kind"] == "message"]


async def test_widget_asks_again_from_the_same_point_when_its_resume_after_a_reconnect_fails(
        segue: Any, new_page: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    customer, agent, cid = await chat_with_demo(segue, new_page, "hello?", name="Ada")
    await agent_send(agent, cid, "before the drop")
    await expect(widget_message(customer, "before the drop")).to_have_count(1, timeout=WAIT_MS)
    cursor = await customer.evaluate("window.segueWidget.conversation.lastEventId")

    await drop_and_hold(customer, WIDGET)
    for i in (1, 2, 3):
        await agent_send(agent, cid, f"while away {i}")

    # The first resume is answered only once a push has moved the page's last id past what it
    # missed, then fails (Redis dropped the node's connection); the second fails at once; the third works.
    pushed = asyncio.Event()

    async def hold_the_first(n: int) -> None:
        if n == 1:
            await asyncio.wait_for(pushed.wait(), 10)

    asked = redis_drops_first(monkeypatch, segue.app[SIGNALING], "resume", 2, before=hold_the_first)
    await come_back(customer, WIDGET)
    await eventually(first_ask_made(asked), what="the page's first resume after reconnecting")
    await agent_send(agent, cid, "after the reconnect")
    await expect(widget_message(customer, "after the reconnect")).to_have_count(1, timeout=WAIT_MS)
    pushed.set()

    await expect(widget_message(customer, "while away 3")).to_have_count(1, timeout=WAIT_MS)
    log = await widget_log(customer)
    assert messages(log) == ["hello?", "before the drop", "while away 1", "while away 2", "while away 3",
                             "after the reconnect"]
    ids = [item["id"] for item in log]
    assert len(ids) == len(set(ids))
    sdk_ids = await customer.evaluate("window.segueWidget.conversation.events.map((e) => e.id)")
    assert len(sdk_ids) == len(set(sdk_ids)) and set(ids) <= set(sdk_ids)
    assert asked == [cursor, cursor, cursor]  # asked again from where it was, not from the push
    assert await customer.evaluate("window.segueWidget.conversation.missingAfter") is None  # undefined: nothing owed
    await expect(customer.locator("#segue-error")).to_be_hidden()
    assert customer.segue_errors == [] and agent.segue_errors == []


async def test_widget_says_messages_are_missing_once_the_retries_are_spent_and_a_reload_fetches_them(
        segue: Any, new_page: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    customer, agent, cid = await chat_with_demo(segue, new_page, "hello?", name="Ada")
    await drop_and_hold(customer, WIDGET)
    await agent_send(agent, cid, "while away")

    service = segue.app[SIGNALING]
    resume = service.resume
    asked = redis_drops_first(monkeypatch, service, "resume", math.inf)
    await come_back(customer, WIDGET)
    await agent_send(agent, cid, "after the reconnect")  # pushed: the page's last id moves past the gap
    await expect(widget_message(customer, "after the reconnect")).to_have_count(1, timeout=WAIT_MS)
    await expect(customer.locator("#segue-error")).to_have_text(
        "Some messages could not be loaded: the server is not answering. Reload the page to see them.",
        timeout=30_000)
    assert len(asked) == 5 and len(set(asked)) == 1  # the first ask and four more, all from one point
    await expect(widget_message(customer, "while away")).to_have_count(0)

    # The point is kept with the cached conversation: a reload resumes from there.
    monkeypatch.setattr(service, "resume", resume)
    await customer.reload()
    await expect(customer.locator("#segue-status")).to_have_attribute("data-state", "online", timeout=WAIT_MS)
    await expect(widget_message(customer, "while away")).to_have_count(1, timeout=WAIT_MS)
    log = await widget_log(customer)
    assert messages(log) == ["hello?", "while away", "after the reconnect"]
    assert len({item["id"] for item in log}) == len(log)
    assert customer.segue_errors == [] and agent.segue_errors == []


async def test_console_asks_again_when_its_open_after_a_reconnect_fails(
        segue: Any, new_page: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    customer, agent, cid = await chat_with_demo(segue, new_page, "hello?", name="Ada")
    await drop_and_hold(agent, CONSOLE)
    for i in (1, 2):
        await customer_send(customer, f"while the agent was away {i}")

    asked = redis_drops_first(monkeypatch, segue.app[SIGNALING], "open_view", 2, when=lambda who, *_: who.kind == "agent")
    await come_back(agent, CONSOLE)
    await expect(panel_item(agent, cid, "while the agent was away 2")).to_have_count(1, timeout=WAIT_MS)
    await customer_send(customer, "after the reconnect")
    await expect(panel_item(agent, cid, "after the reconnect")).to_have_count(1, timeout=WAIT_MS)
    ids = await panel_event_ids(agent, cid)
    assert len(ids) == len(set(ids))
    texts = await panel(agent, cid).locator(".conv-log > li[data-event-id]").all_text_contents()
    for text in ("hello?", "while the agent was away 1", "while the agent was away 2", "after the reconnect"):
        assert sum(text in t for t in texts) == 1, (text, texts)
    assert len(asked) == 3 and len(set(asked)) == 1 and asked[0] is not None
    assert customer.segue_errors == [] and agent.segue_errors == []


async def test_widget_connects_again_when_redis_blinks_during_its_reconnect(
        segue: Any, new_page: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The node refuses the reconnect itself (``unavailable``: it cannot read the visitor from
    Redis), then fails the first resume: Socket.IO gives a refused socket up, the SDK does not."""
    customer, agent, cid = await chat_with_demo(segue, new_page, "hello?", name="Ada")
    await drop_and_hold(customer, WIDGET)
    await agent_send(agent, cid, "while away")

    service = segue.app[SIGNALING]
    connects = redis_drops_first(monkeypatch, service, "customer_session", 2, note=lambda token, *_: token)
    asked = redis_drops_first(monkeypatch, service, "resume", 1)
    await come_back(customer, WIDGET)
    await expect(widget_message(customer, "while away")).to_have_count(1, timeout=WAIT_MS)
    await expect(customer.locator("#segue-status")).to_have_attribute("data-state", "online", timeout=WAIT_MS)
    assert len(connects) == 3 and len(set(connects)) == 1  # the same visitor each time
    assert len(asked) == 2 and asked[0] == asked[1]
    await customer_send(customer, "after the reconnect")
    await expect(panel_item(agent, cid, "after the reconnect")).to_have_count(1, timeout=WAIT_MS)
    log = await widget_log(customer)
    assert messages(log) == ["hello?", "while away", "after the reconnect"]
    assert len({item["id"] for item in log}) == len(log)
    assert customer.segue_errors == [] and agent.segue_errors == []


async def test_a_resume_refused_rate_limited_past_the_requests_own_retries_is_asked_again(segue: Any,
                                                                                         new_page: Any) -> None:
    """A busy node answers ``rate_limited`` more often than ``request`` retries by itself: the resume
    after a reconnect is asked again (from the same point), not given up. The socket is a stand-in
    that refuses the first six resumes (as tests/browser/test_sdk_rate_limited.py does)."""
    page = await new_page()
    await page.goto(segue.url)  # any page of the node: the modules resolve against it
    result = await page.evaluate("""async () => {
        const { SegueCustomer } = await import("/sdk/segue.js");
        const client = new SegueCustomer({ autoResume: false, storagePrefix: "resume-test." });
        client.local.set("conversations", ["c_1"]);
        const chat = client.conversation("c_1");
        chat.ingest([{ id: "5-0", type: "message", data: { text: "seen" } }]);
        const sent = [], errors = [];
        client.on("error", (error) => errors.push(error.code));
        client.socket = {
            connected: true,
            timeout: () => ({
                emit(event, payload, ack) {
                    sent.push(payload.after ?? null);
                    const answer = sent.length <= 6
                        ? { ok: false, error: { code: "rate_limited", message: "busy: try again in 100 ms", retry_after_ms: 100 } }
                        : { ok: true, conversation: { id: "c_1", state: "assigned" },
                            events: [{ id: "5-0", type: "message", data: { text: "seen" } },
                                     { id: "6-0", type: "message", data: { text: "missed" } }] };
                    setTimeout(() => ack(null, answer), 0);
                },
            }),
        };
        await client._onSession({ customer_id: "u_1" }, { first: false });  // what a reconnect runs
        for (let i = 0; i < 200 && !chat.has("6-0") && !errors.length; i++) await new Promise((r) => setTimeout(r, 50));
        return { sent, errors, ids: chat.events.map((e) => e.id), missingAfter: chat.missingAfter ?? "none" };
    }""")
    assert result["sent"] == ["5-0"] * 7
    assert result["errors"] == [] and result["ids"] == ["5-0", "6-0"] and result["missingAfter"] == "none"
    assert page.segue_errors == []
