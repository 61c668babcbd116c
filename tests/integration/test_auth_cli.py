"""``segue agent add`` as a person runs it: a subprocess against a real Redis; the account it makes
logs in through a real node."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from segue_cli import cli_env, run_segue
from segue_clients import World, http


async def test_agent_add_then_login(tmp_path: Path, redis_url: str, start_segue: Any) -> None:
    prefix = f"test-{uuid.uuid4().hex[:10]}:"
    env = {"SEGUE_REDIS_URL": redis_url, "SEGUE_REDIS_KEY_PREFIX": prefix}  # text settings are taken verbatim
    res = run_segue(tmp_path, "agent", "add", "carla", "--password", "pw-1234", "--name", "Carla C",
                 "--skills", "billing,de", "--role", "supervisor", "--capacity", "chat=3,voice=1", **env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("added carla") and res.stderr == ""

    again = run_segue(tmp_path, "agent", "add", "carla", "--password", "pw-1234", **env)
    assert again.returncode == 1
    assert again.stderr.strip() == "segue: error: agent 'carla' already exists"
    bad = run_segue(tmp_path, "agent", "add", "dan", "--password", "pw-1234", "--capacity", "chat=lots", **env)
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1 and "--capacity" in bad.stderr
    nopw = subprocess.run([sys.executable, "-m", "server", "agent", "add", "dan"], env=cli_env(tmp_path / "data", **env),
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert nopw.returncode == 1 and "--password is required" in nopw.stderr

    node = await start_segue({"redis.key_prefix": prefix})
    world = World(node)
    status, body = await http("POST", f"{world.url}/api/v1/auth/login", json_body={"username": "carla", "password": "pw-1234"})
    assert status == 200, body
    assert body["agent"]["role"] == "supervisor" and body["agent"]["skills"] == ["billing", "de"]
    assert body["agent"]["capacity"] == {"chat": 3, "voice": 1} and body["agent"]["name"] == "Carla C"

    changed = run_segue(tmp_path, "agent", "set", "carla", "--password", "new-pw-99", "--capacity", "chat=5", **env)
    assert changed.returncode == 0, changed.stderr
    status, _ = await http("POST", f"{world.url}/api/v1/auth/login", json_body={"username": "carla", "password": "new-pw-99"})
    assert status == 200
    listed = run_segue(tmp_path, "agent", "list", **env)
    assert [line.split()[0] for line in listed.stdout.splitlines()] == ["carla", "demo"]
    assert run_segue(tmp_path, "agent", "remove", "carla", **env).returncode == 0
    status, _ = await http("POST", f"{world.url}/api/v1/auth/login", json_body={"username": "carla", "password": "new-pw-99"})
    assert status == 401


def test_agent_add_with_the_embedded_redis(tmp_path: Path) -> None:
    """No Redis configured: the command starts the embedded one on the data folder (and stops it)."""
    res = run_segue(tmp_path, "agent", "add", "emma", "--password", "pw-1234")
    assert res.returncode == 0, res.stderr
    listed = run_segue(tmp_path, "agent", "list")
    assert listed.returncode == 0 and listed.stdout.split()[0] == "emma"
    assert (tmp_path / "data" / "redis").exists()


def test_agent_add_uses_the_embedded_redis_of_a_running_server(tmp_path: Path) -> None:
    """With `segue serve` running on the data folder, the command talks to its Redis (a second
    redis-server on the same append-only file would be a disaster) and the server sees the agent."""
    import json
    import signal
    import socket
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = cli_env(tmp_path / "data")
    server = subprocess.Popen([sys.executable, "-m", "server", "serve", "--port", str(port)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert "is running" in (server.stdout.readline() if server.stdout else "")
        res = run_segue(tmp_path, "agent", "add", "fred", "--password", "pw-1234")
        assert res.returncode == 0, res.stderr
        redis_dir = str((tmp_path / "data" / "redis").resolve())
        servers = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _is_redis_in(p, redis_dir)]
        assert len(servers) == 1
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/auth/login", method="POST",
                                         data=json.dumps({"username": "fred", "password": "pw-1234"}).encode(),
                                         headers={"Content-Type": "application/json"})
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(request, timeout=5) as resp:
                    assert json.loads(resp.read())["agent"]["id"] == "fred"
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


def _is_redis_in(proc: Path, folder: str) -> bool:
    try:
        return (proc / "comm").read_text().strip() == "redis-server" and os.readlink(proc / "cwd") == folder
    except OSError:
        return False
