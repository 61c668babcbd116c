"""Chat benchmark: N concurrent conversations through a real Segue node, one run, one JSON line.

    python -m bench.chat --clients 500 --seconds 20 [--rate 5000] [--procs 2]

What runs:

- Redis: ``SEGUE_REDIS_URL`` when set, else the embedded ``redis-server`` (the same launcher
  ``segue serve`` uses) on a free port in a temporary folder.
- one server process: ``python -m server serve`` on a free port, against that Redis, with a
  fresh key prefix and a known ``auth.secret``;
- ``--procs`` client processes, each playing both ends of ``clients / procs`` conversations:
  a customer socket on ``/customer`` and an agent socket on ``/agent`` per conversation.
  Clients speak Socket.IO (Engine.IO 4 / Socket.IO 5 over WebSocket) with a small client in this
  file, so the client processes leave the CPU to the server; the server cannot tell the
  difference from socket.io-client.

Set-up (not measured) goes through the real protocol: N agents (capacity chat=1, accounts made
in Redis with one precomputed password hash; tokens minted with the secret instead of N scrypt
logins), each customer ``conversation.start``s, routing offers, the agent ``offer.accept``s.

Measured window (``--seconds``): every customer and every agent sends ``message.send`` (with a
``client_id``, as the SDK does) at ``rate / (2 * clients)`` messages/s each, open loop with random
phase. Each message carries its send time (``time.monotonic``: one clock for every process on
Linux); the other side records the latency when the pushed ``event`` arrives.

- ``messages_per_s``: messages delivered to the other side during the window / seconds;
- ``latency_ms_p50`` / ``latency_ms_p99``: send -> delivery;
- ``lost``: messages acknowledged (stored) but never delivered, plus acknowledged messages missing
  from the conversation's stream in Redis (checked at the end with XRANGE);
- ``duplicated``: deliveries of a message id already delivered.

``--rate 0`` is closed loop: each side sends its next message when the previous one is acked.

Also printed: ``lost_not_delivered`` / ``lost_not_in_stream`` (the two parts of ``lost``),
``errors`` and ``error_kinds`` (failed sends by error code), ``latency_ms_p90`` / ``_max``, and
CPU during the window in % of one core for the server, the client processes and Redis (where the
machine's time went), with the 1-minute load average (other work on the machine skews results).

Knobs for investigating (environment): ``BENCH_UVLOOP=1`` runs the server on uvloop,
``BENCH_PROFILE=file`` under cProfile, ``BENCH_SERVER_SCRIPT=path`` with a wrapper script of
your own (argv: ``serve --port N``; ``BENCH_FLOOR_SCRIPT`` likewise for the floor, argv ``--port N``), ``BENCH_DEBUG=1`` reports how long the server took to stop.
Client processes use uvloop and orjson when installed (``pip install -e '.[bench]'``).
Results on the development machine: docs/conversations.md, "Performance".
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import multiprocessing as mp
import os
import random
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent

try:  # the clients' own cost matters on a small machine: use the fast JSON if it is there
    import orjson as _orjson

    def _dumps(obj: Any) -> str:
        return _orjson.dumps(obj).decode()

    _loads = _orjson.loads
except ImportError:  # pragma: no cover
    def _dumps(obj: Any) -> str:
        return json.dumps(obj, separators=(",", ":"))

    _loads = json.loads
SETUP_TIMEOUT_S = 180.0
# requests one side keeps unacknowledged at most (a chat client does not pipeline without bound;
# past this the side waits, and the sends it would have made meanwhile are not made)
MAX_INFLIGHT = 8
DRAIN_S = 3.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    k = min(len(values) - 1, max(0, int(round(p / 100.0 * (len(values) - 1)))))
    return values[k]


# --- a small Socket.IO client ------------------------------------------------------------------

class LeanSocket:
    """One Socket.IO connection to one namespace over a WebSocket (Engine.IO 4, Socket.IO 5)."""

    def __init__(self, url: str, namespace: str, on_event: Callable[[str, Any], None]) -> None:
        self.url = url
        self.ns = namespace
        self.on_event = on_event
        self.ws: Any = None
        self._acks: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        self._connected: asyncio.Future[Any] | None = None
        self._reader: asyncio.Task[None] | None = None
        self.closed = False  # the connection ended (the sender reconnects and resumes)

    async def connect(self, session: Any, auth: dict[str, Any]) -> None:
        ws_url = self.url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
        self.ws = await session.ws_connect(ws_url, max_msg_size=0, autoping=True)
        opening = await self.ws.receive_str()
        if not opening.startswith("0"):
            raise RuntimeError(f"unexpected Engine.IO opening {opening[:80]!r}")
        self._connected = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read())
        await self.ws.send_str(f"40{self.ns},{json.dumps(auth)}")
        await asyncio.wait_for(self._connected, 30)

    async def _read(self) -> None:
        ns_prefix = self.ns + ","
        async for msg in self.ws:
            data = msg.data
            if not isinstance(data, str) or not data:
                continue
            kind = data[0]
            if kind == "2":  # Engine.IO ping
                await self.ws.send_str("3")
                continue
            if kind == "1":  # Engine.IO close: the server is going away
                await self.ws.close()
                break
            if kind != "4" or len(data) < 2:
                continue
            sio_type = data[1]
            rest = data[2:]
            if rest.startswith(ns_prefix):
                rest = rest[len(ns_prefix):]
            if sio_type == "2":  # EVENT
                i = 0
                while i < len(rest) and rest[i].isdigit():
                    i += 1
                args = _loads(rest[i:])
                self.on_event(args[0], args[1] if len(args) > 1 else None)
            elif sio_type == "3":  # ACK
                i = 0
                while rest[i].isdigit():
                    i += 1
                fut = self._acks.pop(int(rest[:i]), None)
                if fut is not None and not fut.done():
                    args = _loads(rest[i:])
                    fut.set_result(args[0] if args else None)
            elif sio_type == "0" and self._connected and not self._connected.done():
                self._connected.set_result(True)
            elif sio_type == "4" and self._connected and not self._connected.done():
                self._connected.set_exception(RuntimeError(f"connect refused: {rest}"))
        self.closed = True
        for fut in self._acks.values():
            if not fut.done():
                fut.set_exception(ConnectionError("socket closed"))
        self._acks.clear()

    def call_nowait(self, event: str, data: Any) -> asyncio.Future[Any]:
        """Send an event with an ack; returns the future of the ack (sending is queued)."""
        fut = asyncio.get_running_loop().create_future()
        if self.closed or self.ws is None or self.ws.closed:
            self.closed = True
            fut.set_exception(ConnectionError("socket closed"))
            return fut
        ack_id = next(self._ids)
        self._acks[ack_id] = fut
        frame = f"42{self.ns},{ack_id}{_dumps([event, data])}"
        asyncio.ensure_future(self._send(frame, ack_id))
        return fut

    async def _send(self, frame: str, ack_id: int) -> None:
        try:
            await self.ws.send_str(frame)
        except Exception:  # noqa: BLE001 - the connection broke: the ack will never come
            fut = self._acks.pop(ack_id, None)
            if fut is not None and not fut.done():
                fut.set_exception(ConnectionError("send failed"))

    async def call(self, event: str, data: Any, timeout: float = 60) -> Any:
        return await asyncio.wait_for(self.call_nowait(event, data), timeout)

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()


# --- client worker process ---------------------------------------------------------------------

class Side:
    """One end of one conversation (customer or agent) in the measured window.

    Behaves like the SDK: a ``rate_limited`` answer pauses this side for ``retry_after_ms`` and
    the message is sent again (same ``client_id``); a broken connection is re-opened and the
    conversation resumed from the last event id seen (the events missed meanwhile count as
    delivered), and unacknowledged messages are sent again — so ``lost`` means lost."""

    __slots__ = ("name", "sock", "cid", "seq", "received", "latencies", "dups", "errors", "sent", "acked_ids",
                 "last_rx", "error_kinds", "auth", "handler", "last_id", "pause_until", "pending", "reconnects",
                 "rate_limited", "latencies_with_retries", "given_up")

    def __init__(self, name: str) -> None:
        self.name = name
        self.sock: LeanSocket | None = None
        self.cid = ""
        self.seq = 0
        self.sent = 0
        self.acked_ids: set[str] = set()
        self.received: set[str] = set()
        self.latencies: list[float] = []
        self.latencies_with_retries: list[float] = []
        self.dups = 0
        self.errors = 0
        self.last_rx = 0.0
        self.error_kinds: dict[str, int] = {}
        self.auth: dict[str, Any] = {"v": 1}
        self.handler: Callable[[str, Any], None] = self.on_event
        self.last_id: tuple[int, int] = (0, 0)
        self.pause_until = 0.0
        self.pending: list[tuple[int, float]] = []  # (seq, first send time) to send again
        self.reconnects = 0
        self.rate_limited = 0
        self.given_up = False

    def on_event(self, name: str, data: Any) -> None:
        if name != "event":
            return
        if data.get("conversation_id") == self.cid:
            try:
                ms, _, n = data["id"].partition("-")
                self.last_id = max(self.last_id, (int(ms), int(n)))
            except (KeyError, ValueError):
                pass
        if data.get("type") != "message" or data["author"]["kind"] == self.name:
            return
        now = time.monotonic()
        eid = data["id"]
        if eid in self.received:
            self.dups += 1
            return
        self.received.add(eid)
        self.last_rx = now
        text = data["data"]["text"]
        if text.startswith("b "):
            bits = text.split(" ", 4)
            self.latencies.append((now - float(bits[2])) * 1000.0)  # from the send that was accepted
            self.latencies_with_retries.append((now - float(bits[3])) * 1000.0)  # from the first try


async def _worker_main(index: int, url: str, tokens: list[str], conn: Any, rate_each: float, seconds: float) -> None:
    """Customers and agents of this process. Routing may pair a customer here with an agent in
    another client process: each side only knows its conversation id; the parent matches them."""
    import aiohttp

    connector = aiohttp.TCPConnector(limit=0)
    session = aiohttp.ClientSession(connector=connector)
    offers: asyncio.Queue[tuple[Side, str]] = asyncio.Queue()
    assigned = asyncio.Event()
    sides: list[Side] = []
    n_assigned = 0
    try:
        agents: list[Side] = []
        for token in tokens:
            side = Side("agent")

            def on_agent(name: str, data: Any, side: Side = side) -> None:
                if name == "offer":
                    offers.put_nowait((side, data["conversation"]["id"]))
                else:
                    side.on_event(name, data)

            side.handler = on_agent
            side.auth = {"v": 1, "token": token}
            side.sock = LeanSocket(url, "/agent", on_agent)
            await side.sock.connect(session, side.auth)
            reply = await side.sock.call("presence.set", {"status": "available"})
            assert reply["ok"], reply
            agents.append(side)

        customers: list[Side] = []
        for _ in tokens:
            side = Side("customer")

            def on_customer(name: str, data: Any, side: Side = side) -> None:
                nonlocal n_assigned
                if name == "session" and isinstance(data, dict) and data.get("visitor_token"):
                    side.auth = {"v": 1, "visitor_token": data["visitor_token"]}  # the same visitor on reconnect
                if name == "event" and data.get("type") == "conversation.assigned":
                    n_assigned += 1
                    if n_assigned == len(tokens):
                        assigned.set()
                side.on_event(name, data)

            side.handler = on_customer
            side.sock = LeanSocket(url, "/customer", on_customer)
            await side.sock.connect(session, {"v": 1})
            customers.append(side)
            reply = await side.sock.call("conversation.start", {"channel": "chat"})
            assert reply["ok"], reply
            side.cid = reply["conversation"]["id"]
        accepted = 0
        deadline = time.monotonic() + SETUP_TIMEOUT_S
        while accepted < len(agents):
            agent, cid = await asyncio.wait_for(offers.get(), max(1.0, deadline - time.monotonic()))
            assert agent.sock is not None
            reply = await agent.sock.call("offer.accept", {"conversation_id": cid})
            if reply["ok"]:
                agent.cid = cid
                accepted += 1
        await asyncio.wait_for(assigned.wait(), max(1.0, deadline - time.monotonic()))
        sides = agents + customers

        conn.send(("ready", index))
        start_at = conn.recv()  # a time.monotonic() value shared by every worker
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        stop_at = start_at + seconds
        cpu_start = time.process_time()
        loop = asyncio.get_running_loop()
        cpu_at_stop: list[float] = []
        loop.call_at(stop_at, lambda: cpu_at_stop.append(time.process_time()))

        async def reconnect(side: Side) -> None:
            """As the SDK does: a new connection, then the conversation resumed from the last
            event id seen (what was missed arrives in the answer)."""
            ns = "/agent" if side.name == "agent" else "/customer"
            event = "conversation.open" if side.name == "agent" else "conversation.resume"
            for attempt in range(20):
                try:
                    sock = LeanSocket(url, ns, side.handler)
                    await sock.connect(session, side.auth)
                    side.sock = sock
                    payload: dict[str, Any] = {"conversation_id": side.cid}
                    if side.last_id != (0, 0):
                        payload["after"] = f"{side.last_id[0]}-{side.last_id[1]}"
                    reply = await sock.call(event, payload, timeout=15)
                    if reply and reply.get("ok"):
                        for ev in reply.get("events", []):
                            side.handler("event", ev)
                        side.reconnects += 1
                        return
                    if reply and reply.get("error", {}).get("code") == "rate_limited":
                        await asyncio.sleep(reply["error"].get("retry_after_ms", 500) / 1000)
                except Exception:  # noqa: BLE001 - the node is busy or restarting: try again
                    await asyncio.sleep(min(5.0, 0.2 * 2**attempt) * (0.5 + random.random()))
            side.given_up = True

        async def sender(side: Side) -> None:
            assert side.sock is not None
            inflight: set[asyncio.Future[Any]] = set()
            period = 1.0 / rate_each if rate_each > 0 else 0.0
            if period:
                await asyncio.sleep(random.random() * period)
            next_at = time.monotonic()
            while time.monotonic() < stop_at and not side.given_up:
                now = time.monotonic()
                if side.pause_until > now:  # rate_limited: wait what the server asked, as the SDK does
                    await asyncio.sleep(min(side.pause_until, stop_at) - now)
                    next_at = max(next_at, time.monotonic())
                    continue
                if side.sock is None or side.sock.closed:
                    await reconnect(side)
                    next_at = max(next_at, time.monotonic())
                    continue
                if len(inflight) >= MAX_INFLIGHT:  # as a chat client: a few requests out at a time
                    await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
                    next_at = max(next_at, time.monotonic())
                    continue
                if side.pending:
                    seq, first = side.pending.pop(0)
                else:
                    side.seq += 1
                    seq, first = side.seq, now
                    side.sent += 1
                text = f"b {seq} {now:.6f} {first:.6f} hello from the {side.name}, how are you today?"
                fut = side.sock.call_nowait("message.send", {"conversation_id": side.cid, "text": text,
                                                             "client_id": f"{side.name[0]}{seq}"})

                def done(f: asyncio.Future[Any], side: Side = side, seq: int = seq, first: float = first) -> None:
                    inflight.discard(f)
                    if f.cancelled() or f.exception() is not None:
                        # the connection broke: send it again after reconnecting (same client_id)
                        side.pending.append((seq, first))
                        kind = "cancelled" if f.cancelled() else type(f.exception()).__name__
                        side.error_kinds[kind] = side.error_kinds.get(kind, 0) + 1
                        return
                    reply = f.result()
                    if reply and reply.get("ok"):
                        side.acked_ids.add(reply["event"]["id"])
                        return
                    error = (reply or {}).get("error", {})
                    if error.get("code") == "rate_limited":
                        side.rate_limited += 1
                        side.pending.append((seq, first))
                        side.pause_until = max(side.pause_until, time.monotonic() + error.get("retry_after_ms", 500) / 1000)
                        return
                    side.errors += 1
                    kind = str(error.get("code"))
                    side.error_kinds[kind] = side.error_kinds.get(kind, 0) + 1

                fut.add_done_callback(done)
                inflight.add(fut)
                if period:
                    next_at += period
                    delay = next_at - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                else:
                    try:
                        await asyncio.wait_for(asyncio.shield(fut), 30)
                    except Exception:  # noqa: BLE001
                        pass
            if inflight:
                await asyncio.wait(inflight, timeout=120)

        cpu_window = time.process_time()
        await asyncio.gather(*(sender(s) for s in sides))  # returns when every send is acked (or failed)
        # drain: deliveries to this process's sides (the server may still be working off a backlog)
        # until nothing new arrived for DRAIN_S
        last, quiet_since = -1, time.monotonic()
        while time.monotonic() - quiet_since < DRAIN_S:
            now_count = sum(len(s.received) for s in sides)
            if now_count != last:
                last, quiet_since = now_count, time.monotonic()
            await asyncio.sleep(0.25)
        conn.send(("result", {
            "cpu_s": (cpu_at_stop[0] if cpu_at_stop else cpu_window) - cpu_start,
            "sides": [{"cid": s.cid, "role": s.name, "acked": sorted(s.acked_ids), "received": sorted(s.received)}
                      for s in sides],
            "sent": sum(s.sent for s in sides),
            "duplicated": sum(s.dups for s in sides),
            "errors": sum(s.errors for s in sides),
            "error_kinds": {k: sum(s.error_kinds.get(k, 0) for s in sides) for k in {k for s in sides for k in s.error_kinds}},
            "rate_limited": sum(s.rate_limited for s in sides),
            "reconnects": sum(s.reconnects for s in sides),
            "unsent": sum(len(s.pending) for s in sides),  # refused (rate_limited) and not yet sent again
            "latencies": [x for s in sides for x in s.latencies],
            "latencies_with_retries": [x for s in sides for x in s.latencies_with_retries],
            "last_rx": max((s.last_rx for s in sides), default=0.0),
        }))
    finally:
        for side in sides:
            if side.sock is not None:
                await side.sock.close()
        await session.close()


def _worker(index: int, url: str, tokens: list[str], conn: Any, rate_each: float, seconds: float) -> None:
    from .clientproc import run_client  # Ctrl-C ignored, uvloop when installed, errors to the parent

    run_client(index, conn, lambda: _worker_main(index, url, tokens, conn, rate_each, seconds))


# --- the run -----------------------------------------------------------------------------------

async def _prepare(redis_url: str, prefix: str, secret: str, n: int) -> list[str]:
    import redis.asyncio as aioredis

    sys.path.insert(0, str(ROOT))
    from server import Signer, hash_password
    from signaling import Directory

    redis = aioredis.Redis.from_url(redis_url, decode_responses=True)
    directory = Directory(redis, prefix)
    pw_hash = hash_password(secrets.token_urlsafe(12))
    signer = Signer(secret.encode())
    tokens = []
    for i in range(n):
        account = await directory.create(f"bench{i:05d}", None, f"Bench Agent {i}", "agent", [], {"chat": 1},
                                         password_hash=pw_hash)
        tokens.append(signer.sign("a", account.id, 3600, ver=account.token_version))
    await redis.aclose()
    return tokens


async def _count_stored(redis_url: str, prefix: str, acked: dict[str, list[str]]) -> tuple[int, int]:
    import redis.asyncio as aioredis

    redis = aioredis.Redis.from_url(redis_url, decode_responses=True)
    stored = missing = 0
    for cid, ids in acked.items():
        rows = await redis.xrange(f"{prefix}conv:{{{cid}}}:log")
        have = {eid for eid, fields in rows if fields.get("t") == "message"}
        stored += len(have)
        missing += len(set(ids) - have)
    await redis.aclose()
    return stored, missing


def _cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            parts = f.read().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


def run(clients: int, seconds: float, rate: float, procs: int, server_kind: str = "segue",
        settings: dict[str, str] | None = None) -> dict[str, Any]:
    """One measured run against a fresh server: ``server_kind`` "segue" (``python -m server serve``)
    or "floor" (``bench.chat_floor``: a bare python-socketio server that acks and forwards)."""
    sys.path.insert(0, str(ROOT))
    from server import EmbeddedRedis

    tmp = Path(tempfile.mkdtemp(prefix="segue-bench-"))
    embedded = None
    redis_url = os.environ.get("SEGUE_REDIS_URL", "")
    if not redis_url:
        embedded = asyncio.run(EmbeddedRedis.start(tmp))
        redis_url = embedded.url
    prefix = f"bench-{secrets.token_hex(4)}:"
    secret = secrets.token_urlsafe(24)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGUE_")}
    env.update({
        "SEGUE_REDIS_URL": redis_url, "SEGUE_REDIS_KEY_PREFIX": prefix, "SEGUE_AUTH_SECRET": secret,
        "SEGUE_DATA_DIR": str(tmp / "data"), "SEGUE_LOG_LEVEL": "warning", "SEGUE_DEMO_ENABLED": "false",
        "SEGUE_ROUTING_OFFER_TIMEOUT_S": "120", "SEGUE_LIMITS_MAX_EVENT_BYTES": "16384",
        # every bench client shares one address (127.0.0.1): the per-address limits would see one
        # crowd-sized client; per-connection limits and load shedding stay as configured
        "SEGUE_LIMITS_IP_EVENTS_PER_S": "0", "SEGUE_LIMITS_CONNECTS_PER_IP_PER_S": "0",
        "SEGUE_LIMITS_IP_CONVERSATIONS_PER_S": "0", "SEGUE_LIMITS_MAX_CONNECTIONS_PER_IP": "0",
    })
    env.update(settings or {})
    env["LC_ALL"] = "C.UTF-8"  # the start-up line read below is in English (docs/cli.md: it is translated)
    server_log = tmp / "server.log"
    profile = os.environ.get("BENCH_PROFILE")  # a file: run the server under cProfile (for finding hot spots)
    if server_kind == "floor":
        floor_script = os.environ.get("BENCH_FLOOR_SCRIPT")  # the floor under a wrapper, like BENCH_SERVER_SCRIPT
        cmd = [floor_script] if floor_script else ["-m", "bench.chat_floor"]
    elif profile:
        cmd = ["-m", "cProfile", "-o", profile, "-m", "server"]
    elif os.environ.get("BENCH_SERVER_SCRIPT"):  # e.g. a wrapper that instruments the server
        cmd = [os.environ["BENCH_SERVER_SCRIPT"]]
    elif os.environ.get("BENCH_UVLOOP"):  # compare: the same server on uvloop's event loop
        cmd = ["-c", "import sys, uvloop; uvloop.install(); from server import cli; sys.exit(cli.main(sys.argv[1:]))"]
    else:
        cmd = ["-m", "server"]
    args = ["--port", str(port)] if server_kind == "floor" else ["serve", "--port", str(port)]
    server = subprocess.Popen([sys.executable, *cmd, *args], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=server_log.open("w"), text=True)
    workers: list[tuple[mp.Process, Any]] = []
    try:
        line = server.stdout.readline() if server.stdout else ""
        if "is running" not in line:
            raise RuntimeError(f"server did not start: {line} {server_log.read_text()[-2000:]}")
        url = f"http://127.0.0.1:{port}"
        tokens = asyncio.run(_prepare(redis_url, prefix, secret, clients))
        ctx = mp.get_context("spawn")
        rate_each = rate / (2 * clients) if rate > 0 else 0.0
        chunks = [tokens[i::procs] for i in range(procs)]
        for i, chunk in enumerate(chunks):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=_worker, args=(i, url, chunk, child, rate_each, seconds), daemon=True)
            p.start()
            workers.append((p, parent))
        for p, parent in workers:
            if not parent.poll(SETUP_TIMEOUT_S):
                raise RuntimeError(f"a client process did not get ready in time; server log: {server_log}")
            kind, value = parent.recv()
            if kind != "ready":
                raise RuntimeError(str(value))
        start_at = time.monotonic() + 0.5
        cpu0 = _cpu_seconds(server.pid)
        for _, parent in workers:
            parent.send(start_at)
        redis_pid = embedded.process.pid if embedded is not None else None
        rcpu0 = _cpu_seconds(redis_pid) if redis_pid else 0.0
        time.sleep(max(0.0, start_at + seconds - time.monotonic()))
        cpu1 = _cpu_seconds(server.pid)
        rcpu1 = _cpu_seconds(redis_pid) if redis_pid else 0.0
        results = []
        for p, parent in workers:
            if not parent.poll(seconds + 300):
                raise RuntimeError("a client process did not finish")
            kind, value = parent.recv()
            if kind != "result":
                raise RuntimeError(str(value))
            results.append(value)
        # match both ends of each conversation, whichever processes they were in
        ends: dict[tuple[str, str], dict[str, Any]] = {}
        for r in results:
            for side in r["sides"]:
                ends[(side["cid"], side["role"])] = side
        lost_wire = acked = delivered = 0
        acked_ids: dict[str, list[str]] = {}
        for (cid, role), side in ends.items():
            other = ends.get((cid, "agent" if role == "customer" else "customer"))
            received = set(other["received"]) if other else set()
            lost_wire += len(set(side["acked"]) - received)
            acked += len(side["acked"])
            delivered += len(side["received"])
            acked_ids.setdefault(cid, []).extend(side["acked"])
        if server_kind == "floor":  # it stores nothing
            stored, missing = 0, 0
        else:
            stored, missing = asyncio.run(_count_stored(redis_url, prefix, acked_ids))
        latencies = [x for r in results for x in r["latencies"]]
        with_retries = [x for r in results for x in r["latencies_with_retries"]]
        window_delivered = sum(1 for r in results for _ in r["latencies"])
        return {
            "server": server_kind,
            "clients": clients,
            "seconds": seconds,
            "target_rate": rate,
            # delivered over the time they took: the window, plus however long the server needed to catch up
            "messages_per_s": round(delivered / max(seconds, max(r["last_rx"] for r in results) - start_at), 1),
            "latency_ms_p50": round(_percentile(latencies, 50), 2),
            "latency_ms_p99": round(_percentile(latencies, 99), 2),
            "latency_ms_p90": round(_percentile(latencies, 90), 2),
            "latency_ms_max": round(max(latencies, default=0.0), 2),
            "lost": lost_wire + missing,
            "lost_not_delivered": lost_wire,
            "lost_not_in_stream": missing,
            "latency_with_retries_ms_p99": round(_percentile(with_retries, 99), 2),
            "rate_limited": sum(r["rate_limited"] for r in results),
            "unsent_rate_limited": sum(r["unsent"] for r in results),
            "reconnects": sum(r["reconnects"] for r in results),
            "server_cpu_us_per_msg": round(1e6 * (cpu1 - cpu0) / max(1, window_delivered), 1),
            "duplicated": sum(r["duplicated"] for r in results),
            "sent": sum(r["sent"] for r in results),
            "acked": acked,
            "delivered": delivered,
            "stored": stored,
            "errors": sum(r["errors"] for r in results),
            "error_kinds": {k: sum(r["error_kinds"].get(k, 0) for r in results)
                            for k in {k for r in results for k in r["error_kinds"]}},
            # CPU during the window, in % of one core: where the machine's time went
            "server_cpu_pct": round(100.0 * (cpu1 - cpu0) / seconds, 1),
            "clients_cpu_pct": round(100.0 * sum(r["cpu_s"] for r in results) / seconds, 1),
            "redis_cpu_pct": round(100.0 * (rcpu1 - rcpu0) / seconds, 1) if redis_pid else None,
            "load_avg_1m": round(os.getloadavg()[0], 2),
            "client_procs": procs,
        }
    finally:
        for p, _ in workers:
            if p.is_alive():
                p.terminate()
        server.send_signal(signal.SIGTERM)
        t_stop = time.monotonic()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            print("bench: the server did not stop within 20 s of SIGTERM; killed it", file=sys.stderr)
            server.kill()
        if os.environ.get("BENCH_DEBUG"):
            print(f"bench: server stopped in {time.monotonic() - t_stop:.1f} s", file=sys.stderr)
        if embedded is not None:
            asyncio.run(embedded.stop())
        if os.environ.get("BENCH_DEBUG"):
            print(f"bench: server log and data kept in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


#: the open-loop capacity run offers this many times the closed-loop capacity (enough to keep the
#: node saturated; the clients' in-flight cap keeps the queue bounded)
OPEN_CAPACITY_FACTOR = 1.3


def _overload(args: argparse.Namespace, procs: int, emit: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
    """The node's capacity (closed loop, then open loop at ``OPEN_CAPACITY_FACTOR`` times that, both
    without shedding), then ``args.overload`` times the closed-loop capacity offered: the runs and the
    overload line (goodput against each capacity) are printed; returns the overload line."""
    # capacity: closed loop with load shedding off (what the node does flat out, as issue 11
    # measured it); the overload run then has Segue's protections as configured
    capacity_run = emit({"run": "capacity (closed loop, no shedding)", **run(
        args.clients, args.seconds, 0.0, procs, settings={"SEGUE_LIMITS_SHED_LAG_MS": "0"})})
    capacity = capacity_run["messages_per_s"]
    # the same node flat out when clients send on their own clocks (open loop, each up to MAX_INFLIGHT
    # requests out, as in the overload run), shedding off: what it can deliver to traffic of that
    # shape. The closed loop above is a best case: every client waits for its ack, so requests come
    # in waves and Redis batches fill; this one is the yardstick for what shedding keeps
    open_run = emit({"run": f"capacity (open loop at {OPEN_CAPACITY_FACTOR:g}x, no shedding)", **run(
        args.clients, args.seconds, round(OPEN_CAPACITY_FACTOR * capacity), procs,
        settings={"SEGUE_LIMITS_SHED_LAG_MS": "0"})})
    open_capacity = open_run["messages_per_s"]
    offered = round(args.overload * capacity)
    # the node as configured by default: no hand-set cap, its admission budget adapts to its own
    # queueing delay (limits.shed_lag_ms); BENCH_NODE_EVENTS_PER_S adds a fixed ceiling to compare
    cap = os.environ.get("BENCH_NODE_EVENTS_PER_S", "")
    over = emit({"run": f"overload x{args.overload:g}", "node_events_per_s": cap or "adaptive", **run(
        args.clients, args.seconds, offered, procs, settings={"SEGUE_LIMITS_NODE_EVENTS_PER_S": cap} if cap else {})})
    summary = emit({"run": "overload summary", "capacity_msgs_per_s": capacity, "offered_msgs_per_s": offered,
                    "node_events_per_s": cap or "adaptive",
                    "goodput_msgs_per_s": over["messages_per_s"],
                    "goodput_of_capacity": round(over["messages_per_s"] / max(capacity, 1e-9), 3),
                    "capacity_open_loop_msgs_per_s": open_capacity,
                    "goodput_of_open_loop_capacity": round(over["messages_per_s"] / max(open_capacity, 1e-9), 3),
                    "open_loop_latency_ms_p99": open_run["latency_ms_p99"],
                    "latency_ms_p99": over["latency_ms_p99"], "latency_with_retries_ms_p99": over["latency_with_retries_ms_p99"],
                    "rate_limited": over["rate_limited"], "connection_errors": sum(
                        v for k, v in over["error_kinds"].items() if k not in ("rate_limited",)),
                    "reconnects": over["reconnects"], "lost": over["lost"], "duplicated": over["duplicated"],
                    # what the clients really sent (first tries and retries): back near what the node takes
                    # when retry_after_ms spreads the retries, far above it when clients retry into the wall
                    "attempts_per_s": round((over["acked"] + over["rate_limited"]) / args.seconds, 1),
                    # the CPU the server process got in each run (% of one core): on a shared machine the
                    # two runs may not get the same, and the ratio above then compares unlike machines
                    "server_cpu_pct": [capacity_run["server_cpu_pct"], open_run["server_cpu_pct"], over["server_cpu_pct"]],
                    "load_avg_1m": over["load_avg_1m"]})
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chat", description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=100, help="concurrent conversations (customer + agent each)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the measured window")
    parser.add_argument("--rate", type=float, default=5000.0,
                        help="messages/s offered in total (both directions); 0: closed loop, as fast as acks come")
    parser.add_argument("--procs", type=int, default=2, help="client processes")
    parser.add_argument("--overload", type=float, default=0.0, metavar="X",
                        help="measure the node's capacity (closed loop, and open loop flat out), then offer X "
                             "times the closed-loop one (e.g. 3): prints the runs and an overload line (goodput "
                             "against both capacities, p99, rate_limited)")
    parser.add_argument("--floor", action="store_true",
                        help="also run the floor (bench.chat_floor: a bare python-socketio server that acks and "
                             "forwards) at the same rate, and print Segue's server CPU per message as a ratio to it; "
                             "with --overload, both run at 60%% of the measured capacity")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="with --overload and/or --floor: measure N times (Segue and floor in turns, the "
                             "order swapped each time, so a drift of the machine falls on both) and print the "
                             "medians last")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.seconds <= 0 or args.procs < 1 or args.overload < 0 or args.repeat < 1:
        parser.error("--clients, --procs and --repeat must be at least 1, --seconds above 0, --overload 0 or more")
    procs = min(args.procs, args.clients)

    def emit(obj: dict[str, Any]) -> dict[str, Any]:
        print(json.dumps(obj), flush=True)
        return obj

    overloads: list[dict[str, Any]] = []
    comparisons: list[dict[str, Any]] = []
    for turn in range(args.repeat):
        rate = args.rate
        if args.overload:
            summary = _overload(args, procs, emit)
            overloads.append(summary)
            rate = round(0.6 * summary["capacity_msgs_per_s"])
        if args.floor:
            kinds = ["segue", "floor"] if turn % 2 == 0 else ["floor", "segue"]
            runs = {kind: emit({"run": kind, **run(args.clients, args.seconds, rate, procs, server_kind=kind)})
                    for kind in kinds}
            segue, floor = runs["segue"], runs["floor"]
            comparisons.append(emit({
                "run": "floor comparison", "rate": rate,
                "segue_cpu_us_per_msg": segue["server_cpu_us_per_msg"], "floor_cpu_us_per_msg": floor["server_cpu_us_per_msg"],
                "cpu_per_msg_ratio": round(segue["server_cpu_us_per_msg"] / max(floor["server_cpu_us_per_msg"], 1e-9), 2),
                "segue_latency_ms_p99": segue["latency_ms_p99"], "floor_latency_ms_p99": floor["latency_ms_p99"],
                "load_avg_1m": segue["load_avg_1m"]}))
        elif not args.overload:
            emit(run(args.clients, args.seconds, rate, procs))
    if args.repeat > 1 and (overloads or comparisons):
        medians: dict[str, Any] = {"run": f"medians of {args.repeat}"}
        for prefix, rows, keys in (
                ("overload_", overloads, ("goodput_of_capacity", "goodput_of_open_loop_capacity", "latency_ms_p99",
                                          "capacity_msgs_per_s", "capacity_open_loop_msgs_per_s")),
                ("", comparisons, ("cpu_per_msg_ratio", "segue_cpu_us_per_msg", "floor_cpu_us_per_msg",
                                   "segue_latency_ms_p99", "floor_latency_ms_p99"))):
            for key in keys if rows else ():
                values = [r[key] for r in rows]
                medians[prefix + key] = statistics.median(values)
                medians[f"{prefix}{key}_each"] = values
        emit(medians)
    return 0


if __name__ == "__main__":
    sys.exit(main())
