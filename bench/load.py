"""Load across nodes: customers and agents spread over N real nodes on one Redis, one JSON line.

    python -m bench.load --nodes 2 --customers 1000 --agents 50 --seconds 60 [--procs 2]

The same load runs twice in one run, first on one node and then on ``--nodes`` nodes (fresh
processes, fresh key prefix, same embedded Redis), so the throughput ratio compares like with like
on the same machine at the same time of day:

- Redis: ``SEGUE_REDIS_URL`` when set, else the embedded ``redis-server`` in a temporary folder;
- nodes: ``python -m server serve`` subprocesses with ``redis.fanout`` on, each its own port and
  ``cluster.node_id``; clients connect straight to a node (round robin: customer i and agent i go
  to node ``i % nodes``), as nginx's sticky map would spread them;
- ``--procs`` client processes (bench.chat's lean Socket.IO client): agents (capacity
  ``customers / agents`` chats each) go available; every customer starts a conversation; routing
  offers it (to an agent on any node) and the agent accepts;
- idle: RSS of each node before the clients connected and with every connection open and idle
  gives ``memory_per_idle_connection_kb`` (a customer socket and an agent socket are both counted);
- measured window: every customer sends ``message.send`` closed loop (the next when the last one
  is acked), so the nodes run as fast as they can; the agent receives it (fan-out when the agent's
  socket is on another node). ``messages_per_s`` counts deliveries to agents; latency is send ->
  delivery; ``lost`` = acked but not delivered or not in the stream; ``duplicated`` = an id
  delivered twice.

Printed: connections held (at the end of the window), messages/s, latency p50/p99, lost,
duplicated, RSS per node (MB), memory per idle connection (KB), CPU per node (% of one core),
``ratio_vs_1_node`` (messages/s with ``--nodes`` nodes over messages/s with one), and the same
figures of the one-node run under ``one_node``. Both runs share this machine's cores with the
client processes and Redis: on a 2-core machine the client processes alone take a good part of it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .chat import ROOT, LeanSocket, _count_stored, _cpu_seconds, _free_port, _percentile

SETUP_TIMEOUT_S = 300.0
ASSIGN_TIMEOUT_S = 30.0
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


async def _worker_main(index: int, urls: list[str], agents: list[tuple[int, str]], customers: list[int], conn: Any,
                       seconds: float) -> None:
    import aiohttp

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    received: set[str] = set()
    dups = 0
    latencies: list[float] = []
    offers: asyncio.Queue[tuple[LeanSocket, str]] = asyncio.Queue()
    socks: list[LeanSocket] = []
    last_rx = 0.0
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
                nonlocal dups, last_rx, redelivered
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
                    now = time.monotonic()
                    last_rx = now
                    text = data["data"]["text"]
                    if text.startswith("b "):
                        latencies.append((now - float(text.split(" ", 3)[2])) * 1000.0)
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

        agent_socks = []
        for node_index, token in agents:
            sock = LeanSocket(urls[node_index], "/agent", lambda n, d: None)
            sock.on_event = on_agent_event(sock)
            await sock.connect(session, {"v": 1, "token": token})
            reply = await sock.call("presence.set", {"status": "available"})
            assert reply["ok"], reply
            agent_socks.append(sock)
            socks.append(sock)
        conn.send(("agents", index))
        conn.recv()  # every process's agents are available: customers may start

        mine: list[tuple[LeanSocket, str]] = []
        assigned: set[str] = set()
        all_assigned = asyncio.Event()

        def on_customer_event(name: str, data: Any) -> None:
            if name == "event" and data.get("type") == "conversation.assigned":
                assigned.add(data["conversation_id"])
                if len(assigned) == len(customers):
                    all_assigned.set()

        for node_index in customers:
            sock = LeanSocket(urls[node_index], "/customer", on_customer_event)
            await sock.connect(session, {"v": 1})
            reply = await sock.call("conversation.start", {"channel": "chat"})
            assert reply["ok"], reply
            mine.append((sock, reply["conversation"]["id"]))
            socks.append(sock)

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
        try:  # every conversation has its agent
            await asyncio.wait_for(all_assigned.wait(), ASSIGN_TIMEOUT_S)
        except asyncio.TimeoutError:
            pass  # those customers do not send (counted as unassigned: an offer that never arrived)
        unassigned = [cid for _, cid in mine if cid not in assigned]
        mine = [(s, cid) for s, cid in mine if cid in assigned]
        conn.send(("connected", index))
        start_at = conn.recv()
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        stop_at = start_at + seconds
        acked: dict[str, list[str]] = {}
        errors: dict[str, int] = {}
        sent = 0

        async def sender(sock: LeanSocket, cid: str) -> None:
            nonlocal sent
            seq = 0
            while time.monotonic() < stop_at:
                seq += 1
                text = f"b {seq} {time.monotonic():.6f} hello, is my order on its way?"
                sent += 1
                try:
                    reply = await sock.call("message.send", {"conversation_id": cid, "text": text,
                                                             "client_id": f"c{seq}"}, timeout=60)
                except Exception as exc:  # noqa: BLE001
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                    continue
                if reply.get("ok"):
                    acked.setdefault(cid, []).append(reply["event"]["id"])
                else:
                    code = str(reply.get("error", {}).get("code"))
                    errors[code] = errors.get(code, 0) + 1
                    if code == "rate_limited":
                        await asyncio.sleep(reply["error"].get("retry_after_ms", 100) / 1000)

        await asyncio.gather(*(sender(s, cid) for s, cid in mine))
        last, quiet_since = -1, time.monotonic()
        while time.monotonic() - quiet_since < DRAIN_S:
            if len(received) != last:
                last, quiet_since = len(received), time.monotonic()
            await asyncio.sleep(0.25)
        held = sum(1 for s in socks if s.ws is not None and not s.ws.closed)
        acceptor.cancel()
        conn.send(("result", {"resyncs": resyncs, "redelivered": redelivered, "unassigned": len(unassigned), "acked": acked, "received": sorted(received), "dups": dups, "latencies": latencies,
                              "errors": errors, "sent": sent, "held": held, "last_rx": last_rx}))
    finally:
        for s in socks:
            try:
                await s.close()
            except Exception:  # noqa: BLE001
                pass
        await session.close()


def _worker(index: int, urls: list[str], agents: list[tuple[int, str]], customers: list[int], conn: Any,
            seconds: float) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    try:
        asyncio.run(_worker_main(index, urls, agents, customers, conn, seconds))
    except Exception as exc:  # noqa: BLE001
        conn.send(("error", f"worker {index}: {type(exc).__name__}: {exc}"))


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


def _start_nodes(n: int, redis_url: str, prefix: str, secret: str, tmp: Path) -> list[tuple[subprocess.Popen[str], str]]:
    nodes = []
    for i in range(n):
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SEGUE_")}
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
    for proc, _url in nodes:
        line = proc.stdout.readline() if proc.stdout else ""
        if "is running" not in line:
            raise RuntimeError(f"a node did not start: {line} (logs in {tmp})")
    return nodes


def run_once(n_nodes: int, customers: int, agents: int, seconds: float, procs: int, redis_url: str,
             tmp: Path) -> dict[str, Any]:
    prefix = f"load-{secrets.token_hex(4)}:"
    secret = secrets.token_urlsafe(24)
    nodes = _start_nodes(n_nodes, redis_url, prefix, secret, tmp)
    urls = [u for _, u in nodes]
    workers: list[tuple[mp.Process, Any]] = []
    try:
        capacity = -(-customers // agents) + 1  # a spare slot each: routing need not fill every agent exactly
        tokens = asyncio.run(_prepare(redis_url, prefix, secret, agents, capacity))
        time.sleep(0.5)
        rss_before = [_rss(p.pid) for p, _ in nodes]
        ctx = mp.get_context("spawn")
        for i in range(procs):
            parent, child = ctx.Pipe()
            my_agents = [(a % n_nodes, tokens[a]) for a in range(i, agents, procs)]
            my_customers = [c % n_nodes for c in range(i, customers, procs)]
            p = ctx.Process(target=_worker, args=(i, urls, my_agents, my_customers, child, seconds), daemon=True)
            p.start()
            workers.append((p, parent))

        def gather(kind: str) -> None:
            for _, parent in workers:
                if not parent.poll(2 * SETUP_TIMEOUT_S):
                    raise RuntimeError(f"a client process did not reach {kind} in time (logs in {tmp})")
                got, value = parent.recv()
                if got != kind:
                    raise RuntimeError(str(value))

        gather("agents")
        for _, parent in workers:
            parent.send("go")
        gather("connected")
        time.sleep(2.0)  # offers accepted, everything idle
        rss_idle = [_rss(p.pid) for p, _ in nodes]
        connections = customers + agents
        start_at = time.monotonic() + 0.5
        cpu0 = [_cpu_seconds(p.pid) for p, _ in nodes]
        busy0 = _machine_busy()
        for _, parent in workers:
            parent.send(start_at)
        time.sleep(max(0.0, start_at + seconds - time.monotonic()))
        cpu1 = [_cpu_seconds(p.pid) for p, _ in nodes]
        busy1 = _machine_busy()
        rss_busy = [_rss(p.pid) for p, _ in nodes]
        results = []
        for _, parent in workers:
            if not parent.poll(seconds + 300):
                raise RuntimeError("a client process did not finish")
            kind, value = parent.recv()
            if kind != "result":
                raise RuntimeError(str(value))
            results.append(value)
        received = set()
        for r in results:
            received.update(r["received"])
        acked: dict[str, list[str]] = {}
        for r in results:
            for cid, ids in r["acked"].items():
                acked.setdefault(cid, []).extend(ids)
        acked_all = {f"{cid}/{i}" for cid, ids in acked.items() for i in ids}
        _stored, missing = asyncio.run(_count_stored(redis_url, prefix, acked))
        latencies = [x for r in results for x in r["latencies"]]
        window = max(seconds, max((r["last_rx"] for r in results), default=0.0) - start_at)
        errors: dict[str, int] = {}
        for r in results:
            for k, v in r["errors"].items():
                errors[k] = errors.get(k, 0) + v
        return {
            "nodes": n_nodes,
            "connections_held": sum(r["held"] for r in results),
            "messages_per_s": round(len(received & acked_all) / window, 1),
            "latency_ms_p50": round(_percentile(latencies, 50), 2),
            "latency_ms_p99": round(_percentile(latencies, 99), 2),
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
            "cpu_pct_per_node": [round(100.0 * (b - a) / seconds, 1) for a, b in zip(cpu0, cpu1)],
            # the whole machine (nodes, Redis, the client processes, anything else running), % of all cores
            "machine_busy_pct": round(100.0 * (busy1[0] - busy0[0]) / max(1e-9, busy1[1] - busy0[1]), 1),
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


def run(nodes: int, customers: int, agents: int, seconds: float, procs: int) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from server import EmbeddedRedis

    tmp = Path(tempfile.mkdtemp(prefix="segue-load-"))
    embedded = None
    redis_url = os.environ.get("SEGUE_REDIS_URL", "")
    try:
        if not redis_url:
            embedded = asyncio.run(EmbeddedRedis.start(tmp))
            redis_url = embedded.url
        one = run_once(1, customers, agents, seconds, procs, redis_url, tmp)
        many = run_once(nodes, customers, agents, seconds, procs, redis_url, tmp) if nodes > 1 else one
        out = dict(many)
        out.update({
            "customers": customers, "agents": agents, "seconds": seconds,
            "ratio_vs_1_node": round(many["messages_per_s"] / one["messages_per_s"], 2) if one["messages_per_s"] else None,
            "one_node": {k: one[k] for k in ("messages_per_s", "latency_ms_p50", "latency_ms_p99", "lost", "duplicated",
                                              "resyncs", "machine_busy_pct",
                                              "rss_mb_per_node", "memory_per_idle_connection_kb", "cpu_pct_per_node",
                                              "connections_held")},
            "cpus": len(os.sched_getaffinity(0)), "client_procs": procs, "load_avg_1m": round(os.getloadavg()[0], 2),
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
    args = parser.parse_args(argv)
    if args.nodes < 1 or args.customers < 1 or args.agents < 1 or args.seconds <= 0 or args.procs < 1:
        parser.error("--nodes, --customers, --agents and --procs must be at least 1, --seconds above 0")
    print(json.dumps(run(args.nodes, args.customers, args.agents, args.seconds, args.procs)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
