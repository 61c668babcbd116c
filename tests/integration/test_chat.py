"""Chat through the real stack: a customer starts a conversation, routing offers it to an agent
over Socket.IO, both sides talk, and a reconnecting client resumes with nothing lost or doubled."""

from __future__ import annotations

from typing import Any, AsyncIterator

import pytest

from segue_clients import World


@pytest.fixture
async def world(segue: Any) -> AsyncIterator[World]:
    w = World(segue)
    yield w
    await w.close()


async def test_chat_both_ways_via_routing(world: World) -> None:
    token = await world.add_agent("alice", name="Alice Smith")
    agent = await world.agent(token)
    customer = await world.customer()
    assert customer.session["customer_id"].startswith("v_")

    started = await customer.ok("conversation.start", {"text": "Hello?", "context": {"page_url": "https://shop.example/cart"},
                                                       "name": "Ada"})
    conv = started["conversation"]
    cid = conv["id"]
    assert conv["state"] == "queued" and conv["customer"]["name"] == "Ada"
    assert [e["type"] for e in started["events"]] == ["conversation.created", "conversation.queued", "message"]

    offer = await agent.next("offer", lambda o: o["conversation"]["id"] == cid)
    assert offer["kind"] == "new" and offer["expires_in_s"] > 0
    assert [e["type"] for e in offer["events"]][:3] == ["conversation.created", "conversation.queued", "message"]
    accepted = await agent.ok("offer.accept", {"conversation_id": cid})
    assert accepted["conversation"]["state"] == "assigned"
    assert accepted["conversation"]["agent"] == {"id": "alice", "name": "Alice Smith"}

    assigned = await customer.next("event", lambda e: e["type"] == "conversation.assigned")
    assert assigned["data"]["agent"]["name"] == "Alice Smith"
    # agents-only events never reach the customer
    assert all(e["visibility"] == "all" for e in customer.got("event"))

    sent = await agent.ok("message.send", {"conversation_id": cid, "text": "Hi {there}, how can I help?", "client_id": "a1"})
    pushed = await customer.next("event", lambda e: e["type"] == "message" and e["author"]["kind"] == "agent")
    assert pushed == sent["event"]
    reply = await customer.ok("message.send", {"conversation_id": cid, "text": "My order is late"})
    got = await agent.next("event", lambda e: e["id"] == reply["event"]["id"])
    assert got["data"]["text"] == "My order is late" and got["author"]["id"] == customer.session["customer_id"]

    # typing is pushed, not stored; read receipts are stored in the summary
    await customer.ok("typing", {"conversation_id": cid, "typing": True})
    typing = await agent.next("typing")
    assert typing["typing"] is True and typing["author"]["kind"] == "customer"
    await customer.ok("read", {"conversation_id": cid, "event_id": sent["event"]["id"]})
    read = await agent.next("read")
    assert read["event_id"] == sent["event"]["id"] and read["reader"]["kind"] == "customer"

    log = await customer.ok("conversation.resume", {"conversation_id": cid})
    types = [e["type"] for e in log["events"]]
    assert types == ["conversation.created", "conversation.queued", "message", "conversation.assigned", "message", "message"]
    assert log["conversation"]["read"]["customer"] == sent["event"]["id"]

    # close with a disposition, then the customer rates
    closed = await agent.ok("conversation.close", {"conversation_id": cid, "disposition": "resolved"})
    assert closed["event"]["data"]["disposition"] == "resolved"
    await customer.next("conversation", lambda s: s["state"] == "closed")
    await customer.fails("message.send", {"conversation_id": cid, "text": "one more thing"}, "conflict")
    rated = await customer.ok("conversation.rate", {"conversation_id": cid, "score": 5, "comment": "great"})
    assert rated["event"]["data"] == {"score": 5, "comment": "great"}
    await customer.fails("conversation.rate", {"conversation_id": cid, "score": 4}, "conflict")
    await agent.next("event", lambda e: e["type"] == "conversation.rated")


async def _assigned(world: World, customer: Any, agent: Any, text: str = "Hello") -> str:
    cid = (await customer.ok("conversation.start", {"text": text}))["conversation"]["id"]
    await agent.next("offer", lambda o: o["conversation"]["id"] == cid)
    await agent.ok("offer.accept", {"conversation_id": cid})
    return cid


async def test_resume_after_reconnect_gets_exactly_what_was_missed(world: World) -> None:
    agent = await world.agent(await world.add_agent("bea"))
    customer = await world.customer()
    token = customer.session["visitor_token"]
    cid = await _assigned(world, customer, agent)
    first = await customer.ok("message.send", {"conversation_id": cid, "text": "one", "client_id": "m-1"})
    seen = first["event"]["id"]
    await customer.close()

    # while the customer is away: the agent writes three messages
    sent = [(await agent.ok("message.send", {"conversation_id": cid, "text": f"away {i}"}))["event"] for i in range(3)]

    again = await world.customer(visitor_token=token)
    assert again.session["customer_id"] == customer.session["customer_id"]
    resumed = await again.ok("conversation.resume", {"conversation_id": cid, "after": seen})
    assert resumed["events"] == sent  # exactly what was missed: in order, nothing more, nothing less
    # resuming from the last id gives nothing
    assert (await again.ok("conversation.resume", {"conversation_id": cid, "after": sent[-1]["id"]}))["events"] == []

    # a send retried with the same client_id (its ack was lost) is stored once
    retry = await again.ok("message.send", {"conversation_id": cid, "text": "one", "client_id": "m-1"})
    assert retry["event"]["id"] == seen and retry.get("duplicate") is True
    full = (await again.ok("conversation.resume", {"conversation_id": cid}))["events"]
    ids = [e["id"] for e in full]
    assert len(ids) == len(set(ids))
    assert [e["data"]["text"] for e in full if e["type"] == "message"] == ["Hello", "one", "away 0", "away 1", "away 2"]
    # the agent's live pushes were never doubled either
    agent_msgs = [e for e in agent.got("event") if e["type"] == "message"]
    assert len(agent_msgs) == len({e["id"] for e in agent_msgs})


async def test_offer_decline_then_timeout_then_accept(make_config: Any, start_segue: Any) -> None:
    node = await start_segue({"routing.offer_timeout_s": 1.0})
    world = World(node)
    try:
        x = await world.agent(await world.add_agent("xavier"))
        customer = await world.customer()
        cid = (await customer.ok("conversation.start", {"text": "anyone?"}))["conversation"]["id"]
        await x.next("offer", lambda o: o["conversation"]["id"] == cid)
        await x.ok("offer.decline", {"conversation_id": cid})
        # a declined conversation is not offered to the same agent again
        y = await world.agent(await world.add_agent("yvonne"))
        await y.next("offer", lambda o: o["conversation"]["id"] == cid)
        # yvonne lets it time out: revoked, and she is set away (missed)
        revoked = await y.next("offer.revoked", lambda r: r["conversation_id"] == cid)
        assert revoked["reason"] == "timeout"
        away = await y.next("agent", lambda a: a["agent"]["presence"] == "away")
        assert away["agent"].get("presence_reason") == "missed"
        await y.fails("offer.accept", {"conversation_id": cid}, "conflict")
        # the customer waits with a position; a third agent gets it
        position = await customer.next("queue.position", lambda p: p["conversation_id"] == cid)
        assert position["position"] == 1
        z = await world.agent(await world.add_agent("zoe"))
        await z.next("offer", lambda o: o["conversation"]["id"] == cid)
        accepted = await z.ok("offer.accept", {"conversation_id": cid})
        types = [e["type"] for e in accepted["events"]]
        assert types.count("conversation.offered") == 3 and types.count("conversation.requeued") == 2
        reasons = [e["data"]["reason"] for e in accepted["events"] if e["type"] == "conversation.requeued"]
        assert reasons == ["declined", "timeout"]
        assert types[-1] == "conversation.assigned"
        queues = (await z.ok("queues.list"))["queues"]
        assert {q["name"] for q in queues} == {"general", "billing"}
    finally:
        await world.close()


async def test_customer_history_is_kept_across_visits(world: World) -> None:
    agent = await world.agent(await world.add_agent("carol"))
    customer = await world.customer()
    first = await _assigned(world, customer, agent, "first visit")
    await agent.ok("conversation.close", {"conversation_id": first, "disposition": "answered"})
    again = await world.customer(visitor_token=customer.session["visitor_token"])
    second = await _assigned(world, again, agent, "second visit")
    listed = (await again.ok("conversations.list"))["conversations"]
    assert [c["id"] for c in listed] == [second, first]
    opened = await agent.ok("conversation.open", {"conversation_id": second})
    assert [c["id"] for c in opened["history"]] == [first]
    assert opened["history"][0]["state"] == "closed" and opened["history"][0]["disposition"] == "answered"


async def test_two_nodes_share_conversations_with_fanout(make_config: Any, start_segue: Any) -> None:
    """redis.fanout: a customer on one node and the agent on another talk; routing runs on both."""
    config = make_config({"redis.fanout": True, "auth.secret": "shared-between-nodes"})
    one, two = await start_segue(config=config), await start_segue(config=config)
    w1, w2 = World(one), World(two)
    try:
        token = await w1.add_agent("nora")
        agent = await w2.agent(token)
        customer = await w1.customer()
        cid = (await customer.ok("conversation.start", {"text": "from node one"}))["conversation"]["id"]
        offer = await agent.next("offer", lambda o: o["conversation"]["id"] == cid)
        assert [e["data"]["text"] for e in offer["events"] if e["type"] == "message"] == ["from node one"]
        await agent.ok("offer.accept", {"conversation_id": cid})
        sent = await agent.ok("message.send", {"conversation_id": cid, "text": "hello from node two"})
        assert await customer.next("event", lambda e: e["id"] == sent["event"]["id"])
        back = await customer.ok("message.send", {"conversation_id": cid, "text": "got it"})
        assert await agent.next("event", lambda e: e["id"] == back["event"]["id"])
        await agent.next("queues")  # queue stats from its own node
        # exactly one offer was made although both nodes run the routing loop
        assert len(agent.got("offer")) == 1
    finally:
        await w1.close()
        await w2.close()


async def test_waiting_too_long_overflows_to_another_queue(start_segue: Any) -> None:
    node = await start_segue({"routing.queues": [
        {"name": "general"},
        {"name": "billing", "skills": ["billing"], "overflow_after_s": 1, "overflow_queue": "general"},
    ]})
    world = World(node)
    try:
        generalist = await world.agent(await world.add_agent("gil"))
        customer = await world.customer()
        cid = (await customer.ok("conversation.start", {"queue": "billing", "text": "invoice?"}))["conversation"]["id"]
        offer = await generalist.next("offer", lambda o: o["conversation"]["id"] == cid)
        overflowed = [e for e in offer["events"] if e["type"] == "conversation.overflowed"]
        assert overflowed and overflowed[0]["data"] == {"from_queue": "billing", "to_queue": "general"}
        assert offer["conversation"]["queue"] == "general"
        assert not customer.got("event", lambda e: e["type"] == "conversation.overflowed")  # agents only
    finally:
        await world.close()


async def test_a_reloaded_console_gets_the_offer_still_ringing(world: World) -> None:
    """The agent reloads while an offer rings: the new console is offered it again (with less
    time left) and can accept it; nothing expires unseen."""
    token = await world.add_agent("alice")
    first = await world.agent(token)
    customer = await world.customer()
    cid = (await customer.ok("conversation.start", {"text": "hello?"}))["conversation"]["id"]
    offer = await first.next("offer", lambda o: o["conversation"]["id"] == cid)
    await first.close()  # the page reloads

    console = await world.agent(token)
    again = await console.next("offer", lambda o: o["conversation"]["id"] == cid)
    assert again["kind"] == "new" and 0 < again["expires_in_s"] <= offer["expires_in_s"]
    assert [e["type"] for e in again["events"]][:3] == ["conversation.created", "conversation.queued", "message"]
    accepted = await console.ok("offer.accept", {"conversation_id": cid})
    assert accepted["conversation"]["state"] == "assigned"
    # a second console of the same agent connecting later gets no stale offer
    other = await world.agent(token)
    await other.ok("presence.set", {"status": "available"})
    assert other.got("offer", lambda o: o["conversation"]["id"] == cid) == []
