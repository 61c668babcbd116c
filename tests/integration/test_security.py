"""Security of accounts, sessions and recordings (issue #13), through the real stack: a node on a
real Redis, Socket.IO clients and HTTP requests as an attacker would send them."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
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


def _env(tmp_path: Path, redis_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGUE_")}
    env.update({"SEGUE_DATA_DIR": str(tmp_path / "data"), "SEGUE_LOG_LEVEL": "warning", "SEGUE_REDIS_URL": redis_url,
                "SEGUE_REDIS_KEY_PREFIX": f"test-{uuid.uuid4().hex[:10]}:", "SEGUE_HTTP_PORT": "0"})
    env.update(extra)
    return env


def test_a_server_off_loopback_refuses_the_demo_account(tmp_path: Path, redis_url: str) -> None:
    res = subprocess.run([sys.executable, "-m", "server", "serve"], capture_output=True, text=True, timeout=60,
                         env=_env(tmp_path, redis_url, SEGUE_HTTP_HOST="0.0.0.0"))
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert "demo" in lines[0] and "SEGUE_DEMO_ENABLED=false" in lines[0] and "--role admin" in lines[0]
    assert "Traceback" not in res.stderr and "is running" not in res.stdout


async def test_without_the_demo_a_public_server_starts_and_demo_login_fails(tmp_path: Path, redis_url: str) -> None:
    env = _env(tmp_path, redis_url, SEGUE_HTTP_HOST="0.0.0.0", SEGUE_DEMO_ENABLED="false")
    # an admin made the documented way, before the first start
    made = subprocess.run([sys.executable, "-m", "server", "agent", "add", "root", "--password", "pw-root-1",
                           "--role", "admin"], capture_output=True, text=True, timeout=60, env=env)
    assert made.returncode == 0, made.stderr
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "server", "serve", env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        assert "is running at" in line, line + (await proc.stderr.read()).decode()  # type: ignore[union-attr]
        url = line.split("is running at", 1)[1].strip().rstrip("/")
        status, body = await http("POST", f"{url}/api/v1/auth/login", json_body={"username": "demo", "password": "demo"})
        assert status == 401 and body["error"]["code"] == "unauthorized"
        status, body = await http("POST", f"{url}/api/v1/auth/login", json_body={"username": "root", "password": "pw-root-1"})
        assert status == 200 and body["agent"]["role"] == "admin"
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)


async def test_a_demo_account_left_from_a_demo_run_is_removed_when_the_demo_is_off(start_segue: Any) -> None:
    first = World(await start_segue())
    assert await first.login("demo", "demo")
    prefix = first.segue.config.redis.key_prefix
    second = World(await start_segue({"redis.key_prefix": prefix, "demo.enabled": False}))
    status, _ = await http("POST", f"{second.url}/api/v1/auth/login", json_body={"username": "demo", "password": "demo"})
    assert status == 401
