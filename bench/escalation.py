"""Escalation benchmark: chat -> voice -> video -> cold transfer, over the real stack, N runs.

    python -m bench.escalation --runs 5 [--pin] [--in-process] [--trace]

A Segue node (its own embedded Redis, a free port) runs in **its own process**; the Python
"browsers" (:class:`media.probe.ClientPeer`: aiortc peers that offer like web/sdk/call.js, each
singing its own frequency, encoding Opus and, for the camera, 640x480 VP8 with libvpx) run in
this process. Everything on loopback. That is how a browser sees the server: the customer's and
the agents' encoders and decoders are not on the server's event loop. ``--pin`` pins the node and
the clients to two separate cores (better on an otherwise idle machine; worse on a shared one,
where a pinned process cannot move off a busy core). ``--in-process`` puts the node back into
this process (one event loop and one GIL for the node and all three peers), for comparison only:
there the audio gap measures the clients' VP8 work and garbage collection as much as the server.

The bench drives the conversation outside the protocol where a test would (creating the
conversation, binding the sockets to fixed participants, starting the cold transfer): through
``/_bench/*`` routes that only this benchmark adds to the node it starts. The clients' garbage
is collected before each run's measured windows (a Python stand-in's pause is not the server's).

Per run:

- ``chat_to_voice_ms``: customer sends ``call.request`` -> agent accepts -> both offer -> the
  customer first hears the agent's tone (so: signalling + ICE + DTLS + first audio through the
  forwarder).
- ``voice_to_video_audio_gap_ms``: while the customer turns the camera on (renegotiating the same
  connection), the longest gap between the customer's audio packets reaching the agent's peer
  connection (RTP arrival at the agent's receiver, before its jitter buffer and decoder), from
  0.5 s before the offer to 1 s after the answer (20 ms is a perfect stream).
- ``transfer_customer_reconnected``: whether the customer's peer connection left "connected" (or
  was renegotiated) during a cold transfer (should be false).
- ``transfer_hold_audio_ms``: how long the customer heard the hold tone between agent A leaving
  and agent B's audio (3 frames in a row; depends on how fast agent B connects).

Prints one JSON line: medians (``_p50``) and maxima over the runs, and the machine's 1-minute load
average (on a shared 2-core machine a load above ~2 means the processes wait for a CPU, and the
gaps measure that). ``--trace`` also prints one JSON line per run to stderr saying where the audio
gap came from: the gap measured at the customer's microphone (frames produced), at the server
(customer audio arriving at the forwarder), at the agent's receiver (RTP) and after the agent's
decoder; per process (node, clients) the worst event-loop stall, garbage collections, stack
samples taken while the loop was stalled, and (node) every callback over 4 ms with its wall and
CPU time (wall >> CPU: the process was waiting for a CPU, not running Segue code).
``BENCH_PROFILE=file`` writes a cProfile of the node per video window (with ``--trace``).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import json
import logging
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from bench.cpus import pin_cpu, two_cpus

import aiohttp
import socketio

CUSTOMER, AGENT_A, AGENT_B, HOLD = 440.0, 660.0, 880.0, 425.0
SERVER_START_TIMEOUT_S = 60.0

log = logging.getLogger("bench.escalation")




def _max_gap(times: list[float], start: float, end: float) -> float:
    """Longest interval without an event in [start, end] (seconds)."""
    inside = [start] + sorted(t for t in times if start <= t <= end) + [end]
    return max(b - a for a, b in zip(inside, inside[1:]))


class LoopProbe:
    """Where a process's event loop stalls (``--trace``): a 5 ms timer's lateness, garbage
    collections, and stack samples of the loop thread taken while it is stalled > 10 ms (a
    sampling thread, every 2 ms). ``report(start, end)`` summarises a window."""

    PERIOD = 0.005
    STALL = 0.010

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.lags: list[tuple[float, float]] = []
        self.collections: list[tuple[float, int, float]] = []
        self.stacks: list[tuple[float, str]] = []
        self.slow: list[tuple[float, float, float, str]] = []
        self._beat = time.monotonic()
        self._gc_start = 0.0
        self._running = True
        self._thread_id = threading.get_ident()
        self._task = self.loop.create_task(self._run())
        gc.callbacks.append(self._on_gc)
        threading.Thread(target=self._sample, daemon=True, name="loop-probe").start()

    async def _run(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(self.PERIOD)
            now = self._beat = time.monotonic()
            self.lags.append((now, now - before - self.PERIOD))

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if threading.get_ident() != self._thread_id:
            return
        if phase == "start":
            self._gc_start = time.monotonic()
        else:
            self.collections.append((time.monotonic(), info["generation"], time.monotonic() - self._gc_start))

    def _sample(self) -> None:
        import traceback

        while self._running:
            time.sleep(0.002)
            if time.monotonic() - self._beat < self.STALL + self.PERIOD:
                continue
            frame = sys._current_frames().get(self._thread_id)
            if frame is None:
                continue
            where = [f for f in traceback.extract_stack(frame) if "asyncio" not in f.filename][-4:]
            text = " < ".join(f"{Path(f.filename).name}:{f.lineno}:{f.name}" for f in reversed(where))
            self.stacks.append((time.monotonic(), text))

    def time_callbacks(self, threshold: float = 0.004) -> None:
        """Also record every event-loop callback that runs longer than ``threshold`` (diagnostics:
        wraps ``asyncio.Handle._run`` process-wide), named by where its task resumed."""
        from asyncio import events

        original = events.Handle._run
        slow = self.slow

        def where(handle: Any) -> str:
            callback = handle._callback
            task = getattr(callback, "__self__", None)
            coro = task.get_coro() if isinstance(task, asyncio.Task) else None
            if coro is None:
                return getattr(callback, "__qualname__", repr(callback))[:80]
            chain = []
            while coro is not None and len(chain) < 8:
                frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
                if frame is not None:
                    chain.append(f"{Path(frame.f_code.co_filename).name}:{frame.f_lineno}:{frame.f_code.co_name}")
                coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
            return " > ".join(chain[-4:])

        def run(handle: Any) -> None:
            t, cpu = time.monotonic(), time.thread_time()
            original(handle)
            d = time.monotonic() - t
            if d > threshold:
                slow.append((t, d, time.thread_time() - cpu, where(handle)))

        events.Handle._run = run  # type: ignore[method-assign]

    def report(self, start: float, end: float) -> dict[str, Any]:
        slow = [
            f"{round(d * 1000, 1)}ms (cpu {round(c * 1000, 1)}) {label}"
            for t, d, c, label in self.slow
            if start <= t <= end
        ]
        stacks: dict[str, int] = {}
        for t, text in self.stacks:
            if start <= t <= end:
                stacks[text] = stacks.get(text, 0) + 1
        top = sorted(stacks.items(), key=lambda kv: -kv[1])[:4]
        return {
            "loop_lag_max_ms": round(max((lag for t, lag in self.lags if start <= t <= end), default=0.0) * 1000, 1),
            "gc_ms": [(g, round(d * 1000, 1)) for t, g, d in self.collections if start <= t <= end and d > 0.002],
            "stalled_in": [f"~{n * 2}ms {text}" for text, n in top],
            "slow_callbacks": slow,
        }

    def stop(self) -> None:
        self._running = False
        self._task.cancel()
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)


# --- the node (own process, or this one with --in-process) ----------------------------------------


class BenchControl:
    """``/_bench/*`` routes this benchmark adds to the node it starts (never part of Segue)."""

    def __init__(self, app: Any, trace: bool) -> None:
        from server import NODE
        from signaling.calls import CALLS
        from signaling.store import Store

        self.app = app
        self.trace = trace
        self.node = app[NODE]
        self.calls_key = CALLS
        self.store = Store(self.node.redis, self.node.config.redis.key_prefix)
        self.arrivals: list[float] = []
        self.untap: Any = None
        self.profiler: Any = None
        self.probe: LoopProbe | None = None
        r = app.router
        r.add_post("/_bench/conversation", self.conversation)
        r.add_post("/_bench/bind", self.bind)
        r.add_post("/_bench/transfer", self.transfer)
        r.add_get("/_bench/leg", self.leg)
        r.add_post("/_bench/watch", self.watch)
        r.add_post("/_bench/report", self.report)
        if trace:
            app.on_startup.append(self._start_lag)

    async def _start_lag(self, _app: Any) -> None:
        self.probe = LoopProbe()
        self.probe.time_callbacks()

    @property
    def service(self) -> Any:
        return self.app[self.calls_key]

    async def conversation(self, request: Any) -> Any:
        from aiohttp import web

        body = await request.json()
        await self.store.mutate(
            body["cid"], {"create": {"state": "assigned", "customer": "v_b", "agent": "a_1"}, "add": ["a_1", "a_2"]}
        )
        return web.json_response({"ok": True})

    async def bind(self, request: Any) -> Any:
        from aiohttp import web

        from signaling.calls import Participant

        body = await request.json()
        # keep what the namespace bound on connect (name, flags); play a fixed participant id
        known = getattr(self.service, "_who", {}).get((body["ns"], body["sid"]))
        who = dataclasses.replace(known, id=body["id"]) if known is not None else Participant(body["kind"], body["id"])
        self.service.bind(body["ns"], body["sid"], who)
        return web.json_response({"ok": True})

    async def transfer(self, request: Any) -> Any:
        from aiohttp import web

        body = await request.json()
        await self.service.transfer_started(body["cid"], "cold", body["to"])
        await self.service.transfer_completed(body["cid"], body["to"])
        return web.json_response({"ok": True})

    def _leg(self, cid: str, role: str) -> Any:
        record = self.service.records.get(cid)
        return record.call.leg(role) if record is not None and record.call is not None else None

    async def leg(self, request: Any) -> Any:
        from aiohttp import web

        leg = self._leg(request.query["cid"], request.query["role"])
        if leg is None:
            return web.json_response({"negotiations": None, "connection_state": None})
        return web.json_response({"negotiations": leg.negotiations, "connection_state": leg.connection_state})

    async def watch(self, request: Any) -> Any:
        """Timestamp the customer's audio as it reaches the forwarder (a source tap)."""
        from aiohttp import web

        body = await request.json()
        leg = self._leg(body["cid"], "customer")
        source = leg.source("audio") if leg is not None else None
        self.arrivals = []
        if os.environ.get("BENCH_PROFILE"):
            import cProfile

            self.profiler = cProfile.Profile()
            self.profiler.enable()
        if source is not None:
            self.untap = source.tap(lambda info: self.arrivals.append(info.arrival))
        return web.json_response({"ok": source is not None})

    async def report(self, request: Any) -> Any:
        from aiohttp import web

        body = await request.json()
        start, end = body["start"], body["end"]
        if self.untap is not None:
            self.untap()
            self.untap = None
        if self.profiler is not None:
            self.profiler.disable()
            self.profiler.dump_stats(os.environ["BENCH_PROFILE"] + f".{int(start)}")
            self.profiler = None
        gap = round(_max_gap(self.arrivals, start, end) * 1000, 1) if self.arrivals else None
        return web.json_response({"arrival_gap_ms": gap, **(self.probe.report(start, end) if self.probe else {})})


async def start_node(tmp: str, trace: bool) -> tuple[str, Any]:
    """Embedded Redis + a node on a free port; returns (url, stop coroutine function)."""
    from aiohttp import web

    from media import set_loopback_only
    from server import EmbeddedRedis, create_app, load_config

    set_loopback_only(True)
    redis = await EmbeddedRedis.start(Path(tmp) / "redis")
    config = load_config(environ={}, overrides={"redis.url": redis.url, "data_dir": tmp, "http.port": 0})
    app = create_app(config, redis.url)
    BenchControl(app, trace)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop() -> None:
        try:
            await runner.cleanup()
        finally:
            await redis.stop()

    return f"http://127.0.0.1:{port}", stop


def server_main(conn: Any, cpu: int | None, trace: bool) -> None:
    """The node's process: start, send the URL, run until the pipe says stop (or closes)."""
    pinned = pin_cpu(cpu)
    logging.basicConfig(level=logging.WARNING)

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        done = asyncio.Event()

        def wait_for_stop() -> None:
            try:
                conn.recv()
            except (EOFError, OSError):
                pass
            loop.call_soon_threadsafe(done.set)

        with tempfile.TemporaryDirectory() as tmp:
            url, stop = await start_node(tmp, trace)
            conn.send({"url": url, "pinned": pinned})
            threading.Thread(target=wait_for_stop, daemon=True).start()
            await done.wait()
            await stop()

    asyncio.run(serve())


class NodeProcess:
    def __init__(self, cpu: int | None, trace: bool) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=server_main, args=(child, cpu, trace), daemon=True)
        self.proc.start()
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while not self.conn.poll(0.1):
            if not self.proc.is_alive() or time.monotonic() > deadline:
                self.proc.terminate()
                raise RuntimeError(f"the node did not start (exit code {self.proc.exitcode})")
        info = self.conn.recv()
        self.url: str = info["url"]
        self.pinned: bool = info["pinned"]

    def stop(self) -> None:
        try:
            self.conn.send("stop")
        except (OSError, BrokenPipeError):
            pass
        self.proc.join(20)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)


# --- the browsers (this process) ---------------------------------------------------------------


class Side:
    def __init__(self, url: str, http: aiohttp.ClientSession, ns: str, kind: str, who: str, cid: str, token: str = "") -> None:
        self.url, self.http, self.ns, self.kind, self.who, self.cid, self.token = url, http, ns, kind, who, cid, token
        self.sio = socketio.AsyncClient(reconnection=False)
        self.requested = asyncio.Event()
        self.peer: Any = None

        async def on_requested(_data: Any) -> None:
            self.requested.set()

        self.sio.on("call.requested", on_requested, namespace=ns)

    async def connect(self) -> None:
        auth: dict[str, Any] = {"v": 1}
        if self.token:
            auth["token"] = self.token
        await self.sio.connect(self.url, namespaces=[self.ns], transports=["websocket"], auth=auth)
        await control(self.http, self.url, "bind", ns=self.ns, sid=self.sio.get_sid(self.ns), kind=self.kind, id=self.who)

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

    async def offer(self, frequency: float) -> Any:
        from media.probe import ClientPeer

        self.peer = ClientPeer(frequency)
        await self.negotiate()
        return self.peer

    async def close(self) -> None:
        if self.peer is not None:
            await self.peer.close()
        if self.sio.connected:
            await self.sio.disconnect()


async def control(http: aiohttp.ClientSession, url: str, op: str, **body: Any) -> dict[str, Any]:
    if op == "leg":
        async with http.get(f"{url}/_bench/leg", params=body) as r:
            r.raise_for_status()
            return await r.json()
    async with http.post(f"{url}/_bench/{op}", json=body) as r:
        r.raise_for_status()
        return await r.json()


def _audio_receiver(peer: Any) -> Any:
    return peer.audio_tx.receiver


async def one_run(url: str, http: aiohttp.ClientSession, token: str, probe: LoopProbe | None) -> dict[str, Any]:
    from media import aiortc_hooks

    cid = f"c_bench_{uuid.uuid4().hex[:8]}"
    await control(http, url, "conversation", cid=cid)
    customer = Side(url, http, "/customer", "customer", "v_b", cid)
    agent = Side(url, http, "/agent", "agent", "a_1", cid, token)
    agent_b = Side(url, http, "/agent", "agent", "a_2", cid, token)
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

        # voice -> video, audio keeps flowing: customer audio packets reaching the agent's peer
        agent_rtp: list[float] = []
        undo = aiortc_hooks.observe_received_rtp(_audio_receiver(apeer), lambda *_: agent_rtp.append(time.monotonic()))
        mic: list[float] = []
        trace: dict[str, Any] | None = None
        if probe is not None:
            await control(http, url, "watch", cid=cid)
            original_recv = cpeer.mic.recv

            async def recv() -> Any:
                frame = await original_recv()
                mic.append(time.monotonic())
                return frame

            cpeer.mic.recv = recv  # type: ignore[method-assign]
        agent_ears = await apeer.audio()
        await agent_ears.wait_hearing(CUSTOMER, timeout=20)
        # The browser stand-ins are Python: collect their garbage (earlier runs' peers) now, not
        # as a stop-the-world pause of the customer's microphone inside the measured window.
        gc.collect()
        await asyncio.sleep(0.5)
        start = time.monotonic() - 0.5
        cpeer.start_video()
        offered = time.monotonic()
        await customer.negotiate()
        answered = time.monotonic()
        await asyncio.sleep(1.0)
        end = time.monotonic()
        undo()
        gap_ms = _max_gap(agent_rtp, start, end) * 1000
        if probe is not None:
            server = await control(http, url, "report", start=start, end=end)
            trace = {
                "audio_gap_ms": {
                    "customer_mic": round(_max_gap(mic, start, end) * 1000, 1),
                    "server_in": server.pop("arrival_gap_ms"),
                    "agent_rtp": round(gap_ms, 1),
                    "agent_decoded": round(agent_ears.max_gap(start, end) * 1000, 1),
                },
                "renegotiation_ms": round((answered - offered) * 1000, 1),
                "server": server,
                "clients": probe.report(start, end),
            }

        # cold transfer
        states: list[str] = []
        cpeer.pc.on("connectionstatechange", lambda: states.append(cpeer.pc.connectionState))
        negotiations = (await control(http, url, "leg", cid=cid, role="customer"))["negotiations"]
        t_leave = time.monotonic()
        await control(http, url, "transfer", cid=cid, to="a_2")
        await agent_b.offer(AGENT_B)
        await ears.wait_hearing(AGENT_B, timeout=20)
        # agent B = a run of 3 frames: the switch itself can give one frame whose spectrum
        # peaks elsewhere (seen near 850 Hz, which would pass for B)
        hold_start = ears.first_time_hearing(HOLD, after=t_leave)
        b_start = ears.first_time_hearing(AGENT_B, after=t_leave, run=3) or time.monotonic()
        hold_ms = (b_start - hold_start) * 1000 if hold_start is not None and hold_start < b_start else 0.0
        leg = await control(http, url, "leg", cid=cid, role="customer")
        reconnected = (
            bool(states)
            or cpeer.pc.connectionState != "connected"
            or leg["negotiations"] != negotiations
            or leg["connection_state"] != "connected"
        )
        await agent_b.ok("call.hangup")
        result = {"chat_to_voice_ms": chat_to_voice_ms, "gap_ms": gap_ms, "reconnected": reconnected, "hold_ms": hold_ms}
        if trace is not None:
            print(json.dumps({"run": {k: round(v, 1) if isinstance(v, float) else v for k, v in result.items()}, **trace}),
                  file=sys.stderr, flush=True)
        return result
    finally:
        for side in sides:
            log.info("closing %s %s", side.kind, side.who)
            await asyncio.wait_for(side.close(), 10)


async def drive(url: str, runs: int, trace: bool) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/api/v1/auth/login", json={"username": "demo", "password": "demo"}) as r:
            token = (await r.json())["token"]
        probe = LoopProbe() if trace else None
        try:
            return [await one_run(url, http, token, probe) for _ in range(runs)]
        finally:
            if probe is not None:
                probe.stop()


async def main_async(runs: int, in_process: bool = False, trace: bool = False, pin: bool = False) -> dict[str, Any]:
    from media import set_loopback_only

    logging.basicConfig(level=logging.WARNING)
    set_loopback_only(True)
    pinned: bool | None = None
    if in_process:
        with tempfile.TemporaryDirectory() as tmp:
            url, stop = await start_node(tmp, trace)
            try:
                results = await drive(url, runs, trace)
            finally:
                await stop()
    else:
        server_cpu, client_cpu = two_cpus() if pin else (None, None)
        node = await asyncio.get_running_loop().run_in_executor(None, NodeProcess, server_cpu, trace)
        try:
            pin_cpu(client_cpu)
            pinned = node.pinned
            results = await drive(node.url, runs, trace)
        finally:
            await asyncio.get_running_loop().run_in_executor(None, node.stop)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    c2v = [r["chat_to_voice_ms"] for r in results]
    gaps = [r["gap_ms"] for r in results]
    return {
        "runs": runs,
        "server": "in-process" if in_process else ("own process, pinned" if pinned else "own process"),
        "chat_to_voice_ms_p50": round(statistics.median(c2v), 1),
        "chat_to_voice_ms_max": round(max(c2v), 1),
        "voice_to_video_audio_gap_ms_p50": round(statistics.median(gaps), 1),
        "voice_to_video_audio_gap_ms_max": round(max(gaps), 1),
        "transfer_customer_reconnected": any(r["reconnected"] for r in results),
        "transfer_hold_audio_ms": round(statistics.median(r["hold_ms"] for r in results), 1),
        "load_avg_1m": None if load is None else round(load, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.escalation", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--in-process", action="store_true", help="run the node in this process (comparison only)")
    parser.add_argument("--trace", action="store_true", help="per run, where the audio gap came from (stderr)")
    parser.add_argument("--pin", action="store_true", help="pin the node and the clients to two separate cores")
    args = parser.parse_args()
    result = asyncio.run(main_async(max(1, args.runs), args.in_process, args.trace, pin=args.pin))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
