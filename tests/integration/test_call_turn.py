"""TURN: browsers get REST credentials from the server; a relay-only peer reaches the call through
a real coturn (Debian's package) on loopback, authenticated with media.turn.secret."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from media.probe import ClientPeer

from .test_call_signaling import AGENT_A, CUSTOMER, call_room, start_voice

SECRET = "turn-test-secret"


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _turnserver() -> str:
    path = shutil.which("turnserver")
    if path:
        return path
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "coturn"], check=False,
                       env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
        path = shutil.which("turnserver")
        if path:
            return path
    pytest.fail("coturn's turnserver is not installed (apt-get install coturn, as root)")


@pytest.fixture
def coturn(tmp_path: Path) -> Iterator[int]:
    binary = _turnserver()
    port = _free_udp_port()
    log = tmp_path / "turn.log"
    proc = subprocess.Popen(
        [binary, "-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", f"--listening-port={port}",
         "--use-auth-secret", f"--static-auth-secret={SECRET}", "--realm=segue.test", "--no-tls", "--no-dtls",
         "--no-cli", "--allow-loopback-peers", "--min-port=49160", "--max-port=49260",
         f"--log-file={log}", "--simple-log", "--no-stdout-log"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )
    try:
        for _ in range(100):  # readiness: its log says the UDP listener is open
            if proc.poll() is not None:
                pytest.fail(f"turnserver exited: {log.read_text() if log.exists() else ''}")
            if log.exists() and "listener opened on" in log.read_text():
                break
            import time
            time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()


async def test_relay_only_customer_reaches_the_call_through_coturn(start_segue: Any, coturn: int) -> None:
    segue = await start_segue({"media.turn.secret": SECRET,
                               "media.turn.urls": [f"turn:127.0.0.1:{coturn}?transport=udp"]})
    async with call_room(segue, "c_turn") as room:
        customer, agent = room["customer"], room["agent"]
        config = await customer.ok("call.config")
        turn = config["ice_servers"][-1]
        assert turn["username"].endswith(":v_1") and turn["credential"]
        await start_voice(customer, agent)

        customer.peer = peer = ClientPeer(CUSTOMER, ice_servers=[turn], relay_only=True)
        offers: list[str] = []

        async def answer(sdp: str) -> str:
            offers.append(sdp)
            return (await customer.ok("call.offer", sdp=sdp))["sdp"]

        await peer.negotiate(answer)
        assert "typ relay" in offers[0] and "typ host" not in offers[0]
        await peer.wait_connected(timeout=30)
        await agent.offer(AGENT_A)
        await (await peer.audio()).wait_hearing(AGENT_A)
        await (await agent.peer.audio()).wait_hearing(CUSTOMER)  # type: ignore[union-attr]
