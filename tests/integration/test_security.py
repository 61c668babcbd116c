"""Security of accounts, sessions and recordings (issue #13), through the real stack: a node on a
real Redis, Socket.IO clients and HTTP requests as an attacker would send them."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import pytest

from segue_clients import Peer, Refused, World, http
from segue_cli import cli_env


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
    return cli_env(tmp_path / "data", **{"SEGUE_REDIS_URL": redis_url, "SEGUE_REDIS_KEY_PREFIX": f"test-{uuid.uuid4().hex[:10]}:",
                                         "SEGUE_HTTP_PORT": "0", **extra})


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


def test_a_public_url_off_loopback_refuses_the_demo_account(tmp_path: Path, redis_url: str) -> None:
    """Bound to loopback but published (http.public_url): the demo login would be public all the same."""
    res = subprocess.run([sys.executable, "-m", "server", "serve"], capture_output=True, text=True, timeout=60,
                         env=_env(tmp_path, redis_url, SEGUE_HTTP_PUBLIC_URL="https://support.example.com"))
    assert res.returncode != 0
    assert "http.public_url" in res.stderr and "SEGUE_DEMO_ENABLED=false" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize("headers", [
    {"Host": "support.example.com"},                       # nginx on this host passing the public name
    {"X-Forwarded-For": "203.0.113.9"},                    # any proxy in between
    {"Forwarded": "for=203.0.113.9;proto=https"},
])
async def test_the_demo_login_answers_only_this_machine_without_a_proxy(world: World, headers: dict[str, str]) -> None:
    """A loopback node behind a reverse proxy on the same host: the demo account stays unreachable."""
    status, body = await http("POST", f"{world.url}/api/v1/auth/login", headers=headers,
                              json_body={"username": "demo", "password": "demo"})
    assert status == 403 and body["error"]["code"] == "forbidden" and "this machine" in body["error"]["message"]
    status, body = await http("GET", f"{world.url}/api/v1/auth/demo", headers=headers)
    assert status == 200 and body == {"enabled": False}  # no published password in the sign-in hint either
    # the same request straight from this machine works, and other accounts sign in through the proxy
    assert await world.login("demo", "demo")
    await world.add_agent("ada")
    status, body = await http("POST", f"{world.url}/api/v1/auth/login", headers=headers,
                              json_body={"username": "ada", "password": "pw-secret"})
    assert status == 200, body  # other accounts are not refused for coming through a proxy


async def test_a_demo_account_left_from_a_demo_run_is_removed_when_the_demo_is_off(start_segue: Any) -> None:
    first = World(await start_segue())
    assert await first.login("demo", "demo")
    status, body = await http("GET", f"{first.url}/api/v1/auth/demo")  # the sign-in forms' hint
    assert status == 200 and body == {"enabled": True, "username": "demo", "password": "demo"}
    prefix = first.segue.config.redis.key_prefix
    second = World(await start_segue({"redis.key_prefix": prefix, "demo.enabled": False}))
    status, _ = await http("POST", f"{second.url}/api/v1/auth/login", json_body={"username": "demo", "password": "demo"})
    assert status == 401
    status, body = await http("GET", f"{second.url}/api/v1/auth/demo")
    assert status == 200 and body == {"enabled": False}


# --- sessions follow credentials -----------------------------------------------------------------

async def _ended(peer: Peer) -> None:
    """The socket is told why, then closed by the server (its node heard it through Redis)."""
    ended = await peer.next("session.ended")
    assert ended["reason"] in ("revoked", "deleted") and "log in again" in ended["message"]
    for _ in range(200):
        if not peer.sio.connected:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the server did not close the socket")


@pytest.fixture
async def two_nodes(start_segue: Any) -> AsyncIterator[tuple[World, World]]:
    """Node A and node B on the same Redis and key prefix (sockets fan out through Redis)."""
    a = World(await start_segue({"redis.fanout": True}))
    b = World(await start_segue({"redis.fanout": True, "redis.key_prefix": a.segue.config.redis.key_prefix}))
    yield a, b
    await a.close()
    await b.close()


@pytest.mark.parametrize("change", ["password", "role", "logout", "delete"])
async def test_a_credential_change_on_one_node_ends_the_sessions_on_another(
        two_nodes: tuple[World, World], change: str) -> None:
    a, b = two_nodes
    boss = await a.add_agent("boss", role="supervisor")
    token = await a.add_agent("carla")
    console = await b.agent(token)  # the socket is on node B
    wallboard = await b.agent(token, available=False)
    await console.ok("queues.list")
    if change == "password":
        status, _ = await http("PATCH", f"{a.url}/api/v1/agents/carla", token=boss, json_body={"password": "pw-new-1"})
    elif change == "role":
        status, _ = await http("PATCH", f"{a.url}/api/v1/agents/carla", token=boss, json_body={"role": "supervisor"})
    elif change == "logout":
        status, _ = await http("POST", f"{a.url}/api/v1/auth/logout", token=token)
    else:
        status, _ = await http("DELETE", f"{a.url}/api/v1/agents/carla", token=boss)
    assert status in (200, 204)
    await _ended(console)
    await _ended(wallboard)
    for world in (a, b):
        status, body = await http("GET", f"{world.url}/api/v1/me", token=token)
        assert status == 401 and body["error"]["code"] == "bad_token"
    with pytest.raises(Refused):
        await b.agent(token)
    # the boss's own session is untouched
    status, _ = await http("GET", f"{b.url}/api/v1/me", token=boss)
    assert status == 200


async def test_a_name_change_keeps_the_session(world: World) -> None:
    token = await world.add_agent("carla")
    console = await world.agent(token)
    status, _ = await http("PATCH", f"{world.url}/api/v1/agents/carla", token=token, json_body={"name": "Carla C"})
    assert status == 200
    await console.ok("queues.list")
    status, _ = await http("GET", f"{world.url}/api/v1/me", token=token)
    assert status == 200


async def test_the_cli_ends_sessions_on_running_nodes(world: World, tmp_path: Path, redis_url: str) -> None:
    token = await world.add_agent("carla")
    console = await world.agent(token)
    env = _env(tmp_path, redis_url, SEGUE_REDIS_KEY_PREFIX=world.segue.config.redis.key_prefix)
    res = subprocess.run([sys.executable, "-m", "server", "agent", "set", "carla", "--password", "pw-other"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert res.returncode == 0, res.stderr
    await _ended(console)


async def test_a_recreated_username_is_a_new_account(world: World) -> None:
    boss = await world.add_agent("boss", role="supervisor")
    old_token = await world.add_agent("carla")
    old = await world.agent(old_token)
    customer = await world.customer()
    cid = (await customer.ok("conversation.start", {"text": "my passport number is X1234567"}))["conversation"]["id"]
    await old.next("offer")
    await old.ok("offer.accept", {"conversation_id": cid})
    await old.ok("message.send", {"conversation_id": cid, "text": "thanks"})
    await old.ok("conversation.close", {"conversation_id": cid})
    cust = customer.session["customer_id"]
    status, _ = await http("GET", f"{world.url}/api/v1/customers/{cust}/conversations", token=old_token)
    assert status == 200  # the old account could read its customer's history

    status, _ = await http("DELETE", f"{world.url}/api/v1/agents/carla", token=boss)
    assert status == 204
    status, body = await http("POST", f"{world.url}/api/v1/agents", token=boss,
                              json_body={"username": "carla", "password": "pw-secret"})
    assert status == 201 and body["agent"]["username"] == "carla"
    new_id = body["agent"]["id"]
    assert new_id != "carla"
    # the old token does not come back to life
    status, body = await http("GET", f"{world.url}/api/v1/me", token=old_token)
    assert status == 401 and body["error"]["code"] == "bad_token"
    # the new person logs in with the username and inherits nothing
    new_token = await world.login("carla")
    status, body = await http("GET", f"{world.url}/api/v1/me", token=new_token)
    assert status == 200 and body["agent"]["id"] == new_id
    for path in (f"customers/{cust}/conversations", f"customers/{cust}", f"conversations/{cid}",
                 f"conversations/{cid}/events"):
        status, body = await http("GET", f"{world.url}/api/v1/{path}", token=new_token)
        assert status == 403 and body["error"]["code"] == "forbidden", (path, body)
    new = await world.agent(new_token, available=False)
    await new.fails("conversation.open", {"conversation_id": cid}, "forbidden")
    assert (await new.ok("conversations.list"))["conversations"] == []
    # and a second deletion and creation gets yet another id
    status, _ = await http("DELETE", f"{world.url}/api/v1/agents/carla", token=boss)
    assert status == 204
    status, body = await http("POST", f"{world.url}/api/v1/agents", token=boss,
                              json_body={"username": "carla", "password": "pw-secret"})
    assert status == 201 and body["agent"]["id"] not in ("carla", new_id)


# --- login throttling ----------------------------------------------------------------------------

async def _login(world: World, username: str, password: str, addr: str) -> tuple[int, Any, Any]:
    """A login from ``addr`` (the test client is on loopback, a trusted proxy: X-Forwarded-For counts)."""
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{world.url}/api/v1/auth/login", json={"username": username, "password": password},
                                headers={"X-Forwarded-For": addr}) as resp:
            return resp.status, await resp.json(), resp.headers.get("Retry-After")


async def test_logins_are_throttled_per_account_and_per_address_without_locking_the_agent_out(
        start_segue: Any) -> None:
    world = World(await start_segue({"auth.login_failures_per_account": 3, "auth.login_failures_per_ip": 6,
                                     "auth.login_max_delay_s": 120}))
    await world.service.directory.create("carla", "pw-right", "Carla")
    status, _, _ = await _login(world, "carla", "pw-right", "10.0.0.1")  # carla's usual address
    assert status == 200
    attacker = "10.6.6.6"
    for _ in range(3):
        status, body, _ = await _login(world, "carla", "wrong", attacker)
        assert status == 401 and body["error"]["code"] == "unauthorized"
    status, body, retry = await _login(world, "carla", "pw-right", attacker)  # even the right password
    assert status == 429 and body["error"]["code"] == "rate_limited"
    assert 1 <= body["error"]["retry_after_s"] <= 120 and retry == str(body["error"]["retry_after_s"])
    assert "try again in" in body["error"]["message"]
    # another machine guessing the same account is slowed down too (per account)...
    status, body, _ = await _login(world, "carla", "pw-right", "10.7.7.7")
    assert status == 429
    # ...but carla, from where she logged in before, is not locked out
    status, body, _ = await _login(world, "carla", "pw-right", "10.0.0.1")
    assert status == 200, body

    # one address guessing many accounts: the per-address limit stops it, for every account
    spray = "10.9.9.9"
    for i in range(6):
        status, _, _ = await _login(world, f"user{i}", "guess", spray)
        assert status == 401
    status, body, retry = await _login(world, "carla", "pw-right", spray)
    assert status == 429 and retry is not None

    # the wait is bounded: it never exceeds auth.login_max_delay_s however long the attack goes on,
    # and once it has passed the right password works again
    throttle = world.service.directory.redis
    prefix = world.segue.config.redis.key_prefix
    for _ in range(20):
        await throttle.hset(f"{prefix}login:ip:{attacker}", "last", "0")  # as if the wait had passed
        await throttle.hset(f"{prefix}login:acct:carla", "last", "0")
        status, body, _ = await _login(world, "carla", "wrong", attacker)
        assert status == 401
    status, body, _ = await _login(world, "carla", "pw-right", attacker)
    assert status == 429 and body["error"]["retry_after_s"] <= 120
    await throttle.hset(f"{prefix}login:ip:{attacker}", "last", "0")
    await throttle.hset(f"{prefix}login:acct:carla", "last", "0")
    status, body, _ = await _login(world, "carla", "pw-right", attacker)
    assert status == 200, body


# --- no `internal` for input ---------------------------------------------------------------------

async def test_a_token_with_non_ascii_characters_is_a_bad_token(world: World, caplog: Any) -> None:
    token = await world.add_agent("carla")
    body, mac = token.split(".")
    forged = f"{body}.{mac[:-2]}é☃"
    status, answer = await http("GET", f"{world.url}/api/v1/me", token=forged)
    assert status == 401 and answer["error"]["code"] == "bad_token", answer
    peer = Peer(world.url, "/agent")
    world.peers.append(peer)
    with pytest.raises(Refused) as refused:
        await peer.connect({"v": 1, "token": forged})
    assert refused.value.args[0]["code"] == "bad_token"
    assert "Traceback" not in caplog.text


async def _raw_call(peer: Peer, packet_json: str) -> Any:
    """Send an event whose JSON text is written by hand (as a browser's JSON.stringify writes a lone
    surrogate: ``"\\ud800"``; or what no client library would send) and wait for its ack."""
    reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    ack_id = peer.sio._generate_ack_id(peer.ns, lambda *args: reply.set_result(args[0] if args else None))
    await peer.sio.eio.send(f"2{peer.ns},{ack_id}{packet_json}")
    return await asyncio.wait_for(reply, 15)


async def test_a_lone_surrogate_is_invalid_and_the_socket_keeps_working(world: World, caplog: Any) -> None:
    customer = await world.customer()
    answer = await _raw_call(customer, '["conversation.start",{"text":"hi","name":"Ada\\ud800"}]')
    assert answer["ok"] is False and answer["error"]["code"] == "invalid", answer
    assert answer["error"]["field"] == "name" and "surrogate" in answer["error"]["message"]
    answer = await _raw_call(customer, '["conversation.start",{"text":"bad \\udc00 text"}]')
    assert answer["error"]["code"] == "invalid" and answer["error"]["field"] == "text"
    started = await customer.ok("conversation.start", {"text": "hello", "name": "Ada"})
    cid = started["conversation"]["id"]
    answer = await _raw_call(customer, '["message.send",{"conversation_id":"%s","text":"x\\ud83d"}]' % cid)
    assert answer["error"]["code"] == "invalid" and answer["error"]["field"] == "text"
    await customer.ok("message.send", {"conversation_id": cid, "text": "still here"})
    await customer.ok("conversation.start", {"text": "and another"})
    # REST: the same refusal, naming the field
    boss = await world.add_agent("boss", role="supervisor")
    status, body = await http("POST", f"{world.url}/api/v1/agents", token=boss,
                              data='{"username": "x1", "password": "pw-secret", "name": "Bad\\ud800"}',
                              headers={"Content-Type": "application/json"})
    assert status == 400 and body["error"]["code"] == "invalid" and body["error"]["field"] == "name"
    assert "Traceback" not in caplog.text


async def test_a_customer_id_naming_another_key_is_not_found(world: World) -> None:
    boss = await world.add_agent("boss", role="supervisor")
    customer = await world.customer()
    await customer.ok("conversation.start", {"text": "hi"})
    cust = customer.session["customer_id"]
    for suffix in ("%3Aconvs", "%3Aagents", "%3Apages", "%3Aattrs"):
        for path in (f"customers/{cust}{suffix}", f"customers/{cust}{suffix}/conversations"):
            status, body = await http("GET", f"{world.url}/api/v1/{path}", token=boss)
            assert status == 404 and body["error"]["code"] == "not_found", (path, body)
    status, body = await http("GET", f"{world.url}/api/v1/customers/{cust}", token=boss)
    assert status == 200 and body["customer"]["id"] == cust


async def test_a_number_of_thousands_of_digits_gets_an_invalid_ack(world: World, caplog: Any) -> None:
    customer = await world.customer()
    cid = (await customer.ok("conversation.start", {"text": "hi"}))["conversation"]["id"]
    # the client library cannot send such a number itself: write the packet text by hand
    huge = "9" * 5000
    answer = await _raw_call(customer, f'["conversation.rate",{{"conversation_id":"{cid}","score":{huge}}}]')
    assert answer["ok"] is False and answer["error"]["code"] == "invalid", answer
    assert answer["error"]["field"] == "payload" and "digits" in answer["error"]["message"]
    await customer.ok("message.send", {"conversation_id": cid, "text": "the socket still works"})
    # REST: a clear 400 as well
    boss = await world.add_agent("boss", role="supervisor")
    status, body = await http("PATCH", f"{world.url}/api/v1/agents/boss", token=boss,
                              data='{"capacity": {"chat": ' + huge + '}}', headers={"Content-Type": "application/json"})
    assert status == 400 and body["error"]["code"] in ("bad_json", "invalid"), body
    assert "Traceback" not in caplog.text


async def test_the_agents_list_shows_others_load_but_not_their_conversations(world: World) -> None:
    amy_token = await world.add_agent("amy")
    amy = await world.agent(amy_token)
    otto = await world.add_agent("otto")
    boss = await world.add_agent("boss", role="supervisor")
    customer = await world.customer()
    cid = (await customer.ok("conversation.start", {"text": "private matter"}))["conversation"]["id"]
    await amy.next("offer")
    await amy.ok("offer.accept", {"conversation_id": cid})

    def amy_in(body: Any) -> Any:
        return next(a for a in body["agents"] if a["id"] == "amy")

    status, body = await http("GET", f"{world.url}/api/v1/agents", token=otto)
    assert status == 200
    seen = amy_in(body)
    assert seen["routing"]["load"] and "conversations" not in seen["routing"] and cid not in str(body)
    status, body = await http("GET", f"{world.url}/api/v1/agents/amy", token=otto)
    assert status == 200 and "conversations" not in body["agent"]["routing"] and cid not in str(body)
    for token in (boss, amy_token):  # a supervisor, and amy herself
        status, body = await http("GET", f"{world.url}/api/v1/agents", token=token)
        assert amy_in(body)["routing"]["conversations"] == [cid]


async def test_account_names_that_name_other_keys_are_unknown_not_errors(world: World) -> None:
    boss = await world.add_agent("boss", role="supervisor")
    await world.agent(boss)  # the console's socket is recorded under another kind of key
    prefix = world.segue.config.redis.key_prefix
    assert await world.service.redis.type(f"{prefix}acct:boss:sockets") == "set"
    for name in ("boss:sockets", "Boss:Sockets", "boss:convs"):
        status, body = await http("POST", f"{world.url}/api/v1/auth/login", json_body={"username": name, "password": "x"})
        assert status == 401 and body["error"]["code"] == "unauthorized", body
    for name in ("boss%3Asockets", "boss%3Aconvs"):
        status, body = await http("GET", f"{world.url}/api/v1/agents/{name}", token=boss)
        assert status == 404 and body["error"]["code"] == "not_found", body
