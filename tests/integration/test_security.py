"""Security of accounts, sessions and recordings (issue #13), through the real stack: a node on a
real Redis, Socket.IO clients and HTTP requests as an attacker would send them."""

from __future__ import annotations

from typing import Any, AsyncIterator

import pytest

from segue_clients import World, http


@pytest.fixture
async def world(start_segue: Any) -> AsyncIterator[World]:
    w = World(await start_segue())
    yield w
    await w.close()


async def test_admin_role_counts_as_supervisor_and_only_admins_make_admins(world: World) -> None:
    root = await world.add_agent("root", role="admin")
    status, body = await http("GET", f"{world.url}/api/v1/me", token=root)
    assert status == 200 and body["agent"]["role"] == "admin"
    account = await world.service.directory.require("root")
    assert account.is_admin and account.is_supervisor

    status, body = await http("POST", f"{world.url}/api/v1/agents", token=root,
                              json_body={"username": "boss", "password": "pw-secret", "role": "supervisor"})
    assert status == 201, body
    boss = await world.login("boss")
    # a supervisor cannot make an admin, nor raise themselves, nor touch an admin's account
    status, body = await http("POST", f"{world.url}/api/v1/agents", token=boss,
                              json_body={"username": "eve", "password": "pw-secret", "role": "admin"})
    assert status == 403 and body["error"]["field"] == "role"
    status, body = await http("PATCH", f"{world.url}/api/v1/agents/boss", token=boss, json_body={"role": "admin"})
    assert status == 403
    status, body = await http("PATCH", f"{world.url}/api/v1/agents/root", token=boss, json_body={"password": "taken"})
    assert status == 403 and "admin" in body["error"]["message"]
    status, _ = await http("DELETE", f"{world.url}/api/v1/agents/root", token=boss)
    assert status == 403
    # an admin may
    status, body = await http("PATCH", f"{world.url}/api/v1/agents/boss", token=root, json_body={"role": "admin"})
    assert status == 200 and body["agent"]["role"] == "admin"
    status, body = await http("POST", f"{world.url}/api/v1/agents", token=root,
                              json_body={"username": "x", "password": "pw-secret", "role": "owner"})
    assert status == 400 and body["error"]["code"] == "invalid" and body["error"]["field"] == "role"
