"""The SDK's own logic, run in Chromium as ES modules: event order and de-duplication by id, event
descriptions, and the text-only DOM helper."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser


async def _sdk_page(segue, new_page):
    page = await new_page()
    await page.goto(segue.url)  # any page of the node: the modules resolve against it
    return page


async def test_ingest_orders_by_id_and_drops_duplicates(segue, new_page) -> None:
    page = await _sdk_page(segue, new_page)
    result = await page.evaluate("""async () => {
        const { Conversation, compareIds } = await import("/sdk/segue.js");
        const seen = [];
        const client = { emit: () => {}, connected: false };
        const c = new Conversation(client, "c_1");
        c.on("event", (e) => seen.push(e.id));
        const ev = (id, text) => ({ id, conversation_id: "c_1", type: "message", ts: 1, data: { text } });
        const fresh1 = c.ingest([ev("1700000000000-1", "b"), ev("1700000000000-0", "a")]);
        const fresh2 = c.ingest([ev("1700000000000-1", "b again"), ev("1699999999999-5", "older"), ev("1700000000001-0", "c")]);
        const fresh3 = c.ingest([ev("1700000000001-0", "c"), null, { no: "id" }]);
        return {
            order: c.events.map((e) => e.data.text),
            seen, fresh: [fresh1.length, fresh2.length, fresh3.length], last: c.lastEventId,
            cmp: [compareIds("9-0", "10-0") < 0, compareIds("10-1", "10-0") > 0, compareIds("5-5", "5-5") === 0,
                  compareIds(null, "1-0") < 0],
        };
    }""")
    assert result["order"] == ["older", "a", "b", "c"]
    assert result["seen"] == ["1700000000000-0", "1700000000000-1", "1699999999999-5", "1700000000001-0"]
    assert result["fresh"] == [2, 2, 0]
    assert result["last"] == "1700000000001-0"
    assert result["cmp"] == [True, True, True, True]
    assert page.segue_errors == []


async def test_read_receipts_keep_the_newest_and_summary_cursors_count(segue, new_page) -> None:
    page = await _sdk_page(segue, new_page)
    result = await page.evaluate("""async () => {
        const { Conversation } = await import("/sdk/segue.js");
        const c = new Conversation({ emit: () => {}, connected: false }, "c_1");
        const reads = [];
        c.on("read", (r) => reads.push(r.event_id));
        c._onRead({ reader: { kind: "agent", id: "demo" }, event_id: "5-0" });
        c._onRead({ reader: { kind: "agent", id: "demo" }, event_id: "4-0" });  // older: ignored
        c.updateSummary({ id: "c_1", state: "assigned", read: { agent: "3-0", customer: "6-0" } });
        return { reads, agent: c.readUpTo("agent"), customer: c.readUpTo("customer"), state: c.state };
    }""")
    assert result == {"reads": ["5-0"], "agent": "5-0", "customer": "6-0", "state": "assigned"}


async def test_describe_event_and_dom_helper_are_text_only(segue, new_page) -> None:
    page = await _sdk_page(segue, new_page)
    result = await page.evaluate("""async () => {
        const { describeEvent } = await import("/sdk/format.js");
        const { h } = await import("/sdk/dom.js");
        const evil = '<img src=x onerror="window.__x=1">';
        const node = h("div", { class: "x", dataset: { id: evil } }, evil, h("span", {}, evil), [evil]);
        document.body.append(node);
        const d = (type, data, viewer) => describeEvent({ type, data }, { viewer }).text;
        return {
            imgs: document.querySelectorAll("img").length,
            text: node.textContent,
            dataId: node.dataset.id,
            assigned: d("conversation.assigned", { agent: { id: "bob", name: "Bob" } }),
            transferredCustomer: d("transfer.completed", { from_agent: { id: "a" }, to: { agent: { id: "bob", name: "Bob" } } }, "customer"),
            closedByCustomer: d("conversation.closed", { by: { kind: "customer", id: "v" } }, "agent"),
            closedForCustomer: d("conversation.closed", { by: { kind: "agent", id: "bob", name: "Bob" }, disposition: "spam" }, "customer"),
            video: d("call.video_on", { role: "customer", channel: "video" }, "agent"),
            note: describeEvent({ type: "note", data: { text: evil } }),
        };
    }""")
    evil = '<img src=x onerror="window.__x=1">'
    assert result["imgs"] == 0
    assert result["text"] == evil * 3 and result["dataId"] == evil
    assert result["assigned"] == "Bob joined the conversation"
    assert result["transferredCustomer"] == "You were transferred to Bob"
    assert result["closedByCustomer"] == "Conversation closed by the customer"
    assert result["closedForCustomer"] == "Conversation closed by Bob"  # no internal disposition
    assert result["video"] == "The customer turned the camera on"
    assert result["note"] == {"kind": "note", "text": evil}
    assert await page.evaluate("window.__x") is None
