"""Rate limits, load shedding and bounded send queues on a real node (issue 11, limits.*).

A client over a limit gets ``rate_limited`` with ``retry_after_ms`` (and nothing is stored for the
refused events); other clients, and other addresses, go on unaffected. Addresses are claimed with
X-Forwarded-For, which the node believes from loopback (``auth.trusted_proxies``).
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any

from hostile_kit import Healthy, report
from raw_socketio import RawSocket, nested
from segue_clients import World
from signaling import SIGNALING


def counts(replies: list[Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in replies:
        key = "ok" if isinstance(r, dict) and r.get("ok") else (
            r["error"]["code"] if isinstance(r, dict) else type(r).__name__)
        out[key] = out.get(key, 0) + 1
    return out


async def test_a_flooding_socket_is_rate_limited_and_nothing_refused_is_stored(start_segue: Any) -> None:
    node = await start_segue({"limits.events_per_s": 10, "limits.events_burst": 30,
                              "limits.disconnect_after_refusals": 0})
    world = World(node)
    flood = await RawSocket(world.url).open(address="198.51.100.7")
    try:
        async with Healthy(world) as healthy:
            cid = (await flood.call("conversation.start", {}))[0]["conversation"]["id"]
            start = time.monotonic()
            replies = await flood.burst("message.send", [{"conversation_id": cid, "text": f"m{i}"} for i in range(300)])
            elapsed = time.monotonic() - start
            tally = counts(replies)
            assert set(tally) == {"ok", "rate_limited"}, tally
            # the burst, plus what the bucket refilled while the 300 were handled, and no more
            assert 29 <= tally["ok"] <= 30 + 10 * elapsed + 1, (tally, elapsed)
            refused = [r["error"] for r in replies if not r["ok"]]
            assert all(e["retry_after_ms"] >= 1 for e in refused), refused[:3]
            assert "events a second on this connection" in refused[0]["message"]
            # acknowledged means stored, refused means not stored
            stored = [e for e in await node.app[SIGNALING].store.events(cid) if e["type"] == "message"]
            assert len(stored) == tally["ok"]
            # after the wait it asked for, the same socket is served again
            await asyncio.sleep(refused[-1]["retry_after_ms"] / 1000 + 0.2)
            again, _ = await flood.call("message.send", {"conversation_id": cid, "text": "later"})
            assert again["ok"], again
        healthy.check()
        report("event_flood_one_socket", 300, refused=tally["rate_limited"], internal=0, crashes=0, **healthy.figures())
    finally:
        await flood.close()
        await world.close()


async def test_a_socket_that_ignores_retry_after_is_disconnected(start_segue: Any) -> None:
    node = await start_segue({"limits.events_per_s": 5, "limits.events_burst": 5,
                              "limits.disconnect_after_refusals": 50})
    world = World(node)
    flood = await RawSocket(world.url).open(address="198.51.100.8")
    try:
        replies = await flood.burst("typing", [{"conversation_id": "c_nope", "typing": True}] * 200)
        tally = counts(replies)
        assert tally.get("rate_limited", 0) >= 45 and tally.get("ConnectionError", 0) > 0, tally
        await asyncio.wait_for(flood.closed.wait(), 10)
        service = node.app[SIGNALING]
        assert not any(a == "198.51.100.8" for a in service.customer_ns.addresses.values())  # type: ignore[attr-defined]
        # its address may connect again (a reload is not punished beyond the connection rate)
        back = await RawSocket(world.url).open(address="198.51.100.8")
        assert back.connected
        await back.close()
    finally:
        await flood.close()
        await world.close()


async def test_per_address_limits_leave_other_addresses_alone(start_segue: Any) -> None:
    node = await start_segue({"limits.ip_events_per_s": 5, "limits.ip_events_burst": 20,
                              "limits.connects_per_ip_per_s": 1, "limits.connects_burst": 3,
                              "limits.conversations_per_s": 0.01, "limits.conversations_burst": 2})
    world = World(node)
    sockets: list[RawSocket] = []
    try:
        # new connections from one address
        for _ in range(3):
            sockets.append(await RawSocket(world.url).open(address="203.0.113.5"))
        extra = RawSocket(world.url)
        sockets.append(extra)
        await extra.open(address="203.0.113.5")
        assert extra.refusal is not None and extra.refusal["data"]["code"] == "rate_limited", extra.refusal
        assert extra.refusal["data"]["retry_after_ms"] >= 1
        elsewhere = await RawSocket(world.url).open(address="203.0.113.6")
        sockets.append(elsewhere)
        assert elsewhere.connected

        # events from every connection of one address share a bucket
        a, b = sockets[0], sockets[1]
        replies = await a.burst("conversations.list", [{}] * 15) + await b.burst("conversations.list", [{}] * 15)
        tally = counts(replies)
        assert tally.get("rate_limited", 0) >= 5 and tally["ok"] <= 25, tally
        assert any("from your address" in r["error"]["message"] for r in replies if not r["ok"])
        ok, _ = await elsewhere.call("conversations.list", {})
        assert ok["ok"], ok

        # new conversations per connection
        starts = [(await elsewhere.call("conversation.start", {}))[0] for _ in range(3)]
        assert [s["ok"] for s in starts] == [True, True, False], starts
        assert starts[2]["error"]["code"] == "rate_limited"
        assert "new conversations" in starts[2]["error"]["message"]
        report("per_address_limits", 3 + 30 + 3, internal=0, crashes=0)
    finally:
        for s in sockets:
            await s.close()
        await world.close()


async def test_an_overloaded_node_refuses_before_decoding_but_not_call_signalling(start_segue: Any) -> None:
    # a node whose budget is spent (a fixed ceiling of one event every 100 s: the first event takes
    # the only token), as the adaptive budget leaves it under overload
    node = await start_segue({"limits.node_events_per_s": 0.01})
    world = World(node)
    raw = await RawSocket(world.url).open()
    try:
        service = node.app[SIGNALING]
        first, _ = await raw.call("conversation.start", {})
        assert first["ok"], first
        cid = first["conversation"]["id"]
        stored_before = await service.store.events(cid)
        replies = await raw.burst("message.send", [{"conversation_id": cid, "text": f"burst {i}"} for i in range(20)])
        assert all(not r["ok"] and r["error"]["code"] == "rate_limited" for r in replies), replies
        busy = [r["error"] for r in replies]
        assert all("busy" in e["message"] and e["retry_after_ms"] >= 1 for e in busy), busy[:3]
        # refused before it is decoded or validated: a malformed event, an unknown one, get the same answer
        deep, _ = await raw.call_text("message.send", nested(200))
        unknown, _ = await raw.call("no.such.event", {})
        assert deep["error"]["code"] == unknown["error"]["code"] == "rate_limited", (deep, unknown)
        # an event sent without an ack gets an error event that names it
        await raw.send_text(f'42/customer,["typing",{{"conversation_id":"{cid}","typing":true}}]')
        call, _ = await raw.call("call.state", {"conversation_id": cid})
        assert call["ok"], call  # call signalling is never refused for load
        pushed = [json.loads(t[len("42/customer,"):]) for t in raw.received if t.startswith("42/customer,[\"error\"")]
        assert [(p[1]["code"], p[1]["event"]) for p in pushed] == [("rate_limited", "typing")], raw.received[-5:]
        assert raw.connected
        # nothing refused was stored
        assert await service.store.events(cid) == stored_before
        assert service.limiter.load.shed >= 23
    finally:
        await raw.close()
        await world.close()


async def test_a_client_that_queues_many_requests_on_its_connection_is_told_to_wait(start_segue: Any) -> None:
    # a connection's events are handled one after another: 200 requests sent without waiting queue
    # in that connection, where the loop's lateness does not see them (a tiny target makes their
    # wait count at once)
    node = await start_segue({"limits.shed_lag_ms": 1, "limits.events_per_s": 0, "limits.ip_events_per_s": 0})
    world = World(node)
    raw = await RawSocket(world.url).open()
    try:
        service = node.app[SIGNALING]
        cid = (await raw.call("conversation.start", {}))[0]["conversation"]["id"]
        replies = await raw.burst("message.send", [{"conversation_id": cid, "text": f"piped {i}"} for i in range(200)])
        tally = counts(replies)
        assert set(tally) == {"ok", "rate_limited"}, tally
        assert service.limiter.load.pipeline_shed > 0
        busy = [r["error"] for r in replies if not r["ok"]]
        assert all("busy" in e["message"] and e["retry_after_ms"] >= 1 for e in busy), busy[:3]
        # what was admitted was stored, in order; what was refused was not
        admitted = [r["event"]["data"]["text"] for r in replies if r["ok"]]
        stored = [e["data"]["text"] for e in await service.store.events(cid) if e["type"] == "message"]
        assert stored == admitted
    finally:
        await raw.close()
        await world.close()


# --- a client that stops reading ----------------------------------------------------------------


async def stalled_socket(url: str, auth: str) -> socket.socket:
    """A WebSocket client that joins /customer and then never reads again (tiny receive buffer)."""
    host, port = url.split("//")[1].split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, (host, int(port.rstrip("/"))))
    request = (f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    await loop.sock_sendall(sock, request.encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += await loop.sock_recv(sock, 4096)
    assert b" 101 " in data, data[:200]

    def frame(text: str) -> bytes:  # a masked client text frame
        payload = text.encode()
        mask = b"\x01\x02\x03\x04"
        head = bytes([0x81])
        n = len(payload)
        head += bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big")
        return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))

    await loop.sock_sendall(sock, frame(f"40/customer,{auth}"))
    return sock


async def test_a_client_that_stops_reading_is_disconnected_and_others_go_on(start_segue: Any) -> None:
    node = await start_segue({"limits.send_queue_packets": 200, "limits.send_queue_bytes": 400_000,
                              "limits.events_per_s": 0, "limits.ip_events_per_s": 0,
                              "limits.max_message_chars": 4000})
    world = World(node)
    service = node.app[SIGNALING]
    try:
        sender = await world.customer()
        token = sender.session["visitor_token"]
        cid = (await sender.ok("conversation.start", {}))["conversation"]["id"]
        stalled = await stalled_socket(world.url, '{"v": 1, "visitor_token": "%s"}' % token)
        ns = service.customer_ns  # type: ignore[attr-defined]
        for _ in range(100):
            if len(ns.sessions) == 2:
                break
            await asyncio.sleep(0.05)
        assert len(ns.sessions) == 2  # the stalled socket joined as the same customer
        stalled_sid = next(sid for sid, who in ns.sessions.items() if sid != sender.sio.get_sid("/customer"))
        text = "x" * 3900
        async with Healthy(world) as healthy:
            sent = 0
            while stalled_sid in ns.sessions and sent < 3000:
                # each message is pushed to the customer's other socket: the stalled one
                await sender.ok("message.send", {"conversation_id": cid, "text": text})
                sent += 1
        assert stalled_sid not in ns.sessions, f"still connected after {sent} pushes of 4 kB"
        healthy.check()
        assert sender.sio.connected
        ok = await sender.ok("message.send", {"conversation_id": cid, "text": "still here"})
        assert ok["event"]["data"]["text"] == "still here"
        report("stalled_consumer", sent, disconnected_after_pushes=sent, internal=0, crashes=0, **healthy.figures())
        stalled.close()
    finally:
        await world.close()
