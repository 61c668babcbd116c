"""Protocol abuse against a real node (issue 11): ghost presence, visitors that never act, and
HTTP clients that never finish a request or open too many connections."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from hostile_kit import report
from raw_socketio import RawSocket
from segue_clients import World, http
from signaling import SIGNALING, sign_identity


async def eventually(check: Any, timeout: float = 15.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def test_presence_counts_only_real_connections(start_segue: Any) -> None:
    node = await start_segue()
    world = World(node)
    service = node.app[SIGNALING]
    try:
        token = await world.add_agent("ghost")
        agent_id = (await service.directory.find("ghost")).id
        raw = await RawSocket(world.url, "/agent").open(auth={"v": 1, "token": token})
        reply, _ = await raw.call("presence.set", {"status": "available"})
        assert reply["ok"], reply
        # the client sends events named "connect" itself: each is refused, none opens a session
        for _ in range(5):
            reply, _ = await raw.call("connect", {"v": 1, "token": token})
            assert reply["ok"] is False, reply
        second = await world.agent(token, available=False)  # a second real console

        async def online() -> bool:
            _, body = await http("GET", f"{world.url}/api/v1/agents/{agent_id}", token=token)
            return bool(body["agent"]["online"])

        async def presence() -> str:
            state = await service.router.agent(agent_id)
            return state.presence.value if state else "none"

        assert await online() and await presence() == "available"
        await raw.close()
        await asyncio.sleep(0.3)
        assert await online(), "one real console is still connected"
        await second.close()

        async def gone() -> bool:
            return await presence() == "offline"

        await eventually(gone)
        sup = await world.add_agent("boss", role="supervisor")
        _, body = await http("GET", f"{world.url}/api/v1/agents/{agent_id}", token=sup)
        assert body["agent"]["online"] is False
        report("client_sent_connect", 5, internal=0, crashes=0)
    finally:
        await world.close()


async def permanent_keys(redis: Any, prefix: str) -> set[str]:
    keys = set()
    async for key in redis.scan_iter(match=f"{prefix}*", count=1000):
        if await redis.ttl(key) == -1:
            keys.add(key)
    return keys


async def test_visitors_who_never_act_leave_no_permanent_keys(start_segue: Any) -> None:
    node = await start_segue({"limits.connects_per_ip_per_s": 0, "auth.sites": {"shop": "s3cret"}})
    world = World(node)
    redis, prefix = node.node.redis, node.config.redis.key_prefix
    try:
        before = await permanent_keys(redis, prefix)
        tokens: list[str] = []

        async def visit(i: int) -> None:
            raw = RawSocket(world.url)
            try:
                await raw.open(address=f"10.{i // 250 % 250}.{i % 250}.1")
                for text in raw.received:
                    if '"session"' in text and i % 100 == 0:
                        tokens.append(json.loads(text.split(",", 1)[1])[1]["visitor_token"])
            finally:
                await raw.close()

        gate = asyncio.Semaphore(50)

        async def limited(i: int) -> None:
            async with gate:
                await visit(i)

        await asyncio.gather(*(limited(i) for i in range(2000)))
        # coming back with their visitor token, still without chatting
        for token in tokens:
            peer = await world.customer(visitor_token=token)
            await peer.close()
        after = await permanent_keys(redis, prefix)
        assert after == before, sorted(after - before)[:10]

        # a signed-in user of the site who never chats: the record expires
        signed = await world.customer(site="shop", identity=sign_identity("s3cret", "u-42", "Ada"))
        cust = signed.session["customer_id"]
        assert await redis.ttl(f"{prefix}cust:{cust}") > 0
        # acting writes the record for good
        await signed.ok("conversation.start", {"text": "hello"})
        assert await redis.ttl(f"{prefix}cust:{cust}") == -1
        visitor = await world.customer()
        await visitor.ok("conversation.start", {"text": "hi", "name": "Bo"})
        record = await redis.hgetall(f"{prefix}cust:{visitor.session['customer_id']}")
        assert record["name"] == "Bo" and record["created_ts"], record
        report("idle_visitor_connects", 2000 + len(tokens), permanent_keys_left=len(after - before), internal=0)
    finally:
        await world.close()


# --- HTTP ---------------------------------------------------------------------------------------


async def _open(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(host, port)


async def test_half_open_requests_are_closed_by_the_server(start_segue: Any) -> None:
    node = await start_segue({"limits.http_header_timeout_s": 1.0, "limits.http_body_timeout_s": 1.0})
    host, port = node.url.split("//")[1].rstrip("/").split(":")
    port_n = int(port)
    conns = []
    for i in range(200):
        reader, writer = await _open(host, port_n)
        # headers that never end, and a connection that never sends anything
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " if i % 2 else b"")
        await writer.drain()
        conns.append((reader, writer))

    async def closed(reader: asyncio.StreamReader) -> bool:
        data = await asyncio.wait_for(reader.read(), 20)  # EOF (the server closed it) or a response then EOF
        return data == b"" or data.startswith(b"HTTP/1.1 4")

    results = await asyncio.gather(*(closed(r) for r, _ in conns))
    assert all(results), results.count(False)
    for _, w in conns:
        w.close()

    # a body that stops half way: 408, connection closed
    reader, writer = await _open(host, port_n)
    writer.write(b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 100\r\n\r\n{\"username\": ")
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 20)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b'"code": "timeout"' in answer or b'"code":"timeout"' in answer
    writer.close()
    # the node serves as before
    status, body = await http("GET", f"{node.url}healthz")
    assert status == 200, body
    report("half_open_http", 201, closed=200, internal=0, crashes=0)


async def test_connections_per_address_are_capped_with_a_clear_refusal(start_segue: Any) -> None:
    node = await start_segue({"limits.max_connections_per_ip": 5, "limits.connects_per_ip_per_s": 0})
    world = World(node)
    held: list[RawSocket] = []
    try:
        for _ in range(5):
            held.append(await RawSocket(world.url).open(address="192.0.2.77"))
        status, body = await http("GET", f"{world.url}/healthz", headers={"X-Forwarded-For": "192.0.2.77"})
        assert status == 429, (status, body)
        assert body["error"]["code"] == "rate_limited" and "at most 5" in body["error"]["message"]
        status, _ = await http("GET", f"{world.url}/healthz", headers={"X-Forwarded-For": "192.0.2.78"})
        assert status == 200
        await held.pop().close()
        for _ in range(100):
            status, _ = await http("GET", f"{world.url}/healthz", headers={"X-Forwarded-For": "192.0.2.77"})
            if status == 200:
                break
            await asyncio.sleep(0.05)
        assert status == 200
        report("connections_per_address", 6, refused=1, internal=0)
    finally:
        for s in held:
            await s.close()
        await world.close()
