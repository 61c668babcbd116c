"""A server writes through the REST API with an API key; the customer's widget and the agent's
console (real Chromium) show it at once, as text."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from chat_pages import WAIT_MS, chat_with_demo, panel_item, widget_message
from segue_clients import http
from signaling import SIGNALING

pytestmark = pytest.mark.browser


async def test_bot_message_note_and_close_reach_the_pages(segue, new_page) -> None:
    _, key = await segue.app[SIGNALING].api_keys.create("crm", ["conversations:read", "conversations:write"], "test")
    customer, agent, cid = await chat_with_demo(segue, new_page, "Where is my parcel?", name="Zoe")
    api = f"{segue.url}api/v1/conversations/{cid}"

    text = "Your parcel ships <b>Friday</b>."
    status, body = await http("POST", f"{api}/messages", token=key,
                              json_body={"text": text, "as": {"kind": "bot", "name": "Shop bot"}})
    assert status == 201, body
    shown = customer.locator("#segue-log .segue-msg").filter(has_text=text)
    await expect(shown).to_have_count(1, timeout=WAIT_MS)
    await expect(shown.locator(".segue-msg-author")).to_have_text("Shop bot")
    await expect(customer.locator("#segue-log b")).to_have_count(0)  # text, never HTML
    await expect(panel_item(agent, cid, text)).to_have_count(1, timeout=WAIT_MS)

    status, _ = await http("POST", f"{api}/notes", token=key, json_body={"text": "VIP customer"})
    assert status == 201
    await expect(panel_item(agent, cid, "VIP customer")).to_have_count(1, timeout=WAIT_MS)
    await expect(widget_message(customer, "VIP customer")).to_have_count(0)

    status, _ = await http("POST", f"{api}/close", token=key, json_body={"disposition": "answered"})
    assert status == 200
    await expect(customer.locator("#segue-composer")).to_be_hidden(timeout=WAIT_MS)
    assert customer.segue_errors == [] and agent.segue_errors == []


async def test_an_idle_widget_follows_a_conversation_a_server_starts(segue, new_page) -> None:
    from chat_pages import open_widget, start_chat

    _, key = await segue.app[SIGNALING].api_keys.create("crm", ["conversations:write"], "test")
    customer = await new_page()
    await open_widget(customer, segue.url)
    first = await start_chat(customer, "Earlier question")  # Segue knows the visitor once they act
    await customer.click("#segue-end")
    await expect(customer.locator("#segue-composer")).to_be_hidden(timeout=WAIT_MS)
    cust = await customer.evaluate("window.segueWidget.customer.session.customer_id")
    assert cust, "the widget's customer id"

    status, body = await http("POST", f"{segue.url}api/v1/conversations", token=key,
                              json_body={"customer_id": cust, "text": "Your refund is on its way"})
    assert status == 201, body
    cid = body["conversation"]["id"]
    assert cid != first
    await expect(widget_message(customer, "Your refund is on its way")).to_have_count(1, timeout=WAIT_MS)
    await expect(customer.locator("#segue-composer")).to_be_visible(timeout=WAIT_MS)
    assert await customer.evaluate("window.segueWidget.conversation.id") == cid
    await customer.reload()
    await expect(widget_message(customer, "Your refund is on its way")).to_have_count(1, timeout=WAIT_MS)
    assert customer.segue_errors == []
