"""The customer's page resumes its conversation after a reload, a navigation away and back, and a
dropped connection: every event exactly once, in order, with what was missed fetched by id."""

from __future__ import annotations

import json

import pytest
from playwright.async_api import expect

from chat_pages import (
    WAIT_MS, chat_with_demo, agent_send, close_conversation, customer_send, panel_item, start_chat, widget_log,
    widget_message,
)

pytestmark = pytest.mark.browser


def _record_socket_traffic(page) -> list[str]:
    """Every Socket.IO packet the page sends (long-polling POSTs and WebSocket frames)."""
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.post_data or "") if "/socket.io/" in r.url and r.method == "POST" else None)
    page.on("websocket", lambda ws: ws.on("framesent", lambda payload: sent.append(payload if isinstance(payload, str) else "")))
    return sent


def _resume_requests(sent: list[str]) -> list[dict]:
    """The payloads of the conversation.resume requests in the recorded traffic."""
    out = []
    for chunk in sent:
        for packet in chunk.split("\x1e"):  # engine.io joins polled packets with a record separator
            start = packet.find('["conversation.resume",')
            if start >= 0:
                out.append(json.loads(packet[start:])[1])
    return out


def _assert_clean(log: list[dict[str, str]]) -> None:
    ids = [item["id"] for item in log]
    assert all(ids), f"an item without an event id (a pending copy left behind?): {log}"
    assert len(ids) == len(set(ids)), f"an event shown twice: {ids}"


async def _wait_online(page) -> None:
    await expect(page.locator("#segue-status")).to_have_attribute("data-state", "online", timeout=WAIT_MS)


async def test_reload_resumes_with_nothing_lost_or_doubled(segue, new_page) -> None:
    customer, agent, cid = await chat_with_demo(segue, new_page, "first")
    await agent_send(agent, cid, "second")
    await expect(widget_message(customer, "second")).to_have_count(1, timeout=WAIT_MS)
    await customer_send(customer, "third")
    await agent_send(agent, cid, "fourth")
    await expect(widget_message(customer, "fourth")).to_have_count(1, timeout=WAIT_MS)
    before = await widget_log(customer)
    _assert_clean(before)
    messages = ["first", "second", "third", "fourth"]
    assert [i["text"] for i in before if i["kind"] == "message"] == messages

    # 1. A plain reload: the same conversation, the same events, once each (the panel stays open),
    #    and the SDK asks only for what came after the last event it saw.
    sent = _record_socket_traffic(customer)
    await customer.reload()
    await _wait_online(customer)
    await expect(customer.locator("#segue-panel")).to_be_visible(timeout=WAIT_MS)
    await expect(widget_message(customer, "fourth")).to_have_count(1, timeout=WAIT_MS)
    after = await widget_log(customer)
    assert after == before
    assert await customer.evaluate("window.segueWidget.conversation.id") == cid
    assert _resume_requests(sent) == [{"conversation_id": cid, "after": before[-1]["id"]}]

    # Events delivered again (here: the whole log once more, straight from the server) are dropped
    # by id: nothing is shown twice and the SDK's list stays unique.
    again = await customer.evaluate("""async () => {
        const c = window.segueWidget.conversation;
        const result = await window.segueWidget.customer.request("conversation.resume", { conversation_id: c.id });
        const fresh = c.ingest(result.events);
        return { delivered: result.events.length, fresh: fresh.length, total: c.events.length,
                 unique: new Set(c.events.map(e => e.id)).size };
    }""")
    # (the log shows every event but "queued", which is the waiting banner instead: issue #12)
    assert again["delivered"] == len(before) + 1 and again["fresh"] == 0
    assert again["total"] == again["unique"] == again["delivered"]
    assert await widget_log(customer) == before

    # 2. Away (another page) while the agent writes; back: the missed messages arrive once.
    await customer.goto("about:blank")
    await agent_send(agent, cid, "fifth, while you were away")
    await agent_send(agent, cid, "sixth, while you were away")
    await customer.goto(segue.url + "widget/")
    await _wait_online(customer)
    await expect(widget_message(customer, "sixth, while you were away")).to_have_count(1, timeout=WAIT_MS)
    messages += ["fifth, while you were away", "sixth, while you were away"]
    log = await widget_log(customer)
    _assert_clean(log)
    assert [i["text"] for i in log if i["kind"] == "message"] == messages
    assert [i["id"] for i in log][: len(before)] == [i["id"] for i in before]

    # The SDK asked only for what came after its cursor (the reload kept the events it had seen).
    cached = await customer.evaluate(
        f"JSON.parse(sessionStorage.getItem('segue.customer.conversation.{cid}')).events"
        ".filter(e => e.type !== 'conversation.queued').map(e => e.id)")
    assert cached == [i["id"] for i in log]

    # 3. The connection drops (no reload): Socket.IO reconnects and the SDK resumes from its cursor.
    await customer.evaluate("window.segueWidget.customer.socket.io.engine.close()")
    await agent_send(agent, cid, "seventh, across a reconnect")
    await expect(widget_message(customer, "seventh, across a reconnect")).to_have_count(1, timeout=WAIT_MS)
    await _wait_online(customer)
    await customer_send(customer, "eighth, after the reconnect")
    await expect(panel_item(agent, cid, "eighth, after the reconnect")).to_have_count(1, timeout=WAIT_MS)
    messages += ["seventh, across a reconnect", "eighth, after the reconnect"]
    log = await widget_log(customer)
    _assert_clean(log)
    assert [i["text"] for i in log if i["kind"] == "message"] == messages

    # The agent's side is clean too.
    agent_ids = await agent.locator(f'.conv-panel[data-conversation-id="{cid}"] .conv-log > li[data-event-id]').evaluate_all(
        "els => els.map(e => e.dataset.eventId)")
    assert len(agent_ids) == len(set(agent_ids))
    assert set(i["id"] for i in log) <= set(agent_ids)
    assert customer.segue_errors == [] and agent.segue_errors == []


async def test_history_and_rating_survive_a_reload(segue, new_page) -> None:
    customer, agent, cid = await chat_with_demo(segue, new_page, "quick question")
    await agent_send(agent, cid, "quick answer")
    await close_conversation(agent, cid)
    await expect(customer.locator("#segue-rating")).to_be_visible(timeout=WAIT_MS)

    # Reloaded before rating: the closed conversation and the rating form come back.
    await customer.reload()
    await _wait_online(customer)
    await expect(customer.locator("#segue-rating")).to_be_visible(timeout=WAIT_MS)
    await expect(widget_message(customer, "quick answer")).to_have_count(1)
    await customer.click(".segue-star[data-score='4']")
    await customer.click("#segue-rate")
    await expect(customer.locator("#segue-rating-thanks")).to_be_visible(timeout=WAIT_MS)

    # "Start a new chat" forgets it locally; the next conversation is a new one.
    await customer.click("#segue-new-chat")
    cid2 = await start_chat(customer, "another thing")
    assert cid2 != cid
    log = await widget_log(customer)
    assert [i["text"] for i in log if i["kind"] == "message"] == ["another thing"]
    assert customer.segue_errors == [] and agent.segue_errors == []
