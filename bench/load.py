"""Load across nodes: customers and agents spread over N real nodes on one Redis, one JSON line.

    python -m bench.load --nodes 2 --customers 1000 --agents 50 --seconds 60 [--procs 2] [--node-cpu CORES]

The same load runs twice in one run, first on one node and then on ``--nodes`` nodes (fresh
processes, fresh key prefix, same embedded Redis), so the throughput ratio compares like with like
on the same machine at the same time of day:

- Redis: ``SEGUE_REDIS_URL`` when set, else the embedded ``redis-server`` in a temporary folder;
- nodes: ``python -m server serve`` subprocesses with ``redis.fanout`` on, each its own port and
  ``cluster.node_id``; clients connect straight to a node (round robin: customer i and agent i go
  to node ``i % nodes``), as nginx's sticky map would spread them;
- ``--procs`` client processes (``--client python``: bench.chat's lean Socket.IO client on
  uvloop; ``--client node``: bench/node/load_client.mjs on Node.js, installed on demand):
  agents (capacity ``customers / agents`` chats each) go available; every customer starts a
  conversation; routing offers it (to an agent on any node) and the agent accepts;
- idle: RSS of each node before the clients connected and with every connection open and idle
  gives ``memory_per_idle_connection_kb`` (a customer socket and an agent socket are both counted);
- throughput window (``--seconds``): every customer sends ``message.send`` closed loop (the next
  when the last one is acked), so the nodes run as fast as they can; the agent receives it (fan-out
  when the agent's socket is on another node). ``messages_per_s`` counts deliveries to agents;
  ``latency_ms_*_saturated`` is send -> delivery in that window (queueing at saturation);
- latency window (``--open-seconds``): open loop, every customer sending at a fixed rate so that
  all offer ``--open-fraction`` (0.6) of the ``messages_per_s`` just measured: ``latency_ms_p50`` /
  ``latency_ms_p99`` are send -> delivery at that sustainable rate;
- ``lost`` = acked but not delivered or not in the stream; ``duplicated`` = an id delivered twice.

Printed: connections held (at the end), messages/s, latency p50/p99 (both windows), lost,
duplicated, RSS per node (MB), memory per idle connection (KB), CPU per node (% of one core), CPU
per delivered message of the nodes, the client processes and Redis (``cpu_ms_per_message``), what
the fan-out published per message (from the nodes' /metrics), ``ratio_vs_1_node`` (messages/s
with ``--nodes`` nodes over messages/s with one), and the same figures of the one-node run under
``one_node``.

Nodes of a fixed size (``--node-cpu CORES``, bench/cpucap.py): each node runs in its own cgroup
with a CPU quota of CORES per 20 ms period, the same in both runs, so the ratio says how throughput
grows when a node of equal size is added; the client processes and Redis run uncapped in the CPU
that is left. The default leaves them room: nodes x CORES x 1.5 <= 0.9 x the cores here (0.6 with
2 nodes on 2 cores; at most 1 core). Printed: ``node_cpu_cap``, and per node how often it spent its
quota (``throttled_pct_per_node``: % of the periods, ``throttled_s_per_node``: time it waited) next
to ``machine_busy_pct``: the nodes were the bottleneck when they were throttled while the machine
was not saturated. Needs root (a writable cgroup cpu controller); ``--node-cpu 0`` runs uncapped
nodes, and then both runs share this machine's cores with the client processes and Redis: with
two cores, the ratio is bounded by 2S / (S + F + C + R) (S: a node's CPU per message, F: the extra
of the fan-out, C: the clients', R: Redis's), which ``cpu_ms_per_message`` gives: it measures the
machine, not the nodes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .chat import ROOT, LeanSocket, _count_stored, _cpu_seconds, _dumps, _free_port, _percentile
from .clientproc import run_client
from .cpucap import CpuCap, CpuCapError, Throttling, available_cpus, default_node_cpu

SETUP_TIMEOUT_S = 300.0
ASSIGN_TIMEOUT_S = 120.0
DRAIN_S = 3.0


def _id_key(event_id: str) -> tuple[int, int]:
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq or 0)


def _machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far (/proc/stat)."""
    with open("/proc/stat") as f:
        parts = [float(x) for x in f.readline().split()[1:]]
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0.0)
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(parts) - idle) / tick, sum(parts) / tick


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class _LoadSocket(LeanSocket):
    """bench.chat's lean client, with an ack wait that costs one timer instead of ``wait_for``'s task
    and a frame sent in place (no task per send): the clients share the machine with the nodes."""

    async def call(self, event: str, data: Any, timeout: float = 60) -> Any:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        if self.closed or self.ws is None or self.ws.closed:
            self.closed = True
            raise ConnectionError("socket closed")
        ack_id = next(self._ids)
        self._acks[ack_id] = fut
        try:
            await self.ws.send_str(f"42{self.ns},{ack_id}{_dumps([event, data])}")
        except Exception:
            self._acks.pop(ack_id, None)
            raise ConnectionError("send failed") from None
        timer = loop.call_later(timeout, lambda: fut.done() or fut.set_exception(asyncio.TimeoutError()))
        try:
            return await fut
        finally:
            timer.cancel()
            self._acks.pop(ack_id, None)


async def _recv(conn: Any) -> Any:
    """The parent's next order, without blocking the event loop: the sockets must go on answering
    Engine.IO pings while this process waits for the others (the node closes a silent connection)."""
    while not conn.poll():
        await asyncio.sleep(0.05)
    return conn.recv()


async def _worker_main(index: int, urls: list[str], agents: list[tuple[int, str]], customers: list[int], conn: Any,
                       seconds: float) -> None:
    import aiohttp

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    received: set[str] = set()
    dups = 0
    # per phase ("c": closed loop, "o": open loop): latencies (ms), deliveries, last delivery
    latencies: dict[str, list[float]] = {"c": [], "o": []}
    delivered = {"c": 0, "o": 0}
    last_rx = {"c": 0.0, "o": 0.0}
    offers: asyncio.Queue[tuple[LeanSocket, str]] = asyncio.Queue()
    socks: list[LeanSocket] = []
    resyncs = redelivered = 0
    last_ids: dict[str, str] = {}
    held: dict[int, set[str]] = {}  # agent socket -> its conversations
    try:
        def on_agent_event(sock: LeanSocket) -> Any:
            def handle(name: str, data: Any) -> None:
                try:
                    handle_event(name, data)
                except Exception as exc:  # noqa: BLE001 - the reader must live on
                    print(f"bench: agent event {name} not handled: {exc!r}", file=sys.stderr)

            def handle_event(name: str, data: Any, resumed: bool = False) -> None:
                nonlocal dups, redelivered
                if name == "offer":
                    offers.put_nowait((sock, data["conversation"]["id"]))
                elif name == "resync":  # as the SDK does: resume each conversation from its last id
                    asyncio.ensure_future(resync(sock))
                elif name == "event" and data.get("type") == "message" and data["author"]["kind"] == "customer":
                    cid = data["conversation_id"]
                    if _id_key(data["id"]) > _id_key(last_ids.get(cid, "0-0")):
                        last_ids[cid] = data["id"]
                    eid = f'{cid}/{data["id"]}'  # stream ids are per conversation
                    if eid in received:
                        if resumed:
                            redelivered += 1  # at least once on the wire, dropped by id (not shown twice)
                        else:
                            dups += 1
                        return
                    received.add(eid)
                    now = time.time()
                    text = data["data"]["text"]
                    if text.startswith("b "):
                        _, phase, _seq, sent_at, _ = text.split(" ", 4)
                        latencies[phase].append((now - float(sent_at)) * 1000.0)
                        delivered[phase] += 1
                        last_rx[phase] = now
            handle.handle_event = handle_event  # type: ignore[attr-defined]
            return handle

        async def resync(sock: LeanSocket) -> None:
            nonlocal resyncs
            resyncs += 1
            for cid in list(held.get(id(sock), ())):
                payload = {"conversation_id": cid}
                if last_ids.get(cid):
                    payload["after"] = last_ids[cid]
                try:
                    reply = await sock.call("conversation.open", payload)
                except Exception:  # noqa: BLE001
                    continue
                for e in reply.get("events") or []:
                    sock.on_event.handle_event("event", e, resumed=True)  # type: ignore[attr-defined]

        for node_index, token in agents:
            sock = _LoadSocket(urls[node_index], "/agent", lambda n, d: None)
            sock.on_event = on_agent_event(sock)
            await sock.connect(session, {"v": 1, "token": token})
            reply = await sock.call("presence.set", {"status": "available"})
            assert reply["ok"], reply
            socks.append(sock)
        conn.send(("agents", index))
        await _recv(conn)  # every process's agents are available: customers may start

        mine: list[tuple[LeanSocket, str]] = []
        assigned: set[str] = set()
        all_assigned = asyncio.Event()

        def on_customer_event(name: str, data: Any) -> None:
            if name == "event" and data.get("type") == "conversation.assigned":
                assigned.add(data["conversation_id"])
                if len(assigned) == len(customers):
                    all_assigned.set()

        async def accept(sock: LeanSocket, cid: str) -> None:
            reply = await sock.call("offer.accept", {"conversation_id": cid})
            if reply.get("ok"):
                held.setdefault(id(sock), set()).add(cid)
            else:
                print(f"bench: offer.accept refused: {reply.get('error')}", file=sys.stderr)

        async def accept_offers() -> None:
            while True:
                sock, cid = await offers.get()
                asyncio.ensure_future(accept(sock, cid))

        acceptor = asyncio.ensure_future(accept_offers())
        opening = asyncio.Semaphore(32)  # customers connect a few dozen at a time (set-up is not measured)

        async def start_customer(node_index: int) -> None:
            async with opening:
                sock = _LoadSocket(urls[node_index], "/customer", on_customer_event)
                socks.append(sock)
                await sock.connect(session, {"v": 1})
                reply = await sock.call("conversation.start", {"channel": "chat"})
                assert reply["ok"], reply
                mine.append((sock, reply["conversation"]["id"]))

        await asyncio.gather(*(start_customer(n) for n in customers))
        try:  # every conversation has its agent
            await asyncio.wait_for(all_assigned.wait(), ASSIGN_TIMEOUT_S)
        except asyncio.TimeoutError:
            pass  # those customers do not send (counted as unassigned: an offer that never arrived)
        unassigned = [cid for _, cid in mine if cid not in assigned]
        mine = [(s, cid) for s, cid in mine if cid in assigned]
        conn.send(("connected", index))
        acked: dict[str, list[str]] = {}
        errors: dict[str, int] = {}
        sent = 0

        async def send_one(sock: LeanSocket, cid: str, phase: str, seq: int) -> None:
            nonlocal sent
            if sock.closed:
                return  # the node closed this connection (counted once, below); the sender stops
            text = f"b {phase} {seq} {time.time():.6f} hello, is my order on its way?"
            sent += 1
            try:
                reply = await sock.call("message.send", {"conversation_id": cid, "text": text,
                                                         "client_id": f"{phase}{seq}"}, timeout=60)
            except Exception as exc:  # noqa: BLE001
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                return
            if reply.get("ok"):
                acked.setdefault(cid, []).append(reply["event"]["id"])
            else:
                code = str(reply.get("error", {}).get("code"))
                errors[code] = errors.get(code, 0) + 1
                if code == "rate_limited":
                    await asyncio.sleep(reply["error"].get("retry_after_ms", 100) / 1000)

        async def closed_sender(sock: LeanSocket, cid: str, stop_at: float) -> None:
            seq = 0
            while time.time() < stop_at and not sock.closed:
                seq += 1
                await send_one(sock, cid, "c", seq)

        async def open_sender(sock: LeanSocket, cid: str, start_at: float, stop_at: float, interval: float) -> None:
            pending: set[asyncio.Future[None]] = set()
            at = start_at + random.random() * interval  # spread over the interval, not in step
            seq = 0
            while at < stop_at:
                await asyncio.sleep(max(0.0, at - time.time()))
                seq += 1
                task = asyncio.ensure_future(send_one(sock, cid, "o", seq))
                pending.add(task)
                task.add_done_callback(pending.discard)
                at += interval
            if pending:
                await asyncio.gather(*pending)

        async def drain() -> None:
            last, quiet_since = -1, time.time()
            while time.time() - quiet_since < DRAIN_S:
                if len(received) != last:
                    last, quiet_since = len(received), time.time()
                await asyncio.sleep(0.25)

        def phase_result(phase: str, cpu_s: float) -> dict[str, Any]:
            return {"delivered": delivered[phase], "latencies": latencies[phase], "last_rx": last_rx[phase],
                    "cpu_s": cpu_s}

        # closed loop: each customer sends the next message when the last one is acknowledged
        start_at = await _recv(conn)
        await asyncio.sleep(max(0.0, start_at - time.time()))
        cpu0 = time.process_time()
        await asyncio.gather(*(closed_sender(s, cid, start_at + seconds) for s, cid in mine))
        cpu1 = time.process_time()
        await drain()
        conn.send(("closed", phase_result("c", cpu1 - cpu0)))
        # open loop at a rate the parent chose (a share of what the closed loop delivered)
        order = await _recv(conn)
        if order is not None:
            start_at, rate_each, open_seconds = order
            await asyncio.sleep(max(0.0, start_at - time.time()))
            cpu0 = time.process_time()
            if rate_each > 0:
                await asyncio.gather(*(open_sender(s, cid, start_at, start_at + open_seconds, 1.0 / rate_each)
                                       for s, cid in mine))
            cpu1 = time.process_time()
            await drain()
            conn.send(("open", phase_result("o", cpu1 - cpu0)))
        held_now = sum(1 for s in socks if s.ws is not None and not s.ws.closed)
        acceptor.cancel()
        conn.send(("result", {"resyncs": resyncs, "redelivered": redelivered, "unassigned": len(unassigned),
                              "acked": acked, "received": sorted(received), "dups": dups, "errors": errors,
                              "sent": sent, "held": held_now}))
    finally:
        for s in socks:
            try:
                await s.close()
            except Exception:  # noqa: BLE001
                pass
        await session.close()


def _worker(index: int, urls: list[str], agents: list[tuple[int, str]], customers: list[int], conn: Any,
            seconds: float) -> None:
    run_client(index, conn, lambda: _worker_main(index, urls, agents, customers, conn, seconds))


NODE_DIR = ROOT / "bench" / "node"


def _node_client_ready() -> str:
    """``node`` with bench/node's packages (``ws``), installed on demand into bench/node/node_modules
    (git-ignored); a clear error when Node.js or npm is missing."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node:
        raise SystemExit("bench.load --client node needs Node.js (node) on PATH; or use --client python")
    if not (NODE_DIR / "node_modules" / "ws" / "package.json").exists():
        if not npm:
            raise SystemExit("bench.load --client node needs npm to install bench/node's packages; or use --client python")
        print("bench: installing bench/node's packages (npm install)", file=sys.stderr)
        subprocess.run([npm, "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=NODE_DIR, check=True,
                       stdout=sys.stderr)
    return node


class _NodeWorker:
    """A client process of bench/node/load_client.mjs, with the ``send``/``poll``/``recv`` of a
    multiprocessing pipe (one JSON value a line on its stdin and stdout)."""

    def __init__(self, node: str, settings: dict[str, Any], log: Path) -> None:
        import queue
        import threading

        self.proc = subprocess.Popen([node, str(NODE_DIR / "load_client.mjs")], cwd=NODE_DIR, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log.open("a"))
        self.lines: queue.Queue[Any] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.send(settings)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))
        self.lines.put(["error", f"node client exited ({self.proc.wait()})"])

    def send(self, value: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(value) + "\n")
        self.proc.stdin.flush()

    def poll(self, timeout: float) -> bool:
        try:
            self._next = self.lines.get(timeout=timeout)
            return True
        except Exception:  # noqa: BLE001 - queue.Empty
            return False

    def recv(self) -> Any:
        return tuple(self._next)

    # the process interface run_once uses for its workers
    def is_alive(self) -> bool:
        return self.proc.poll() is None

    def terminate(self) -> None:
        self.proc.terminate()


async def _prepare(redis_url: str, prefix: str, secret: str, n: int, capacity: int) -> list[str]:
    import redis.asyncio as aioredis

    from server import Signer, hash_password
    from signaling import Directory

    redis = aioredis.Redis.from_url(redis_url, decode_responses=True)
    directory = Directory(redis, prefix)
    pw_hash = hash_password(secrets.token_urlsafe(12))
    signer = Signer(secret.encode())
    tokens = []
    for i in range(n):
        account = await directory.create(f"load{i:05d}", None, f"Load Agent {i}", "agent", [], {"chat": capacity},
                                         password_hash=pw_hash)
        tokens.append(signer.sign("a", account.id, 3600, ver=account.token_version))
    await redis.aclose()
    return tokens


def _start_nodes(n: int, redis_url: str, prefix: str, secret: str, tmp: Path, caps: list[CpuCap],
                 nodes: list[tuple[subprocess.Popen[str], str]]) -> None:
    """Start ``n`` nodes into ``nodes`` (the caller stops them, also when one did not start), node i
    in ``caps[i]`` when there are caps."""
    for i in range(n):
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SEGUE_")}
        env["LC_ALL"] = "C.UTF-8"  # the start-up line read below is in English (docs/cli.md: it is translated)
        env.update({
            "SEGUE_REDIS_URL": redis_url, "SEGUE_REDIS_KEY_PREFIX": prefix, "SEGUE_AUTH_SECRET": secret,
            "SEGUE_REDIS_FANOUT": "true", "SEGUE_CLUSTER_NODE_ID": f"load-{i + 1}",
            "SEGUE_DATA_DIR": str(tmp / f"data{i}"), "SEGUE_LOG_LEVEL": "warning", "SEGUE_DEMO_ENABLED": "false",
            "SEGUE_ROUTING_OFFER_TIMEOUT_S": "120", "SEGUE_WEBHOOKS_ENABLED": "false",
            # a load generator on one address: per-address limits are for the internet, not for this
            "SEGUE_LIMITS_CONNECTS_PER_IP_PER_S": "0", "SEGUE_LIMITS_IP_EVENTS_PER_S": "0",
            "SEGUE_LIMITS_IP_CONVERSATIONS_PER_S": "0", "SEGUE_LIMITS_MAX_CONNECTIONS_PER_IP": "0",
            "SEGUE_LIMITS_EVENTS_PER_S": "0", "SEGUE_LIMITS_CONVERSATIONS_PER_S": "0", "SEGUE_LIMITS_SHED_LAG_MS": "0",
        })
        proc = subprocess.Popen([sys.executable, "-m", "server", "serve", "--port", str(port)], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=(tmp / f"node{i}.log").open("w"), text=True)
        nodes.append((proc, f"http://127.0.0.1:{port}"))
        if caps:
            caps[i].add(proc.pid)  # before it has imported anything: all of its work is capped
    for proc, _url in nodes:
        line = proc.stdout.readline() if proc.stdout else ""
        if "is running" not in line:
            raise RuntimeError(f"a node did not start: {line} (logs in {tmp})")


def _receive(workers: list[tuple[mp.Process, Any]], kind: str, timeout: float) -> list[Any]:
    """One message of ``kind`` from every client process (their errors raised here)."""
    out = []
    for _, parent in workers:
        if not parent.poll(timeout):
            raise RuntimeError(f"a client process did not send {kind} in time")
        got, value = parent.recv()
        if got != kind:
            raise RuntimeError(str(value))
        out.append(value)
    return out


_Reading = tuple[list[float], float, tuple[float, float], list[Throttling]]


class _Meter:
    """CPU seconds of the nodes, of Redis (when it is ours) and of the whole machine, and the
    nodes' CPU cap throttling (when capped), between two reads."""

    def __init__(self, node_pids: list[int], redis_pid: int | None, caps: list[CpuCap]) -> None:
        self.node_pids = node_pids
        self.redis_pid = redis_pid
        self.caps = caps

    def read(self) -> _Reading:
        redis = _cpu_seconds(self.redis_pid) if self.redis_pid else 0.0
        return ([_cpu_seconds(p) for p in self.node_pids], redis, _machine_busy(),
                [c.throttling() for c in self.caps])

    @staticmethod
    def spent(a: _Reading, b: _Reading) -> dict[str, Any]:
        throttling = [y - x for x, y in zip(a[3], b[3])]
        return {"nodes_s": [y - x for x, y in zip(a[0], b[0])], "redis_s": b[1] - a[1],
                "busy_pct": round(100.0 * (b[2][0] - a[2][0]) / max(1e-9, b[2][1] - a[2][1]), 1),
                # % of the CFS periods in which each node spent its quota and waited, and the time waited
                "throttled_pct": [round(t.throttled_pct, 1) for t in throttling] if throttling else None,
                "throttled_s": [round(t.throttled_s, 2) for t in throttling] if throttling else None}


def _fanout_stats(urls: list[str]) -> list[dict[str, float]]:
    """Each node's ``segue_fanout_messages`` counters (/metrics), by kind ({} with one node: no fan-out)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    out = []
    for url in urls:
        stats: dict[str, float] = {}
        try:
            with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:
                text = resp.read().decode()
        except OSError:
            text = ""
        for family in text_string_to_metric_families(text):
            if family.name == "segue_fanout_messages":
                for sample in family.samples:
                    if sample.name.endswith("_total"):
                        stats[sample.labels["kind"]] = sample.value
        out.append(stats)
    return out


def run_once(n_nodes: int, customers: int, agents: int, seconds: float, procs: int, redis_url: str,
             tmp: Path, redis_pid: int | None = None, open_fraction: float = 0.6,
             open_seconds: float = 20.0, client: str = "python", node_cpu: float = 0.0) -> dict[str, Any]:
    prefix = f"load-{secrets.token_hex(4)}:"
    secret = secrets.token_urlsafe(24)
    nodes: list[tuple[subprocess.Popen[str], str]] = []
    caps: list[CpuCap] = []
    workers: list[tuple[mp.Process, Any]] = []
    try:
        if node_cpu > 0:  # a group per node, each node_cpu cores (removed below, also on errors)
            for i in range(n_nodes):
                caps.append(CpuCap.create(f"segue-load-{os.getpid()}-{n_nodes}-{i}", node_cpu))
        _start_nodes(n_nodes, redis_url, prefix, secret, tmp, caps, nodes)
        urls = [u for _, u in nodes]
        meter = _Meter([p.pid for p, _ in nodes], redis_pid, caps)
        capacity = -(-customers // agents) + 1  # a spare slot each: routing need not fill every agent exactly
        tokens = asyncio.run(_prepare(redis_url, prefix, secret, agents, capacity))
        time.sleep(0.5)
        rss_before = [_rss(p.pid) for p, _ in nodes]
        ctx = mp.get_context("spawn")
        for i in range(procs):
            my_agents = [(a % n_nodes, tokens[a]) for a in range(i, agents, procs)]
            my_customers = [c % n_nodes for c in range(i, customers, procs)]
            if client == "node":
                worker = _NodeWorker(_node_client_ready(), {"index": i, "urls": urls, "agents": my_agents,
                                                            "customers": my_customers, "seconds": seconds},
                                     tmp / f"client{i}.log")
                workers.append((worker, worker))  # type: ignore[arg-type]
                continue
            parent, child = ctx.Pipe()
            p = ctx.Process(target=_worker, args=(i, urls, my_agents, my_customers, child, seconds), daemon=True)
            p.start()
            workers.append((p, parent))

        _receive(workers, "agents", 2 * SETUP_TIMEOUT_S)
        for _, parent in workers:
            parent.send("go")
        _receive(workers, "connected", 2 * SETUP_TIMEOUT_S)
        time.sleep(2.0)  # offers accepted, everything idle
        rss_idle = [_rss(p.pid) for p, _ in nodes]
        connections = customers + agents

        def phase(kind: str, order: Any, length: float) -> tuple[list[dict[str, Any]], dict[str, Any], float]:
            start_at = time.time() + 0.5  # the wall clock: the client processes may be Node's
            for _, parent in workers:
                parent.send(order(start_at))
            time.sleep(max(0.0, start_at - time.time()))
            a = meter.read()
            time.sleep(max(0.0, start_at + length - time.time()))
            spent = _Meter.spent(a, meter.read())
            results = _receive(workers, kind, length + 300)
            # the window: until the last delivery of this phase (deliveries queued behind the
            # window count, over the longer time they took)
            window = max(length, max((r["last_rx"] for r in results), default=0.0) - start_at)
            return results, spent, window

        fanout0 = _fanout_stats(urls)
        closed, closed_cpu, closed_window = phase("closed", lambda at: at, seconds)
        fanout1 = _fanout_stats(urls)
        rss_busy = [_rss(p.pid) for p, _ in nodes]
        delivered = sum(r["delivered"] for r in closed)
        mps = delivered / closed_window
        open_rate = open_fraction * mps
        active = customers  # customers whose conversation was assigned send; the rest are counted apart
        opened, open_cpu, open_window = ([], None, 0.0)
        if open_seconds > 0 and open_rate > 0:
            opened, open_cpu, open_window = phase("open", lambda at: (at, open_rate / active, open_seconds),
                                                  open_seconds)
        else:
            for _, parent in workers:
                parent.send(None)
        fanout2 = _fanout_stats(urls)
        results = _receive(workers, "result", 300)
        received = set()
        for r in results:
            received.update(r["received"])
        acked: dict[str, list[str]] = {}
        for r in results:
            for cid, ids in r["acked"].items():
                acked.setdefault(cid, []).extend(ids)
        acked_all = {f"{cid}/{i}" for cid, ids in acked.items() for i in ids}
        _stored, missing = asyncio.run(_count_stored(redis_url, prefix, acked))
        errors: dict[str, int] = {}
        for r in results:
            for k, v in r["errors"].items():
                errors[k] = errors.get(k, 0) + v
        saturated = [x for r in closed for x in r["latencies"]]
        at_rate = [x for r in opened for x in r["latencies"]]
        client_cpu = sum(r["cpu_s"] for r in closed)
        per_msg = 1000.0 / max(1, delivered)
        return {
            "nodes": n_nodes,
            "connections_held": sum(r["held"] for r in results),
            # throughput at saturation: closed loop (each customer sends when its last message is acked)
            "messages_per_s": round(mps, 1),
            "latency_ms_p50_saturated": round(_percentile(saturated, 50), 2),
            "latency_ms_p99_saturated": round(_percentile(saturated, 99), 2),
            # latency at a sustainable rate: open loop at open_fraction of the rate above
            "latency_offered_per_s": round(open_rate, 1) if opened else None,
            "latency_delivered_per_s": round(sum(r["delivered"] for r in opened) / open_window, 1) if opened else None,
            "latency_ms_p50": round(_percentile(at_rate, 50), 2) if opened else None,
            "latency_ms_p99": round(_percentile(at_rate, 99), 2) if opened else None,
            "lost": len(acked_all - received) + missing,
            "duplicated": sum(r["dups"] for r in results),
            # conversations whose offer never reached an agent in ASSIGN_TIMEOUT_S (they do not send)
            "unassigned": sum(r["unassigned"] for r in results),
            # resync pushes (the fan-out's Redis link dropped) and events they brought again
            "resyncs": sum(r["resyncs"] for r in results),
            "redelivered": sum(r["redelivered"] for r in results),
            "errors": errors,
            "rss_mb_per_node": [round(x / 2**20, 1) for x in rss_busy],
            "memory_per_idle_connection_kb": round((sum(rss_idle) - sum(rss_before)) / max(1, connections) / 1024, 1),
            "cpu_pct_per_node": [round(100.0 * x / seconds, 1) for x in closed_cpu["nodes_s"]],
            # with --node-cpu: how often each node hit its cap (closed loop, then open loop)
            "throttled_pct_per_node": closed_cpu["throttled_pct"],
            "throttled_s_per_node": closed_cpu["throttled_s"],
            "throttled_pct_per_node_at_rate": open_cpu["throttled_pct"] if open_cpu else None,
            "cpu_pct_per_node_at_rate": [round(100.0 * x / open_seconds, 1) for x in open_cpu["nodes_s"]]
            if open_cpu else None,
            # CPU per delivered message in the closed loop: all nodes, the client processes, Redis
            "cpu_ms_per_message": {"nodes": round(sum(closed_cpu["nodes_s"]) * per_msg, 3),
                                   "clients": round(client_cpu * per_msg, 3),
                                   "redis": round(closed_cpu["redis_s"] * per_msg, 3) if redis_pid else None},
            # what the nodes' fan-out did in the closed loop, per delivered message (all nodes): emits
            # published to another node, PUBLISH commands they took (batches), emits kept on their node
            "fanout_per_message": {k: round(sum(b.get(k, 0) - a.get(k, 0) for a, b in zip(fanout0, fanout1))
                                            / max(1, delivered), 3)
                                   for k in ("published_to_nodes", "publishes", "published_to_all", "kept_local")}
            if any(fanout1) else None,
            # PUBLISH commands per delivered message in the open loop (fewer emits per batch than at saturation)
            "fanout_publishes_per_message_at_rate": round(
                sum(b.get("publishes", 0) - a.get("publishes", 0) for a, b in zip(fanout1, fanout2))
                / max(1, sum(r["delivered"] for r in opened)), 3) if opened and any(fanout2) else None,
            # the whole machine (nodes, Redis, the client processes, anything else running), % of all cores
            "machine_busy_pct": closed_cpu["busy_pct"],
            "machine_busy_pct_at_rate": open_cpu["busy_pct"] if open_cpu else None,
        }
    finally:
        for p, _ in workers:
            if p.is_alive():
                p.terminate()
        for proc, _ in nodes:
            proc.send_signal(signal.SIGINT)
        for proc, _ in nodes:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for cap in caps:
            cap.remove()


def run(nodes: int, customers: int, agents: int, seconds: float, procs: int, open_fraction: float = 0.6,
        open_seconds: float = 20.0, client: str = "python", node_cpu: float = 0.0) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from server import EmbeddedRedis

    tmp = Path(tempfile.mkdtemp(prefix="segue-load-"))
    embedded = None
    redis_url = os.environ.get("SEGUE_REDIS_URL", "")
    try:
        if not redis_url:
            embedded = asyncio.run(EmbeddedRedis.start(tmp))
            redis_url = embedded.url
        redis_pid = embedded.process.pid if embedded is not None else None
        if client == "node":
            _node_client_ready()  # before anything starts: npm install on the first run
        args = (customers, agents, seconds, procs, redis_url, tmp, redis_pid, open_fraction, open_seconds, client,
                node_cpu)
        one = run_once(1, *args)
        many = run_once(nodes, *args) if nodes > 1 else one
        out = dict(many)
        out.update({
            "customers": customers, "agents": agents, "seconds": seconds, "open_fraction": open_fraction,
            "open_seconds": open_seconds,
            # cores each node may use, in both runs (None: uncapped, the ratio then measures the machine)
            "node_cpu_cap": node_cpu or None,
            "ratio_vs_1_node": round(many["messages_per_s"] / one["messages_per_s"], 2) if one["messages_per_s"] else None,
            "one_node": {k: one[k] for k in ("messages_per_s", "latency_ms_p50_saturated", "latency_ms_p99_saturated",
                                              "latency_offered_per_s", "latency_ms_p50", "latency_ms_p99", "lost", "unassigned",
                                              "duplicated", "resyncs", "machine_busy_pct", "cpu_ms_per_message",
                                              "rss_mb_per_node", "memory_per_idle_connection_kb", "cpu_pct_per_node",
                                              "connections_held", "throttled_pct_per_node", "throttled_s_per_node",
                                              "throttled_pct_per_node_at_rate", "machine_busy_pct_at_rate",
                                              "cpu_pct_per_node_at_rate")},
            "cpus": available_cpus(), "client_procs": procs, "client": client,
            "load_avg_1m": round(os.getloadavg()[0], 2),
        })
        return out
    finally:
        if embedded is not None:
            asyncio.run(embedded.stop())
        if os.environ.get("BENCH_DEBUG"):
            print(f"bench: logs kept in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=2, help="nodes of the second run (the first has one)")
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each measured window")
    parser.add_argument("--procs", type=int, default=2, help="client processes")
    parser.add_argument("--open-fraction", type=float, default=0.6,
                        help="latency is measured at this share of the closed loop's messages/s (open loop)")
    parser.add_argument("--open-seconds", type=float, default=20.0,
                        help="length of the open-loop window that measures latency (0: none)")
    parser.add_argument("--client", choices=("python", "node"), default="python",
                        help="the client processes: bench.chat's lean Python client on uvloop, or "
                             "bench/node/load_client.mjs (Node.js and the ws package, installed on demand with npm; "
                             "measured only ~10%% less CPU per message)")
    parser.add_argument("--node-cpu", type=float, default=None, metavar="CORES",
                        help="cores each node may use, the same in both runs (a cgroup CPU quota per node: needs "
                             "root); default: what leaves the clients and Redis room on this machine "
                             f"({default_node_cpu(available_cpus(), 2)} with 2 nodes on {available_cpus()} cores); "
                             "0: uncapped (the ratio then measures the machine, not the nodes)")
    args = parser.parse_args(argv)
    if args.nodes < 1 or args.customers < 1 or args.agents < 1 or args.seconds <= 0 or args.procs < 1:
        parser.error("--nodes, --customers, --agents and --procs must be at least 1, --seconds above 0")
    if not 0 < args.open_fraction <= 2 or args.open_seconds < 0:
        parser.error("--open-fraction must be above 0 and at most 2, --open-seconds 0 or more")
    node_cpu = default_node_cpu(available_cpus(), args.nodes) if args.node_cpu is None else args.node_cpu
    if not 0 <= node_cpu <= available_cpus():
        parser.error(f"--node-cpu must be 0 (uncapped) or cores per node, at most {available_cpus()}")
    try:
        result = run(args.nodes, args.customers, args.agents, args.seconds, args.procs, args.open_fraction,
                     args.open_seconds, args.client, node_cpu)
    except CpuCapError as exc:
        print(f"bench.load: cannot cap the nodes at {node_cpu} cores each: {exc}. Run as root (cgroup cpu "
              "controller writable), or pass --node-cpu 0 for uncapped nodes.", file=sys.stderr)
        return 2
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
