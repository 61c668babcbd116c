"""Issue 12, the server's side of "every state right": an escalated call holds a slot of the
agent's voice capacity (no second call is offered), the conversation's summary follows its
channels (with time on each), its transfers and calls, the wrap-up tags given on close, and the
customer is told the name of the agent a call went to, never a login id."""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

import pytest

from segue_clients import Peer, World, http


@pytest.fixture
async def world(segue: Any) -> AsyncIterator[World]:
    w = World(segue)
    yield w
    await w.close()


async def _assigned(customer: Peer, agent: Peer, payload: dict[str, Any]) -> str:
    cid = (await customer.ok("conversation.start", payload))["conversation"]["id"]
    await agent.next("offer", lambda o: o["conversation"]["id"] == cid)
    await agent.ok("offer.accept", {"conversation_id": cid})
    return cid


async def _load(world: World, token: str, agent: str) -> dict[str, int]:
    status, body = await http("GET", f"{world.url}/api/v1/agents/{agent}", token=token)
    assert status == 200, body
    return body["agent"]["routing"]["load"]


async def test_an_agent_in_an_escalated_call_is_not_offered_a_second_call(world: World) -> None:
    token = await world.add_agent("ada", name="Ada Lovelace", capacity={"chat": 3, "voice": 1})
    ada = await world.agent(token)
    nora = await world.customer()
    cid = await _assigned(nora, ada, {"text": "hello"})
    # the chat escalates to voice: the customer asks, the agent accepts (the call is active)
    await nora.ok("call.request", {"conversation_id": cid, "media": "voice"})
    await ada.ok("call.accept", {"conversation_id": cid})
    assert await _load(world, token, "ada") == {"chat": 1, "voice": 1}
    summary = (await ada.ok("conversation.open", {"conversation_id": cid}))["conversation"]
    assert summary["channels"] == ["chat", "voice"] and summary["channels_used"] == ["chat", "voice"]
    # another visitor calls from the web: ada's one voice slot is taken, so the call waits
    other = await world.customer()
    second = (await other.ok("conversation.start", {"text": "call me", "channel": "voice"}))["conversation"]["id"]
    await asyncio.sleep(1.0)  # several routing turns (0.25 s each): nothing may be offered meanwhile
    assert not ada.got("offer", lambda o: o["conversation"]["id"] == second)
    # the call ends: the slot frees and the waiting call is offered to her
    await ada.ok("call.hangup", {"conversation_id": cid})
    offer = await ada.next("offer", lambda o: o["conversation"]["id"] == second)
    assert offer["channel"] == "voice"
    ended = next(e for e in ada.events(cid) if e["type"] == "call.ended")
    assert ended["data"]["channel"] == "voice"  # tagged with the call's channel, not chat
    summary = (await ada.ok("conversation.open", {"conversation_id": cid}))["conversation"]
    assert summary["channels"] == ["chat"] and summary["channels_used"] == ["chat", "voice"]
    assert set(summary["channel_time"]) == {"chat", "voice"}
    assert [c["media"] for c in summary["calls"]] == ["voice"] and summary["calls"][0]["duration_s"] >= 0


async def test_wrap_up_tags_transfers_and_channel_time_in_the_summary(world: World) -> None:
    a_token = await world.add_agent("ada", name="Ada Lovelace")
    ada = await world.agent(a_token)
    nora = await world.customer()
    cid = await _assigned(nora, ada, {"text": "hi", "name": "Nora"})
    ben = await world.agent(await world.add_agent("ben", name="Ben Byte"))
    await ada.ok("transfer", {"conversation_id": cid, "to": {"agent": "ben"}, "mode": "cold", "note": "billing question"})
    await ben.next("offer", lambda o: o["conversation"]["id"] == cid)
    await ben.ok("offer.accept", {"conversation_id": cid})
    # tags are checked: each a short label, at most 20
    await ben.fails("conversation.close", {"conversation_id": cid, "tags": ["<b>"]}, "invalid")
    await ben.fails("conversation.close", {"conversation_id": cid, "tags": [f"t{i}" for i in range(21)]}, "invalid")
    closed = await ben.ok("conversation.close", {"conversation_id": cid, "disposition": "resolved",
                                                 "tags": ["refund", "vip follow-up", "refund"]})
    assert closed["event"]["data"]["tags"] == ["refund", "vip follow-up"]
    status, body = await http("GET", f"{world.url}/api/v1/conversations/{cid}", token=a_token)
    assert status == 200, body
    s = body["conversation"]
    assert s["disposition"] == "resolved" and s["tags"] == ["refund", "vip follow-up"]
    assert s["channels_used"] == ["chat"] and s["channel_time"]["chat"] >= 0
    assert len(s["transfers"]) == 1
    t = s["transfers"][0]
    assert t["from_agent"] == {"id": "ada", "name": "Ada Lovelace"} and t["to"]["agent"]["name"] == "Ben Byte"
    assert t["mode"] == "cold" and t["note"] == "billing question"
    # REST close takes tags too, refusing bad ones naming the field
    await ada.ok("presence.set", {"status": "away"})
    cid2 = await _assigned(nora, ben, {"text": "again"})
    status, body = await http("POST", f"{world.url}/api/v1/conversations/{cid2}/close", token=a_token,
                              json_body={"tags": [" spaced "]})
    assert status in (400, 403), body
    ben_token = await world.login("ben")
    status, body = await http("POST", f"{world.url}/api/v1/conversations/{cid2}/close", token=ben_token,
                              json_body={"tags": [" spaced "]})
    assert status == 400 and body["error"]["field"].startswith("tags"), body
    status, body = await http("POST", f"{world.url}/api/v1/conversations/{cid2}/close", token=ben_token,
                              json_body={"disposition": "resolved", "tags": ["billing"]})
    assert status == 200 and body["conversation"]["tags"] == ["billing"], body


async def test_the_customer_sees_the_agents_name_when_a_call_is_transferred(world: World) -> None:
    ada = await world.agent(await world.add_agent("ada", name="Ada First", capacity={"chat": 3, "voice": 1}))
    nora = await world.customer()
    cid = await _assigned(nora, ada, {"text": "hello"})
    ben = await world.agent(await world.add_agent("ben", name="Ben Second", capacity={"chat": 3, "voice": 1}))
    await nora.ok("call.request", {"conversation_id": cid, "media": "voice"})
    await ada.ok("call.accept", {"conversation_id": cid})
    service = world.service.calls
    record = service.records[cid]
    record.transfer = {"mode": "cold", "to_agent": "ben", "from_agent": "ada"}
    await service.transfer_completed(cid, "ben")
    event = await nora.next("event", lambda e: e["type"] == "call.transferred")
    assert event["data"]["to_agent_name"] == "Ben Second" and event["data"]["from_agent_name"] == "Ada First"
    # the call's voice slot moved to ben with it
    routed = await world.service.router.agent("ben")
    assert routed is not None and routed.load.get("voice") == 1
    await ben.close()
