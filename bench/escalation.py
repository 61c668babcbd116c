"""Escalation benchmark: chat -> voice -> video -> cold transfer, over the real stack, N runs.

    python -m bench.escalation --runs 5

One process: an embedded Redis, a Segue node on a free port, and Python "browsers"
(:class:`media.probe.ClientPeer`: aiortc peers that offer like web/sdk/call.js, each singing its
own frequency) talking Socket.IO to the node. Everything on loopback. Per run:

- ``chat_to_voice_ms``: customer sends ``call.request`` -> agent accepts -> both offer -> the
  customer first hears the agent's tone (so: signalling + ICE + DTLS + first audio through the
  forwarder).
- ``voice_to_video_audio_gap_ms``: while the customer turns the camera on (renegotiating the same
  connection), the longest gap between audio frames the agent receives, from 0.5 s before the
  offer to 1 s after the answer (20 ms is a perfect stream).
- ``transfer_customer_reconnected``: whether the customer's peer connection left "connected" (or
  was renegotiated) during a cold transfer (should be false).
- ``transfer_hold_audio_ms``: how long the customer heard the hold tone between agent A leaving
  and agent B's first audio (depends on how fast agent B connects).

Prints one JSON line: p50/max over the runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import socketio
from aiohttp import web

from media.ice import set_loopback_only
from media.probe import ClientPeer
from server import NODE, EmbeddedRedis, create_app, load_config
from signaling.calls import CALLS, Participant
from signaling.store import Store

log = logging.getLogger('bench.escalation')

CUSTOMER, AGENT_A, AGENT_B, HOLD = 440.0, 660.0, 880.0, 425.0


class Side:
    def __init__(self, url: str, ns: str, service: Any, who: Participant, cid: str, token: str = "") -> None:
        self.url, self.ns, self.service, self.who, self.cid, self.token = url, ns, service, who, cid, token
        self.sio = socketio.AsyncClient(reconnection=False)
        self.requested = asyncio.Event()
        self.peer: ClientPeer | None = None

        async def on_requested(_data: Any) -> None:
            self.requested.set()

        self.sio.on("call.requested", on_requested, namespace=ns)

    async def connect(self) -> None:
        auth: dict[str, Any] = {"v": 1}
        if self.token:
            auth["token"] = self.token
        await self.sio.connect(self.url, namespaces=[self.ns], transports=["websocket"], auth=auth)
        self.service.bind(self.ns, self.sio.get_sid(self.ns), self.who)

    async def ok(self, event: str, **payload: Any) -> dict[str, Any]:
        payload.setdefault("conversation_id", self.cid)
        reply = await self.sio.call(event, payload, namespace=self.ns, timeout=30)
        if not reply.get("ok"):
            raise RuntimeError(f"{event}: {reply}")
        return reply

    async def negotiate(self) -> None:
        assert self.peer is not None

        async def answer(sdp: str) -> str:
            return (await self.ok("call.offer", sdp=sdp))["sdp"]

        await self.peer.negotiate(answer)

    async def offer(self, frequency: float) -> ClientPeer:
        self.peer = ClientPeer(frequency)
        await self.negotiate()
        return self.peer

    async def close(self) -> None:
        if self.peer is not None:
            await self.peer.close()
        if self.sio.connected:
            await self.sio.disconnect()


async def one_run(url: str, app: web.Application, token: str) -> dict[str, Any]:
    service = app[CALLS]
    node = app[NODE]
    store = Store(node.redis, node.config.redis.key_prefix)
    cid = f"c_bench_{uuid.uuid4().hex[:8]}"
    await store.mutate(cid, {"create": {"state": "assigned", "customer": "v_b", "agent": "a_1"}, "add": ["a_1", "a_2"]})
    customer = Side(url, "/customer", service, Participant("customer", "v_b"), cid)
    agent = Side(url, "/agent", service, Participant("agent", "a_1"), cid, token)
    agent_b = Side(url, "/agent", service, Participant("agent", "a_2"), cid, token)
    sides = [customer, agent, agent_b]
    try:
        for side in sides:
            await side.connect()
        await agent.ok("call.state")

        # chat -> voice
        t0 = time.monotonic()
        await customer.ok("call.request", media="voice")
        await asyncio.wait_for(agent.requested.wait(), 10)
        await agent.ok("call.accept")
        cpeer, apeer = await asyncio.gather(customer.offer(CUSTOMER), agent.offer(AGENT_A))
        ears = await cpeer.audio()
        await ears.wait_hearing(AGENT_A, timeout=20)
        heard = ears.first_time_hearing(AGENT_A, after=t0) or time.monotonic()
        chat_to_voice_ms = (heard - t0) * 1000

        # voice -> video, audio keeps flowing
        agent_ears = await apeer.audio()
        await agent_ears.wait_hearing(CUSTOMER, timeout=20)
        await asyncio.sleep(0.5)
        start = time.monotonic() - 0.5
        cpeer.start_video()
        await customer.negotiate()
        await asyncio.sleep(1.0)
        gap_ms = agent_ears.max_gap(start, time.monotonic()) * 1000

        # cold transfer
        states: list[str] = []
        cpeer.pc.on("connectionstatechange", lambda: states.append(cpeer.pc.connectionState))
        leg = service.records[cid].call.leg("customer")
        negotiations = leg.negotiations
        t_leave = time.monotonic()
        await service.transfer_started(cid, "cold", "a_2")
        await service.transfer_completed(cid, "a_2")
        await agent_b.offer(AGENT_B)
        await ears.wait_hearing(AGENT_B, timeout=20)
        hold_start = ears.first_time_hearing(HOLD, after=t_leave)
        b_start = ears.first_time_hearing(AGENT_B, after=t_leave) or time.monotonic()
        hold_ms = (b_start - hold_start) * 1000 if hold_start is not None else 0.0
        reconnected = bool(states) or cpeer.pc.connectionState != "connected" or leg.negotiations != negotiations
        await agent_b.ok("call.hangup")
        return {"chat_to_voice_ms": chat_to_voice_ms, "gap_ms": gap_ms, "reconnected": reconnected, "hold_ms": hold_ms}
    finally:
        for side in sides:
            log.info("closing %s", side.who)
            await asyncio.wait_for(side.close(), 10)
        log.info("closed")


async def main_async(runs: int) -> dict[str, Any]:
    logging.basicConfig(level=logging.WARNING)
    set_loopback_only(True)
    with tempfile.TemporaryDirectory() as tmp:
        redis = await EmbeddedRedis.start(Path(tmp) / "redis")
        try:
            config = load_config(environ={}, overrides={"redis.url": redis.url, "data_dir": tmp, "http.port": 0})
            app = create_app(config, redis.url)
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            url = f"http://127.0.0.1:{port}"
            async with aiohttp.ClientSession() as http:
                async with http.post(f"{url}/api/v1/auth/login", json={"username": "demo", "password": "demo"}) as r:
                    token = (await r.json())["token"]
            results = []
            for _ in range(runs):
                results.append(await one_run(url, app, token))
            await runner.cleanup()
        finally:
            await redis.stop()
    c2v = [r["chat_to_voice_ms"] for r in results]
    return {
        "runs": runs,
        "chat_to_voice_ms_p50": round(statistics.median(c2v), 1),
        "chat_to_voice_ms_max": round(max(c2v), 1),
        "voice_to_video_audio_gap_ms_max": round(max(r["gap_ms"] for r in results), 1),
        "transfer_customer_reconnected": any(r["reconnected"] for r in results),
        "transfer_hold_audio_ms": round(statistics.median(r["hold_ms"] for r in results), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main_async(max(1, args.runs)))))


if __name__ == "__main__":
    main()
