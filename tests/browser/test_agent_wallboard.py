"""The supervisor wallboard shows queues, agents and open conversations, live."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from chat_pages import WAIT_MS, board_login, create_agent, open_widget, start_chat

pytestmark = pytest.mark.browser


async def test_wallboard_lists_queues_agents_and_conversations(segue, new_page) -> None:
    await create_agent(segue.url, "carol", "carol-secret", "Carol <Night shift>")
    customer = await new_page()
    await open_widget(customer, segue.url)
    cid = await start_chat(customer, "anyone?", name="Dora")

    board = await new_page()
    await board_login(board, segue.url)

    for queue in ("general", "billing"):
        await expect(board.locator(f'.tile[data-queue="{queue}"]')).to_be_visible(timeout=WAIT_MS)
    row = board.locator(f'#conversations tr[data-conversation-id="{cid}"]')
    await expect(row).to_contain_text("Dora", timeout=WAIT_MS)
    await expect(row).to_contain_text("general")
    await expect(board.locator('#agents tr[data-agent="demo"]')).to_contain_text("Demo Agent", timeout=WAIT_MS)
    # Names are text: the angle brackets show as typed.
    await expect(board.locator('#agents tr[data-agent="carol"]')).to_contain_text("Carol <Night shift>", timeout=WAIT_MS)

    # The customer leaves: the row goes away on the next refresh.
    await customer.click("#segue-end")
    await expect(row).to_have_count(0, timeout=WAIT_MS)
    assert board.segue_errors == [] and customer.segue_errors == []
