"""Supervisor monitoring and customer-initiated video, in the real pages (Chromium, fake devices).

(a) A customer (widget) and an agent (console) are in a voice call. A supervisor on the wallboard
    (/supervisor/, connected watch-only) presses Listen: their connection receives audio on both
    of its audio m-sections (the customer's voice and the agent's) and sends nothing. Whisper: the
    agent's second audio m-section receives the supervisor while the customer's stays silent.
    Barge: the customer's second audio m-section receives too. Stop: the supervisor's connection
    closes and the customer <-> agent call goes on (audio still grows both ways). The console and
    the widget say what is happening, and the log shows the supervisor's events readably.
(b) The customer asks for video (and cancels once), the agent accepts: the agent decodes the
    customer's camera. The customer declines the agent's video request, and asks to see the agent's
    screen: the agent accepts and the customer decodes the screen.

Media is checked with getStats (bytes / frames per transceiver, found by mid); every wait polls with
a generous deadline; "stays silent" is checked against a growth observed elsewhere in the same
interval, never against a clock.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import expect

from chat_pages import (
    CUSTOMER_CALL, WAIT_MS, chat_with_demo, agent_call, audio_grows, board_login, board_row, create_agent,
    customer_send, eventually, monitor_call, panel, panel_item, slot_grows, slot_stats, start_voice_call,
    widget_log,
    wait_js,
)
from media.ice import set_loopback_only

pytestmark = pytest.mark.browser


@pytest.fixture
def loopback() -> Any:
    set_loopback_only(True)  # the server's aiortc legs gather 127.0.0.1 (Chromium: --allow-loopback)
    yield
    set_loopback_only(False)


async def _call_between(segue: Any, new_page: Any, text: str) -> tuple[Any, Any, str]:
    """A customer and the demo agent in a voice call; returns (customer page, agent page, id)."""
    customer, agent, cid = await chat_with_demo(segue, new_page, text, name="Ada")
    await start_voice_call(customer, agent, cid)
    return customer, agent, cid


async def test_supervisor_listens_whispers_barges_and_stops(segue: Any, new_page: Any, loopback: Any) -> None:
    await create_agent(segue.url, "sam", "sam-secret", "Sam Supervisor", role="supervisor")
    customer, agent, cid = await _call_between(segue, new_page, "my order is late")
    board = await new_page()
    await board_login(board, segue.url, "sam", "sam-secret")
    bar = panel(agent, cid).locator(".segue-call")
    monitor = monitor_call(cid)

    # the wallboard connects watch-only: it never shows up as an online agent
    assert await board.evaluate("() => window.segueBoard.client.watch") is True

    # --- Listen: both voices arrive, nothing of ours is sent ------------------------------------
    row = board_row(board, cid)
    await expect(row.locator(".call-cell-state")).to_contain_text("In call", timeout=WAIT_MS)
    await row.locator(".monitor-listen").click()
    await expect(board.locator("#monitor-status")).to_contain_text("Listening to Ada", timeout=WAIT_MS)
    await expect(board.locator("#monitor .monitor-listen")).to_have_attribute("aria-pressed", "true")
    await expect(row.locator(".monitor-listen")).to_have_attribute("aria-pressed", "true")
    await slot_grows(board, monitor, "audio", "the supervisor hears the customer")
    await slot_grows(board, monitor, "agent", "the supervisor hears the agent")
    assert await board.evaluate(f"() => {monitor}._tx.audio.sender.track") is None  # mic not sent
    await expect(bar.locator(".segue-call-supervisor")).to_contain_text("Sam Supervisor is listening", timeout=WAIT_MS)
    await expect(customer.locator("#segue-callbar .segue-call-supervisor")).to_be_hidden()
    await expect(panel_item(agent, cid, "is listening to the call")).to_have_count(1, timeout=WAIT_MS)

    # --- Whisper: the agent hears the supervisor on its second audio, the customer does not -------
    customer_second = (await slot_stats(customer, CUSTOMER_CALL, "supervisor"))["bytes"]
    await board.locator("#monitor .monitor-whisper").click()
    await expect(board.locator("#monitor-status")).to_contain_text("Whispering to", timeout=WAIT_MS)
    await expect(board.locator("#monitor .monitor-whisper")).to_have_attribute("aria-pressed", "true")
    await expect(bar.locator(".segue-call-supervisor")).to_contain_text("is whispering to you", timeout=WAIT_MS)
    await slot_grows(agent, agent_call(cid), "supervisor", "the agent hears the whisper")
    await slot_grows(agent, agent_call(cid), "supervisor", "the agent keeps hearing the whisper")
    assert (await slot_stats(customer, CUSTOMER_CALL, "supervisor"))["bytes"] == customer_second, \
        "the customer's supervisor track received audio during a whisper"
    await audio_grows(customer, CUSTOMER_CALL, "the customer still hears the agent")
    await expect(panel_item(agent, cid, "is whispering to the agent")).to_have_count(1, timeout=WAIT_MS)

    # --- Barge: the customer hears the supervisor too ---------------------------------------------
    await row.locator(".monitor-barge").click()
    await expect(board.locator("#monitor-status")).to_contain_text("Barged into the call", timeout=WAIT_MS)
    await expect(row.locator(".monitor-barge")).to_have_attribute("aria-pressed", "true")
    await slot_grows(customer, CUSTOMER_CALL, "supervisor", "the customer hears the supervisor")
    await slot_grows(agent, agent_call(cid), "supervisor", "the agent hears the supervisor")
    await expect(bar.locator(".segue-call-supervisor")).to_contain_text("barged in", timeout=WAIT_MS)
    await expect(customer.locator("#segue-callbar .segue-call-supervisor")).to_contain_text("joined the call", timeout=WAIT_MS)

    async def joined_line() -> Any:
        return [i for i in await widget_log(customer) if "supervisor" in i["text"] and "joined the call" in i["text"]]

    await eventually(joined_line, what="the customer's log says a supervisor joined")

    # --- Stop: only the supervisor's leg goes ------------------------------------------------------
    await board.locator("#monitor .monitor-stop").click()
    await expect(board.locator("#monitor")).to_be_hidden(timeout=WAIT_MS)
    await expect(row.locator(".monitor-stop")).to_be_hidden()
    assert await board.evaluate(f"() => {monitor} ?? null") is None
    await expect(bar.locator(".segue-call-supervisor")).to_be_hidden(timeout=WAIT_MS)
    await expect(panel_item(agent, cid, "stopped monitoring")).to_have_count(1, timeout=WAIT_MS)
    await audio_grows(customer, CUSTOMER_CALL, "the customer hears the agent after Stop")
    await audio_grows(agent, agent_call(cid), "the agent hears the customer after Stop")
    await expect(bar.locator(".segue-call-status")).to_contain_text("In call")
    await expect(customer.locator("#segue-callbar .segue-call-status")).to_contain_text("In call")

    # the log lines are text, not HTML; the chat goes on
    await customer_send(customer, "was someone else there?")
    await expect(panel_item(agent, cid, "was someone else there?")).to_have_count(1, timeout=WAIT_MS)
    await expect(customer.locator("#segue-error")).to_be_hidden()
    await expect(panel(agent, cid).locator(".conv-error")).to_be_hidden()
    await expect(board.locator("#monitor-error")).to_be_hidden()
    for page in (customer, agent, board):
        assert page.segue_errors == [], page.segue_errors


async def test_customer_asks_for_video_and_for_the_agents_screen(segue: Any, new_page: Any, loopback: Any) -> None:
    customer, agent, cid = await _call_between(segue, new_page, "can I show you the dent?")
    mine = customer.locator("#segue-callbar")
    bar = panel(agent, cid).locator(".segue-call")

    # the customer has one "Video" toggle (issue #12): their camera goes on (self-view) and the
    # agent is asked for theirs; pressed again, the camera goes off and the request is withdrawn
    await expect(mine.locator(".call-ask-video")).to_have_count(0)
    await mine.locator(".call-video").click()
    await expect(mine.locator(".call-video")).to_have_attribute("aria-pressed", "true", timeout=WAIT_MS)
    await expect(mine.locator(".segue-call-tile--self")).to_be_visible(timeout=WAIT_MS)
    await expect(mine.locator(".segue-call-outgoing")).to_contain_text("for video", timeout=WAIT_MS)
    await expect(bar.locator(".segue-call-incoming")).to_contain_text("asks for video", timeout=WAIT_MS)
    await mine.locator(".call-video").click()
    await expect(mine.locator(".call-video")).to_have_attribute("aria-pressed", "false", timeout=WAIT_MS)
    await expect(mine.locator(".segue-call-tile--self")).to_be_hidden(timeout=WAIT_MS)
    await expect(mine.locator(".segue-call-outgoing")).to_be_hidden(timeout=WAIT_MS)
    await expect(bar.locator(".segue-call-incoming")).to_be_hidden(timeout=WAIT_MS)

    # the agent asks for video; the customer declines; the agent is told
    await bar.locator(".call-ask-video").click()
    await expect(bar.locator(".segue-call-outgoing")).to_be_visible(timeout=WAIT_MS)
    await expect(mine.locator(".segue-call-incoming")).to_contain_text("asks for video", timeout=WAIT_MS)
    await mine.locator(".call-decline").click()
    await expect(bar.locator(".segue-call-note")).to_contain_text("declined video", timeout=WAIT_MS)
    await expect(bar.locator(".segue-call-outgoing")).to_be_hidden(timeout=WAIT_MS)
    await expect(mine.locator(".segue-call-incoming")).to_be_hidden(timeout=WAIT_MS)

    # the customer turns video on again; the agent accepts: both cameras on, frames at the agent
    await mine.locator(".call-video").click()
    await expect(bar.locator(".segue-call-incoming")).to_contain_text("asks for video", timeout=WAIT_MS)
    await bar.locator(".call-accept").click()
    await expect(mine.locator(".segue-call-outgoing")).to_be_hidden(timeout=WAIT_MS)
    await expect(mine.locator(".call-video")).to_have_text("Stop video", timeout=WAIT_MS)
    await slot_grows(agent, agent_call(cid), "camera", "the agent decodes the customer's camera", by=10, field="frames")
    await slot_grows(customer, CUSTOMER_CALL, "camera", "the customer decodes the agent's camera", by=10, field="frames")
    await expect(bar.locator(".segue-call-tile").first).to_be_visible(timeout=WAIT_MS)
    await audio_grows(agent, agent_call(cid), "audio goes on beside the video")

    # the customer asks to see the agent's screen; the agent accepts and shares it
    await mine.locator(".call-ask-screen").click()
    await expect(bar.locator(".segue-call-incoming")).to_contain_text("share your screen", timeout=WAIT_MS)
    await bar.locator(".call-accept").click()
    await expect(bar.locator(".call-screen")).to_have_text("Stop sharing", timeout=WAIT_MS)
    await slot_grows(customer, CUSTOMER_CALL, "screen", "the customer decodes the agent's screen", by=5, field="frames")
    await expect(mine.locator(".segue-call-tile").last).to_be_visible(timeout=WAIT_MS)

    # the log tells the story in words
    await expect(panel_item(agent, cid, "asked for video")).to_have_count(3, timeout=WAIT_MS)  # twice the customer, once the agent
    await expect(panel_item(agent, cid, "withdrew the video request")).to_have_count(1, timeout=WAIT_MS)
    await expect(panel_item(agent, cid, "declined the video request")).to_have_count(1, timeout=WAIT_MS)
    await expect(panel_item(agent, cid, "Video started")).to_have_count(1, timeout=WAIT_MS)
    await expect(panel_item(agent, cid, "asked for screen sharing")).to_have_count(1, timeout=WAIT_MS)
    await expect(panel_item(agent, cid, "Screen share started")).to_have_count(1, timeout=WAIT_MS)
    await expect(customer.locator("#segue-error")).to_be_hidden()
    await expect(panel(agent, cid).locator(".conv-error")).to_be_hidden()
    for page in (customer, agent):
        assert page.segue_errors == [], page.segue_errors


async def test_monitoring_survives_a_reconnect_of_the_wallboard(segue: Any, new_page: Any, loopback: Any) -> None:
    """The server ends monitoring with the socket that held it; the wallboard takes it up again."""
    await create_agent(segue.url, "sam", "sam-secret", "Sam Supervisor", role="supervisor")
    customer, agent, cid = await _call_between(segue, new_page, "hello again")
    board = await new_page()
    await board_login(board, segue.url, "sam", "sam-secret")
    monitor = monitor_call(cid)
    row = board_row(board, cid)
    await expect(row.locator(".call-cell-state")).to_contain_text("In call", timeout=WAIT_MS)
    await row.locator(".monitor-whisper").click()
    await slot_grows(agent, agent_call(cid), "supervisor", "the agent hears the whisper")
    first_pc = await board.evaluate(f"() => {{ window.firstPc = {monitor}.pc; return true; }}")
    assert first_pc

    # the socket drops (Socket.IO reconnects by itself): the server ends the monitoring ...
    await board.evaluate("() => window.segueBoard.client.socket.io.engine.close()")
    await expect(panel_item(agent, cid, "stopped monitoring the call")).to_have_count(1, timeout=WAIT_MS)
    # ... and the wallboard takes it up again, in the same mode, on a new connection
    await expect(panel_item(agent, cid, "is whispering to the agent")).to_have_count(2, timeout=WAIT_MS)
    await wait_js(board, f"() => {monitor}.pc && {monitor}.pc !== window.firstPc", timeout=WAIT_MS)
    await slot_grows(board, monitor, "audio", "the supervisor hears the customer again")
    await slot_grows(board, monitor, "agent", "the supervisor hears the agent again")
    await slot_grows(agent, agent_call(cid), "supervisor", "the agent hears the whisper again")
    await expect(board.locator("#monitor-status")).to_contain_text("Whispering to", timeout=WAIT_MS)
    await expect(panel(agent, cid).locator(".segue-call-supervisor")).to_contain_text("is whispering to you", timeout=WAIT_MS)
    await audio_grows(customer, CUSTOMER_CALL, "the customer still hears the agent")
    for page in (customer, agent, board):
        assert page.segue_errors == [], page.segue_errors
