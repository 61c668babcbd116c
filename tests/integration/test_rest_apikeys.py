"""API keys against a real node and a real Redis: made by an admin (REST) or a shell (CLI), stored
hashed, scoped, their last use recorded, refused once revoked."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from segue_cli import run_segue
from segue_clients import World, http


@pytest.fixture
async def world(segue: Any) -> AsyncIterator[World]:
    w = World(segue)
    yield w
    await w.close()


async def _redis_dump(world: World) -> str:
    """Every string value under this node's key prefix (hashes, sets), as one text."""
    redis = world.service.redis
    out = []
    async for key in redis.scan_iter(match=f"{world.segue.config.redis.key_prefix}*"):
        kind = await redis.type(key)
        if kind == "hash":
            out.append(repr(await redis.hgetall(key)))
        elif kind == "set":
            out.append(repr(await redis.smembers(key)))
        elif kind == "string":
            out.append(repr(await redis.get(key)))
    return "\n".join(out)


async def test_admin_creates_lists_and_revokes_keys(world: World) -> None:
    api = f"{world.url}/api/v1"
    admin = await world.add_agent("ada", role="admin")
    sup = await world.add_agent("sue", role="supervisor")
    status, body = await http("POST", f"{api}/api-keys", token=sup, json_body={"name": "crm", "scopes": ["conversations:read"]})
    assert status == 403 and body["error"]["code"] == "forbidden" and "apikeys:manage" in body["error"]["message"]

    status, body = await http("POST", f"{api}/api-keys", token=admin,
                              json_body={"name": "crm", "scopes": ["conversations:read", "customers:read"]})
    assert status == 201, body
    token, record = body["key"], body["api_key"]
    assert token.startswith(f"sgk_{record['id']}_")
    assert record["name"] == "crm" and record["scopes"] == ["conversations:read", "customers:read"]
    assert record["created_by"] == "ada" and record["last_used_ts"] is None

    # hashed at rest: neither the key nor its secret is in Redis; its SHA-256 is
    secret = token.split("_", 2)[2]
    dump = await _redis_dump(world)
    assert secret not in dump and token not in dump
    assert hashlib.sha256(secret.encode()).hexdigest() in dump

    # the key works for what its scopes allow, and its use is recorded
    status, body = await http("GET", f"{api}/queues", token=token)
    assert status == 200, body
    status, body = await http("GET", f"{api}/api-keys", token=admin)
    (listed,) = body["api_keys"]
    assert listed["id"] == record["id"] and listed["last_used_ts"] >= record["created_ts"]
    assert "key" not in listed and "secret_sha256" not in listed

    # a scope it lacks: 403 naming the scope
    status, body = await http("POST", f"{api}/agents", token=token, json_body={"username": "x", "password": "pw-x1"})
    assert status == 403 and "agents:manage" in body["error"]["message"], body
    status, body = await http("GET", f"{api}/api-keys", token=token)
    assert status == 403 and "apikeys:manage" in body["error"]["message"]

    # wrong keys: 401
    wrong = token[:-4] + ("aaaa" if not token.endswith("aaaa") else "bbbb")
    for bad in (wrong, "sgk_nothing", f"sgk_{'0' * 16}_{secret}"):
        status, body = await http("GET", f"{api}/queues", token=bad)
        assert status == 401 and body["error"]["code"] == "bad_token", (bad, body)

    status, body = await http("POST", f"{api}/api-keys", token=admin, json_body={"name": "x", "scopes": ["everything"]})
    assert status == 400 and body["error"]["field"] == "scopes[0]"
    status, body = await http("POST", f"{api}/api-keys", token=admin, json_body={"name": "x", "scopes": []})
    assert status == 400 and body["error"]["field"] == "scopes"

    status, _ = await http("DELETE", f"{api}/api-keys/{record['id']}", token=admin)
    assert status == 204
    status, body = await http("GET", f"{api}/queues", token=token)
    assert status == 401 and body["error"]["code"] == "bad_token"
    status, body = await http("DELETE", f"{api}/api-keys/{record['id']}", token=admin)
    assert status == 404
    status, body = await http("GET", f"{api}/api-keys", token=admin)
    assert body["api_keys"] == []


async def test_cli_creates_lists_and_revokes(tmp_path: Path, world: World) -> None:
    api = f"{world.url}/api/v1"
    cfg = world.segue.config
    env = {"SEGUE_REDIS_URL": cfg.redis.url, "SEGUE_REDIS_KEY_PREFIX": cfg.redis.key_prefix}
    res = run_segue(tmp_path, "apikey", "create", "--name", "crm", "--scope", "conversations:read",
                 "--scope", "conversations:write", **env)
    assert res.returncode == 0, res.stderr
    token = res.stdout.strip()
    assert token.startswith("sgk_") and "conversations:read conversations:write" in res.stderr
    key_id = token.split("_")[1]
    status, body = await http("GET", f"{api}/conversations", token=token)
    assert status == 200, body

    listed = run_segue(tmp_path, "apikey", "list", **env)
    assert listed.returncode == 0 and key_id in listed.stdout and "crm" in listed.stdout
    assert token.split("_", 2)[2] not in listed.stdout
    bad = run_segue(tmp_path, "apikey", "create", "--name", "crm", "--scope", "root", **env)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr

    gone = run_segue(tmp_path, "apikey", "revoke", key_id, **env)
    assert gone.returncode == 0 and key_id in gone.stdout
    status, body = await http("GET", f"{api}/conversations", token=token)
    assert status == 401
    again = run_segue(tmp_path, "apikey", "revoke", key_id, **env)
    assert again.returncode == 1 and again.stderr.strip() == f"segue: error: API key '{key_id}' does not exist"


async def test_last_use_is_written_at_most_once_a_minute(world: World) -> None:
    keys = world.service.api_keys
    key, token = await keys.create("bi", ["conversations:read"], "test")
    first = await keys.authenticate(token, now_ms=1_000_000)
    assert first.last_used_ts == 1_000_000
    await keys.authenticate(token, now_ms=1_030_000)  # within a minute: not written
    assert (await keys.get(key.id)).last_used_ts == 1_000_000
    await keys.authenticate(token, now_ms=1_060_000)
    assert (await keys.get(key.id)).last_used_ts == 1_060_000
