"""Issue 4 "Done when": calls in the real pages, in Chromium with fake camera and microphone.

The customer widget (/widget/) and the agent console (/agent/) chat, escalate to voice (audio bytes
flow both ways, read from each page's RTCPeerConnection through getStats), add video (frames are
decoded on both pages while inbound audio keeps growing across the renegotiation), transfer the
call to a second agent (the customer's connection stays `connected` throughout, the second agent
hears the customer), reload the customer page (a new connection reaches `connected`, audio flows
again), hang up and keep chatting. No timing assertions: every wait is generous, and "audio never
stalls" is a progress check (each sample larger than the one before).

Also: "Call us" with no conversation yet (call-from-web: a voice conversation straight into a
call that waits for the agent), screen share, hold and an agent hang-up; a declined call.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from playwright.async_api import expect

from chat_pages import (
    CUSTOMER_CALL, WAIT_MS, accept_offer, agent_call, agent_login, agent_send, audio_grows, create_agent,
    customer_send, eventually, open_widget, panel, panel_item, set_presence, start_chat, start_voice_call, stats,
    press_call, widget_message,
    wait_js,
)
from media.ice import set_loopback_only

pytestmark = pytest.mark.browser


async def test_call_in_the_widget_and_the_console(segue: Any, new_page: Any) -> None:
    set_loopback_only(True)  # the server's aiortc legs gather 127.0.0.1 (Chromium: --allow-loopback)
    try:
        await _scenario(segue, new_page)
    finally:
        set_loopback_only(False)


async def _scenario(segue: Any, new_page: Any) -> None:
    await create_agent(segue.url, "bob", "bob-secret", "Bob Builder")
    customer, demo, bob = await new_page(), await new_page(), await new_page()

    # --- chat ----------------------------------------------------------------------------------
    await open_widget(customer, segue.url)
    cid = await start_chat(customer, "my brakes squeak", name="Ada")
    await agent_login(demo, segue.url)
    await set_presence(demo, "available")
    await accept_offer(demo, cid)
    await agent_send(demo, cid, "hello Ada, shall we talk?")
    await expect(widget_message(customer, "hello Ada, shall we talk?")).to_have_count(1, timeout=WAIT_MS)

    # --- escalate to voice: the customer presses "Call us", the agent accepts ---------------------
    await start_voice_call(customer, demo, cid)
    bar = panel(demo, cid).locator(".segue-call")
    out = await stats(customer, CUSTOMER_CALL)
    assert out["audio"]["out"] > 0

    # from now on, record every connection state change of the customer's RTCPeerConnection
    await customer.evaluate(f"""() => {{
        const pc = {CUSTOMER_CALL}.pc;
        window.pcStates = [pc.connectionState];
        pc.addEventListener("connectionstatechange", () => window.pcStates.push(pc.connectionState));
    }}""")

    # --- add video: the agent asks, the customer accepts; both cameras on -----------------------
    before_customer = await stats(customer, CUSTOMER_CALL)
    before_agent = await stats(demo, agent_call(cid))
    await bar.locator(".call-ask-video").click()
    incoming = customer.locator("#segue-callbar .segue-call-incoming")
    await expect(incoming).to_be_visible(timeout=WAIT_MS)
    await incoming.locator(".call-accept").click()

    # audio never stalls during the renegotiations: every sample is larger than the one before
    samples_customer, samples_agent = [before_customer["audio"]["in"]], [before_agent["audio"]["in"]]
    for _ in range(8):
        await asyncio.sleep(1.0)
        samples_customer.append((await stats(customer, CUSTOMER_CALL))["audio"]["in"])
        samples_agent.append((await stats(demo, agent_call(cid)))["audio"]["in"])
    assert all(b > a for a, b in zip(samples_customer, samples_customer[1:])), samples_customer
    assert all(b > a for a, b in zip(samples_agent, samples_agent[1:])), samples_agent

    async def frames(page: Any, expr: str, floor: int = 10) -> Any:
        first = (await stats(page, expr))["video"]["frames"]

        async def more() -> Any:
            now = await stats(page, expr)
            return now if now["video"]["frames"] > max(first, floor) else None

        return await eventually(more, what="video frames decoded")

    await frames(demo, agent_call(cid))  # the agent sees the customer's camera
    await frames(customer, CUSTOMER_CALL)  # the customer sees the agent's camera
    await expect(bar.locator(".segue-call-tile").first).to_be_visible(timeout=WAIT_MS)
    await expect(customer.locator("#segue-callbar .segue-call-tile").first).to_be_visible(timeout=WAIT_MS)
    await audio_grows(customer, CUSTOMER_CALL, "customer audio after video")

    # --- cold transfer to Bob: the customer's connection stays connected -----------------------
    await agent_login(bob, segue.url, "bob", "bob-secret")
    await set_presence(bob, "available")
    await panel(demo, cid).locator(".conv-transfer").click()
    await expect(demo.locator("#transfer-dialog")).to_be_visible(timeout=WAIT_MS)
    await demo.check("input[name=target][value=agent]")
    await expect(demo.locator('#transfer-agent option[value="bob"]')).to_have_count(1, timeout=WAIT_MS)
    await demo.select_option("#transfer-agent", "bob")
    await demo.check("input[name=mode][value=cold]")
    await demo.click("#transfer-submit")
    await expect(demo.locator("#transfer-dialog")).to_be_hidden(timeout=WAIT_MS)
    await accept_offer(bob, cid)

    await audio_grows(bob, agent_call(cid), "Bob hears the customer")
    await audio_grows(customer, CUSTOMER_CALL, "the customer hears Bob")
    states = await customer.evaluate("() => window.pcStates")
    assert states and all(s == "connected" for s in states), states
    assert await customer.evaluate(f"() => {CUSTOMER_CALL}.pc.connectionState") == "connected"
    # the first agent's connection is closed; the call went on without it
    await expect(panel(demo, cid).locator(".segue-call")).to_have_count(0, timeout=WAIT_MS)

    # --- reload the customer page: a new connection resumes the running call -------------------
    bob_before = (await stats(bob, agent_call(cid)))["audio"]["in"]
    await customer.reload()
    await expect(customer.locator("#segue-status")).to_have_attribute("data-state", "online", timeout=WAIT_MS)
    await wait_js(customer, 
        f"() => {CUSTOMER_CALL} && {CUSTOMER_CALL}.pc && {CUSTOMER_CALL}.pc.connectionState === 'connected'",
        timeout=45_000,
    )
    await audio_grows(customer, CUSTOMER_CALL, "reloaded customer hears Bob")

    async def bob_hears_again() -> Any:
        now = await stats(bob, agent_call(cid))
        return now if now["audio"]["in"] > bob_before + 4000 else None

    await eventually(bob_hears_again, what="Bob hears the reloaded customer")
    await expect(customer.locator("#segue-callbar .segue-call-status")).to_contain_text("In call", timeout=WAIT_MS)

    # --- hang up, keep chatting -------------------------------------------------------------------
    await customer.locator("#segue-callbar .call-hangup").click()
    await expect(customer.locator("#segue-callbar")).to_have_attribute("data-state", "none", timeout=WAIT_MS)
    await expect(panel(bob, cid).locator(".segue-call")).to_have_attribute("data-state", "none", timeout=WAIT_MS)
    assert await customer.evaluate(f"() => {CUSTOMER_CALL}.pc") is None
    await customer_send(customer, "thanks, call was clear")
    await expect(panel_item(bob, cid, "thanks, call was clear")).to_have_count(1, timeout=WAIT_MS)
    await agent_send(bob, cid, "anytime!")
    await expect(widget_message(customer, "anytime!")).to_have_count(1, timeout=WAIT_MS)
    await expect(customer.locator("#segue-call")).to_be_visible(timeout=WAIT_MS)

    # nothing went wrong on screen either
    await expect(customer.locator("#segue-error")).to_be_hidden()
    await expect(panel(bob, cid).locator(".conv-error")).to_be_hidden()
    for page in (customer, demo, bob):
        assert page.segue_errors == [], page.segue_errors


async def test_call_from_the_web_then_hold_and_agent_hangs_up(segue: Any, new_page: Any) -> None:
    set_loopback_only(True)
    try:
        customer, demo = await new_page(), await new_page()
        # "Call us" before any chat: a conversation starts straight into a voice call
        await open_widget(customer, segue.url)
        cid = await press_call(customer)
        created = await customer.evaluate(
            "() => window.segueWidget.conversation.events.find((e) => e.type === 'conversation.created')")
        assert created["data"]["channel"] == "voice", created
        assert created["data"]["context"]["page_url"].endswith("/widget/"), created

        # the agent who takes the conversation finds the call waiting (call.state on open): the offer
        # says it is a call, and answering the offer answers the call (no second Accept)
        await agent_login(demo, segue.url)
        await set_presence(demo, "available")
        await expect(demo.locator(f'.offer[data-conversation-id="{cid}"] .offer-call')).to_have_text(
            "Incoming voice call", timeout=WAIT_MS)
        await accept_offer(demo, cid)
        bar = panel(demo, cid).locator(".segue-call")
        await audio_grows(customer, CUSTOMER_CALL, "customer hears the agent")
        await audio_grows(demo, agent_call(cid), "agent hears the customer")

        # the agent shares the screen: the customer gets a screen tile with frames; audio goes on
        await bar.locator(".call-screen").click()
        await expect(bar.locator(".call-screen")).to_have_text("Stop sharing", timeout=WAIT_MS)
        await expect(customer.locator("#segue-callbar .segue-call-tile").last).to_be_visible(timeout=WAIT_MS)

        async def screen_frames() -> Any:
            n = await customer.evaluate(f"""async () => {{
                const call = {CUSTOMER_CALL};
                const mid = call._tx.screen.mid;
                let frames = 0;
                (await call.pc.getStats()).forEach((s) => {{ if (s.type === "inbound-rtp" && s.mid === mid) frames += s.framesDecoded || 0; }});
                return frames;
            }}""")
            return n if n > 5 else None

        await eventually(screen_frames, what="the customer decodes the agent's screen")
        await audio_grows(customer, CUSTOMER_CALL, "customer audio during screen share")
        await bar.locator(".call-screen").click()
        await expect(bar.locator(".call-screen")).to_have_text("Share screen", timeout=WAIT_MS)

        # hold and resume: the customer sees it
        await bar.locator(".call-hold").click()
        await expect(customer.locator("#segue-callbar .segue-call-status")).to_have_text("On hold", timeout=WAIT_MS)
        await bar.locator(".call-hold").click()
        await expect(customer.locator("#segue-callbar .segue-call-status")).to_contain_text("In call", timeout=WAIT_MS)

        # the agent hangs up; the chat goes on
        await bar.locator(".call-hangup").click()
        await expect(customer.locator("#segue-callbar")).to_have_attribute("data-state", "none", timeout=WAIT_MS)
        await expect(bar).to_have_attribute("data-state", "none", timeout=WAIT_MS)
        await customer_send(customer, "still there?")
        await expect(panel_item(demo, cid, "still there?")).to_have_count(1, timeout=WAIT_MS)
        await expect(customer.locator("#segue-error")).to_be_hidden()
        await expect(panel(demo, cid).locator(".conv-error")).to_be_hidden()
        for page in (customer, demo):
            assert page.segue_errors == [], page.segue_errors
    finally:
        set_loopback_only(False)


async def test_agent_declines_a_call_and_the_chat_goes_on(segue: Any, new_page: Any) -> None:
    customer, demo = await new_page(), await new_page()
    await open_widget(customer, segue.url)
    cid = await start_chat(customer, "can you call me?")
    await agent_login(demo, segue.url)
    await set_presence(demo, "available")
    await accept_offer(demo, cid)
    await customer.click("#segue-call")
    await expect(customer.locator("#segue-call")).to_be_hidden(timeout=WAIT_MS)
    bar = panel(demo, cid).locator(".segue-call")
    await expect(bar.locator(".segue-call-incoming")).to_contain_text("is calling", timeout=WAIT_MS)
    await bar.locator(".call-decline").click()
    await expect(customer.locator("#segue-callbar .segue-call-note")).to_contain_text("declined", timeout=WAIT_MS)
    await expect(customer.locator("#segue-callbar")).to_have_attribute("data-state", "none", timeout=WAIT_MS)
    await expect(bar.locator(".segue-call-incoming")).to_be_hidden(timeout=WAIT_MS)
    await expect(customer.locator("#segue-call")).to_be_visible(timeout=WAIT_MS)
    await agent_send(demo, cid, "sorry, chat only today")
    await expect(widget_message(customer, "sorry, chat only today")).to_have_count(1, timeout=WAIT_MS)
    assert customer.segue_errors == [] and demo.segue_errors == []
