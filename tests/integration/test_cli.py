"""`segue serve` as a person runs it: embedded Redis, healthz, clean stop, one-line errors."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import json
from pathlib import Path

import pytest
from segue_cli import cli_env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return cli_env(tmp_path / "data", **extra)


def _redis_with_dir(folder: Path) -> list[int]:
    """Pids of redis-server processes working in ``folder`` (redis rewrites its title, so look at cwd)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "redis-server":
                continue
            if os.readlink(entry / "cwd") == str(folder):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def test_serve_with_embedded_redis_then_stop_cleanly(tmp_path: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "server", "serve", "--port", str(port)],
        env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline()
        assert re.match(rf"Segue \S+ is running at http://127\.0\.0\.1:{port}/", line), line
        deadline = time.monotonic() + 30
        body = None
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
                    body = json.loads(resp.read())
                    break
            except OSError:
                time.sleep(0.2)
        assert body is not None and body["redis"] == "ok" and body["status"] == "ok"
        redis_dir = tmp_path / "data" / "redis"
        assert _redis_with_dir(redis_dir), "the embedded redis-server should be running"
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=20)
    assert rc == 0, proc.stderr.read()
    assert _redis_with_dir(tmp_path / "data" / "redis") == [], "redis-server was left behind"
    assert (tmp_path / "data" / "redis" / "appendonlydir").exists() or list((tmp_path / "data" / "redis").glob("*.aof")), \
        "append-only persistence should be on"


def test_killed_server_leaves_no_redis_behind(tmp_path: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "server", "serve", "--port", str(port)],
        env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    assert "is running" in proc.stdout.readline()
    assert _redis_with_dir(tmp_path / "data" / "redis")
    proc.kill()
    proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while _redis_with_dir(tmp_path / "data" / "redis") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _redis_with_dir(tmp_path / "data" / "redis") == []


def test_unreachable_redis_is_one_line(tmp_path: Path) -> None:
    port = _free_port()
    res = subprocess.run(
        [sys.executable, "-m", "server", "serve", "--port", str(_free_port())],
        env=_env(tmp_path, SEGUE_REDIS_URL=f"redis://127.0.0.1:{port}/0", SEGUE_REDIS_STARTUP_TIMEOUT_S="2"),
        capture_output=True, text=True, timeout=60,
    )
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("segue: error: cannot reach Redis at redis://127.0.0.1:")
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize(
    ("env", "names"),
    [({"SEGUE_HTTP_PORT": "abc"}, "http.port"), ({"SEGUE_LOG_LEVEL": "shouty"}, "log.level")],
)
def test_bad_config_is_one_line(tmp_path: Path, env: dict[str, str], names: str) -> None:
    res = subprocess.run([sys.executable, "-m", "server", "serve"], env=_env(tmp_path, **env),
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and names in lines[0], res.stderr


def test_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        res = subprocess.run([sys.executable, "-m", "server", "serve", "--port", str(port)], env=_env(tmp_path),
                             capture_output=True, text=True, timeout=60)
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot listen" in lines[0], res.stderr
    assert _redis_with_dir(tmp_path / "data" / "redis") == []
