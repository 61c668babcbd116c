"""Transfers through the real stack: cold and warm, to an agent or a queue. The receiving agent
sees every earlier event (notes included) and the customer's previous conversations."""

from __future__ import annotations

from typing import Any, AsyncIterator

import pytest

from segue_clients import Peer, World


@pytest.fixture
async def world(segue: Any) -> AsyncIterator[World]:
    w = World(segue)
    yield w
    await w.close()


def _order(event_id: str) -> tuple[int, ...]:
    return tuple(int(x) for x in event_id.split("-"))


async def _assigned(customer: Peer, agent: Peer, text: str) -> str:
    cid = (await customer.ok("conversation.start", {"text": text}))["conversation"]["id"]
    await agent.next("offer", lambda o: o["conversation"]["id"] == cid)
    await agent.ok("offer.accept", {"conversation_id": cid})
    return cid


async def _with_history(world: World) -> tuple[Peer, Peer, str, str]:
    """Agent A served the customer once before; now a second conversation is assigned to A."""
    a = await world.agent(await world.add_agent("anna", name="Anna A"))
    customer = await world.customer()
    old = await _assigned(customer, a, "my first problem")
    await a.ok("conversation.close", {"conversation_id": old, "disposition": "solved"})
    cid = await _assigned(customer, a, "my second problem")
    await a.ok("message.send", {"conversation_id": cid, "text": "Let me check"})
    await a.ok("note.add", {"conversation_id": cid, "text": "VIP, be nice"})
    return a, customer, cid, old


async def test_cold_transfer_to_agent(world: World) -> None:
    a, customer, cid, old = await _with_history(world)
    b = await world.agent(await world.add_agent("ben", name="Ben B"))
    # ben has never served this customer: before the offer he may not read them
    await b.fails("conversation.open", {"conversation_id": old}, "forbidden")
    before = (await a.ok("conversation.open", {"conversation_id": cid}))["events"]

    res = await a.ok("transfer", {"conversation_id": cid, "to": {"agent": "ben"}, "mode": "cold", "note": "billing q"})
    assert res["event"]["type"] == "transfer.requested" and res["event"]["visibility"] == "agents"
    offer = await b.next("offer", lambda o: o["conversation"]["id"] == cid)
    assert offer["kind"] == "transfer" and offer["from_agent"] == {"id": "anna", "name": "Anna A"}
    assert offer["note"] == "billing q"
    # every earlier event, the internal note included, and the customer's previous conversation
    assert [e["id"] for e in offer["events"][: len(before)]] == [e["id"] for e in before]
    assert any(e["type"] == "note" and e["data"]["text"] == "VIP, be nice" for e in offer["events"])
    assert [h["id"] for h in offer["history"]] == [old]
    # the offer lets ben open the earlier conversation, with its whole log
    prev = await b.ok("conversation.open", {"conversation_id": old})
    assert any(e["type"] == "message" and e["data"]["text"] == "my first problem" for e in prev["events"])

    # anna has left at once
    await a.fails("message.send", {"conversation_id": cid, "text": "still here?"}, "forbidden")
    await customer.ok("message.send", {"conversation_id": cid, "text": "hello?"})

    accepted = await b.ok("offer.accept", {"conversation_id": cid})
    assert accepted["conversation"]["agent"]["id"] == "ben"
    assert any(e["type"] == "message" and e["data"]["text"] == "hello?" for e in accepted["events"])
    done = await customer.next("event", lambda e: e["type"] == "transfer.completed")
    assert done["data"]["from_agent"]["id"] == "anna" and done["data"]["to"]["agent"]["id"] == "ben"
    assert done["data"]["mode"] == "cold"
    assert not customer.got("event", lambda e: e["visibility"] != "all")
    await b.ok("message.send", {"conversation_id": cid, "text": "Ben here"})
    await customer.next("event", lambda e: e["type"] == "message" and e["data"]["text"] == "Ben here")
    assert [c["id"] for c in (await b.ok("conversations.list"))["conversations"]] == [cid]
    assert (await a.ok("conversations.list"))["conversations"] == []


async def test_warm_transfer_with_consultation(world: World) -> None:
    a, customer, cid, old = await _with_history(world)
    b = await world.agent(await world.add_agent("bo", name="Bo"))
    await a.ok("transfer", {"conversation_id": cid, "to": {"agent": "bo"}, "mode": "warm"})
    offer = await b.next("offer", lambda o: o["conversation"]["id"] == cid)
    assert offer["kind"] == "transfer" and [h["id"] for h in offer["history"]] == [old]

    # consultation: agents only, while the customer keeps chatting with anna
    await a.ok("consult.message", {"conversation_id": cid, "text": "can you take a refund?"})
    got = await b.next("event", lambda e: e["type"] == "consult.message")
    assert got["visibility"] == "agents"
    await customer.ok("message.send", {"conversation_id": cid, "text": "still waiting"})
    await a.next("event", lambda e: e["type"] == "message" and e["data"]["text"] == "still waiting")
    await b.fails("transfer.complete", {"conversation_id": cid}, "forbidden")
    await a.fails("transfer.complete", {"conversation_id": cid}, "conflict")  # bo has not accepted yet

    accepted = await b.ok("offer.accept", {"conversation_id": cid})
    assert accepted["conversation"]["state"] == "transferring"
    await b.ok("consult.message", {"conversation_id": cid, "text": "sure, hand over"})
    await a.next("event", lambda e: e["type"] == "consult.message" and e["author"]["id"] == "bo")
    done = await a.ok("transfer.complete", {"conversation_id": cid})
    assert done["event"]["type"] == "transfer.completed" and done["event"]["data"]["mode"] == "warm"

    seen = await customer.next("event", lambda e: e["type"] == "transfer.completed")
    assert seen["data"]["to"]["agent"] == {"id": "bo", "name": "Bo"}
    assert not customer.got("event", lambda e: e["type"].startswith("consult") or e["type"] == "note")
    state = await customer.next("conversation", lambda s: s["state"] == "assigned" and s.get("agent", {}).get("id") == "bo")
    assert "transfer" not in state
    await a.fails("message.send", {"conversation_id": cid, "text": "bye"}, "forbidden")
    await b.ok("message.send", {"conversation_id": cid, "text": "Bo here"})


async def test_warm_transfer_cancelled_keeps_the_first_agent(world: World) -> None:
    a, customer, cid, _old = await _with_history(world)
    b = await world.agent(await world.add_agent("bill"))
    await a.ok("transfer", {"conversation_id": cid, "to": {"agent": "bill"}, "mode": "warm"})
    await b.next("offer", lambda o: o["conversation"]["id"] == cid)
    await a.ok("transfer.cancel", {"conversation_id": cid})
    revoked = await b.next("offer.revoked", lambda r: r["conversation_id"] == cid)
    assert revoked["reason"] == "cancelled"
    await b.fails("offer.accept", {"conversation_id": cid}, "conflict")
    await a.ok("message.send", {"conversation_id": cid, "text": "I'm still with you"})
    await a.fails("consult.message", {"conversation_id": cid, "text": "x"}, "conflict")


async def test_cold_transfer_to_a_skilled_queue(world: World) -> None:
    a, customer, cid, old = await _with_history(world)
    plain = await world.agent(await world.add_agent("pat"))
    billing = await world.agent(await world.add_agent("bianca", skills=["billing"]))
    await a.ok("transfer", {"conversation_id": cid, "to": {"queue": "billing"}, "mode": "cold"})
    queued = await customer.next("event", lambda e: e["type"] == "conversation.queued" and e["data"]["queue"] == "billing")
    offer = await billing.next("offer", lambda o: o["conversation"]["id"] == cid)
    assert offer["kind"] == "transfer" and offer["from_agent"]["id"] == "anna"
    assert [h["id"] for h in offer["history"]] == [old]
    assert not plain.got("offer", lambda o: o["conversation"]["id"] == cid)
    await billing.ok("offer.accept", {"conversation_id": cid})
    done = await customer.next("event", lambda e: e["type"] == "transfer.completed")
    assert _order(done["id"]) > _order(queued["id"])
    assert done["data"]["to"] == {"agent": {"id": "bianca", "name": "Bianca"}, "queue": "billing"}


async def test_transfer_refusals(world: World) -> None:
    a, customer, cid, _old = await _with_history(world)
    busy = await world.agent(await world.add_agent("busy"), available=False)
    await busy.ok("presence.set", {"status": "away"})
    err = await a.fails("transfer", {"conversation_id": cid, "to": {"agent": "busy"}, "mode": "cold"}, "conflict")
    assert "away" in err["message"]
    await a.fails("transfer", {"conversation_id": cid, "to": {"agent": "nobody"}, "mode": "cold"}, "not_found")
    err = await a.fails("transfer", {"conversation_id": cid, "to": {"queue": "billing"}, "mode": "warm"}, "invalid")
    assert err["field"] == "to.queue"
    err = await a.fails("transfer", {"conversation_id": cid, "to": {}, "mode": "cold"}, "invalid")
    assert err["field"] == "to"
    # nothing changed: anna still has it
    await a.ok("message.send", {"conversation_id": cid, "text": "still mine"})
