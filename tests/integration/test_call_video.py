"""Call from the web with video, through the real stack: the customer starts a conversation on the
"video" channel, routing offers it (counting against the agent's voice capacity), the offer says
video, and once the agent accepts the call both real aiortc peers send camera frames that reach
the other side."""

from __future__ import annotations

from typing import Any, AsyncIterator

import pytest

from media.ice import loopback_only
from media.probe import ClientPeer
from segue_clients import Peer, World

CUSTOMER_TONE, AGENT_TONE = 440.0, 660.0


@pytest.fixture
async def world(segue: Any) -> AsyncIterator[World]:
    w = World(segue)
    yield w
    await w.close()


def record_calls(peer: Peer) -> None:
    for name in ("call.requested", "call.accepted", "call.state"):
        peer.sio.on(name, peer._recorder(name), namespace=peer.ns)


async def connect(peer: Peer, cid: str, tone: float) -> ClientPeer:
    client = ClientPeer(tone)
    client.start_video()  # the camera is on from the first offer: a video call

    async def answer(sdp: str) -> str:
        return (await peer.ok("call.offer", {"conversation_id": cid, "sdp": sdp}))["sdp"]

    await client.negotiate(answer)
    await client.wait_connected()
    return client


async def test_video_call_from_the_web_routes_like_voice_and_video_flows_both_ways(world: World) -> None:
    token = await world.add_agent("alice", name="Alice", capacity={"chat": 3, "voice": 1})
    agent = await world.agent(token)
    customer = await world.customer()
    record_calls(agent)
    record_calls(customer)

    started = await customer.ok("conversation.start", {"channel": "video", "name": "Ada"})
    cid = started["conversation"]["id"]
    assert started["conversation"]["channel"] == "video"
    assert started["events"][0]["data"]["channel"] == "video"
    # the customer asks for the call right away (call-from-web): it waits for the agent who accepts
    req = await customer.ok("call.request", {"conversation_id": cid, "media": "video",
                                             "page_url": "https://shop.example/help"})
    assert req["call"]["state"] == "requested" and req["call"]["video"] is True
    assert req["event"]["data"]["media"] == "video" and req["event"]["data"]["waiting_for_agent"] is True

    offer = await agent.next("offer", lambda o: o["conversation"]["id"] == cid)
    assert offer["channel"] == "video" and offer["conversation"]["channel"] == "video"
    # it holds alice's voice slot: a second video caller waits
    state = await world.service.router.agent("alice")
    assert state is not None and state.load == {"voice": 1}
    other = await world.customer()
    waiting = (await other.ok("conversation.start", {"channel": "video"}))["conversation"]["id"]

    await agent.ok("offer.accept", {"conversation_id": cid})
    calling = await agent.ok("call.state", {"conversation_id": cid})
    assert calling["call"]["state"] == "requested" and calling["call"]["video"] is True
    acc = await agent.ok("call.accept", {"conversation_id": cid})
    assert acc["call"]["state"] == "active" and acc["event"]["data"]["media"] == "video"
    pushed = await customer.next("call.accepted", lambda p: p["conversation_id"] == cid)
    assert pushed["media"] == "video"

    with loopback_only():
        cpeer = await connect(customer, cid, CUSTOMER_TONE)
        apeer = await connect(agent, cid, AGENT_TONE)
        try:
            customer_ears, agent_ears = await cpeer.audio(), await apeer.audio()
            await customer_ears.wait_hearing(AGENT_TONE)
            await agent_ears.wait_hearing(CUSTOMER_TONE)
            # camera frames from each side arrive at the other
            await agent_ears.wait_until(lambda: apeer.video_frames() > 10, timeout=20)
            await customer_ears.wait_until(lambda: cpeer.video_frames() > 10, timeout=20)
        finally:
            await agent.ok("call.hangup", {"conversation_id": cid})
            await cpeer.close()
            await apeer.close()

    log = [e["type"] for e in (await agent.ok("conversation.open", {"conversation_id": cid}))["events"]]
    for expected in ("call.requested", "call.accepted", "call.video_on", "call.ended"):
        assert expected in log, log
    # the other video caller was never offered to alice while her call slot was taken
    assert not agent.got("offer", lambda o: o["conversation"]["id"] == waiting)
