"""Messages are text, never HTML: markup typed by either side shows literally and creates no element."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from chat_pages import (
    WAIT_MS, accept_offer, agent_login, agent_send, customer_send, open_widget, panel, panel_item,
    set_presence, start_chat, widget_message,
)

pytestmark = pytest.mark.browser

IMG = '<img src=x onerror="window.__segueXss=(window.__segueXss||0)+1">'
SCRIPT = "<script>window.__segueXss=1</script><b>bold?</b>"


async def test_markup_in_messages_shows_literally_on_both_pages(segue, new_page) -> None:
    customer = await new_page()
    agent = await new_page()
    await open_widget(customer, segue.url)
    # In the first message, the name, and later messages.
    cid = await start_chat(customer, IMG, name="<b>Mallory</b>")
    await agent_login(agent, segue.url)
    await set_presence(agent, "available")
    offer = agent.locator(f'.offer[data-conversation-id="{cid}"]')
    await expect(offer.locator(".offer-preview")).to_have_text(IMG, timeout=WAIT_MS)
    await accept_offer(agent, cid)

    await customer_send(customer, SCRIPT)
    await agent_send(agent, cid, IMG)
    await agent_send(agent, cid, SCRIPT, mode="note")

    # Shown exactly as typed, on both pages.
    await expect(panel(agent, cid).locator(".conv-title")).to_have_text("<b>Mallory</b>")
    await expect(panel_item(agent, cid, IMG)).to_have_count(2, timeout=WAIT_MS)  # the customer's and the agent's
    await expect(panel_item(agent, cid, SCRIPT)).to_have_count(2)  # the customer's message and the note
    await expect(widget_message(customer, IMG)).to_have_count(2, timeout=WAIT_MS)
    await expect(widget_message(customer, SCRIPT)).to_have_count(1)
    texts = await customer.locator("#segue-log .segue-msg-text").all_text_contents()
    assert texts == [IMG, SCRIPT, IMG]

    # No element was created from the text, and nothing ran.
    for page in (customer, agent):
        assert await page.locator("img").count() == 0
        assert await page.locator(".segue-log script, .segue-log b, .offers b, .conv-title b").count() == 0
        assert await page.evaluate("window.__segueXss") is None
    assert customer.segue_errors == [] and agent.segue_errors == []
