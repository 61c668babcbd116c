"""Webhooks through the real stack: a real node and Redis, real HTTP receivers on loopback.

Receivers verify every delivery with ``standardwebhooks.Webhook(secret).verify``; retries,
attempts (via REST), event-type filters, a hanging receiver next to a chat, and a restart in
the middle of pending deliveries (at-least-once with a stable ``webhook-id``).
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import pytest
from aiohttp import web
from standardwebhooks import Webhook

from segue_cli import run_segue
from segue_clients import World, http
from server import create_app
from signaling import WEBHOOKS

# the receivers listen on loopback: a private address, which webhooks.allow_private_urls must allow
FAST = {"webhooks.retry_schedule_s": [0.2, 0.4, 0.8, 1.6], "webhooks.jitter": 0.1, "webhooks.timeout_s": 2.0,
        "webhooks.allow_private_urls": True}


class Receiver:
    """An HTTP endpoint on loopback: answers each delivery with ``answer(n)`` (n = 1, 2, ... per
    webhook-id): a status code, or None to hang until the test ends."""

    def __init__(self, answer: Callable[[int], Any] = lambda n: 200) -> None:
        self.answer = answer
        self.requests: list[dict[str, Any]] = []  # every request: headers, body, status given
        self.accepted: dict[str, list[dict[str, Any]]] = {}  # webhook-id -> verified payloads answered 2xx
        self.secret = ""
        self._changed = asyncio.Event()
        self._release = asyncio.Event()
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.text()
        headers = dict(request.headers)
        msg_id = request.headers.get("webhook-id", "")
        n = 1 + sum(1 for r in self.requests if r["id"] == msg_id)
        status = self.answer(n)
        extra: dict[str, str] = {}
        if isinstance(status, tuple):  # (status, response headers)
            status, extra = status
        self.requests.append({"id": msg_id, "headers": headers, "body": body, "status": status})
        self._changed.set()
        if status is None:
            await self._release.wait()
            return web.Response(status=200)
        if 200 <= status < 300:
            payload = Webhook(self.secret).verify(body, headers)  # raises if the signature is wrong
            self.accepted.setdefault(msg_id, []).append(payload)
            self._changed.set()
        return web.Response(status=status, text="ok" if status < 300 else "try later", headers=extra)

    async def wait(self, check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not check():
            left = deadline - loop.time()
            assert left > 0, f"receiver: {what} did not happen; got {[(r['id'], r['status']) for r in self.requests]}"
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except asyncio.TimeoutError:
                pass

    def types(self) -> list[str]:
        return [p[0]["type"] for p in self.accepted.values()]

    def release(self) -> None:
        self._release.set()


async def receiver_at(aiohttp_server: Any, answer: Callable[[int], Any] = lambda n: 200) -> Receiver:
    rec = Receiver(answer)
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    server = await aiohttp_server(app)
    rec.url = str(server.make_url("/hook"))
    return rec


async def two_nodes(start_segue: Any, settings: dict[str, Any], second: dict[str, Any] | None = None) -> tuple[World, World]:
    """Two nodes sharing Redis under a fresh key prefix, with ``settings`` (the second node with
    ``second`` on top): a World for each (``world.segue.app`` is its node's app)."""
    prefix = f"test-{uuid.uuid4().hex[:10]}:"
    first = await start_segue({**settings, "redis.key_prefix": prefix})
    other = await start_segue({**settings, "redis.key_prefix": prefix, **(second or {})})
    return World(first), World(other)


async def eventually(check: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = await check()
        if result:
            return result
        assert loop.time() < deadline, f"{what} did not happen"
        await asyncio.sleep(0.1)


async def register(world: World, token: str, rec: Receiver, events: list[str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"url": rec.url, "description": "test receiver"}
    if events is not None:
        body["events"] = events
    status, reply = await http("POST", f"{world.url}/api/v1/webhooks", token, body)
    assert status == 201, reply
    rec.secret = reply["webhook"]["secret"]
    return reply["webhook"]


async def test_retries_until_accepted_signed_and_visible(start_segue: Any, aiohttp_server: Any) -> None:
    node = await start_segue(FAST)
    world = World(node)
    rec = await receiver_at(aiohttp_server, lambda n: 500 if n <= 2 else 200)
    try:
        admin = await world.add_agent("root", role="admin")
        hook = await register(world, admin, rec, ["message.created"])
        assert hook["secret"].startswith("whsec_") and hook["events"] == ["message.created"] and hook["enabled"]
        customer = await world.customer()
        started = await customer.ok("conversation.start", {"text": "hello there"})
        cid = started["conversation"]["id"]

        await rec.wait(lambda: len(rec.accepted) == 1, "the third attempt accepted")
        assert [r["status"] for r in rec.requests] == [500, 500, 200]
        ids = {r["id"] for r in rec.requests}
        assert len(ids) == 1 and next(iter(ids)).startswith("msg_"), "every attempt carries the same webhook-id"
        for r in rec.requests:  # the failed attempts were signed as well
            Webhook(rec.secret).verify(r["body"], r["headers"])
        payload = next(iter(rec.accepted.values()))[0]
        assert payload["type"] == "message.created" and payload["timestamp"].endswith("Z")
        assert payload["data"]["event"]["type"] == "message"
        assert payload["data"]["event"]["data"]["text"] == "hello there"
        assert payload["data"]["conversation"]["id"] == cid
        assert payload["data"]["conversation"]["customer"]["id"] == started["conversation"]["customer"]["id"]

        async def succeeded() -> Any:
            status, body = await http("GET", f"{world.url}/api/v1/webhooks/{hook['id']}/deliveries", admin)
            assert status == 200, body
            return body["deliveries"] if body["deliveries"] and body["deliveries"][0]["state"] == "succeeded" else None

        (delivery,) = await eventually(succeeded, "the delivery recorded as succeeded")
        attempts = delivery["attempts"]
        assert [a.get("status_code") for a in attempts] == [500, 500, 200]
        assert [a["n"] for a in attempts] == [1, 2, 3]
        assert all(a["duration_ms"] >= 0 and a["ts"] > 0 for a in attempts)
        assert all(a["next_retry_ts"] > a["ts"] for a in attempts[:2]) and "next_retry_ts" not in attempts[2]
        assert delivery["id"] in ids and delivery["type"] == "message.created" and "next_attempt_ts" not in delivery
        status, one = await http("GET", f"{world.url}/api/v1/webhooks/{hook['id']}/deliveries/{delivery['id']}", admin)
        assert status == 200 and one["delivery"]["payload"] == payload

        # the secret is shown on create and rotate only; the old one keeps signing for a while
        status, got = await http("GET", f"{world.url}/api/v1/webhooks/{hook['id']}", admin)
        assert status == 200 and "secret" not in got["webhook"] and got["webhook"]["url"] == rec.url
        old = rec.secret
        status, rotated = await http("POST", f"{world.url}/api/v1/webhooks/{hook['id']}/rotate-secret", admin)
        assert status == 200 and rotated["webhook"]["secret"] != old
        rec.secret = rotated["webhook"]["secret"]
        status, test = await http("POST", f"{world.url}/api/v1/webhooks/{hook['id']}/test", admin)
        assert status == 202 and test["delivery"]["type"] == "webhook.test", test
        await rec.wait(lambda: test["delivery"]["id"] in rec.accepted, "the test event delivered")
        last = next(r for r in rec.requests if r["id"] == test["delivery"]["id"])
        Webhook(old).verify(last["body"], last["headers"])  # both signatures are in the header
        assert rec.accepted[test["delivery"]["id"]][0]["data"]["endpoint_id"] == hook["id"]
    finally:
        await world.close()


async def test_failed_delivery_retried_by_hand(start_segue: Any, aiohttp_server: Any) -> None:
    """Retries exhausted: failed; POST .../retry sends it again (attempts kept, schedule over);
    a test event reaches a disabled endpoint, events do not."""
    node = await start_segue({**FAST, "webhooks.retry_schedule_s": [0.2]})
    world = World(node)
    up = {"flag": False}
    rec = await receiver_at(aiohttp_server, lambda n: 200 if up["flag"] else 500)
    try:
        admin = await world.add_agent("root", role="admin")
        hook = await register(world, admin, rec, ["message.created"])
        base = f"{world.url}/api/v1/webhooks/{hook['id']}"
        customer = await world.customer()
        cid = (await customer.ok("conversation.start", {}))["conversation"]["id"]
        await customer.ok("message.send", {"conversation_id": cid, "text": "hello"})

        async def failed() -> Any:
            status, body = await http("GET", f"{base}/deliveries?state=failed", admin)
            assert status == 200, body
            return body["deliveries"]

        (delivery,) = await eventually(failed, "the delivery failing for good")
        assert [a["status_code"] for a in delivery["attempts"]] == [500, 500]
        assert "next_retry_ts" not in delivery["attempts"][-1] and "next_attempt_ts" not in delivery
        status, body = await http("POST", f"{base}/deliveries/{delivery['id']}/retry", admin)
        assert status == 202 and body["delivery"]["state"] in ("pending", "succeeded"), body
        up["flag"] = True
        await rec.wait(lambda: delivery["id"] in rec.accepted, "the retried delivery accepted")

        async def succeeded() -> Any:
            status, body = await http("GET", f"{base}/deliveries/{delivery['id']}", admin)
            return body["delivery"] if body["delivery"]["state"] == "succeeded" else None

        again = await eventually(succeeded, "the retried delivery recorded")
        assert [a.get("status_code") for a in again["attempts"]][-1] == 200 and len(again["attempts"]) >= 3
        status, body = await http("POST", f"{base}/deliveries/{delivery['id']}/retry", admin)
        assert status == 409 and body["error"]["code"] == "conflict"

        status, body = await http("PATCH", base, admin, {"enabled": False})
        assert status == 200 and body["webhook"]["enabled"] is False
        await customer.ok("message.send", {"conversation_id": cid, "text": "not sent: disabled"})
        status, body = await http("POST", f"{base}/test", admin)
        assert status == 202
        await rec.wait(lambda: body["delivery"]["id"] in rec.accepted, "the test event, despite disabled")
        assert sorted(rec.types()) == ["message.created", "webhook.test"]
    finally:
        await world.close()


async def test_retry_after_is_honoured(start_segue: Any, aiohttp_server: Any) -> None:
    """A 429 with Retry-After: 2 is not retried sooner (the schedule alone says 0.2 s)."""
    node = await start_segue(FAST)
    world = World(node)
    rec = await receiver_at(aiohttp_server, lambda n: (429, {"Retry-After": "2"}) if n == 1 else 200)
    try:
        admin = await world.add_agent("root", role="admin")
        hook = await register(world, admin, rec, ["message.created"])
        customer = await world.customer()
        await customer.ok("conversation.start", {"text": "hi"})
        await rec.wait(lambda: len(rec.accepted) == 1, "the second attempt accepted")
        (delivery,) = await eventually(lambda: _succeeded(world, admin, hook["id"]), "recorded")
        first = delivery["attempts"][0]
        assert first["status_code"] == 429 and first["next_retry_ts"] - first["ts"] >= 2000
    finally:
        await world.close()


async def _succeeded(world: World, token: str, wid: str) -> Any:
    status, body = await http("GET", f"{world.url}/api/v1/webhooks/{wid}/deliveries?state=succeeded", token)
    assert status == 200, body
    return body["deliveries"]


async def test_webhook_rest_needs_the_scope_and_checks_input(start_segue: Any) -> None:
    node = await start_segue()
    world = World(node)
    admin = await world.add_agent("root", role="admin")
    supervisor = await world.add_agent("sue", role="supervisor")
    base = f"{world.url}/api/v1/webhooks"
    status, body = await http("GET", base)
    assert status == 401
    status, body = await http("GET", base, supervisor)
    assert status == 403 and "webhooks:manage" in body["error"]["message"]
    keys = {}
    for scope in ("webhooks:manage", "conversations:read"):
        status, body = await http("POST", f"{world.url}/api/v1/api-keys", admin, {"name": scope, "scopes": [scope]})
        assert status == 201, body
        keys[scope] = body["key"]
    status, body = await http("POST", base, keys["webhooks:manage"], {"url": "https://example.com/by-key"})
    assert status == 201 and body["webhook"]["secret"].startswith("whsec_")
    assert (await http("DELETE", f"{base}/{body['webhook']['id']}", keys["webhooks:manage"]))[0] == 204
    status, body = await http("GET", base, keys["conversations:read"])
    assert status == 403 and "webhooks:manage" in body["error"]["message"]
    for bad, field in (({"url": "ftp://example.com/x"}, "url"), ({"url": "example.com/hook"}, "url"),
                       ({"url": "https://u:p@example.com/"}, "url"), ({"url": "https://example.com/", "events": ["nope"]},
                                                                      "events[0]"),
                       ({"url": "https://example.com/", "events": ["*", "call.ended"]}, "events[0]"),
                       ({"url": "https://example.com/", "colour": "red"}, "colour")):
        status, body = await http("POST", base, admin, bad)
        assert status == 400 and body["error"]["code"] == "invalid" and body["error"]["field"] == field, (bad, body)
    # private destinations (SSRF), refused by default (webhooks.allow_private_urls: false)
    for url, address in (("http://127.0.0.1:6379/", "127.0.0.1 is a loopback address"),
                         ("http://[::1]:8080/x", "::1 is a loopback address"),
                         ("http://[::ffff:10.0.0.7]/x", "::ffff:10.0.0.7 is a private address"),
                         ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
                         ("https://192.168.1.20/hook", "192.168.1.20 is a private address"),
                         ("http://localhost:8080/hook", "localhost resolves to 127.0.0.1, a loopback address")):
        status, body = await http("POST", base, admin, {"url": url})
        assert status == 400 and body["error"]["code"] == "invalid" and body["error"]["field"] == "url", (url, body)
        assert address in body["error"]["message"] and "webhooks.allow_private_urls" in body["error"]["message"], body
    status, body = await http("POST", base, admin, {"url": "https://example.com/hook"})
    assert status == 201 and body["webhook"]["events"] == ["*"]
    wid = body["webhook"]["id"]
    status, body = await http("PATCH", f"{base}/{wid}", admin, {"url": "http://10.1.2.3/hook"})
    assert status == 400 and body["error"]["field"] == "url" and "10.1.2.3 is a private address" in body["error"]["message"]
    status, body = await http("PATCH", f"{base}/{wid}", admin, {"enabled": False, "events": ["call.started", "call.ended"]})
    assert status == 200 and body["webhook"]["enabled"] is False and body["webhook"]["events"] == ["call.started", "call.ended"]
    status, body = await http("GET", base, admin)
    assert [w["id"] for w in body["webhooks"]] == [wid] and "secret" not in body["webhooks"][0]
    status, body = await http("GET", f"{base}/event-types", admin)
    assert "csat.submitted" in body["event_types"] and len(body["event_types"]) == 9
    status, body = await http("GET", f"{base}/{wid}/deliveries?state=lost", admin)
    assert status == 400 and body["error"]["field"] == "state"
    assert (await http("DELETE", f"{base}/{wid}", admin))[0] == 204
    for method, path in (("GET", f"{base}/{wid}"), ("PATCH", f"{base}/{wid}"), ("DELETE", f"{base}/{wid}"),
                         ("POST", f"{base}/ep_nope/test"), ("GET", f"{base}/ep_nope/deliveries")):
        status, body = await http(method, path, admin, {} if method == "PATCH" else None)
        assert status == 404 and body["error"]["code"] == "not_found", (method, path, body)


async def test_event_type_filters(start_segue: Any, aiohttp_server: Any) -> None:
    node = await start_segue(FAST)
    world = World(node)
    some = await receiver_at(aiohttp_server)
    every = await receiver_at(aiohttp_server)
    try:
        admin = await world.add_agent("root", role="admin")
        await register(world, admin, some, ["conversation.created", "conversation.closed", "csat.submitted"])
        await register(world, admin, every)
        token = await world.add_agent("alice")
        agent = await world.agent(token)
        customer = await world.customer()
        cid = (await customer.ok("conversation.start", {"text": "hi"}))["conversation"]["id"]
        await agent.next("offer", lambda o: o["conversation"]["id"] == cid)
        await agent.ok("offer.accept", {"conversation_id": cid})
        await agent.ok("message.send", {"conversation_id": cid, "text": "how can I help?"})
        await agent.ok("note.add", {"conversation_id": cid, "text": "internal"})
        await customer.ok("conversation.close", {"conversation_id": cid})
        await customer.ok("conversation.rate", {"conversation_id": cid, "score": 5})

        expected_all = ["conversation.created", "message.created", "conversation.assigned", "message.created",
                        "conversation.closed", "csat.submitted"]
        await every.wait(lambda: len(every.accepted) == len(expected_all), "all six events")
        await some.wait(lambda: len(some.accepted) == 3, "the three subscribed events")
        by_event = sorted(every.accepted.values(), key=lambda p: p[0]["data"]["event"]["id"])
        assert [p[0]["type"] for p in by_event] == expected_all
        assert sorted(some.types()) == ["conversation.closed", "conversation.created", "csat.submitted"]
        closed = next(p[0] for p in some.accepted.values() if p[0]["type"] == "conversation.closed")
        assert closed["data"]["conversation"]["id"] == cid and closed["data"]["conversation"]["state"] == "closed"
        rated = next(p[0] for p in some.accepted.values() if p[0]["type"] == "csat.submitted")
        assert rated["data"]["event"]["data"]["score"] == 5
        assert all(len(v) == 1 for v in every.accepted.values()), "each event once"
    finally:
        await world.close()


async def test_hanging_receiver_does_not_hold_up_chat(start_segue: Any, aiohttp_server: Any) -> None:
    node = await start_segue({**FAST, "webhooks.concurrency": 2})
    world = World(node)
    rec = await receiver_at(aiohttp_server, lambda n: None)  # never answers
    try:
        admin = await world.add_agent("root", role="admin")
        hook = await register(world, admin, rec, ["message.created"])
        customer = await world.customer()
        cid = (await customer.ok("conversation.start", {}))["conversation"]["id"]
        acks = []
        for i in range(50):
            acks.append(await customer.ok("message.send", {"conversation_id": cid, "text": f"m{i}", "client_id": f"c{i}"}))
        assert len({a["event"]["id"] for a in acks}) == 50
        await rec.wait(lambda: len(rec.requests) >= 2, "the receiver to hold two requests")

        async def listed() -> Any:  # the fan-out runs behind the chat: the last messages may be on their way
            status, body = await http("GET", f"{world.url}/api/v1/webhooks/{hook['id']}/deliveries?limit=100", admin)
            assert status == 200, body
            return body if len(body["deliveries"]) == 50 else None

        body = await eventually(listed, "50 deliveries listed")
        assert all(d["state"] == "pending" for d in body["deliveries"]), "nothing was answered"
        # everything the customer sent is stored and readable while the deliveries wait
        status, events = await http("GET", f"{world.url}/api/v1/conversations/{cid}/events", admin)
        assert [e["data"]["text"] for e in events["events"] if e["type"] == "message"] == [f"m{i}" for i in range(50)]
    finally:
        rec.release()
        await world.close()


async def test_hanging_endpoint_does_not_hold_up_the_others(start_segue: Any, aiohttp_server: Any) -> None:
    """With webhooks.endpoint_concurrency 1 of 2 slots, an endpoint that never answers (within a
    30 s timeout) holds one slot: the other endpoint gets all its deliveries meanwhile."""
    node = await start_segue({**FAST, "webhooks.timeout_s": 30.0, "webhooks.concurrency": 2,
                              "webhooks.endpoint_concurrency": 1})
    world = World(node)
    stuck = await receiver_at(aiohttp_server, lambda n: None)
    fine = await receiver_at(aiohttp_server)
    try:
        admin = await world.add_agent("root", role="admin")
        await register(world, admin, stuck, ["message.created"])
        await register(world, admin, fine, ["message.created"])
        customer = await world.customer()
        cid = (await customer.ok("conversation.start", {}))["conversation"]["id"]
        for i in range(5):
            await customer.ok("message.send", {"conversation_id": cid, "text": f"m{i}"})
        await fine.wait(lambda: len(fine.accepted) == 5, "the healthy endpoint served")
        assert len(stuck.requests) == 1, "one request at a time to the hanging endpoint"
    finally:
        stuck.release()
        await world.close()


async def test_backlog_of_a_hanging_endpoint_does_not_starve_another(start_segue: Any, aiohttp_server: Any) -> None:
    """150 deliveries due for an endpoint that hangs (one at a time, 30 s each) are ahead of another
    endpoint's delivery in the schedule: it is still sent without waiting for them."""
    node = await start_segue({**FAST, "webhooks.timeout_s": 30.0, "webhooks.concurrency": 2,
                              "webhooks.endpoint_concurrency": 1, "limits.events_per_s": 0})
    world = World(node)
    stuck = await receiver_at(aiohttp_server, lambda n: None)
    fine = await receiver_at(aiohttp_server)
    try:
        admin = await world.add_agent("root", role="admin")
        hook = await register(world, admin, stuck, ["message.created"])
        customer = await world.customer()
        cid = (await customer.ok("conversation.start", {}))["conversation"]["id"]
        for i in range(150):
            await customer.ok("message.send", {"conversation_id": cid, "text": f"m{i}"})

        async def all_queued() -> bool:
            status, body = await http("GET", f"{world.url}/api/v1/webhooks/{hook['id']}/deliveries?limit=200", admin)
            return len(body["deliveries"]) == 150

        await eventually(all_queued, "the backlog queued")
        await register(world, admin, fine, ["message.created"])
        await customer.ok("message.send", {"conversation_id": cid, "text": "for the healthy one"})
        await fine.wait(lambda: len(fine.accepted) == 1, "the healthy endpoint's delivery")
        assert len(stuck.requests) == 1
    finally:
        stuck.release()
        await world.close()


@pytest.mark.parametrize("down", ["refusing", "hanging"])
async def test_restart_loses_no_queued_delivery(down: str, make_config: Any, aiohttp_server: Any) -> None:
    """Deliveries failing (or hanging: cut short) when the node stops are sent by the next node on
    the same Redis: at least once, with the same webhook-id (receivers de-duplicate by it). A
    hanging attempt is handed back at shutdown: with a 30 s timeout its lease would outlast the test."""
    up = {"flag": False}
    rec = await receiver_at(aiohttp_server, lambda n: 200 if up["flag"] else (503 if down == "refusing" else None))
    prefix = f"test-{uuid.uuid4().hex[:10]}:"
    config = make_config({**FAST, "redis.key_prefix": prefix, "webhooks.retry_schedule_s": [0.3] * 50,
                          "webhooks.timeout_s": 30.0})
    first = await aiohttp_server(create_app(config, config.redis.url))
    world = World(SimpleNamespace(url=str(first.make_url("/")), app=first.app))
    admin = await world.add_agent("root", role="admin")
    hook = await register(world, admin, rec, ["message.created"])
    customer = await world.customer()
    cid = (await customer.ok("conversation.start", {}))["conversation"]["id"]
    sent = [(await customer.ok("message.send", {"conversation_id": cid, "text": f"m{i}"}))["event"]["id"] for i in range(5)]
    in_flight = 5 if down == "refusing" else 4  # webhooks.endpoint_concurrency: 4 at a time
    await rec.wait(lambda: len({r["id"] for r in rec.requests}) == in_flight, "deliveries attempted")
    await world.close()
    await first.close()
    seen_before = len(rec.requests)

    up["flag"] = True
    second = await aiohttp_server(create_app(config, config.redis.url))
    try:
        await rec.wait(lambda: len(rec.accepted) == 5, "every delivery accepted after the restart")
        assert len(rec.requests) > seen_before
        got = sorted(p[0]["data"]["event"]["id"] for p in rec.accepted.values())
        assert got == sorted(sent)
        engine = second.app[WEBHOOKS]
        deliveries = await engine.deliveries(hook["id"], 100)
        assert sorted(d["id"] for d in deliveries) == sorted(rec.accepted)
        assert all(d["state"] == "succeeded" and d["attempts"][-1]["status_code"] == 200 for d in deliveries)
        if down == "refusing":
            assert all(d["attempts"][0]["status_code"] == 503 for d in deliveries)
    finally:
        rec.release()
        await second.close()


async def test_events_a_dead_node_had_taken_are_taken_over(make_config: Any, aiohttp_server: Any) -> None:
    """A node that read queued events from the outbox and died before handing them on: another
    node claims them (XAUTOCLAIM) after webhooks.claim_idle_s."""
    rec = await receiver_at(aiohttp_server)
    prefix = f"test-{uuid.uuid4().hex[:10]}:"
    # this node stores and queues events but runs no worker
    quiet = make_config({**FAST, "redis.key_prefix": prefix, "webhooks.enabled": False})
    first = await aiohttp_server(create_app(quiet, quiet.redis.url))
    world = World(SimpleNamespace(url=str(first.make_url("/")), app=first.app))
    try:
        admin = await world.add_agent("root", role="admin")
        await register(world, admin, rec, ["message.created"])
        customer = await world.customer()
        cid = (await customer.ok("conversation.start", {}))["conversation"]["id"]
        for i in range(3):
            await customer.ok("message.send", {"conversation_id": cid, "text": f"m{i}"})
        engine = first.app[WEBHOOKS]
        redis = engine.redis
        assert await redis.xlen(engine.keys.outbox) == 3
        # a worker that takes them and dies without acknowledging
        try:
            await redis.xgroup_create(engine.keys.outbox, engine.group, id="0", mkstream=True)
        except Exception:  # noqa: BLE001 - exists
            pass
        taken = await redis.xreadgroup(engine.group, "dead-node", {engine.keys.outbox: ">"}, count=10)
        assert len(taken[0][1]) == 3

        worker = make_config({**FAST, "redis.key_prefix": prefix, "webhooks.claim_idle_s": 0.5})
        second = await aiohttp_server(create_app(worker, worker.redis.url))
        try:
            await rec.wait(lambda: len(rec.accepted) == 3, "the abandoned events delivered")
            assert sorted(p[0]["data"]["event"]["data"]["text"] for p in rec.accepted.values()) == ["m0", "m1", "m2"]
            assert await redis.xlen(engine.keys.outbox) == 0
        finally:
            await second.close()
    finally:
        await world.close()
        await first.close()


async def test_delivery_to_a_private_address_is_refused_when_it_connects(start_segue: Any, aiohttp_server: Any) -> None:
    """Endpoints on loopback (an IP literal, and a name that resolves to it, as a name may do after
    it was checked) stored while private URLs were allowed: a node that does not allow them refuses
    to connect, says why in the attempts, and the receiver gets nothing."""
    world, strict_world = await two_nodes(start_segue, {**FAST, "webhooks.enabled": False}, {
        "webhooks.enabled": True, "webhooks.allow_private_urls": False, "webhooks.retry_schedule_s": [0.2]})
    literal, named = await receiver_at(aiohttp_server), await receiver_at(aiohttp_server)
    named.url = named.url.replace("127.0.0.1", "localhost")
    try:
        admin = await world.add_agent("root", role="admin")
        hooks = [await register(world, admin, rec, ["message.created"]) for rec in (literal, named)]
        engine = strict_world.segue.app[WEBHOOKS]
        await engine.reload()  # (pub/sub tells it too; not waited for here)
        customer = await strict_world.customer()
        cid = (await customer.ok("conversation.start", {}))["conversation"]["id"]
        await customer.ok("message.send", {"conversation_id": cid, "text": "to nobody inside"})

        async def failed() -> Any:
            found = [await engine.deliveries(h["id"], 10, "failed") for h in hooks]
            return found if all(found) else None

        results = await eventually(failed, "both deliveries failed")
        errors = [d[0]["attempts"][-1]["error"] for d in results]
        assert errors[0].startswith("refused: 127.0.0.1 is a loopback address"), errors
        assert errors[1].startswith("refused: localhost resolves to 127.0.0.1, a loopback address"), errors
        assert all("webhooks.allow_private_urls" in e and len(d[0]["attempts"]) == 2 for e, d in zip(errors, results))
        assert literal.requests == [] and named.requests == []
    finally:
        await world.close()
        await strict_world.close()


async def test_webhook_cli(tmp_path: Path, redis_url: str, start_segue: Any, aiohttp_server: Any) -> None:
    prefix = f"test-{uuid.uuid4().hex[:10]}:"
    env = {"SEGUE_REDIS_URL": redis_url, "SEGUE_REDIS_KEY_PREFIX": prefix, "SEGUE_WEBHOOKS_ALLOW_PRIVATE_URLS": "true"}
    node = await start_segue({**FAST, "redis.key_prefix": prefix})
    rec = await receiver_at(aiohttp_server)
    world = World(node)
    try:
        added = await asyncio.to_thread(run_segue, tmp_path, "webhook", "add", rec.url, "--event", "message.created",
                                        "--description", "crm", **env)
        assert added.returncode == 0, added.stderr
        first, second = added.stdout.splitlines()
        ep_id = first.split()[1]
        assert first.startswith("added ep_") and "events=message.created" in first
        rec.secret = second.split()[1]
        assert rec.secret.startswith("whsec_")
        bad = await asyncio.to_thread(run_segue, tmp_path, "webhook", "add", rec.url, "--event", "message.sent", **env)
        assert bad.returncode == 1 and "unknown event type 'message.sent'" in bad.stderr and len(bad.stderr.splitlines()) == 1
        listed = await asyncio.to_thread(run_segue, tmp_path, "webhook", "list", **env)
        assert listed.stdout.split()[:3] == [ep_id, "enabled", rec.url]
        changed = await asyncio.to_thread(run_segue, tmp_path, "webhook", "set", ep_id, "--event", "message.created",
                                          "--event", "conversation.closed", "--disable", **env)
        assert changed.returncode == 0, changed.stderr
        assert changed.stdout.split() == ["updated", ep_id, "disabled", rec.url, "events=message.created,conversation.closed"]
        assert (await asyncio.to_thread(run_segue, tmp_path, "webhook", "set", ep_id, "--enable", **env)).returncode == 0
        nothing = await asyncio.to_thread(run_segue, tmp_path, "webhook", "set", ep_id, **env)
        assert nothing.returncode == 1 and "nothing to change" in nothing.stderr

        customer = await world.customer()  # the running node picked the endpoint up
        cid = (await customer.ok("conversation.start", {}))["conversation"]["id"]
        await customer.ok("message.send", {"conversation_id": cid, "text": "via cli"})
        await rec.wait(lambda: len(rec.accepted) == 1, "the delivery")
        msg_id = next(iter(rec.accepted))

        async def shown() -> Any:
            out = await asyncio.to_thread(run_segue, tmp_path, "webhook", "deliveries", ep_id, **env)
            return out.stdout if "succeeded" in out.stdout else None

        text = await eventually(shown, "the delivery listed")
        assert msg_id in text and "message.created" in text and " 200 " in text
        failed = await asyncio.to_thread(run_segue, tmp_path, "webhook", "deliveries", ep_id, "--state", "failed", **env)
        assert failed.returncode == 0 and failed.stdout.strip() == "no failed deliveries"
        removed = await asyncio.to_thread(run_segue, tmp_path, "webhook", "remove", ep_id, **env)
        assert removed.returncode == 0 and removed.stdout.strip() == f"removed {ep_id}"
        gone = await asyncio.to_thread(run_segue, tmp_path, "webhook", "remove", ep_id, **env)
        assert gone.returncode == 1 and "does not exist" in gone.stderr
    finally:
        await world.close()


async def test_call_events(start_segue: Any, aiohttp_server: Any) -> None:
    """call.started (once per call, not for video added later), call.ended and, for a recorded call,
    recording.ready once it ended; from the calls layer."""
    node = await start_segue({**FAST, "routing.queues": [{"name": "general", "record_calls": True}]})
    world = World(node)
    rec = await receiver_at(aiohttp_server)
    try:
        admin = await world.add_agent("root", role="admin")
        hook = await register(world, admin, rec, ["call.started", "call.ended", "recording.ready"])
        agent = await world.agent(await world.add_agent("alice", capacity={"chat": 3, "voice": 1}))
        customer = await world.customer()
        cid = (await customer.ok("conversation.start", {"text": "call me"}))["conversation"]["id"]
        await agent.next("offer", lambda o: o["conversation"]["id"] == cid)
        await agent.ok("offer.accept", {"conversation_id": cid})
        await customer.ok("call.request", {"conversation_id": cid, "media": "voice"})
        await agent.ok("call.accept", {"conversation_id": cid})
        await agent.ok("call.request", {"conversation_id": cid, "media": "video"})
        await customer.ok("call.accept", {"conversation_id": cid})
        await customer.ok("call.hangup", {"conversation_id": cid})
        expected = ["call.ended", "call.started", "recording.ready"]
        await rec.wait(lambda: sorted(rec.types()) == expected, "call.started, call.ended, recording.ready")
        got = {p[0]["type"]: p[0] for p in rec.accepted.values()}
        started, ended, recording = got["call.started"], got["call.ended"], got["recording.ready"]
        assert started["data"]["event"]["type"] == "call.accepted" and started["data"]["event"]["data"]["media"] == "voice"
        assert started["data"]["conversation"]["id"] == cid and ended["data"]["event"]["type"] == "call.ended"
        assert recording["data"]["event"]["type"] == "call.recording"
        assert recording["data"]["event"]["data"]["url"].startswith("/api/v1/recordings/")
        assert recording["timestamp"] == ended["timestamp"]  # ready when the call ended
        # not subscribed: not queued (an event is queued in the same step that stores it, and leaves
        # the queue in the same step that makes its deliveries)
        await customer.ok("message.send", {"conversation_id": cid, "text": "thanks"})
        engine = node.app[WEBHOOKS]
        assert await engine.redis.xlen(engine.keys.outbox) == 0
        assert len(await engine.deliveries(hook["id"], 100)) == 3
    finally:
        await world.close()


async def test_endpoint_changes_reach_other_nodes(make_config: Any, start_segue: Any, aiohttp_server: Any) -> None:
    """An endpoint added or removed through one node is followed by another node on the same Redis
    at once (pub/sub; the periodic re-read is set far beyond the test's waits)."""
    world_a, world_b = await two_nodes(start_segue, {**FAST, "webhooks.refresh_s": 600.0})
    rec = await receiver_at(aiohttp_server)
    try:
        admin = await world_a.add_agent("root", role="admin")
        hook = await register(world_a, admin, rec, ["message.created"])
        engine_b = world_b.segue.app[WEBHOOKS]

        async def b_knows() -> bool:
            return "message.created" in engine_b._subs.wanted

        await eventually(b_knows, "node b hearing of the endpoint")
        customer = await world_b.customer()
        cid = (await customer.ok("conversation.start", {}))["conversation"]["id"]
        await customer.ok("message.send", {"conversation_id": cid, "text": "through b"})
        await rec.wait(lambda: len(rec.accepted) == 1, "the message stored on node b delivered")

        assert (await http("DELETE", f"{world_a.url}/api/v1/webhooks/{hook['id']}", admin))[0] == 204

        async def b_forgot() -> bool:
            return not engine_b._subs.wanted

        await eventually(b_forgot, "node b hearing of the removal")  # from now on nothing is queued
    finally:
        await world_a.close()
        await world_b.close()


async def test_worker_recovers_when_the_outbox_is_deleted(start_segue: Any, aiohttp_server: Any) -> None:
    """The outbox stream (and its consumer group) deleted under a running node, e.g. by a FLUSHDB:
    the worker makes the group again and goes on delivering."""
    node = await start_segue(FAST)
    world = World(node)
    rec = await receiver_at(aiohttp_server)
    try:
        admin = await world.add_agent("root", role="admin")
        await register(world, admin, rec, ["message.created"])
        engine = node.app[WEBHOOKS]
        await engine.redis.delete(engine.keys.outbox)
        customer = await world.customer()
        await customer.ok("conversation.start", {"text": "after the flush"})
        await rec.wait(lambda: len(rec.accepted) == 1, "the delivery")
    finally:
        await world.close()


async def test_two_workers_deliver_each_event_once(start_segue: Any, aiohttp_server: Any) -> None:
    """Two nodes on one Redis, both running workers, events stored on both: every event reaches the
    endpoint once (the consumer group hands each queued event to one node; a claimed delivery is
    leased to one node), none twice while nothing fails."""
    world_a, world_b = await two_nodes(start_segue, {**FAST, "limits.events_per_s": 0})
    rec = await receiver_at(aiohttp_server)
    try:
        admin = await world_a.add_agent("root", role="admin")
        await register(world_a, admin, rec, ["message.created"])
        engine_b = world_b.segue.app[WEBHOOKS]

        async def b_knows() -> bool:
            return "message.created" in engine_b._subs.wanted

        await eventually(b_knows, "node b hearing of the endpoint")
        sent: list[str] = []

        async def chat(world: World) -> None:
            customer = await world.customer()
            cid = (await customer.ok("conversation.start", {}))["conversation"]["id"]
            for i in range(30):
                sent.append((await customer.ok("message.send", {"conversation_id": cid, "text": f"m{i}"}))["event"]["id"])

        await asyncio.gather(chat(world_a), chat(world_b))
        await rec.wait(lambda: len(rec.accepted) == 60, "all sixty delivered")
        assert sorted(p[0]["data"]["event"]["id"] for p in rec.accepted.values()) == sorted(sent)
        assert len(rec.requests) == 60, "no event was sent twice"
    finally:
        await world_a.close()
        await world_b.close()
