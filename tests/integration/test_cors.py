"""Allowed origins (``cors.*``): the customer surface is embeddable from any origin by default, the
agent surface answers only its own origin plus ``cors.agent_origins``; static files, REST (with
preflight) and the Socket.IO handshake follow the same lists, and a refusal always says why."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import pytest
import socketio

from segue_clients import World
from server import ConfigError, load_config

OTHER = "http://localhost:5173"  # another site's page
SHOP = "https://shop.example"


async def get(method: str, url: str, headers: dict[str, str]) -> tuple[int, Any, Any]:
    async with aiohttp.ClientSession() as session:
        async with session.request(method, url, headers=headers) as resp:
            body = await resp.json() if resp.content_type == "application/json" else await resp.text()
            return resp.status, resp.headers, body


def own_origin(world_url: str) -> str:
    return world_url.rstrip("/")


class Connection:
    """A raw Socket.IO client that sends an Origin header, as a browser page on that origin would."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.refusal: Any = None

    async def connect(self, url: str, namespace: str, origin: str, auth: dict[str, Any],
                      transport: str = "websocket") -> bool:
        async def refused(data: Any) -> None:
            self.refusal = data

        self.sio.on("connect_error", refused, namespace=namespace)
        try:
            await self.sio.connect(url, namespaces=[namespace], auth=auth, headers={"Origin": origin},
                                   transports=[transport], wait_timeout=10)
        except socketio.exceptions.ConnectionError:
            return False
        return True

    async def close(self) -> None:
        if self.sio.connected:
            await self.sio.disconnect()


@pytest.fixture
async def connections() -> AsyncIterator[list[Connection]]:
    made: list[Connection] = []
    yield made
    for c in made:
        await c.close()


# --- static files --------------------------------------------------------------------------------

async def test_sdk_files_carry_cors_headers_for_any_origin_by_default(segue: Any) -> None:
    status, headers, body = await get("GET", f"{segue.url}sdk/segue.js", {"Origin": OTHER})
    assert status == 200 and "export" in body
    assert headers["Access-Control-Allow-Origin"] == OTHER
    assert "origin" in headers.get("Vary", "").lower()  # caches must not hand one site's answer to another
    assert "Access-Control-Allow-Credentials" not in headers  # credentials go in Authorization, not cookies

    status, headers, _ = await get("GET", f"{segue.url}sdk/segue.js", {})
    assert status == 200 and "Access-Control-Allow-Origin" not in headers


@pytest.mark.parametrize("path", ["sdk/v1/segue.js", "sdk/{version}/segue.js", "widget/widget.js",
                                  "vendor/socket.io.esm.min.js"])
async def test_every_customer_asset_path_is_embeddable(segue: Any, path: str) -> None:
    version = json.loads((Path(__file__).resolve().parents[2] / "web" / "sdk" / "package.json").read_text())["version"]
    status, headers, _ = await get("GET", segue.url + path.format(version=version), {"Origin": OTHER})
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] == OTHER


async def test_agent_pages_refuse_another_origin_but_serve_their_own(segue: Any) -> None:
    status, headers, body = await get("GET", f"{segue.url}agent/agent.js", {"Origin": OTHER})
    assert status == 403, body
    assert body["error"]["code"] == "origin_not_allowed"
    assert body["error"]["message"] == f"origin {OTHER} is not allowed on /agent/agent.js: add it to cors.agent_origins"
    assert "Access-Control-Allow-Origin" not in headers

    status, headers, _ = await get("GET", f"{segue.url}agent/agent.js", {"Origin": own_origin(segue.url)})
    assert status == 200
    # behind a TLS-terminating proxy the page's origin is https:// with the same Host
    status, _, _ = await get("GET", f"{segue.url}agent/agent.js", {"Origin": own_origin(segue.url).replace("http:", "https:")})
    assert status == 200


async def test_a_customer_list_that_excludes_the_origin_refuses_it(start_segue: Any) -> None:
    node = await start_segue({"cors.customer_origins": [SHOP]})
    status, _, body = await get("GET", f"{node.url}sdk/segue.js", {"Origin": OTHER})
    assert status == 403, body
    assert body["error"] == {"code": "origin_not_allowed",
                             "message": f"origin {OTHER} is not allowed on /sdk/segue.js: add it to cors.customer_origins"}
    status, headers, _ = await get("GET", f"{node.url}sdk/segue.js", {"Origin": SHOP})
    assert status == 200 and headers["Access-Control-Allow-Origin"] == SHOP


# --- REST ----------------------------------------------------------------------------------------

async def test_rest_preflight_from_an_allowed_origin_lists_methods_and_headers(start_segue: Any) -> None:
    node = await start_segue({"cors.agent_origins": [OTHER]})
    status, headers, _ = await get("OPTIONS", f"{node.url}api/v1/agents", {
        "Origin": OTHER, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] == OTHER
    assert {m.strip() for m in headers["Access-Control-Allow-Methods"].split(",")} >= {"GET", "POST"}
    allowed = {h.strip().lower() for h in headers["Access-Control-Allow-Headers"].split(",")}
    assert allowed >= {"authorization", "content-type"}
    assert "Access-Control-Allow-Credentials" not in headers

    world = World(node)
    token = await world.login("demo", "demo")
    status, headers, body = await get("GET", f"{node.url}api/v1/me", {"Origin": OTHER, "Authorization": f"Bearer {token}"})
    assert status == 200 and body["agent"]["username"] == "demo"
    assert headers["Access-Control-Allow-Origin"] == OTHER
    assert "Retry-After" in headers["Access-Control-Expose-Headers"]


async def test_rest_from_a_refused_origin_gets_a_clear_error(segue: Any) -> None:
    status, _, body = await get("OPTIONS", f"{segue.url}api/v1/me", {
        "Origin": OTHER, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"})
    assert status == 403, body  # answered, not 405
    assert body["error"]["code"] == "origin_not_allowed"
    status, headers, body = await get("GET", f"{segue.url}api/v1/me", {"Origin": OTHER})
    assert status == 403
    assert body["error"] == {"code": "origin_not_allowed",
                             "message": f"origin {OTHER} is not allowed on /api/v1/me: add it to cors.agent_origins"}
    assert "Access-Control-Allow-Origin" not in headers


async def test_rest_from_its_own_origin_and_without_origin_works(segue: Any) -> None:
    world = World(segue)
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{segue.url}api/v1/auth/login", json={"username": "demo", "password": "demo"},
                                headers={"Origin": own_origin(segue.url)}) as resp:
            assert resp.status == 200, await resp.text()
            assert "Access-Control-Allow-Origin" not in resp.headers  # same origin needs none
    assert await world.login("demo", "demo")  # a server-side client sends no Origin


# --- Socket.IO -----------------------------------------------------------------------------------

async def test_customer_namespace_accepts_another_origin(segue: Any, connections: list[Connection]) -> None:
    c = Connection()
    connections.append(c)
    assert await c.connect(segue.url, "/customer", OTHER, {"v": 1}), c.refusal


async def test_agent_namespace_refuses_another_origin_with_the_reason(segue: Any, connections: list[Connection]) -> None:
    token = await World(segue).login("demo", "demo")
    c = Connection()
    connections.append(c)
    assert not await c.connect(segue.url, "/agent", OTHER, {"v": 1, "token": token})
    assert c.refusal["data"] == {"code": "origin_not_allowed",
                                 "message": f"origin {OTHER} is not allowed on /agent: add it to cors.agent_origins"}

    mine = Connection()
    connections.append(mine)
    assert await mine.connect(segue.url, "/agent", own_origin(segue.url), {"v": 1, "token": token}), mine.refusal


async def test_agent_namespace_accepts_a_listed_origin(start_segue: Any, connections: list[Connection]) -> None:
    node = await start_segue({"cors.agent_origins": [OTHER]})
    token = await World(node).login("demo", "demo")
    c = Connection()
    connections.append(c)
    assert await c.connect(node.url, "/agent", OTHER, {"v": 1, "token": token}), c.refusal


async def test_handshake_refuses_an_origin_no_list_allows(start_segue: Any, connections: list[Connection]) -> None:
    node = await start_segue({"cors.customer_origins": [SHOP]})
    status, headers, body = await get("GET", f"{node.url}socket.io/?EIO=4&transport=polling", {"Origin": OTHER})
    assert status == 400 and "not an accepted origin" in body
    assert "Access-Control-Allow-Origin" not in headers
    refused = Connection()
    connections.append(refused)
    assert not await refused.connect(node.url, "/customer", OTHER, {"v": 1}, transport="polling")

    # (a preflight: a handshake GET would open a session nobody closes)
    status, headers, _ = await get("OPTIONS", f"{node.url}socket.io/?EIO=4&transport=polling", {
        "Origin": SHOP, "Access-Control-Request-Method": "POST"})
    assert status == 200 and headers["Access-Control-Allow-Origin"] == SHOP
    assert "Access-Control-Allow-Credentials" not in headers
    c = Connection()
    connections.append(c)
    assert await c.connect(node.url, "/customer", SHOP, {"v": 1}), c.refusal


# --- settings ------------------------------------------------------------------------------------

@pytest.mark.parametrize("key,value,says", [
    ("cors.agent_origins", ["*"], "cannot be opened to any origin"),
    ("cors.customer_origins", ["https://shop.example/"], "no path"),
    ("cors.customer_origins", ["shop.example"], "scheme://host"),
    ("cors.agent_origins", ["https://Shop.example"], "lower case"),
])
def test_bad_origin_settings_are_refused_at_start(key: str, value: list[str], says: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(environ={}, overrides={key: value})
    assert key in str(info.value) and says in str(info.value)
