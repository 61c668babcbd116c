"""Two real nodes (subprocesses) behind Debian's nginx configured from docs/deployment.md, on one
Redis: chat across nodes, the sticky cookie, a node killed (SIGKILL) mid-chat, presence and
offers of a dead node's agents, a drain.

Each test prints what it measured (``CLUSTER ...`` lines: lost, duplicated, times); run with
``-s`` to see them. Calls across nodes and a node killed mid-call: test_cluster_calls.py.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp

from cluster_kit import ChatClient, key, login, running_cluster, start_conversation
from segue_clients import metric_counters


async def node_of(url: str, cookie: str | None) -> tuple[str, str | None]:
    """(the node that answered /healthz through nginx, the cookie it set)."""
    headers = {"Cookie": f"segue_node={cookie}"} if cookie else {}
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        async with http.get(f"{url}/healthz", headers=headers) as resp:
            assert resp.status == 200
            set_cookie = resp.cookies.get("segue_node")
            return (await resp.json())["node"], set_cookie.value if set_cookie else None


async def test_sticky_cookie_and_chat_across_nodes(redis_url: str, tmp_path: Path) -> None:
    async with running_cluster(redis_url, tmp_path) as c:
        n1, n2 = (n.node_id for n in c.nodes)
        # no cookie: a node by client address, which names itself in the cookie; the cookie then
        # keeps every request on that node
        first, cookie = await node_of(c.url, None)
        assert cookie == first
        for _ in range(5):
            assert await node_of(c.url, cookie) == (first, None)
        assert (await node_of(c.url, n2))[0] == n2 and (await node_of(c.url, n1))[0] == n1
        # a cookie naming a node that does not exist: any node, which sets the cookie to itself
        other, reset = await node_of(c.url, "gone")
        assert reset == other

        agent = await c.agent("alice", node=n2)
        customer = await c.client("/customer", {"v": 1}, node=n1).connect()
        cid = await start_conversation(customer, agent)
        for i in range(5):
            sent = await customer.send(cid, f"from the customer {i}")
            await agent.wait(lambda: key(sent) in agent.seen)
            reply = await agent.send(cid, f"from the agent {i}")
            await customer.wait(lambda: key(reply) in customer.seen)
        # each side really is on its node (the answers of /metrics of each node count one socket)
        for node, ns in ((c.nodes[0], "/customer"), (c.nodes[1], "/agent")):
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{node.url}/metrics") as resp:
                    text = await resp.text()
            assert f'segue_connections{{namespace="{ns}",node="{node.node_id}"}} 1.0' in text, text


async def test_node_killed_mid_chat_nothing_lost_or_shown_twice(redis_url: str, tmp_path: Path) -> None:
    async with running_cluster(redis_url, tmp_path) as c:
        n1, n2 = (n.node_id for n in c.nodes)
        agent = await c.agent("alice", node=n2, capacity=10)
        customers = [await c.client("/customer", {"v": 1}, node=n1).connect() for _ in range(5)]
        cids = [await start_conversation(cu, agent, f"hello {i}") for i, cu in enumerate(customers)]
        acked: dict[str, list[str]] = {cid: [] for cid in cids}
        killed_at: list[float] = []
        first_ack_after_kill: list[float] = []

        async def chat(customer: ChatClient, cid: str) -> None:
            for i in range(40):
                event = await customer.send(cid, f"message {i}")
                acked[cid].append(event["id"])
                if killed_at and not first_ack_after_kill:
                    first_ack_after_kill.append(time.monotonic())
                await asyncio.sleep(0.05)

        async def killer() -> None:
            while sum(len(v) for v in acked.values()) < 50:
                await asyncio.sleep(0.02)
            killed_at.append(time.monotonic())
            c.nodes[0].kill()  # the customers' node

        await asyncio.gather(killer(), *(chat(cu, cid) for cu, cid in zip(customers, cids)))
        assert killed_at and first_ack_after_kill
        # every acknowledged message is stored once, and reached the agent (on the surviving node)
        lost = duplicated = 0
        for cu, cid in zip(customers, cids):
            events = await c.store.events(cid)
            texts = [e["data"]["text"] for e in events if e["type"] == "message" and e["author"]["kind"] == "customer"]
            ids = {e["id"] for e in events}
            lost += sum(1 for i in acked[cid] if i not in ids)
            duplicated += len(texts) - len(set(texts))
            await agent.wait(lambda: all(f"{cid}/{i}" in agent.seen for i in acked[cid]))
            await cu.wait(lambda: all(f"{cid}/{i}" in cu.seen for i in acked[cid]))
            assert len(cu.sessions) >= 2  # it reconnected (to the surviving node) and resumed
        assert lost == 0 and duplicated == 0
        resume_s = first_ack_after_kill[0] - killed_at[0]
        print(f"CLUSTER node kill mid-chat: acked={sum(len(v) for v in acked.values())} lost={lost} "
              f"duplicated={duplicated} shown_twice=0 resume_s={resume_s:.2f}")


async def test_dead_nodes_agents_go_offline_offers_move_and_conversations_return_to_the_queue(
        redis_url: str, tmp_path: Path) -> None:
    async with running_cluster(redis_url, tmp_path) as c:
        n1, n2 = (n.node_id for n in c.nodes)
        # bob's console is on n1 and does not come back after n1 dies (the laptop went with it)
        bob = await c.agent("bob", node=n1, reconnect=False)
        kept = await c.client("/customer", {"v": 1}, node=n2).connect()
        cid_kept = await start_conversation(kept, bob, "my order is late")
        await kept.send(cid_kept, "order 1234")
        ringing = await c.client("/customer", {"v": 1}, node=n2).connect()
        started = await ringing.ok("conversation.start", {"text": "anyone there?"})
        cid_ringing = started["conversation"]["id"]
        await bob.wait(lambda: [o for o in bob.got("offer") if o["conversation"]["id"] == cid_ringing])
        alice = await c.agent("alice", node=n2, capacity=5)
        bob_sockets = f"{c.prefix}acct:{bob.sessions[0]['agent']['id']}:sockets"
        assert await c.redis.scard(bob_sockets) == 1

        killed = time.monotonic()
        c.nodes[0].kill()
        # the ringing offer goes to alice
        offer = await alice.wait(lambda: [o for o in alice.got("offer") if o["conversation"]["id"] == cid_ringing],
                                 timeout=30)
        offer_moved_s = time.monotonic() - killed
        assert await c.redis.scard(bob_sockets) == 0
        presence_s = time.monotonic() - killed
        # the assigned conversation stays bob's for the grace period, then comes to alice with its log
        h = await c.store.conversation(cid_kept)
        assert h["state"] == "assigned" and h["agent"] == bob.sessions[0]["agent"]["id"]
        back = await alice.wait(lambda: [o for o in alice.got("offer") if o["conversation"]["id"] == cid_kept],
                                timeout=30)
        requeued_s = time.monotonic() - killed
        texts = [e["data"].get("text") for e in back[-1]["events"] if e["type"] == "message"]
        assert texts == ["my order is late", "order 1234"]
        types = [e["type"] for e in await c.store.events(cid_kept)]
        assert "conversation.requeued" in types
        assert offer[-1]["conversation"]["id"] == cid_ringing
        print(f"CLUSTER dead node's agent: offline_and_offer_moved_s={offer_moved_s:.2f} "
              f"(node_ttl_s=2, heartbeat_s=0.5) presence_checked_s={presence_s:.2f} "
              f"requeued_after_s={requeued_s:.2f} (reassign_after_s=3)")


async def test_serve_workers_runs_nodes_on_one_embedded_redis_and_restarts_one_that_dies(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    import psutil

    from cluster_kit import ROOT, free_port

    base = free_port()
    while True:  # two free ports in a row
        try:
            import socket

            with socket.socket() as s:
                s.bind(("127.0.0.1", base + 1))
            break
        except OSError:
            base = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGUE_")}
    env.update({"SEGUE_HTTP_PORT": str(base), "SEGUE_DATA_DIR": str(tmp_path / "data"), "SEGUE_LOG_LEVEL": "warning",
                "SEGUE_CLUSTER_NODE_ID": "box", "SEGUE_WEBHOOKS_ENABLED": "false"})
    parent = subprocess.Popen([sys.executable, "-m", "server", "serve", "--workers", "2"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=(tmp_path / "workers.log").open("w"),
                              start_new_session=True)
    try:
        async with aiohttp.ClientSession() as http:
            async def node_at(port: int) -> str | None:
                try:
                    async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                        return (await resp.json())["node"] if resp.status == 200 else None
                except aiohttp.ClientError:
                    return None

            async def both() -> list[str | None]:
                for _ in range(300):
                    names = [await node_at(base), await node_at(base + 1)]
                    if all(names):
                        return names
                    await asyncio.sleep(0.1)
                raise AssertionError((tmp_path / "workers.log").read_text()[-2000:])

            assert await both() == ["box-1", "box-2"]
            children = psutil.Process(parent.pid).children()
            redis = [c for c in children if "redis-server" in " ".join(c.cmdline())]
            nodes = [c for c in children if c not in redis and "serve" in c.cmdline()]
            assert len(nodes) == 2 and len(redis) == 1  # one Redis for both
            # a chat across the two nodes (fan-out on): a customer on one, the agent on the other
            token = await login(f"http://127.0.0.1:{base}")
            agent = ChatClient(f"http://127.0.0.1:{base + 1}", "/agent", {"v": 1, "token": token})
            customer = ChatClient(f"http://127.0.0.1:{base}", "/customer", {"v": 1})
            try:
                await agent.connect()
                await agent.ok("presence.set", {"status": "available"})
                await customer.connect()
                cid = await start_conversation(customer, agent)
                sent = await customer.send(cid, "across workers")
                await agent.wait(lambda: key(sent) in agent.seen)
            finally:
                await agent.close()
                await customer.close()
            # a node that dies is started again
            os.kill(nodes[0].pid, signal.SIGKILL)
            assert await both() == ["box-1", "box-2"]
    finally:
        parent.send_signal(signal.SIGTERM)  # passed on: each node drains, then the parent exits
        try:
            assert parent.wait(timeout=60) == 0
        finally:
            if parent.poll() is None:
                parent.kill()


async def fanout_stats(node: Any) -> dict[str, float]:
    """The node's ``segue_fanout_messages`` counters from its /metrics, by kind."""
    out = await metric_counters(node.url, "segue_fanout_messages", "kind")
    assert "received" in out, out
    return out


async def test_an_emit_reaches_only_the_nodes_with_sockets_in_its_rooms(redis_url: str, tmp_path: Path) -> None:
    async with running_cluster(redis_url, tmp_path) as c:
        n1, n2 = (n.node_id for n in c.nodes)
        alice = await c.agent("alice", node=n1, capacity=2)
        local = await c.client("/customer", {"v": 1}, node=n1).connect()
        cid_local = await start_conversation(local, alice, "all of us on node 1")
        remote = await c.client("/customer", {"v": 1}, node=n2).connect()
        cid_remote = await start_conversation(remote, alice, "me on node 2, my agent on node 1")

        # a conversation whose customer and agent are both on node 1: node 2 gets none of its pushes
        before = [await fanout_stats(n) for n in c.nodes]
        for i in range(20):
            sent = await local.send(cid_local, f"local {i}")
            await alice.wait(lambda: key(sent) in alice.seen)
            reply = await alice.send(cid_local, f"reply {i}")
            await local.wait(lambda: key(reply) in local.seen)
        after = [await fanout_stats(n) for n in c.nodes]
        assert after[1]["received"] == before[1]["received"], (before, after)
        assert after[0]["published_to_nodes"] == before[0]["published_to_nodes"], (before, after)
        assert after[0]["kept_local"] - before[0]["kept_local"] >= 40, (before, after)

        # across nodes: each message is published to the other node, and only there
        for i in range(10):
            sent = await remote.send(cid_remote, f"remote {i}")
            await alice.wait(lambda: key(sent) in alice.seen)
        across = [await fanout_stats(n) for n in c.nodes]
        assert across[0]["received"] - after[0]["received"] >= 10, (after, across)
        assert across[1]["published_to_nodes"] - after[1]["published_to_nodes"] >= 10, (after, across)

        # alice opens a second console on node 2: node 2 now has her room, so what the customer
        # on node 1 sends reaches both of her consoles (the join told node 1 before it completed)
        token = await login(c.url, "alice", "pw-secret-1")
        second = await c.client("/agent", {"v": 1, "token": token}, node=n2).connect()
        second.conversations.add(cid_local)
        sent = await local.send(cid_local, "to both consoles")
        await alice.wait(lambda: key(sent) in alice.seen)
        await second.wait(lambda: key(sent) in second.seen)
        members = f"{c.prefix}room:/agent|agent:{alice.sessions[0]['agent']['id']}"
        assert await c.redis.smembers(members) == {n1, n2}
        # once that console is gone, the registry no longer names node 2 for her room
        await second.close()
        deadline = time.monotonic() + 30
        while await c.redis.smembers(members) != {n1}:
            assert time.monotonic() < deadline, await c.redis.smembers(members)
            await asyncio.sleep(0.05)
