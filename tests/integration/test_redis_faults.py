"""Redis dies under a running node (docs/redis.md): the embedded redis-server killed (SIGKILL) with
``redis.appendfsync: always`` is restarted by the node on its data and nothing acknowledged is lost;
a Sentinel-managed primary (Debian's redis-server and redis-sentinel) fails over during chat and
clients carry on. The node is a real subprocess; clients are Socket.IO clients that re-send a
message whose ack was refused (``unavailable``) with the same ``client_id``, as the SDK does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable

import psutil
import redis.asyncio as aioredis

from cluster_kit import ChatClient, NodeProcess, free_port, login, node_env, start_conversation
from signaling.agents import Directory
from signaling.store import Store

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_SENTINEL = shutil.which("redis-sentinel") or "/usr/bin/redis-sentinel"


def embedded_redis_of(node: NodeProcess) -> psutil.Process:
    assert node.proc is not None
    for child in psutil.Process(node.proc.pid).children():
        try:
            if "redis-server" in " ".join(child.cmdline()) and child.status() != psutil.STATUS_ZOMBIE:
                return child
        except psutil.NoSuchProcess:
            continue
    raise AssertionError("the node runs no embedded redis-server")


def port_of(proc: psutil.Process) -> int:
    import re

    # redis-server retitles itself "redis-server 127.0.0.1:<port>"
    found = re.search(r"127\.0\.0\.1:(\d+)", " ".join(proc.cmdline()))
    assert found, proc.cmdline()
    return int(found.group(1))


async def chatting_pair(url: str, redis: aioredis.Redis, prefix: str, clients: list[ChatClient],
                        customer_node: str | None = None, agent_node: str | None = None) -> tuple[ChatClient, ChatClient, str]:
    """Agent alice (created in ``redis``, available) and a customer, both on ``url`` (through nginx:
    pinned to the nodes named), in one conversation: (customer, agent, conversation id). Both are
    added to ``clients``, which the test closes."""
    await Directory(redis, prefix).create("alice", "pw-secret-1", "Alice", "agent", [], {"chat": 3})
    agent = ChatClient(url, "/agent", {"v": 1, "token": await login(url, "alice", "pw-secret-1")}, node=agent_node)
    customer = ChatClient(url, "/customer", {"v": 1}, node=customer_node)
    clients += [agent, customer]
    await agent.connect()
    await agent.ok("presence.set", {"status": "available"})
    await customer.connect()
    return customer, agent, await start_conversation(customer, agent)


async def chat_through_fault(customer: ChatClient, agent: ChatClient, cid: str, fault: Callable[[], Awaitable[None]],
                             before: int, total: int) -> tuple[list[str], float]:
    """Send ``total`` messages; ``fault()`` starts after ``before`` acks and has finished when this
    returns. Returns the acked ids and how long the first message after the fault took to be
    acknowledged."""
    acked: list[str] = []
    outage = 0.0
    running: asyncio.Future[None] | None = None
    for i in range(total):
        if i == before:
            running = asyncio.ensure_future(fault())
            await asyncio.sleep(0)  # the fault has started
            t0 = time.monotonic()
            event = await customer.send(cid, f"message {i}", deadline_s=60)
            outage = time.monotonic() - t0
        else:
            event = await customer.send(cid, f"message {i}", deadline_s=60)
        acked.append(event["id"])
        await asyncio.sleep(0.01)
    if running is not None:
        await running
    try:
        await agent.wait(lambda: all(f"{cid}/{i}" in agent.seen for i in acked), timeout=60)
    except AssertionError:
        missing = [i for i in acked if f"{cid}/{i}" not in agent.seen]
        raise AssertionError(f"the agent never saw {len(missing)} acknowledged messages {missing[:10]} (last id "
                             f"seen {agent.last_id.get(cid)}); its resyncs and resumes: {agent.resume_log}") from None
    return acked, outage


async def count_loss(store: Store, cid: str, acked: list[str]) -> tuple[int, int]:
    events = await store.events(cid)
    ids = {e["id"] for e in events}
    texts = [e["data"]["text"] for e in events if e["type"] == "message" and e["author"]["kind"] == "customer"]
    return sum(1 for i in acked if i not in ids), len(texts) - len(set(texts))


async def test_embedded_redis_killed_with_appendfsync_always_loses_nothing(tmp_path: Path) -> None:
    prefix = f"test-{uuid.uuid4().hex[:10]}:"
    env = node_env("", prefix, "solo", tmp_path / "data", secrets.token_urlsafe(24),
                   {"SEGUE_REDIS_APPENDFSYNC": "always", "SEGUE_REDIS_FANOUT": "false"})
    node = NodeProcess("solo", env, tmp_path / "node.log").start()
    clients: list[ChatClient] = []
    try:
        await node.ready()
        child = embedded_redis_of(node)
        port = port_of(child)
        redis = aioredis.Redis(host="127.0.0.1", port=port, decode_responses=True)
        customer, agent, cid = await chatting_pair(node.url, redis, prefix, clients)

        async def kill_redis() -> None:
            os.kill(child.pid, signal.SIGKILL)

        acked, outage = await chat_through_fault(customer, agent, cid, kill_redis, before=60, total=120)
        again = embedded_redis_of(node)
        assert again.pid != child.pid and port_of(again) == port  # restarted on the same port
        lost, duplicated = await count_loss(Store(redis, prefix), cid, acked)
        assert lost == 0 and duplicated == 0
        assert len(customer.sessions) == 1  # the node never went away: no reconnect was needed
        async with __import__("aiohttp").ClientSession() as http:
            # ready again by itself (its Redis check runs on its own schedule: poll, bounded)
            for _ in range(150):
                async with http.get(f"{node.url}/readyz") as resp:
                    status, why = resp.status, await resp.text()
                if status == 200:
                    break
                await asyncio.sleep(0.1)
            assert status == 200, why
        print(f"REDIS kill (embedded, appendfsync always): acked={len(acked)} lost={lost} duplicated={duplicated} "
              f"first_ack_after_kill_s={outage:.2f}")
        await redis.aclose()
    finally:
        for c in clients:
            await c.close()
        node.stop()


class RedisProcess:
    """Debian's redis-server (or redis-sentinel, whose config file comes first) on a free port."""

    def __init__(self, folder: Path, args: list[str], binary: str = REDIS_SERVER) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.folder = folder
        self.args, self.binary = args, binary
        self.proc = self.spawn()

    def spawn(self) -> subprocess.Popen[bytes]:
        """Start the server on its port and folder (again, after ``stop``: on its data)."""
        return subprocess.Popen([self.binary, *self.args, "--port", str(self.port), "--bind", "127.0.0.1",
                                 "--dir", str(self.folder), "--logfile", str(self.folder / "log")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    async def ready(self) -> None:
        client = aioredis.Redis(host="127.0.0.1", port=self.port)
        try:
            for _ in range(200):
                try:
                    if await client.ping():
                        return
                except (OSError, aioredis.RedisError):
                    await asyncio.sleep(0.05)
            raise AssertionError(f"redis on {self.port} did not start: {(self.folder / 'log').read_text()[-500:]}")
        finally:
            await client.aclose()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


async def test_sentinel_failover_during_chat(tmp_path: Path) -> None:
    assert Path(REDIS_SERVER).exists() and Path(REDIS_SENTINEL).exists(), \
        "Debian's redis-server and redis-sentinel are needed: `make test` installs them (apt-get install redis-sentinel)"
    persist = ["--save", "", "--appendonly", "yes", "--appendfsync", "always"]
    primary = RedisProcess(tmp_path / "primary", persist)
    await primary.ready()
    replica = RedisProcess(tmp_path / "replica", persist + ["--replicaof", "127.0.0.1", str(primary.port)])
    await replica.ready()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(f"sentinel monitor segue 127.0.0.1 {primary.port} 1\n"
                    "sentinel down-after-milliseconds segue 1000\nsentinel failover-timeout segue 5000\n"
                    "sentinel parallel-syncs segue 1\n")
    sentinel = RedisProcess(tmp_path / "sentinel", [str(conf)], binary=REDIS_SENTINEL)
    await sentinel.ready()
    prefix = f"test-{uuid.uuid4().hex[:10]}:"
    env = node_env("", prefix, "sentinel-node", tmp_path / "data", secrets.token_urlsafe(24),
                   {"SEGUE_REDIS_SENTINELS": f'["127.0.0.1:{sentinel.port}"]', "SEGUE_REDIS_SENTINEL_MASTER": "segue",
                    "SEGUE_REDIS_FANOUT": "false"})
    node = NodeProcess("sentinel-node", env, tmp_path / "node.log").start()
    clients: list[ChatClient] = []
    try:
        # the replica has synced before the node writes (a fresh replica would otherwise be promoted empty)
        for _ in range(200):
            info = await aioredis.Redis(host="127.0.0.1", port=replica.port, decode_responses=True).info("replication")
            if info.get("master_link_status") == "up":
                break
            await asyncio.sleep(0.05)
        await node.ready()
        first = aioredis.Redis(host="127.0.0.1", port=primary.port, decode_responses=True)
        customer, agent, cid = await chatting_pair(node.url, first, prefix, clients)
        await first.aclose()

        async def kill_primary() -> None:
            primary.stop()  # SIGKILL

        acked, outage = await chat_through_fault(customer, agent, cid, kill_primary, before=40, total=80)
        promoted = aioredis.Redis(host="127.0.0.1", port=replica.port, decode_responses=True)
        assert (await promoted.info("replication"))["role"] == "master"
        lost, duplicated = await count_loss(Store(promoted, prefix), cid, acked)
        await promoted.aclose()
        assert lost == 0 and duplicated == 0
        print(f"REDIS sentinel failover: acked={len(acked)} lost={lost} duplicated={duplicated} "
              f"first_ack_after_kill_s={outage:.2f}")
    finally:
        for c in clients:
            await c.close()
        node.stop()
        for p in (sentinel, replica, primary):
            p.stop()


@contextlib.asynccontextmanager
async def two_nodes_chatting(tmp_path: Path) -> AsyncIterator[tuple[RedisProcess, ChatClient, ChatClient, str, str]]:
    """Debian's redis-server (persistent: appendfsync always) under two nodes with fan-out behind
    nginx; the customer is on r1, agent alice on r2, in one conversation: (redis, customer, agent,
    conversation id, key prefix)."""
    from cluster_kit import Nginx

    assert Path(REDIS_SERVER).exists(), "Debian's redis-server is needed: `make test` installs it"
    persist = ["--save", "", "--appendonly", "yes", "--appendfsync", "always"]
    redis_proc = RedisProcess(tmp_path / "redis", persist)
    await redis_proc.ready()
    url = f"redis://127.0.0.1:{redis_proc.port}/0"
    prefix = f"test-{uuid.uuid4().hex[:10]}:"
    secret = secrets.token_urlsafe(24)
    nodes = [NodeProcess(f"r{i}", node_env(url, prefix, f"r{i}", tmp_path / f"data{i}", secret,
                                           {"SEGUE_CLUSTER_NODE_TTL_S": "30"}), tmp_path / f"node{i}.log").start()
             for i in (1, 2)]
    clients: list[ChatClient] = []
    nginx = None
    try:
        for node in nodes:
            await node.ready()
        nginx = Nginx(tmp_path / "nginx", nodes).start()
        redis = aioredis.Redis.from_url(url, decode_responses=True)
        customer, agent, cid = await chatting_pair(nginx.url, redis, prefix, clients, customer_node="r1", agent_node="r2")
        await redis.aclose()
        yield redis_proc, customer, agent, cid, prefix
        assert all(n.alive for n in nodes)
    finally:
        for c in clients:
            await c.close()
        if nginx is not None:
            nginx.stop()
        for node in nodes:
            node.stop()
        redis_proc.stop()


async def test_shared_redis_restarted_under_two_nodes_clients_carry_on(tmp_path: Path) -> None:
    """Debian's redis-server under two nodes with fan-out: killed (SIGKILL) and started again on its
    data. The nodes reconnect by themselves (no restart); sends meanwhile are refused and retried;
    pushes the fan-out missed are recovered by the clients on ``resync``."""
    async with two_nodes_chatting(tmp_path) as (redis_proc, customer, agent, cid, prefix):
        async def restart_redis() -> None:
            redis_proc.stop()  # SIGKILL
            await asyncio.sleep(1.0)  # down for a second
            redis_proc.proc = redis_proc.spawn()

        acked, outage = await chat_through_fault(customer, agent, cid, restart_redis, before=40, total=100)
        redis = aioredis.Redis(host="127.0.0.1", port=redis_proc.port, decode_responses=True)
        lost, duplicated = await count_loss(Store(redis, prefix), cid, acked)
        await redis.aclose()
        assert lost == 0 and duplicated == 0
        assert len(customer.sessions) == 1 and len(agent.sessions) == 1  # nobody had to reconnect
        print(f"REDIS restart under 2 nodes (fan-out, appendfsync always): acked={len(acked)} lost={lost} "
              f"duplicated={duplicated} first_ack_after_kill_s={outage:.2f} agent_resyncs={agent.resyncs}")


async def test_fanout_link_lost_while_the_other_node_stores_the_agent_misses_nothing(tmp_path: Path) -> None:
    """The nodes' pub/sub connections are cut (CLIENT KILL TYPE pubsub) while Redis itself stays up:
    the customer's node goes on storing and acknowledging, and what it publishes for the agent's
    node while that node subscribes again (about a second) reaches nobody. Pushes arrive again
    before the agent's node tells its sockets ``resync``, so "resume after the last id seen" would
    skip the lost ones: the resync says from when pushes may have been lost."""
    async with two_nodes_chatting(tmp_path) as (redis_proc, customer, agent, cid, prefix):
        async def cut_pubsub() -> None:
            redis = aioredis.Redis(host="127.0.0.1", port=redis_proc.port)
            try:
                assert await redis.client_kill_filter(_type="pubsub", skipme=True) > 0
            finally:
                await redis.aclose()

        acked, _ = await chat_through_fault(customer, agent, cid, cut_pubsub, before=20, total=320)
        redis = aioredis.Redis(host="127.0.0.1", port=redis_proc.port, decode_responses=True)
        lost, duplicated = await count_loss(Store(redis, prefix), cid, acked)
        await redis.aclose()
        assert lost == 0 and duplicated == 0
        assert agent.resyncs >= 1 and len(customer.sessions) == 1 and len(agent.sessions) == 1
        print(f"FANOUT link cut under 2 nodes: acked={len(acked)} agent_resyncs={agent.resyncs} "
              f"agent_repeats={agent.repeats}")
