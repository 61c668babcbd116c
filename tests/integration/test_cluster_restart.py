"""A node that starts again under the id of its previous run (``cluster.node_id``, or the id kept
in its data folder: signaling/cluster.py ``claim_node_id``) while the others reap that run: real
Redis, the cluster registry of two nodes driven step by step (their heartbeat loops idle).

- a survivor is reaping the previous run when the node starts: the node waits until the reap is
  over, so the reap does not drop what the new run registers (its heartbeat, its address);
- the reap mark left by that reap is taken over and cleared at the node's first sweep, so that
  when the new run dies, it is reaped at once (not after the mark's 60 s).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from server.config import load_config
from signaling.cluster import Cluster

NODE = "edge-1"


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


def node(redis: aioredis.Redis, prefix: str, node_id: str) -> Cluster:
    # heartbeats far apart: the test beats and sweeps itself
    config = load_config(environ={}, overrides={"redis.key_prefix": prefix, "cluster.heartbeat_s": 60.0,
                                                "cluster.node_ttl_s": 120.0, "http.port": 18081})
    return Cluster(redis, prefix, config, node_id)


async def until(check: Any, what: str) -> None:
    for _ in range(200):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not seen in 10 s: {what}")


async def test_a_node_started_while_its_previous_run_is_reaped_waits_for_the_reap(redis: aioredis.Redis) -> None:
    prefix = f"test-{uuid.uuid4().hex[:10]}:"
    survivor, again = node(redis, prefix, "edge-2"), node(redis, prefix, NODE)
    # the previous run of edge-1: silent for three minutes, with an agent's socket registered
    await redis.zadd(f"{prefix}nodes", {NODE: int(time.time() * 1000) - 180_000})
    await redis.sadd(f"{prefix}node:{NODE}:agents", "ana\tsid-1")
    await redis.sadd(f"{prefix}agent:ana:sockets", "sid-1")
    reaping, finish = asyncio.Event(), asyncio.Event()
    lost: list[str] = []

    async def agent_lost(agent: str) -> None:  # the survivor's reap, held half-way
        lost.append(agent)
        reaping.set()
        await finish.wait()

    survivor.on_agent_lost = agent_lost
    sweep = asyncio.ensure_future(survivor.sweep())
    await asyncio.wait_for(reaping.wait(), 10)
    assert await redis.get(f"{prefix}node:{NODE}:reaper") == "edge-2"
    starting = asyncio.ensure_future(again.start())
    try:
        await asyncio.sleep(0.5)  # the node is in its start-up now (without the wait it would have registered)
        finish.set()
        reports = await asyncio.wait_for(sweep, 10)
        assert [r.node for r in reports] == [NODE] and lost == ["ana"]
        await asyncio.wait_for(starting, 10)
        # the new run is registered, after the reap: alive, with its address
        assert await survivor.is_alive(NODE)
        assert (await redis.hgetall(f"{prefix}node:{NODE}"))["internal_url"] == "http://127.0.0.1:18081"
        assert await survivor.address_of(NODE) == "http://127.0.0.1:18081"
        # the reap mark is the node's own until its first sweep, which clears it
        assert await redis.get(f"{prefix}node:{NODE}:reaper") == NODE
        assert await survivor.sweep() == []
        await again.sweep()
        assert await redis.exists(f"{prefix}node:{NODE}:reaper") == 0

        # the new run leaves (or dies): the survivor reaps it at its next sweep
        await again.stop(leave=True)
        assert [r.node for r in await survivor.sweep()] == [NODE]
        assert not await survivor.is_alive(NODE)
    finally:
        finish.set()
        for task in (sweep, starting):
            if not task.done():
                task.cancel()
        await again.stop(leave=False)
        await survivor.stop(leave=False)


async def test_a_node_started_again_after_the_reap_is_reaped_at_once_when_it_dies(redis: aioredis.Redis) -> None:
    prefix = f"test-{uuid.uuid4().hex[:10]}:"
    survivor, first = node(redis, prefix, "edge-2"), node(redis, prefix, NODE)
    await first.start()
    await first.stop(leave=True)  # a clean stop: the survivor reaps it now
    assert [r.node for r in await survivor.sweep()] == [NODE]
    assert await redis.get(f"{prefix}node:{NODE}:reaper") == "edge-2"  # the reap's mark (60 s)
    again = node(redis, prefix, NODE)
    try:
        await again.start()  # at once, under the same id
        assert await survivor.is_alive(NODE)
        await again.sweep()
        await again.stop(leave=True)  # and gone again
        assert [r.node for r in await survivor.sweep()] == [NODE], "the second death waits for the first reap's mark"
    finally:
        await again.stop(leave=False)
        await first.stop(leave=False)
        await survivor.stop(leave=False)
