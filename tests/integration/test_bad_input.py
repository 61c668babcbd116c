"""Bad input over Socket.IO and REST: each gets a clear error naming what is wrong; the connection
and the server keep serving (a later request succeeds) and nothing stored is lost."""

from __future__ import annotations

from typing import Any, AsyncIterator

import pytest

from segue_clients import World, http


@pytest.fixture
async def world(start_segue: Any) -> AsyncIterator[World]:
    node = await start_segue({"limits.max_event_bytes": 2048, "limits.max_message_chars": 500})
    w = World(node)
    yield w
    await w.close()


async def test_bad_socket_payloads_get_clear_errors_and_the_connection_stays(world: World) -> None:
    customer = await world.customer()
    cid = (await customer.ok("conversation.start", {"text": "first"}))["conversation"]["id"]
    cases: list[tuple[str, Any, str, str | None]] = [
        ("message.send", "just text", "invalid", "payload"),
        ("message.send", [1, 2], "invalid", "payload"),
        ("message.send", {"conversation_id": cid}, "invalid", "text"),
        ("message.send", {"conversation_id": cid, "text": 42}, "invalid", "text"),
        ("message.send", {"conversation_id": cid, "text": ""}, "invalid", "text"),
        ("message.send", {"conversation_id": cid, "text": "x" * 501}, "invalid", "text"),
        ("message.send", {"conversation_id": cid, "text": "hi", "admin": True}, "invalid", "admin"),
        ("message.send", {"conversation_id": ["c"], "text": "hi"}, "invalid", "conversation_id"),
        ("message.send", {"conversation_id": "c_1; DROP", "text": "hi"}, "invalid", "conversation_id"),
        ("conversation.start", {"channel": "fax"}, "invalid", "channel"),
        ("conversation.start", {"queue": "nope"}, "invalid", "queue"),
        ("conversation.start", {"context": {"page_url": 7}}, "invalid", "context.page_url"),
        ("conversation.resume", {"conversation_id": cid, "after": "yesterday"}, "invalid", "after"),
        ("conversation.rate", {"conversation_id": cid, "score": 6}, "invalid", "score"),
        ("conversation.rate", {"conversation_id": cid, "score": "5"}, "invalid", "score"),
        ("typing", {"conversation_id": cid, "typing": "yes"}, "invalid", "typing"),
        ("message.send", {"conversation_id": cid, "text": "y" * 400, "client_id": "z" * 64,
                          "pad": "p" * 2000}, "too_large", None),
        ("no.such.event", {}, "unknown_event", None),
        ("offer.accept", {"conversation_id": cid}, "unknown_event", None),  # an agent's event
    ]
    for event, payload, code, field in cases:
        err = await customer.fails(event, payload, code)
        assert err.get("field") == field, (event, payload, err)
    err = await customer.fails("message.send", {"conversation_id": cid, "text": 42}, "invalid")
    assert "text" in err["message"] and "number" in err["message"]
    # several arguments instead of one object
    reply = await customer.call("message.send", {"conversation_id": cid, "text": "a"}, "extra")
    assert reply["ok"] is False and reply["error"]["code"] == "invalid"

    # without an ack, the error comes as an `error` event naming the event
    await customer.emit("message.send", {"conversation_id": cid})
    error = await customer.next("error")
    assert error["code"] == "invalid" and error["field"] == "text" and error["event"] == "message.send"
    await customer.emit("bogus")
    error = await customer.next("error", lambda e: e["event"] == "bogus")
    assert error["code"] == "unknown_event"

    # the same connection still works, and nothing stored was lost or added
    ok = await customer.ok("message.send", {"conversation_id": cid, "text": "still here"})
    events = (await customer.ok("conversation.resume", {"conversation_id": cid}))["events"]
    assert [e["data"].get("text") for e in events if e["type"] == "message"] == ["first", "still here"]
    assert events[-1] == ok["event"]


async def test_bad_rest_input(world: World) -> None:
    sup = await world.add_agent("root", role="supervisor")
    api = f"{world.url}/api/v1"
    cases = [
        ("POST", "/auth/login", None, b"{not json", 400, "bad_json"),
        ("POST", "/auth/login", None, b"[]", 400, "invalid"),
        ("POST", "/auth/login", None, b'{"username": "root"}', 400, "invalid"),
        ("POST", "/auth/login", None, b'{"username": 1, "password": "x"}', 400, "invalid"),
        ("POST", "/agents", sup, b'{"username": "Bad Name", "password": "secret"}', 400, "invalid"),
        ("POST", "/agents", sup, b'{"username": "ok", "password": "secret", "capacity": {"chat": -1}}', 400, "invalid"),
        ("POST", "/agents", sup, b'{"username": "ok", "password": "secret", "role": "god"}', 400, "invalid"),
        ("POST", "/agents", sup, b'{"username": "ok", "password": "secret", "channels": ["voice"]}', 400, "invalid"),
        ("POST", "/canned", sup, b'{"title": "x"' + b" " * 40000 + b"}", 413, "too_large"),
        ("GET", "/conversations/c_nope/events?after=bad", sup, None, 400, "invalid"),
        ("GET", "/conversations/c_nope", sup, None, 404, "not_found"),
        ("GET", "/nothing/here", sup, None, 404, "not_found"),
        ("PUT", "/agents", sup, None, 405, "method_not_allowed"),
    ]
    for method, path, token, body, status, code in cases:
        got, answer = await http(method, api + path, token=token, data=body,
                                 headers={"Content-Type": "application/json"})
        assert got == status, (method, path, got, answer)
        assert answer["error"]["code"] == code and answer["error"]["message"], (path, answer)
    got, answer = await http("POST", api + "/agents", token=sup, json_body={"username": "ok", "password": "secret", "x": 1})
    assert got == 400 and answer["error"]["field"] == "x"
    # the server keeps serving
    got, answer = await http("GET", api + "/me", token=sup)
    assert got == 200 and answer["agent"]["id"] == "root"
