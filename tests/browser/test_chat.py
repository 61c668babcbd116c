"""Customer widget <-> agent console: a whole chat in two real Chromium pages against a real node."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from chat_pages import (
    WAIT_MS, accept_offer, agent_login, chat_with_demo, panel_event_ids, agent_send, create_canned, customer_send, open_widget, panel,
    panel_item, set_presence, start_chat, widget_message, widget_log, close_conversation,
)

pytestmark = pytest.mark.browser


async def test_customer_and_agent_chat_both_ways(segue, new_page) -> None:
    await create_canned(segue.url, "Greeting", "Hello {customer.name}, thanks for waiting!")
    customer = await new_page()
    agent = await new_page()

    await open_widget(customer, segue.url)
    cid = await start_chat(customer, "Hi, my order has not arrived", name="Ada")
    # Waiting: the position line (no agent is logged in yet).
    await expect(customer.locator("#segue-position")).to_contain_text("number 1", timeout=WAIT_MS)

    await agent_login(agent, segue.url)
    await set_presence(agent, "available")
    assert await accept_offer(agent) == cid
    p = panel(agent, cid)
    await expect(p.locator(".conv-title")).to_have_text("Ada")
    await expect(panel_item(agent, cid, "Hi, my order has not arrived")).to_have_count(1)
    # The page the customer was on is recorded with the conversation.
    await expect(p.locator(".conv-context")).to_contain_text("Northwind Bikes")

    # The customer sees the agent join; the position line is gone.
    await expect(customer.locator("#segue-log .segue-system").filter(has_text="joined")).to_have_count(1, timeout=WAIT_MS)
    await expect(customer.locator("#segue-position")).to_be_hidden(timeout=WAIT_MS)

    # Agent -> customer
    await agent_send(agent, cid, "Let me check that for you.")
    await expect(widget_message(customer, "Let me check that for you.")).to_have_count(1, timeout=WAIT_MS)
    await expect(customer.locator(".segue-msg--theirs .segue-msg-author").first).to_have_text("Demo Agent")

    # Customer -> agent, with the typing indicator first.
    await customer.locator("#segue-input").press_sequentially("Order 12")
    await expect(p.locator(".conv-typing")).to_contain_text("typing", timeout=WAIT_MS)
    await customer.fill("#segue-input", "")
    await customer_send(customer, "Order 1234, placed Monday")
    await expect(panel_item(agent, cid, "Order 1234, placed Monday")).to_have_count(1, timeout=WAIT_MS)
    await expect(p.locator(".conv-typing")).to_be_hidden(timeout=WAIT_MS)

    # Read receipts both ways: the agent reads (focus on the panel) -> "Read" under the customer's message.
    await p.locator(".conv-input").click()
    mine = customer.locator(".segue-msg--mine").filter(has_text="Order 1234")
    await expect(mine.locator(".segue-receipt")).to_have_text("Read", timeout=WAIT_MS)
    # The customer's widget is open and visible, so the agent's message is read too.
    theirs = p.locator(".segue-msg--mine").filter(has_text="Let me check that for you.")
    await expect(theirs.locator(".segue-receipt")).to_have_text("Read", timeout=WAIT_MS)

    # An internal note: distinct in the console, never shown to the customer.
    await agent_send(agent, cid, "Customer sounds worried, check courier", mode="note")
    await expect(p.locator(".ev-note").filter(has_text="check courier")).to_have_count(1)

    # A canned reply fills the composer (placeholders filled) and can be edited before sending.
    await p.locator(".mode-btn[data-mode=reply]").click()
    await p.locator(".canned-btn").click()
    await p.locator(".canned-item").filter(has_text="Greeting").click()
    await expect(p.locator(".conv-input")).to_have_value("Hello Ada, thanks for waiting!", timeout=WAIT_MS)
    await p.locator(".conv-input").press("End")
    await p.locator(".conv-input").press_sequentially(" It ships today.")
    await p.locator(".conv-input").press("Enter")
    await expect(widget_message(customer, "Hello Ada, thanks for waiting! It ships today.")).to_have_count(1, timeout=WAIT_MS)

    # Close with a disposition; the customer rates.
    await close_conversation(agent, cid, "resolved")
    await expect(p.locator(".conv-state")).to_have_text("closed", timeout=WAIT_MS)
    await expect(p.locator(".conv-log .segue-system").filter(has_text="resolved")).to_have_count(1)
    await expect(customer.locator("#segue-rating")).to_be_visible(timeout=WAIT_MS)
    await expect(customer.locator("#segue-composer")).to_be_hidden()
    await customer.click(".segue-star[data-score='5']")
    await customer.fill("#segue-rating-comment", "Quick and kind")
    await customer.click("#segue-rate")
    await expect(customer.locator("#segue-rating-thanks")).to_be_visible(timeout=WAIT_MS)
    await expect(p.locator(".conv-log .segue-system").filter(has_text="Rated 5/5")).to_have_count(1, timeout=WAIT_MS)

    # The note never reached the customer's page; every message shows exactly once on both sides.
    log = await widget_log(customer)
    assert not any("courier" in item["text"] for item in log)
    texts = [item["text"] for item in log if item["kind"] == "message"]
    assert texts == [
        "Hi, my order has not arrived",
        "Let me check that for you.",
        "Order 1234, placed Monday",
        "Hello Ada, thanks for waiting! It ships today.",
    ]
    ids = [item["id"] for item in log]
    assert all(ids) and len(ids) == len(set(ids))
    assert customer.segue_errors == [] and agent.segue_errors == []


async def test_agent_console_reload_keeps_its_conversations(segue, new_page) -> None:
    customer, agent, cid = await chat_with_demo(segue, new_page, "Are you there?")
    await agent_send(agent, cid, "Yes, here.")
    before = await panel_event_ids(agent, cid)

    await agent.reload()  # the token is in sessionStorage: no new login
    await expect(agent.locator("#connection")).to_have_attribute("data-state", "online", timeout=WAIT_MS)
    await expect(panel(agent, cid).locator(".conv-composer")).to_be_visible(timeout=WAIT_MS)
    await expect(panel_item(agent, cid, "Yes, here.")).to_have_count(1, timeout=WAIT_MS)
    after = await panel_event_ids(agent, cid)
    assert after == before

    await customer_send(customer, "Great")
    await expect(panel_item(agent, cid, "Great")).to_have_count(1, timeout=WAIT_MS)
    assert customer.segue_errors == [] and agent.segue_errors == []


async def test_wrong_password_shows_an_error(segue, new_page) -> None:
    agent = await new_page()
    await agent.goto(segue.url + "agent/")
    await agent.fill("#login-username", "demo")
    await agent.fill("#login-password", "not-the-password")
    await agent.click("#login-submit")
    await expect(agent.locator("#login-error")).to_be_visible(timeout=WAIT_MS)
    await expect(agent.locator("#console")).to_be_hidden()
    assert agent.segue_errors == []


async def test_expired_or_forged_token_sends_the_agent_back_to_login(segue, new_page) -> None:
    agent = await new_page()
    await agent.goto(segue.url + "agent/")
    await agent.evaluate("sessionStorage.setItem('segue.agent.token', JSON.stringify('forged.token'))")
    await agent.reload()
    # Refused with a message a person can act on; the bad token is forgotten.
    await expect(agent.locator("#login-error")).to_contain_text("token", timeout=WAIT_MS)
    assert await agent.evaluate("sessionStorage.getItem('segue.agent.token')") is None
    # Logging in again in the same page works.
    await agent.fill("#login-username", "demo")
    await agent.fill("#login-password", "demo")
    await agent.click("#login-submit")
    await expect(agent.locator("#connection")).to_have_attribute("data-state", "online", timeout=WAIT_MS)
    await expect(agent.locator("#agent-name")).to_contain_text("Demo Agent")
    assert agent.segue_errors == []
