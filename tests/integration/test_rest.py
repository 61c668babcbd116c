"""The REST API against a real node: login, agents, canned replies, conversations, queues, and
the errors (401/403/404) a client gets when it is not allowed."""

from __future__ import annotations

from typing import Any, AsyncIterator

import pytest

from segue_clients import World, http


@pytest.fixture
async def world(segue: Any) -> AsyncIterator[World]:
    w = World(segue)
    yield w
    await w.close()


async def test_login_and_auth_failures(world: World) -> None:
    api = f"{world.url}/api/v1"
    await world.add_agent("lea", password="right-pass")
    status, body = await http("POST", f"{api}/auth/login", json_body={"username": "lea", "password": "wrong"})
    assert status == 401 and body["error"]["code"] == "unauthorized"
    status, body = await http("POST", f"{api}/auth/login", json_body={"username": "nobody", "password": "x"})
    assert status == 401 and body["error"]["message"] == "wrong username or password"
    status, body = await http("POST", f"{api}/auth/login", json_body={"username": "lea", "password": "right-pass"})
    assert status == 200 and body["agent"]["id"] == "lea" and body["expires_in_s"] > 0
    token = body["token"]
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer not-a-token"}):
        status, body = await http("GET", f"{api}/queues", headers=headers)
        assert status == 401 and body["error"]["code"] in ("unauthorized", "bad_token"), body
    status, body = await http("GET", f"{api}/me", token=token)
    assert status == 200 and body["agent"]["role"] == "agent"
    # an agent cannot manage agents or canned replies
    status, body = await http("POST", f"{api}/agents", token=token, json_body={"username": "x", "password": "secret"})
    assert status == 403 and body["error"]["code"] == "forbidden"
    status, body = await http("POST", f"{api}/canned", token=token, json_body={"title": "t", "text": "x"})
    assert status == 403
    status, body = await http("PATCH", f"{api}/agents/lea", token=token, json_body={"role": "supervisor"})
    assert status == 403 and body["error"]["field"] == "role"
    status, body = await http("PATCH", f"{api}/agents/lea", token=token, json_body={"name": "Léa"})
    assert status == 200 and body["agent"]["name"] == "Léa"


async def test_manage_agents(world: World) -> None:
    api = f"{world.url}/api/v1"
    sup = await world.add_agent("sam", role="supervisor")
    status, body = await http("POST", f"{api}/agents", token=sup, json_body={
        "username": "nia", "password": "pass-word", "name": "Nia N", "skills": ["billing"],
        "capacity": {"chat": 2, "voice": 1}})
    assert status == 201, body
    assert body["agent"] == {"id": "nia", "username": "nia", "name": "Nia N", "role": "agent", "skills": ["billing"],
                             "capacity": {"chat": 2, "voice": 1}, "channels": ["chat", "voice"],
                             "presence": "available", "locale": None}
    status, body = await http("POST", f"{api}/agents", token=sup, json_body={"username": "nia", "password": "pass-word"})
    assert status == 409 and body["error"]["code"] == "conflict"
    status, body = await http("GET", f"{api}/agents", token=sup)
    assert [a["id"] for a in body["agents"]] == ["demo", "nia", "sam"]  # demo: created at start (demo.enabled)
    status, body = await http("PATCH", f"{api}/agents/nia", token=sup, json_body={"skills": ["billing", "de"], "role": "supervisor"})
    assert status == 200 and body["agent"]["skills"] == ["billing", "de"] and body["agent"]["role"] == "supervisor"
    nia = await world.login("nia", "pass-word")
    peer = await world.agent(nia)
    assert peer.session["agent"]["capacity"] == {"chat": 2, "voice": 1}
    status, body = await http("GET", f"{api}/agents/nia", token=sup)
    assert status == 200 and body["agent"]["online"] is True and body["agent"]["routing"]["presence"] == "available"
    status, _ = await http("DELETE", f"{api}/agents/nia", token=sup)
    assert status == 204
    status, body = await http("GET", f"{api}/agents/nia", token=sup)
    assert status == 404 and body["error"]["code"] == "not_found"
    status, body = await http("GET", f"{api}/me", token=nia)
    assert status == 401 and body["error"]["code"] == "bad_token"
    status, _ = await http("DELETE", f"{api}/agents/nia", token=sup)
    assert status == 404


async def test_canned_replies(world: World) -> None:
    api = f"{world.url}/api/v1"
    sup = await world.add_agent("sid", role="supervisor", name="Sid Vicious")
    status, body = await http("POST", f"{api}/canned", token=sup, json_body={
        "title": "Greeting", "text": "Hi {customer.first_name}, I'm {agent.name}. {unknown.thing} stays."})
    assert status == 201
    rid = body["reply"]["id"]
    status, body = await http("PATCH", f"{api}/canned/{rid}", token=sup, json_body={"title": "Hello"})
    assert status == 200 and body["reply"]["title"] == "Hello"
    status, body = await http("POST", f"{api}/canned", token=sup, json_body={"title": "Bye", "text": "Bye!"})
    bye = body["reply"]["id"]

    agent = await world.agent(sup)
    customer = await world.customer()
    cid = (await customer.ok("conversation.start", {"name": "Ada Lovelace", "text": "hi"}))["conversation"]["id"]
    await agent.next("offer")
    await agent.ok("offer.accept", {"conversation_id": cid})
    replies = (await agent.ok("canned.list"))["replies"]
    assert [r["title"] for r in replies] == ["Bye", "Hello"]
    rendered = await agent.ok("canned.render", {"id": rid, "conversation_id": cid})
    assert rendered["text"] == "Hi Ada, I'm Sid Vicious. {unknown.thing} stays."
    # the agent edits it, then sends it as a normal message
    sent = await agent.ok("message.send", {"conversation_id": cid, "text": rendered["text"].replace(" {unknown.thing} stays.", "")})
    got = await customer.next("event", lambda e: e["type"] == "message" and e["author"]["kind"] == "agent")
    assert got == sent["event"] and got["data"]["text"] == "Hi Ada, I'm Sid Vicious."
    await agent.fails("canned.render", {"id": "r_missing", "conversation_id": cid}, "not_found")

    status, _ = await http("DELETE", f"{api}/canned/{bye}", token=sup)
    assert status == 204
    status, body = await http("GET", f"{api}/canned", token=sup)
    assert [r["id"] for r in body["replies"]] == [rid]
    status, body = await http("GET", f"{api}/canned/{bye}", token=sup)
    assert status == 404


async def test_read_conversations_events_customers_and_queues(world: World) -> None:
    api = f"{world.url}/api/v1"
    token = await world.add_agent("rita")
    agent = await world.agent(token)
    customer = await world.customer()
    cust = customer.session["customer_id"]
    cid = (await customer.ok("conversation.start", {"text": "one"}))["conversation"]["id"]
    await agent.next("offer")
    await agent.ok("offer.accept", {"conversation_id": cid})
    await agent.ok("note.add", {"conversation_id": cid, "text": "internal"})
    await customer.ok("message.send", {"conversation_id": cid, "text": "two"})

    status, body = await http("GET", f"{api}/conversations/{cid}", token=token)
    assert status == 200 and body["conversation"]["agent"]["id"] == "rita" and body["history"] == []
    status, body = await http("GET", f"{api}/conversations/{cid}/events", token=token)
    events = body["events"]
    assert [e["type"] for e in events] == ["conversation.created", "conversation.queued", "message", "conversation.offered",
                                           "conversation.assigned", "note", "message"]
    assert body["more"] is False
    status, body = await http("GET", f"{api}/conversations/{cid}/events?after={events[4]['id']}", token=token)
    assert [e["type"] for e in body["events"]] == ["note", "message"]
    status, body = await http("GET", f"{api}/conversations/{cid}/events?limit=2", token=token)
    assert len(body["events"]) == 2 and body["more"] is True
    status, body = await http("GET", f"{api}/conversations", token=token)
    assert [c["id"] for c in body["conversations"]] == [cid]
    status, body = await http("GET", f"{api}/customers/{cust}/conversations", token=token)
    assert status == 200 and [c["id"] for c in body["conversations"]] == [cid]
    status, body = await http("GET", f"{api}/customers/{cust}", token=token)
    assert status == 200 and body["customer"]["id"] == cust

    stranger = await world.add_agent("stan")
    status, body = await http("GET", f"{api}/customers/{cust}/conversations", token=stranger)
    assert status == 403 and body["error"]["code"] == "forbidden"
    status, body = await http("GET", f"{api}/customers/v_nobody/conversations", token=stranger)
    assert status == 404
    status, body = await http("GET", f"{api}/queues", token=token)
    general = next(q for q in body["queues"] if q["name"] == "general")
    assert general["answered"] == 1 and general["waiting"] == 0 and general["agents_available"] >= 1
    assert general["answer_target_s"] == 30
