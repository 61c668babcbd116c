"""A watch-only /agent connection (the supervisor wallboard, ``auth.watch: true``): it gets queue
pushes and may look at conversations, but is never online for routing and never offered one."""

from __future__ import annotations

from typing import Any, AsyncIterator

import pytest

from segue_clients import Peer, World, http


@pytest.fixture
async def world(segue: Any) -> AsyncIterator[World]:
    w = World(segue)
    yield w
    await w.close()


async def watch(world: World, token: str) -> Peer:
    peer = Peer(world.url, "/agent")
    world.peers.append(peer)
    return await peer.connect({"v": 1, "token": token, "watch": True})


async def test_a_watch_only_supervisor_is_never_offered_a_conversation(world: World) -> None:
    boss_token = await world.add_agent("boss", role="supervisor", name="Big Boss")
    wall = await watch(world, boss_token)
    assert wall.session["watch"] is True and wall.session["agent"]["presence"] == "available"

    # what a console does is refused on a watch-only connection, with a reason
    for event, payload in [("presence.set", {"status": "available"}), ("offer.accept", {"conversation_id": "c_1"}),
                           ("offer.decline", {"conversation_id": "c_1"})]:
        err = await wall.fails(event, payload, "forbidden")
        assert "watch-only" in err["message"]

    customer = await world.customer()
    cid = (await customer.ok("conversation.start", {"text": "anyone there?"}))["conversation"]["id"]
    # the wallboard sees the conversation waiting, with nobody available to take it
    stats = await wall.next("queues", lambda p: any(q["name"] == "general" and q["waiting"] >= 1 for q in p["queues"]))
    general = next(q for q in stats["queues"] if q["name"] == "general")
    assert general["agents_available"] == 0
    status, agents = await http("GET", f"{world.url}/api/v1/agents", token=boss_token)
    assert status == 200, agents
    boss = next(a for a in agents["agents"] if a["id"] == "boss")
    assert boss["online"] is False, boss

    # a console that connects gets the offer: routing ran, and still skipped the wallboard
    agent = await world.agent(await world.add_agent("alice"))
    offer = await agent.next("offer", lambda o: o["conversation"]["id"] == cid)
    assert offer["kind"] == "new"
    assert wall.got("offer") == []
    # the wallboard may still open the conversation (supervisors read any)
    opened = await wall.ok("conversation.open", {"conversation_id": cid})
    assert opened["conversation"]["id"] == cid

    # disconnecting the wallboard does not take anyone offline
    await wall.close()
    await agent.ok("offer.accept", {"conversation_id": cid})
    assert (await agent.ok("presence.set", {"status": "available"}))["agent"]["presence"] == "available"


async def test_the_same_supervisor_on_a_console_is_offered_conversations(world: World) -> None:
    """The flag is what keeps the wallboard out of routing (this test fails if every connection
    were watch-only)."""
    token = await world.add_agent("boss", role="supervisor")
    await watch(world, token)
    console = await world.agent(token)
    assert "watch" not in console.session
    customer = await world.customer()
    cid = (await customer.ok("conversation.start", {"text": "hello"}))["conversation"]["id"]
    offer = await console.next("offer", lambda o: o["conversation"]["id"] == cid)
    assert offer["conversation"]["id"] == cid
