"""Issue 12 in Chromium: the agent's desk shows every state right, and the customer's whole story.

- after a cold transfer the first agent's column says "transferred" (to whom), also once the
  next agent has it and after it closed — never a stale "offered";
- a call from the web: the offer says it is a call, answering the offer answers the call (no
  second Accept), and the customer's minimised widget says "call";
- channel labels follow escalation: the console header, the wallboard's Channels and Load, the
  "Call ended" line (tagged with the call's channel);
- the offer card keeps the name and the countdown apart; the Transfer and Close dialogs have
  accessible names; one conversation uses the console's width with the customer panel beside it;
  the close dialog records wrap-up tags;
- a returning verified customer: the panel shows the first visit's transcript, its call with its
  length and a recording that plays in the page, its CSAT, and the pages viewed.

With SEGUE_SCREENSHOTS=1 the tests also write docs/screenshots/console-customer-panel.png and
docs/screenshots/wallboard-escalated-call.png (1440x900), the pictures the README shows.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import expect

from chat_pages import (
    CUSTOMER_CALL, WAIT_MS, accept_offer, agent_call, agent_login, agent_send, audio_grows, available_agent, board_login,
    board_row, close_conversation, mount_identified_widget, press_call,
    chat_with_demo, create_agent, customer_send, open_widget, panel, panel_item, set_presence, start_chat,
    start_voice_call,
)
from media.ice import set_loopback_only
from server.auth import sign_identity

pytestmark = pytest.mark.browser

SECRET = "shop-secret-for-desk-tests"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
WIDE = {"viewport": {"width": 1440, "height": 900}}


async def _cold_transfer(page: Any, cid: str, agent_id: str, note: str) -> None:
    await panel(page, cid).locator(".conv-transfer").click()
    await expect(page.get_by_role("dialog", name="Transfer conversation")).to_be_visible(timeout=WAIT_MS)
    await page.check("input[name=target][value=agent]")
    await expect(page.locator(f'#transfer-agent option[value="{agent_id}"]')).to_have_count(1, timeout=WAIT_MS)
    await page.select_option("#transfer-agent", agent_id)
    await page.check("input[name=mode][value=cold]")
    await page.fill("#transfer-note", note)
    await page.click("#transfer-submit")
    await expect(page.locator("#transfer-dialog")).to_be_hidden(timeout=WAIT_MS)


async def test_the_first_agent_sees_a_cold_transfer_as_transferred_away(segue: Any, new_page: Any) -> None:
    await create_agent(segue.url, "bob", "bob-secret", "Bob Builder")
    customer, demo, cid = await chat_with_demo(segue, new_page, "my bike squeaks", name="Grace")
    bob = await available_agent(new_page, segue.url, "bob", "bob-secret")

    await _cold_transfer(demo, cid, "bob", "squeaky bike")
    p = panel(demo, cid)
    tab = demo.locator(f'.conv-tab[data-conversation-id="{cid}"]')
    await expect(p.locator(".conv-composer")).to_be_hidden(timeout=WAIT_MS)
    await expect(p.locator(".conv-state")).to_have_text("transferred", timeout=WAIT_MS)
    await expect(p.locator(".conv-readonly")).to_have_text("You transferred this conversation to Bob Builder (read-only).")
    await expect(tab.locator(".conv-tab-state")).to_have_text("transferred")

    # Bob takes it: the first agent still sees it as transferred (not "offered"), and follows it
    await accept_offer(bob, cid)
    await agent_send(bob, cid, "Bob here")
    await expect(panel_item(demo, cid, "Bob here")).to_have_count(1, timeout=WAIT_MS)
    await expect(p.locator(".conv-state")).to_have_text("transferred")
    await expect(p.locator(".conv-readonly")).to_contain_text("Bob Builder")
    # who handled it before and the note, in Bob's customer panel
    handled = panel(bob, cid).locator(".conv-handled")
    await expect(handled).to_contain_text("Demo Agent → Bob Builder (cold)", timeout=WAIT_MS)
    await expect(handled).to_contain_text("Note: squeaky bike")

    # closed by Bob: the first agent's column says so
    await close_conversation(bob, cid)
    await expect(p.locator(".conv-readonly")).to_have_text(
        "You transferred this conversation to Bob Builder; it is closed now (read-only).", timeout=WAIT_MS)
    await expect(p.locator(".conv-state")).to_have_text("transferred")
    assert customer.segue_errors == [] and demo.segue_errors == [] and bob.segue_errors == []


async def test_a_call_from_the_web_is_one_click_and_the_customer_sees_it_minimised(segue: Any, new_page: Any) -> None:
    set_loopback_only(True)  # the server's aiortc legs gather 127.0.0.1 (Chromium: --allow-loopback)
    try:
        customer, demo = await new_page(), await new_page()
        await open_widget(customer, segue.url)
        cid = await press_call(customer)
        # the visitor minimises the widget: its launcher still says there is a call
        await customer.click("#segue-launcher")
        await expect(customer.locator("#segue-panel")).to_be_hidden(timeout=WAIT_MS)
        launcher_call = customer.locator("#segue-launcher .segue-launcher-call")
        await expect(launcher_call).to_have_text("Calling…", timeout=WAIT_MS)

        await agent_login(demo, segue.url)
        await set_presence(demo, "available")
        offer = demo.locator(f'.offer[data-conversation-id="{cid}"]')
        await expect(offer.locator(".offer-call")).to_have_text("Incoming voice call", timeout=WAIT_MS)
        await expect(offer.locator(".offer-accept")).to_have_text("Answer call")
        # the name and the countdown are apart: their own elements, with space between them
        await expect(offer.locator(".offer-name")).to_have_text("Visitor")
        await expect(offer.locator(".offer-countdown")).to_have_text(re.compile(r"^\d+ s$"))
        name_box = await offer.locator(".offer-name").bounding_box()
        count_box = await offer.locator(".offer-countdown").bounding_box()
        assert name_box and count_box and count_box["x"] > name_box["x"] + name_box["width"]

        # one click: the offer is taken and the call answered; audio flows both ways
        await accept_offer(demo, cid)
        await audio_grows(customer, CUSTOMER_CALL, "customer hears the agent")
        await audio_grows(demo, agent_call(cid), "agent hears the customer")
        await expect(panel(demo, cid).locator(".segue-call-incoming")).to_be_hidden()
        await expect(launcher_call).to_have_text("In a call", timeout=WAIT_MS)
        await expect(panel(demo, cid).locator('.conv-channels .chan[data-channel="voice"]')).to_be_visible()
        assert customer.segue_errors == [] and demo.segue_errors == []
    finally:
        set_loopback_only(False)


async def test_channel_labels_follow_an_escalation_to_voice(segue: Any, new_page: Any) -> None:
    set_loopback_only(True)
    try:
        customer, demo, cid = await chat_with_demo(segue, new_page, "can we talk?", name="Nora Newcomer")
        board = await new_page(**WIDE)
        await board_login(board, segue.url)
        row = board_row(board, cid)
        await expect(row.locator("td").nth(4)).to_have_text("Chat", timeout=WAIT_MS)

        await start_voice_call(customer, demo, cid)
        # the console header, the wallboard's Channels and the agent's Load say voice
        header = panel(demo, cid).locator(".conv-channels")
        await expect(header.locator('.chan[data-channel="voice"]')).to_have_text("Voice", timeout=WAIT_MS)
        await expect(header.locator('.chan[data-channel="chat"]')).to_have_text("Chat")
        await expect(row.locator("td").nth(4)).to_have_text("Chat, Voice", timeout=WAIT_MS)
        load = board.locator('#agents tr[data-agent="demo"] .agent-load')
        await expect(load).to_have_text("Chat 1 · Voice 1", timeout=WAIT_MS)
        if os.environ.get("SEGUE_SCREENSHOTS"):
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            await board.screenshot(path=str(SCREENSHOTS / "wallboard-escalated-call.png"))

        # hang up: the "Call ended" line is tagged with the call's channel, and labels go back to chat
        await customer.locator("#segue-callbar .call-hangup").click()
        ended = panel(demo, cid).locator('.conv-log > li[data-type="call.ended"]')
        await expect(ended.locator(".chan")).to_have_text("Voice", timeout=WAIT_MS)
        await expect(header.locator('.chan[data-channel="voice"]')).to_have_count(0, timeout=WAIT_MS)
        await expect(row.locator("td").nth(4)).to_have_text("Chat", timeout=WAIT_MS)
        await expect(load).to_have_text("Chat 1", timeout=WAIT_MS)
        # this conversation's wrap-up in the customer panel: chat and voice with their time, the call
        this = panel(demo, cid).locator(".conv-this")
        await expect(this.locator(".conv-this-channels")).to_contain_text("Voice", timeout=WAIT_MS)
        await expect(this.locator(".history-call-label")).to_contain_text(re.compile(r"Voice call · \d"), timeout=WAIT_MS)
        assert customer.segue_errors == [] and demo.segue_errors == [] and board.segue_errors == []
    finally:
        set_loopback_only(False)


async def test_full_width_customer_panel_dialog_names_and_wrap_up_tags(segue: Any, new_page: Any) -> None:
    customer, demo, cid = await chat_with_demo(segue, new_page, "hello there", name="Nora", agent_page=WIDE)

    # one conversation: it takes the width beside the sidebar, the customer panel beside the log
    main = await demo.locator("#panels").bounding_box()
    box = await panel(demo, cid).bounding_box()
    log = await panel(demo, cid).locator(".conv-log").bounding_box()
    aside = await panel(demo, cid).locator(".conv-aside").bounding_box()
    assert main and box and log and aside
    assert box["width"] >= 0.9 * main["width"], (box, main)
    assert aside["x"] >= log["x"] + log["width"] - 1 and aside["width"] >= 300, (log, aside)
    await expect(panel(demo, cid).locator(".conv-who-name")).to_have_text("Nora")
    await expect(panel(demo, cid).locator(".conv-who-kind")).to_have_text("Visitor (not signed in)")
    # a visitor without an email: the parts that are missing are left out, not written as "null"
    assert "null" not in await panel(demo, cid).locator(".conv-who").inner_text()

    # the dialogs have accessible names
    await panel(demo, cid).locator(".conv-transfer").click()
    await expect(demo.get_by_role("dialog", name="Transfer conversation")).to_be_visible(timeout=WAIT_MS)
    await demo.click("#transfer-cancel")
    await panel(demo, cid).locator(".conv-close").click()
    dialog = demo.get_by_role("dialog", name="Close conversation")
    await expect(dialog).to_be_visible(timeout=WAIT_MS)
    # wrap-up: a bad tag is refused in the dialog, good ones are recorded with the disposition
    await demo.fill("#close-tags", "<b>")
    await demo.click("#close-submit")
    await expect(demo.locator("#close-error")).to_contain_text("Tags are 1-40 characters", timeout=WAIT_MS)
    await demo.fill("#close-tags", "refund, vip, refund")
    await demo.select_option("#close-disposition", "follow_up")
    await demo.click("#close-submit")
    await expect(dialog).to_be_hidden(timeout=WAIT_MS)
    summary = await demo.evaluate(f"() => window.segueConsole.agent.conversations.get({cid!r}).summary")
    assert summary["tags"] == ["refund", "vip"] and summary["disposition"] == "follow_up", summary
    assert customer.segue_errors == [] and demo.segue_errors == []


async def _first_visit(segue: Any, new_page: Any, identity: dict[str, Any], demo: Any) -> str:
    """Ada looks at the pricing page, chats, talks to the agent (recorded), is wrapped up and rates."""
    ada = await new_page()
    await mount_identified_widget(ada, segue.url, identity)
    await ada.evaluate("() => window.segueWidget.customer.pageView({url: 'https://shop.example/pricing', title: 'Pricing'})")
    await ada.click("#segue-launcher")
    first = await start_chat(ada, "my order 1234 is late")
    await accept_offer(demo, first)
    await agent_send(demo, first, "Let me call you about order 1234")
    await start_voice_call(ada, demo, first)
    await audio_grows(demo, agent_call(first), "the recorded call carries audio", by=8000)
    await ada.locator("#segue-callbar .call-hangup").click()
    await expect(ada.locator("#segue-callbar")).to_have_attribute("data-state", "none", timeout=WAIT_MS)
    await customer_send(ada, "thanks, that helped")
    await expect(panel_item(demo, first, "thanks, that helped")).to_have_count(1, timeout=WAIT_MS)
    await agent_send(demo, first, "Courier was late, refunded shipping", mode="note")
    await close_conversation(demo, first, tags="shipping, refund")
    await expect(ada.locator("#segue-rating")).to_be_visible(timeout=WAIT_MS)
    await ada.evaluate("() => window.segueWidget.conversation.rate(5, 'quick and kind')")
    await demo.locator(f'.conv-panel[data-conversation-id="{first}"] .conv-dismiss').click()
    return first


async def test_a_returning_verified_customer_brings_their_whole_story(start_segue: Any, new_page: Any) -> None:
    queues = [{"name": "general", "skills": [], "answer_target_s": 30, "record_calls": True},
              {"name": "billing", "skills": ["billing"], "answer_target_s": 30, "record_calls": True}]
    segue = await start_segue({"auth.sites": {"shop": SECRET}, "routing.queues": queues})
    identity = sign_identity(SECRET, id="u-1815", name="Ada Lovelace", email="ada@example.com")
    set_loopback_only(True)
    try:
        demo = await available_agent(new_page, segue.url, **WIDE)
        first = await _first_visit(segue, new_page, identity, demo)

        # a second visit, on another device: the agent's panel holds the first one
        ada = await new_page()
        await mount_identified_widget(ada, segue.url, identity)
        await ada.click("#segue-launcher")
        second = await start_chat(ada, "it is late again")
        await accept_offer(demo, second)
        p = panel(demo, second)
        await expect(p.locator(".conv-who-name")).to_have_text("Ada Lovelace")
        await expect(p.locator('.conv-who-kind[data-verified="true"]')).to_have_text("Verified customer")
        await expect(p.locator(".conv-who-email")).to_contain_text("ada@example.com")
        await expect(p.locator(".conv-customer .conv-page-title").filter(has_text="Pricing")).to_have_count(1, timeout=WAIT_MS)

        await p.locator(".conv-history summary").click()
        item = p.locator(f'.conv-history-item[data-conversation-id="{first}"]')
        await expect(item).to_be_visible(timeout=WAIT_MS)
        await expect(item.locator(".history-csat")).to_have_text("CSAT 5/5: “quick and kind”", timeout=WAIT_MS)
        await expect(item.locator(".history-tags")).to_have_text("Tags: shipping, refund")
        await expect(item.locator(".history-disposition")).to_have_text("Disposition: Resolved")
        await expect(item.locator(".history-toggle")).to_contain_text("Voice")
        # the transcript, loaded on demand, with the internal note
        await item.locator(".history-toggle").click()
        transcript = item.locator(".history-transcript")
        await expect(transcript.locator(".segue-msg").filter(has_text="my order 1234 is late")).to_have_count(1, timeout=WAIT_MS)
        await expect(transcript.locator(".ev-note").filter(has_text="refunded shipping")).to_have_count(1)
        # the call: its length, and its recording plays in the page
        call = item.locator(".history-call")
        await expect(call.locator(".history-call-label")).to_contain_text(re.compile(r"Voice call · \d"))
        await call.locator(".call-play").click()
        audio = call.locator("audio.history-recording")
        await expect(audio).to_have_count(1, timeout=WAIT_MS)
        await audio.evaluate("""(a) => new Promise((resolve, reject) => {
            if (a.readyState >= 1) return resolve();
            a.addEventListener("loadedmetadata", resolve, { once: true });
            a.addEventListener("error", () => reject(new Error("recording did not load: " + (a.error && a.error.message))), { once: true });
        })""")
        played = await audio.evaluate("""async (a) => {
            a.muted = true;
            await a.play();
            const start = a.currentTime;
            await new Promise((resolve) => { const check = () => (a.currentTime > start ? resolve() : setTimeout(check, 100)); check(); });
            a.pause();
            return a.currentTime > start;
        }""")
        assert played is True

        if os.environ.get("SEGUE_SCREENSHOTS"):
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            await demo.screenshot(path=str(SCREENSHOTS / "console-customer-panel.png"))
        assert ada.segue_errors == [] and demo.segue_errors == []
    finally:
        set_loopback_only(False)
