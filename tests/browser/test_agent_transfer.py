"""Transfers in the agent console: the next agent sees every earlier event of the conversation and
the customer's previous conversation; the customer sees a "transferred" line and keeps chatting."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from chat_pages import (
    WAIT_MS, accept_offer, agent_login, agent_send, close_conversation, create_agent, customer_send, open_widget, panel,
    panel_event_ids, panel_item, set_presence, start_chat, widget_log, widget_message,
)

pytestmark = pytest.mark.browser


async def _previous_and_current_conversation(segue, customer, demo) -> tuple[str, str]:
    """The customer chats once (closed by the demo agent), then starts again; demo accepts both."""
    await open_widget(customer, segue.url)
    first = await start_chat(customer, "my bike squeaks", name="Grace")
    await agent_login(demo, segue.url)
    await set_presence(demo, "available")
    await accept_offer(demo, first)
    await agent_send(demo, first, "oil the chain")
    await close_conversation(demo, first)
    await expect(customer.locator("#segue-rating")).to_be_visible(timeout=WAIT_MS)
    await customer.click("#segue-new-chat")

    second = await start_chat(customer, "now it rattles")
    await accept_offer(demo, second)
    await agent_send(demo, second, "which part rattles?")
    await customer_send(customer, "the mudguard")
    await expect(panel_item(demo, second, "the mudguard")).to_have_count(1, timeout=WAIT_MS)
    await agent_send(demo, second, "Regular customer, was here last week", mode="note")
    return first, second


async def _transfer(demo, cid: str, agent_id: str, mode: str, note: str) -> None:
    await panel(demo, cid).locator(".conv-transfer").click()
    await expect(demo.locator("#transfer-dialog")).to_be_visible(timeout=WAIT_MS)
    await demo.check("input[name=target][value=agent]")
    await expect(demo.locator(f'#transfer-agent option[value="{agent_id}"]')).to_have_count(1, timeout=WAIT_MS)
    await demo.select_option("#transfer-agent", agent_id)
    await demo.check(f"input[name=mode][value={mode}]")
    await demo.fill("#transfer-note", note)
    await demo.click("#transfer-submit")
    await expect(demo.locator("#transfer-dialog")).to_be_hidden(timeout=WAIT_MS)


async def _bob_sees_everything(bob, first: str, second: str, ids_before: list[str]) -> None:
    # Every event the first agent had (messages, system events, the internal note), in order.
    ids = await panel_event_ids(bob, second)
    assert [i for i in ids if i in set(ids_before)] == ids_before, (ids_before, ids)
    await expect(panel_item(bob, second, "Regular customer, was here last week")).to_have_class("ev-internal ev-note")
    for text in ("now it rattles", "which part rattles?", "the mudguard"):
        await expect(panel_item(bob, second, text)).to_have_count(1)

    # The customer's previous conversation: listed, and opens read-only with its messages.
    p = panel(bob, second)
    await p.locator(".conv-history summary").click()
    link = p.locator(f'.history-open[data-conversation-id="{first}"]')
    await expect(link).to_be_visible(timeout=WAIT_MS)
    await link.click()
    old = panel(bob, first)
    await expect(old).to_have_class("conv-panel conv-panel--readonly", timeout=WAIT_MS)
    await expect(panel_item(bob, first, "my bike squeaks")).to_have_count(1, timeout=WAIT_MS)
    await expect(panel_item(bob, first, "oil the chain")).to_have_count(1)
    await expect(old.locator(".conv-composer")).to_be_hidden()


async def _bob_standing_by(segue, new_page):  # type: ignore[no-untyped-def]
    """Customer, demo and Bob's pages: the customer's previous conversation and the current one
    (demo's), the current one's event ids as demo sees them, Bob signed in and available."""
    await create_agent(segue.url, "bob", "bob-secret", "Bob Builder")
    customer, demo, bob = await new_page(), await new_page(), await new_page()
    first, second = await _previous_and_current_conversation(segue, customer, demo)
    ids_before = await panel_event_ids(demo, second)

    await agent_login(bob, segue.url, "bob", "bob-secret")
    await set_presence(bob, "available")
    return customer, demo, bob, first, second, ids_before


async def test_cold_transfer_to_an_agent(segue, new_page) -> None:
    customer, demo, bob, first, second, ids_before = await _bob_standing_by(segue, new_page)
    await _transfer(demo, second, "bob", "cold", "rattling mudguard")
    # The first agent is out at once: read-only.
    await expect(panel(demo, second).locator(".conv-composer")).to_be_hidden(timeout=WAIT_MS)

    offer = bob.locator(f'.offer[data-conversation-id="{second}"]')
    await expect(offer).to_contain_text("rattling mudguard", timeout=WAIT_MS)
    await accept_offer(bob, second)
    await _bob_sees_everything(bob, first, second, ids_before)

    # The customer was told, and the chat goes on with Bob.
    await expect(customer.locator("#segue-log .segue-system").filter(has_text="transferred")).to_have_count(1, timeout=WAIT_MS)
    await agent_send(bob, second, "Bob here, I can fix that")
    await expect(widget_message(customer, "Bob here, I can fix that")).to_have_count(1, timeout=WAIT_MS)
    await customer_send(customer, "thanks Bob")
    await expect(panel_item(bob, second, "thanks Bob")).to_have_count(1, timeout=WAIT_MS)
    log = await widget_log(customer)
    assert not any("Regular customer" in i["text"] or "rattling mudguard" in i["text"] for i in log)
    assert customer.segue_errors == [] and demo.segue_errors == [] and bob.segue_errors == []


async def test_warm_transfer_with_consult(segue, new_page) -> None:
    customer, demo, bob, first, second, ids_before = await _bob_standing_by(segue, new_page)
    await _transfer(demo, second, "bob", "warm", "can you take a rattle?")
    await accept_offer(bob, second)
    await _bob_sees_everything(bob, first, second, ids_before)

    # Consult: agents only, both ways, while the customer keeps chatting.
    await agent_send(demo, second, "She is a regular, be nice", mode="consult")
    await expect(panel_item(bob, second, "She is a regular, be nice")).to_have_count(1, timeout=WAIT_MS)
    await agent_send(bob, second, "Sure, I'll take it", mode="consult")
    await expect(panel_item(demo, second, "Sure, I'll take it")).to_have_count(1, timeout=WAIT_MS)
    await customer_send(customer, "hello?")
    await expect(panel_item(demo, second, "hello?")).to_have_count(1, timeout=WAIT_MS)
    await expect(panel_item(bob, second, "hello?")).to_have_count(1, timeout=WAIT_MS)

    # Hand over: demo leaves, Bob stays.
    complete = panel(demo, second).locator(".transfer-complete")
    await expect(complete).to_be_enabled(timeout=WAIT_MS)
    await complete.click()
    await expect(panel(demo, second).locator(".conv-composer")).to_be_hidden(timeout=WAIT_MS)
    await expect(customer.locator("#segue-log .segue-system").filter(has_text="transferred")).to_have_count(1, timeout=WAIT_MS)
    await agent_send(bob, second, "All yours now")
    await expect(widget_message(customer, "All yours now")).to_have_count(1, timeout=WAIT_MS)

    log = await widget_log(customer)
    assert not any("regular" in i["text"].lower() or "take it" in i["text"] for i in log)
    assert customer.segue_errors == [] and demo.segue_errors == [] and bob.segue_errors == []


async def test_cold_transfer_to_a_queue(segue, new_page) -> None:
    await create_agent(segue.url, "bob", "bob-secret", "Bob Builder", skills=["billing"])
    customer, demo, bob = await new_page(), await new_page(), await new_page()
    first, second = await _previous_and_current_conversation(segue, customer, demo)
    ids_before = await panel_event_ids(demo, second)
    await set_presence(demo, "away")  # so the billing queue routes to Bob

    await agent_login(bob, segue.url, "bob", "bob-secret")
    await set_presence(bob, "available")
    p = panel(demo, second)
    await p.locator(".conv-transfer").click()
    await demo.check("input[name=target][value=queue]")
    # Warm transfers need a named agent: the option is off for queues.
    await expect(demo.locator("input[name=mode][value=warm]")).to_be_disabled()
    await demo.select_option("#transfer-queue", "billing")
    await demo.fill("#transfer-note", "billing question")
    await demo.click("#transfer-submit")
    await expect(demo.locator("#transfer-dialog")).to_be_hidden(timeout=WAIT_MS)
    await expect(p.locator(".conv-composer")).to_be_hidden(timeout=WAIT_MS)

    offer = bob.locator(f'.offer[data-conversation-id="{second}"]')
    await expect(offer).to_contain_text("billing", timeout=WAIT_MS)
    await accept_offer(bob, second)
    await _bob_sees_everything(bob, first, second, ids_before)
    await expect(panel(bob, second).locator(".conv-meta")).to_contain_text("Queue billing")
    await expect(customer.locator("#segue-log .segue-system").filter(has_text="transferred")).to_have_count(1, timeout=WAIT_MS)
    await agent_send(bob, second, "Billing here")
    await expect(widget_message(customer, "Billing here")).to_have_count(1, timeout=WAIT_MS)
    assert customer.segue_errors == [] and demo.segue_errors == [] and bob.segue_errors == []
