"""``HEAD`` on the REST API against a real node: allowed wherever ``GET`` is (RFC 9110), answered
with the GET's status and headers and no body; refused with ``405`` and the allowed methods named
(in the message and the ``Allow`` header) where only other methods are. A recording's download
answers HEAD through the node that lacks its file too (tests/integration/test_cluster_recordings.py)."""

from __future__ import annotations

from typing import Any, AsyncIterator

import aiohttp
import pytest

from segue_clients import World, http


@pytest.fixture
async def world(segue: Any) -> AsyncIterator[World]:
    w = World(segue)
    yield w
    await w.close()


async def fetch(method: str, url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, Any]:
    async with aiohttp.ClientSession() as session:
        async with session.request(method, url, headers=headers or {}) as resp:
            return resp.status, await resp.read(), resp.headers


async def test_head_answers_like_get_without_the_body(world: World) -> None:
    api = f"{world.url}/api/v1"
    token = await world.add_agent("hana", role="admin")
    customer = await world.customer()
    started = await customer.ok("conversation.start", {"text": "hello", "name": "Ada"})
    cid = started["conversation"]["id"]
    auth = {"Authorization": f"Bearer {token}"}
    for path in ("/me", "/queues", f"/conversations/{cid}", f"/conversations/{cid}/events", "/agents"):
        got_status, got_body, got = await fetch("GET", f"{api}{path}", auth)
        status, body, headers = await fetch("HEAD", f"{api}{path}", auth)
        assert got_status == 200 and got_body, (path, got_status, got_body[:200])
        assert status == 200 and body == b"", (path, status, body[:200])
        for name in ("Content-Type", "Content-Length", "Cache-Control"):
            assert headers.get(name) == got.get(name), (path, name, headers.get(name), got.get(name))
        assert int(headers["Content-Length"]) == len(got_body), path
    # the OpenAPI document too (routed from the same table)
    status, body, headers = await fetch("HEAD", f"{world.url}/api/openapi.json")
    assert status == 200 and body == b"" and headers["Content-Type"].startswith("application/json")

    # HEAD is checked like GET: no token, the same 401 (without its body)
    status, body, headers = await fetch("HEAD", f"{api}/me")
    assert status == 401 and body == b"" and headers["WWW-Authenticate"] == 'Bearer realm="segue"'
    status, _, _ = await fetch("HEAD", f"{api}/no-such-endpoint", auth)
    assert status == 404


async def test_head_where_get_is_not_allowed_is_a_405_naming_the_methods(world: World) -> None:
    api = f"{world.url}/api/v1"
    status, body, headers = await fetch("HEAD", f"{api}/auth/login")  # POST only
    # (OPTIONS: the CORS preflight, answered on every API path)
    assert status == 405 and body == b"" and headers["Allow"] == "OPTIONS, POST", (status, dict(headers))
    # the same refusal to a GET, with the message a client reads
    status, answer = await http("GET", f"{api}/auth/login")
    assert status == 405 and answer["error"]["code"] == "method_not_allowed", answer
    assert answer["error"]["message"] == "GET is not allowed on /api/v1/auth/login (allowed: OPTIONS, POST)"
    # a path with GET and POST names HEAD with them
    status, answer = await http("PUT", f"{api}/conversations")
    assert status == 405 and answer["error"]["message"].endswith("(allowed: GET, HEAD, OPTIONS, POST)"), answer
