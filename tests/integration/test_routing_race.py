"""Two OS processes route the same conversations against one Redis: nothing is handed out twice.

Each worker process runs what a node's routing loop runs (enqueue, ``expire_offers``,
``overflow``, ``route``) and plays the agents too: it accepts, declines or ignores offers (its
own and the other process's: offers go through a shared list, and some are accepted twice on
purpose), then releases accepted conversations a few rounds later. Offers time out quickly, so
expiry races accept, and agents who miss an offer are set back to available while routing runs.

What is checked, with every accept recorded (with its process id) in a Redis list:
- every conversation is accepted exactly once, across both processes;
- at every accept, the agent's load on that channel (a counter bumped right after each
  successful accept and dropped right before each release, so it never over-counts) stays
  within capacity;
- while the workers run, this process takes atomic snapshots (MULTI) of routing's own state and
  checks that no agent is over capacity and no conversation is held by two agents.

``test_checker_catches_a_read_then_write_router`` runs the same harness with a deliberately
non-atomic "router" (read the queue and the agents, then write), with the two processes made to
read before either writes, and shows the checks report the double assignment.

This file is also the workers' program: ``python test_routing_race.py worker|naive URL PREFIX ID``.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Callable, Iterable

import redis.asyncio as aioredis

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # when run as a worker program
    sys.path.insert(0, str(REPO))

from server.config import QueueConfig, RoutingConfig  # noqa: E402
from signaling.routing import Presence, Router  # noqa: E402

N_CONVERSATIONS = 100
N_AGENTS = 10
N_WORKERS = 2
CAPACITY = {"chat": 2, "voice": 1}
WORKER_DEADLINE_S = 120.0  # a safety net against a hang, not a performance bound


def routing_config() -> RoutingConfig:
    return RoutingConfig(
        offer_timeout_s=0.3,
        default_queue="general",
        queues=[
            QueueConfig(name="general"),
            QueueConfig(name="billing", skills=["billing"], overflow_after_s=1, overflow_queue="general"),
        ],
    )


def agent_ids() -> list[str]:
    return [f"agent{i}" for i in range(N_AGENTS)]


def agent_skills(index: int) -> list[str]:
    # Nobody has "billing": billing conversations wait until they overflow to general, so
    # overflow() runs against route() in both processes too.
    return ["spanish"] if index % 2 else []


def conversations_of(worker: int) -> list[tuple[str, str, str, list[str]]]:
    """(id, queue, channel, required skills) for the conversations this worker enqueues."""
    per = N_CONVERSATIONS // N_WORKERS
    out = []
    for i in range(per):
        queue = "billing" if i % 4 == 0 else "general"
        channel = "voice" if i % 5 == 0 else "chat"
        skills = ["spanish"] if i % 7 == 0 else []
        out.append((f"w{worker}-c{i}", queue, channel, skills))
    return out


class Keys:
    """The test's own bookkeeping keys (beside routing's, under the same prefix)."""

    def __init__(self, prefix: str) -> None:
        self.log = prefix + "race:log"  # list of JSON records: accept / release / double
        self.load = prefix + "race:load"  # hash "agent|channel" -> conversations held
        self.offers = prefix + "race:offers"  # list of offers for either process to act on
        self.nacked = prefix + "race:nacked"  # set: conversations already declined/ignored once
        self.done = prefix + "race:done"  # released conversations
        self.ready = prefix + "race:ready"
        self.go = prefix + "race:go"
        self.naive_queue = prefix + "race:naive:queue"
        self.naive_barrier = prefix + "race:naive:barrier"


# -- the checks -----------------------------------------------------------------------------------


def history_violations(records: Iterable[dict[str, Any]], capacity: dict[str, int]) -> list[str]:
    """Problems in the recorded history: double accepts, loads over capacity at any step."""
    problems: list[str] = []
    accepted: dict[str, list[dict[str, Any]]] = defaultdict(list)
    open_now: Counter[tuple[str, str]] = Counter()
    for rec in records:
        key = (rec["agent"], rec["channel"])
        if rec["op"] == "accept":
            accepted[rec["conv"]].append(rec)
            open_now[key] += 1
            if rec["load"] > capacity[rec["channel"]] or open_now[key] > capacity[rec["channel"]]:
                problems.append(
                    f"{rec['agent']} held {max(rec['load'], open_now[key])} {rec['channel']} conversations "
                    f"(capacity {capacity[rec['channel']]}) after accepting {rec['conv']} in process {rec['pid']}"
                )
        elif rec["op"] == "release":
            open_now[key] -= 1
        elif rec["op"] == "double":
            problems.append(f"{rec['conv']} accepted a second time by {rec['agent']} in process {rec['pid']}")
    for conv, recs in accepted.items():
        if len(recs) > 1:
            who = ", ".join(f"{r['agent']} (process {r['pid']})" for r in recs)
            problems.append(f"{conv} was accepted {len(recs)} times: {who}")
    return problems


def state_violations(agents: dict[str, str], convs: dict[str, str]) -> list[str]:
    """Problems in one atomic snapshot of routing's records."""
    problems: list[str] = []
    holders: dict[str, list[str]] = defaultdict(list)
    for agent_id, raw in agents.items():
        a = json.loads(raw)
        held = a.get("convs") or {}
        load = Counter(held.values())
        for channel, n in load.items():
            if n > int((a.get("capacity") or {}).get(channel, 0)):
                problems.append(f"snapshot: {agent_id} holds {n} {channel} conversations, capacity {a['capacity']}")
        for conv in held:
            holders[conv].append(agent_id)
    for conv, who in holders.items():
        if len(who) > 1:
            problems.append(f"snapshot: {conv} held by {who}")
    for conv_id, raw in convs.items():
        c = json.loads(raw)
        assigned = c.get("assigned") or {}
        if len(assigned) > 1:
            problems.append(f"snapshot: {conv_id} assigned to {sorted(assigned)}")
        if c.get("offer") and assigned:
            problems.append(f"snapshot: {conv_id} offered while assigned (no transfers in this test)")
        if c.get("offer") and conv_id not in (json.loads(agents.get(c["offer"]["agent"], "{}")).get("convs") or {}):
            problems.append(f"snapshot: {conv_id} offered to {c['offer']['agent']} without counting against them")
    return problems


# -- the workers (run as separate processes) ------------------------------------------------------


async def _wait_for_go(r: aioredis.Redis, keys: Keys) -> None:
    await r.incr(keys.ready)
    while not await r.exists(keys.go):
        await asyncio.sleep(0.005)


async def run_worker(url: str, prefix: str, worker: int) -> dict[str, Any]:
    r = aioredis.Redis.from_url(url, decode_responses=True)
    keys = Keys(prefix)
    router = Router(r, prefix, routing_config())
    rng = random.Random(1000 + worker)
    pid = os.getpid()
    todo = conversations_of(worker)
    held: list[tuple[str, str, str, int]] = []  # conversation, agent, channel, release at round
    counts: Counter[str] = Counter()
    await _wait_for_go(r, keys)
    deadline = time.monotonic() + WORKER_DEADLINE_S
    rounds = 0
    try:
        while time.monotonic() < deadline:
            rounds += 1
            for _ in range(3):
                if todo:
                    await router.enqueue(*todo.pop(0))
                    counts["enqueued"] += 1
            counts["expired"] += len(await router.expire_offers())
            counts["overflowed"] += len(await router.overflow())
            offers = await router.route()
            counts["routed"] += len(offers)
            if offers:
                await r.rpush(keys.offers, *[json.dumps([o.conversation_id, o.agent_id, o.channel]) for o in offers])
            for item in await r.lpop(keys.offers, 4) or []:
                conv, agent, channel = json.loads(item)
                if rng.random() < 0.3 and await r.sadd(keys.nacked, conv) == 1:
                    if rng.random() < 0.5:
                        counts["declined"] += int(await router.decline(agent, conv))
                    continue  # otherwise ignored: it times out and the agent is set away
                if rng.random() < 0.15:
                    await r.rpush(keys.offers, item)  # let the other process try to accept it too
                if await router.accept(agent, conv):
                    load = await r.hincrby(keys.load, f"{agent}|{channel}", 1)
                    record = {"op": "accept", "pid": pid, "conv": conv, "agent": agent, "channel": channel, "load": load}
                    await r.rpush(keys.log, json.dumps(record))
                    counts["accepted"] += 1
                    held.append((conv, agent, channel, rounds + rng.randint(1, 4)))
                    if rng.random() < 0.2 and await router.accept(agent, conv):
                        await r.rpush(keys.log, json.dumps({**record, "op": "double"}))
                else:
                    counts["lost_accept"] += 1
            for entry in [h for h in held if h[3] <= rounds]:
                held.remove(entry)
                conv, agent, channel, _ = entry
                await r.hincrby(keys.load, f"{agent}|{channel}", -1)
                await r.rpush(keys.log, json.dumps({"op": "release", "pid": pid, "conv": conv, "agent": agent, "channel": channel}))
                if not await router.release(agent, conv):
                    await r.rpush(keys.log, json.dumps({"op": "release_refused", "pid": pid, "conv": conv, "agent": agent, "channel": channel}))
                await r.incr(keys.done)
            if rounds % 4 == worker:  # agents who missed an offer come back
                for a in await router.agents():
                    if a.presence is Presence.AWAY:
                        await router.set_presence(a.id, Presence.AVAILABLE)
            if not todo and not held and int(await r.get(keys.done) or 0) >= N_CONVERSATIONS:
                break
            await asyncio.sleep(rng.random() * 0.004)
    finally:
        await r.aclose()
    return {"pid": pid, "worker": worker, "rounds": rounds, **counts}


async def run_naive_worker(url: str, prefix: str, worker: int) -> dict[str, Any]:
    """A router that reads, then writes: what the Lua scripts exist to prevent."""
    r = aioredis.Redis.from_url(url, decode_responses=True)
    keys = Keys(prefix)
    pid = os.getpid()
    try:
        await _wait_for_go(r, keys)
        (conv,) = await r.zrange(keys.naive_queue, 0, 0)  # read the oldest waiting conversation
        agent = None
        for candidate in agent_ids():  # read loads: first agent with a free chat slot
            if int(await r.hget(keys.load, f"{candidate}|chat") or 0) < CAPACITY["chat"]:
                agent = candidate
                break
        assert agent is not None
        # Both processes read before either writes (a GC pause or a slow network does this in
        # production); a barrier makes that interleaving certain instead of likely.
        await r.incr(keys.naive_barrier)
        while int(await r.get(keys.naive_barrier) or 0) < N_WORKERS:
            await asyncio.sleep(0.005)
        await r.zrem(keys.naive_queue, conv)
        load = await r.hincrby(keys.load, f"{agent}|chat", 1)
        await r.rpush(keys.log, json.dumps({"op": "accept", "pid": pid, "conv": conv, "agent": agent, "channel": "chat", "load": load}))
        return {"pid": pid, "worker": worker, "assigned": [conv, agent]}
    finally:
        await r.aclose()


# -- the parent: start the processes, watch, check -------------------------------------------------


async def _run_processes(
    kind: str, url: str, prefix: str, redis_client: aioredis.Redis, watch: Callable[[], Any] | None = None
) -> list[dict[str, Any]]:
    keys = Keys(prefix)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, str(Path(__file__).resolve()), kind, url, prefix, str(i),
            cwd=str(REPO), env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        for i in range(N_WORKERS)
    ]
    outputs = [asyncio.ensure_future(p.communicate()) for p in procs]
    try:
        while int(await redis_client.get(keys.ready) or 0) < N_WORKERS:
            if any(p.returncode is not None for p in procs):
                break
            await asyncio.sleep(0.01)
        await redis_client.set(keys.go, 1)
        while not all(o.done() for o in outputs):
            if watch is not None:
                await watch()
            await asyncio.sleep(0.005)
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
    summaries = []
    for p, out in zip(procs, outputs):
        stdout, stderr = out.result()
        assert p.returncode == 0, f"worker process failed ({p.returncode}):\n{stderr.decode()[-3000:]}"
        summaries.append(json.loads(stdout.decode().strip().splitlines()[-1]))
    return summaries


async def test_two_processes_never_double_assign_or_exceed_capacity(redis_url: str, make_config: Callable[..., Any]) -> None:
    prefix = make_config().redis.key_prefix
    keys = Keys(prefix)
    r = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        router = Router(r, prefix, routing_config())
        for i, agent in enumerate(agent_ids()):
            await router.register_agent(agent, agent_skills(i), CAPACITY, list(CAPACITY))
            await router.set_presence(agent, Presence.AVAILABLE)

        snapshot_problems: list[str] = []
        snapshots = 0

        async def watch() -> None:
            nonlocal snapshots
            async with r.pipeline(transaction=True) as pipe:  # one atomic read of both hashes
                agents, convs = await pipe.hgetall(router.keys["agents"]).hgetall(router.keys["convs"]).execute()
            snapshots += 1
            snapshot_problems.extend(state_violations(agents, convs))

        summaries = await _run_processes("worker", redis_url, prefix, r, watch)

        records = [json.loads(x) for x in await r.lrange(keys.log, 0, -1)]
        print(f"workers: {summaries}; snapshots checked: {snapshots}")  # shown with pytest -s
        problems = history_violations(records, CAPACITY) + snapshot_problems
        problems += [f"release refused: {x}" for x in records if x["op"] == "release_refused"]
        assert problems == [], "\n".join(problems[:20])

        accepted = Counter(x["conv"] for x in records if x["op"] == "accept")
        expected = {c[0] for w in range(N_WORKERS) for c in conversations_of(w)}
        assert set(accepted) == expected, (
            f"not every conversation was answered (stalled?): missing {sorted(expected - set(accepted))[:10]}; "
            f"workers: {summaries}"
        )
        assert all(n == 1 for n in accepted.values())
        billing = sum(1 for w in range(N_WORKERS) for c in conversations_of(w) if c[1] == "billing")
        assert sum(s.get("overflowed", 0) for s in summaries) == billing  # each moved exactly once
        pids = {s["pid"] for s in summaries}
        assert len(pids) == N_WORKERS and all(s["rounds"] > 0 for s in summaries)
        assert {x["pid"] for x in records} <= pids
        assert snapshots > 0

        # routing's final state: nothing held, nothing waiting, nothing offered
        await watch()
        assert snapshot_problems == []
        assert all(a.conversations == {} for a in await router.agents()), await router.agents()
        assert await r.hlen(router.keys["convs"]) == 0
        assert [s.waiting for s in await router.queue_stats()] == [0, 0]
        assert await r.zcard(router.keys["offers"]) == 0
    finally:
        await r.aclose()


async def test_checker_catches_a_read_then_write_router(redis_url: str, make_config: Callable[..., Any]) -> None:
    prefix = make_config().redis.key_prefix
    keys = Keys(prefix)
    r = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        await r.zadd(keys.naive_queue, {"c1": 1, "c2": 2})
        await r.hset(keys.load, "agent0|chat", CAPACITY["chat"] - 1)  # one free slot left
        summaries = await _run_processes("naive", redis_url, prefix, r)
        assert [s["assigned"] for s in summaries] == [["c1", "agent0"], ["c1", "agent0"]]
        records = [json.loads(x) for x in await r.lrange(keys.log, 0, -1)]
        problems = history_violations(records, CAPACITY)
        assert any("c1 was accepted 2 times" in p for p in problems), problems
        assert any("agent0 held 3 chat conversations (capacity 2)" in p for p in problems), problems
    finally:
        await r.aclose()


def _main(argv: list[str]) -> None:
    kind, url, prefix, worker = argv[1], argv[2], argv[3], int(argv[4])
    run = {"worker": run_worker, "naive": run_naive_worker}[kind]
    print(json.dumps(asyncio.run(run(url, prefix, worker))))


if __name__ == "__main__":
    _main(sys.argv)
