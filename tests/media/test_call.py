"""Calls with real aiortc peers on UDP (loopback): Python client peers play the browsers.

Frequencies tell who is heard: customer 440 Hz, agent A 660 Hz, agent B 880 Hz, the hold tone
425 Hz is too close to 440 to matter here because the customer never hears itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from media.call import Call
from media.forwarder import Forwarder
from media.ice import loopback_only
from media.leg import CallLeg, LegError
from media.probe import ClientPeer

CUSTOMER, AGENT_A, AGENT_B, HOLD = 440.0, 660.0, 880.0, 425.0


@pytest.fixture
async def forwarder() -> AsyncIterator[Forwarder]:
    with loopback_only():
        fwd = Forwarder()
        yield fwd
        await fwd.close()


async def eventually(check, timeout: float = 20.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


class Harness:
    def __init__(self, forwarder: Forwarder, grace_s: float = 30.0) -> None:
        self.forwarder = forwarder
        self.events: list[tuple[str, dict]] = []
        self.call = Call("c_test", forwarder, grace_s=grace_s, on_event=lambda _c, t, d: self.events.append((t, d)))
        self.peers: list[ClientPeer] = []

    async def join(self, role: str, frequency: float, who: str) -> tuple[ClientPeer, CallLeg]:
        peer = ClientPeer(frequency)
        self.peers.append(peer)
        leg = CallLeg(self.forwarder, role=role, participant=who)
        await peer.negotiate(leg.answer)
        if role == "consult":
            self.call.start_consult(leg)
        else:
            self.call.attach(role, leg)
        await peer.wait_connected()
        return peer, leg

    async def close(self) -> None:
        await self.call.end()
        for p in self.peers:
            await p.close()


@pytest.fixture
async def harness(forwarder: Forwarder) -> AsyncIterator[Harness]:
    h = Harness(forwarder)
    yield h
    await h.close()


async def test_audio_flows_both_ways_through_the_call(harness: Harness) -> None:
    customer, _ = await harness.join("customer", CUSTOMER, "v_1")
    # alone in the call: the customer hears the hold tone
    await (await customer.audio()).wait_hearing(HOLD)
    agent, _ = await harness.join("agent", AGENT_A, "a_1")
    await (await customer.audio()).wait_hearing(AGENT_A)
    await (await agent.audio()).wait_hearing(CUSTOMER)
    assert harness.call.summary()["media"]["audio"] is True


async def test_video_added_by_renegotiation_while_audio_continues(harness: Harness) -> None:
    customer, cleg = await harness.join("customer", CUSTOMER, "v_1")
    agent, _ = await harness.join("agent", AGENT_A, "a_1")
    agent_ears = await agent.audio()
    await agent_ears.wait_hearing(CUSTOMER)
    before = len(agent_ears.frames)

    customer.start_video()
    await customer.negotiate(cleg.answer)
    assert cleg.negotiations == 2
    assert customer.pc.connectionState == "connected"
    assert ("media", {"role": "customer", "slot": "video", "on": True}) in harness.events
    # the agent sees the customer's camera on its camera transceiver, and still hears the customer
    await agent_ears.wait_until(lambda: agent.video_frames() > 5, timeout=20)
    await agent_ears.wait_until(lambda: len(agent_ears.frames) > before + 50)
    assert agent_ears.hears(CUSTOMER)

    # stop video: back to voice on the same connection
    customer.stop_video()
    await customer.negotiate(cleg.answer)
    assert ("media", {"role": "customer", "slot": "video", "on": False}) in harness.events
    assert harness.call.summary()["media"]["video"] is False
    n = len(agent_ears.frames)
    await agent_ears.wait_until(lambda: len(agent_ears.frames) > n + 25)
    assert agent_ears.hears(CUSTOMER)
    assert harness.call.durations()["video"] > 0


async def test_screen_share_is_the_second_video_slot(harness: Harness) -> None:
    customer, cleg = await harness.join("customer", CUSTOMER, "v_1")
    agent, _ = await harness.join("agent", AGENT_A, "a_1")
    customer.start_video(screen=True)
    await customer.negotiate(cleg.answer)
    assert cleg.sending() == {"audio": True, "video": False, "screen": True}
    await (await agent.audio()).wait_until(lambda: agent.video_frames() > 5, timeout=20)


async def test_hold_and_mute(harness: Harness) -> None:
    customer, _ = await harness.join("customer", CUSTOMER, "v_1")
    agent, _ = await harness.join("agent", AGENT_A, "a_1")
    ears = await customer.audio()
    await ears.wait_hearing(AGENT_A)
    harness.call.hold(True)
    await ears.wait_hearing(HOLD)
    harness.call.hold(False)
    await ears.wait_hearing(AGENT_A)
    harness.call.mute("agent", True)
    # muted: nothing forwarded (aiortc's receiver then plays no frames or silence)
    n = len(ears.frames)
    await asyncio.sleep(0.5)
    assert not any(abs(f - AGENT_A) < 60 for _, f, _ in ears.frames[n + 10 :])
    harness.call.mute("agent", False)
    await ears.wait_hearing(AGENT_A)
    assert [t for t, _ in harness.events].count("held") == 2


async def test_cold_transfer_keeps_the_customer_connection(harness: Harness) -> None:
    customer, cleg = await harness.join("customer", CUSTOMER, "v_1")
    await harness.join("agent", AGENT_A, "a_1")
    ears = await customer.audio()
    await ears.wait_hearing(AGENT_A)
    states: list[str] = []
    customer.pc.on("connectionstatechange", lambda: states.append(customer.pc.connectionState))

    harness.call.detach("agent")  # agent A leaves
    await ears.wait_hearing(HOLD)
    agent_b, _ = await harness.join("agent", AGENT_B, "a_2")
    await ears.wait_hearing(AGENT_B)
    await (await agent_b.audio()).wait_hearing(CUSTOMER)

    assert states == []  # never left "connected"
    assert customer.pc.connectionState == "connected"
    assert cleg.negotiations == 1  # never renegotiated


async def test_warm_transfer_agents_talk_while_customer_holds(harness: Harness) -> None:
    customer, cleg = await harness.join("customer", CUSTOMER, "v_1")
    agent_a, _ = await harness.join("agent", AGENT_A, "a_1")
    ears = await customer.audio()
    await ears.wait_hearing(AGENT_A)

    agent_b, _ = await harness.join("consult", AGENT_B, "a_2")
    await ears.wait_hearing(HOLD)
    await (await agent_a.audio()).wait_hearing(AGENT_B)
    await (await agent_b.audio()).wait_hearing(AGENT_A)

    harness.call.complete_transfer()
    await ears.wait_hearing(AGENT_B)
    await (await agent_b.audio()).wait_hearing(CUSTOMER)
    assert harness.call.leg("agent").participant == "a_2"
    assert customer.pc.connectionState == "connected"
    assert cleg.negotiations == 1


async def test_reload_reattaches_a_new_leg_within_grace(harness: Harness) -> None:
    customer, _ = await harness.join("customer", CUSTOMER, "v_1")
    agent, _ = await harness.join("agent", AGENT_A, "a_1")
    agent_ears = await agent.audio()
    await agent_ears.wait_hearing(CUSTOMER)

    await customer.close()  # the page goes away
    await eventually(lambda: any(t == "leg.lost" for t, _ in harness.events))
    assert harness.call.summary()["waiting_for"] == ["customer"]

    reloaded, _ = await harness.join("customer", 550.0, "v_1")
    await agent_ears.wait_hearing(550.0)
    await (await reloaded.audio()).wait_hearing(AGENT_A)
    assert harness.call.active
    assert ("leg.attached", {"role": "customer", "participant": "v_1", "reattached": True}) in harness.events


async def test_call_ends_cleanly_after_the_grace_period(forwarder: Forwarder) -> None:
    h = Harness(forwarder, grace_s=0.5)
    try:
        customer, _ = await h.join("customer", CUSTOMER, "v_1")
        await h.join("agent", AGENT_A, "a_1")
        await (await customer.audio()).wait_hearing(AGENT_A)
        await customer.close()
        reason = await asyncio.wait_for(h.call.wait_ended(), 20)
        assert reason == "timeout"
        ended = [d for t, d in h.events if t == "ended"]
        assert ended and ended[0]["durations"]["call"] > 0
        assert h.call.legs == {}
    finally:
        await h.close()


async def test_bad_offer_is_refused_clearly(forwarder: Forwarder) -> None:
    leg = CallLeg(forwarder, role="customer", participant="v_1")
    with pytest.raises(LegError, match="not SDP"):
        await leg.answer("hello")
    with pytest.raises(LegError, match="candidate before offer"):
        await leg.add_candidate({"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdpMid": "0"})
    await leg.close()


async def test_trickled_candidates_are_accepted(forwarder: Forwarder) -> None:
    """A browser trickles its candidates after the offer: host, mDNS (ignored), TCP (ignored), end."""
    h = Harness(forwarder)
    try:
        customer, leg = await h.join("customer", CUSTOMER, "v_1")
        mid = leg.pc.getTransceivers()[0].mid
        for text in (
            "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host generation 0",
            "candidate:2 1 udp 2122260223 3f1c9a2e-0000-4000-8000-000000000000.local 50001 typ host",
            "candidate:3 1 tcp 1518280447 127.0.0.1 9 typ host tcptype active",
        ):
            await leg.add_candidate({"candidate": text, "sdpMid": mid, "sdpMLineIndex": 0})
        await leg.add_candidate({"candidate": "", "sdpMid": mid})  # end of candidates
        ice = leg.pc.getTransceivers()[0].receiver.transport.transport
        added = [c.ip for c in ice.getRemoteCandidates()]
        assert "127.0.0.1" in added and not any(ip.endswith(".local") for ip in added)
        assert customer.pc.connectionState == "connected"
    finally:
        await h.close()
