"""signaling.script_batcher.ScriptBatcher against a real Redis: replies reach their callers in order, an
error reply stays with its call, a flushed script is loaded again, a broken connection is replaced,
a silent Redis times out, a demoted one is left."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from server.embedded_redis import EmbeddedRedis
from server.redis_client import make_redis
from signaling.script_batcher import ScriptBatcher

ECHO = """
if ARGV[1] == 'fail' then return redis.error_reply('refused ' .. ARGV[1]) end
redis.call('RPUSH', KEYS[1], ARGV[1])
return ARGV[1]
"""


async def test_batches_keep_order_and_errors_stay_with_their_call(redis_url: Any) -> None:
    redis = make_redis(redis_url)
    key = "test-batcher:order"
    try:
        await redis.delete(key)
        batcher = ScriptBatcher(redis, redis.register_script(ECHO))
        args = [str(i) for i in range(300)]
        args[137] = "fail"
        results = await asyncio.gather(*(batcher([key], [a]) for a in args), return_exceptions=True)
        for i, (arg, result) in enumerate(zip(args, results)):
            if arg == "fail":
                assert isinstance(result, ResponseError) and "refused fail" in str(result), result
            else:
                assert result == arg, (i, result)
        # every call ran once, in the order it was made
        assert await redis.lrange(key, 0, -1) == [a for a in args if a != "fail"]
        # calls made while a batch is in flight go as the next batch, still in order
        first = [batcher([key], [f"a{i}"]) for i in range(5)]
        await asyncio.sleep(0)
        second = [batcher([key], [f"b{i}"]) for i in range(5)]
        assert await asyncio.gather(*first, *second) == [f"a{i}" for i in range(5)] + [f"b{i}" for i in range(5)]
        assert (await redis.lrange(key, -10, -1)) == [f"a{i}" for i in range(5)] + [f"b{i}" for i in range(5)]
    finally:
        await redis.delete(key)
        await redis.aclose()


async def test_flushed_script_and_killed_connection_recover(redis_url: Any) -> None:
    redis = make_redis(redis_url)
    key = "test-batcher:recover"
    try:
        await redis.delete(key)
        before = {c["id"] for c in await redis.client_list()}
        batcher = ScriptBatcher(redis, redis.register_script(ECHO))
        assert await batcher([key], ["one"]) == "one"
        held = {c["id"] for c in await redis.client_list()} - before  # the batcher's own connection
        await redis.script_flush()  # as after a Redis restart: NOSCRIPT, loaded and run again
        assert await asyncio.gather(*(batcher([key], [f"x{i}"]) for i in range(20))) == [f"x{i}" for i in range(20)]
        # the batcher's connection dies under it: at most the call in flight fails (the client's
        # retry policy), the next ones go on a fresh connection
        assert held
        for client_id in held:
            await redis.client_kill_filter(_id=client_id)
        try:
            await batcher([key], ["maybe"])
        except RedisConnectionError:
            pass
        assert await batcher([key], ["two"]) == "two"
        stored = await redis.lrange(key, 0, -1)
        assert stored[0] == "one" and stored[-1] == "two" and stored.count("x0") == 1
    finally:
        await redis.delete(key)
        await redis.aclose()


async def test_long_replies_and_a_silent_redis(redis_url: Any) -> None:
    """A reply larger than one read arrives whole; a Redis that stops answering fails the calls in
    flight after the pool's socket timeout (not never), and the next call goes on a new connection."""
    redis = make_redis(redis_url, socket_timeout=0.5)
    key = "test-batcher:silent"
    try:
        await redis.delete(key)
        batcher = ScriptBatcher(redis, redis.register_script(ECHO))
        big = "x" * 3_000_000
        assert await asyncio.gather(batcher([key], [big]), batcher([key], ["after"])) == [big, "after"]
        await redis.execute_command("CLIENT", "PAUSE", "1200", "ALL")
        paused_at = asyncio.get_running_loop().time()
        try:
            await batcher([key], ["unanswered"])
        except RedisTimeoutError as exc:
            assert "Timeout talking to Redis" in str(exc)
        else:
            raise AssertionError("a call to a Redis that does not answer must time out")
        await asyncio.sleep(max(0.0, paused_at + 1.3 - asyncio.get_running_loop().time()))  # the pause is over
        assert await batcher([key], ["back"]) == "back"
        stored = await redis.lrange(key, 0, -1)
        assert stored[-1] == "back" and stored.count("unanswered") <= 1  # dropped with the connection, or run once
    finally:
        await asyncio.sleep(max(0.0, paused_at + 1.3 - asyncio.get_running_loop().time()))
        await redis.delete(key)
        await redis.aclose()


async def test_a_primary_demoted_to_replica_is_left_not_written_to(tmp_path: Path) -> None:
    """A Redis turned into a replica under the batcher's connection (what a Sentinel failover does
    to the old primary when it comes back) answers scripts with a wrapped READONLY error: the
    callers hear a connection error (the service says "retry shortly"), not a script error, and the
    connection is given up, so the next call goes on a new one (with Sentinel: to the new primary)."""
    primary = await EmbeddedRedis.start(tmp_path / "a")
    other = await EmbeddedRedis.start(tmp_path / "b")
    redis = make_redis(primary.url)
    try:
        batcher = ScriptBatcher(redis, redis.register_script(ECHO))
        assert await batcher(["k"], ["before"]) == "before"
        port = other.url.rsplit(":", 1)[1].split("/")[0]
        await redis.execute_command("REPLICAOF", "127.0.0.1", port)
        results = await asyncio.gather(*(batcher(["k"], [f"r{i}"]) for i in range(3)), return_exceptions=True)
        assert all(isinstance(r, RedisConnectionError) and "replica" in str(r) for r in results), results
        await redis.execute_command("REPLICAOF", "NO", "ONE")
        assert await batcher(["k"], ["after"]) == "after"
    finally:
        await redis.aclose()
        await primary.stop()
        await other.stop()


async def test_calls_in_flight_when_redis_dies_fail_at_once_not_at_the_timeout(tmp_path: Path) -> None:
    """Redis killed with calls in flight: its socket is closed by the kernel, and the calls fail
    with a connection error then (the service answers "retry shortly"), not with a timeout after
    the pool's socket timeout (a half-closed socket kept open would wait for it)."""
    server = await EmbeddedRedis.start(tmp_path / "r")
    redis = make_redis(server.url, socket_timeout=20)
    try:
        batcher = ScriptBatcher(redis, redis.register_script(ECHO))
        assert await batcher(["k"], ["before"]) == "before"
        await redis.execute_command("CLIENT", "PAUSE", "20000", "ALL")  # the next calls stay in flight
        calls = [batcher(["k"], [f"c{i}"]) for i in range(3)]
        await asyncio.sleep(0.2)
        assert not any(c.done() for c in calls)
        server.process.kill()
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(r, RedisConnectionError) for r in results), results
    finally:
        await redis.aclose()
        await server.stop()
