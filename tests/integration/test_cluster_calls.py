"""Calls across two real nodes behind nginx (docs/deployment.md): the customer and the agent are
connected to different nodes, the call lives on one of them; then that node is killed (SIGKILL)
mid-call and the call comes back on the survivor with new legs, or drained (SIGTERM) and the call
finishes there. Real aiortc peers on loopback hear each other's tone.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp

from cluster_kit import ChatClient, Cluster, key, running_cluster, start_conversation
from media.ice import loopback_only
from media.probe import ClientPeer

CUSTOMER, AGENT = 440.0, 660.0


async def offer(client: ChatClient, cid: str, frequency: float) -> ClientPeer:
    """A new connection from this side, answered by the node holding the call (wherever the
    socket is)."""
    peer = ClientPeer(frequency)

    async def answer(sdp: str) -> str:
        return (await client.ok("call.offer", {"conversation_id": cid, "sdp": sdp}))["sdp"]

    await peer.negotiate(answer)
    await peer.wait_connected()
    return peer


async def call_between(c: Cluster, customer_node: str, agent_node: str) -> tuple[ChatClient, ChatClient, str]:
    agent = await c.agent("alice", node=agent_node)
    customer = await c.client("/customer", {"v": 1}, node=customer_node).connect()
    cid = await start_conversation(customer, agent, "can we talk?")
    await agent.ok("call.state", {"conversation_id": cid})  # the agent's socket watches the call
    await customer.ok("call.request", {"conversation_id": cid, "media": "voice"})
    await agent.wait(lambda: agent.got("call.requested"))
    accepted = await agent.ok("call.accept", {"conversation_id": cid})
    assert accepted["call"]["state"] == "active"
    return customer, agent, cid


async def hearing(peers: dict[str, ClientPeer]) -> None:
    customer_ears, agent_ears = await peers["customer"].audio(), await peers["agent"].audio()
    await asyncio.gather(customer_ears.wait_hearing(AGENT, timeout=30), agent_ears.wait_hearing(CUSTOMER, timeout=30))


async def call_owner(c: Cluster, cid: str) -> str | None:
    return await c.redis.hget(f"{c.prefix}call:{cid}", "node")


async def test_call_across_nodes_then_its_node_is_killed(redis_url: str, tmp_path: Path) -> None:
    with loopback_only():
        async with running_cluster(redis_url, tmp_path) as c:
            n1, n2 = (n.node_id for n in c.nodes)
            customer, agent, cid = await call_between(c, customer_node=n1, agent_node=n2)
            assert await call_owner(c, cid) == n1  # where the customer asked for it
            peers = {"customer": await offer(customer, cid, CUSTOMER), "agent": await offer(agent, cid, AGENT)}
            await hearing(peers)  # the agent's media goes to n1 though its socket is on n2

            killed = time.monotonic()
            c.nodes[0].kill()
            # both sides are told (call.migrated); the customer first reconnects to n2 through nginx
            await agent.wait(lambda: agent.got("call.migrated"), timeout=30)
            told_s = time.monotonic() - killed
            assert await call_owner(c, cid) == n2

            async def come_back(client: ChatClient, role: str, frequency: float) -> None:
                # what the SDK does on call.migrated (or, reconnected after it, on the call's state)
                while True:
                    if client.got("call.migrated"):
                        break
                    if len(client.sessions) > 1:
                        state = await client.call("call.state", {"conversation_id": cid})
                        if state.get("ok") and role in (state["call"].get("call") or {}).get("waiting_for", []):
                            break
                    await asyncio.sleep(0.1)
                old = peers[role]
                peers[role] = await offer(client, cid, frequency)
                await old.close()

            await asyncio.gather(come_back(customer, "customer", CUSTOMER), come_back(agent, "agent", AGENT))
            await hearing(peers)
            audio_s = time.monotonic() - killed
            events = [e["type"] for e in await c.store.events(cid)]
            assert "call.migrated" in events and "call.ended" not in events
            state = await agent.ok("call.state", {"conversation_id": cid})
            assert state["call"]["state"] == "active" and state["call"]["call"]["waiting_for"] == []
            # the chat goes on too, and nothing was lost
            sent = await customer.send(cid, "I can hear you again")
            await agent.wait(lambda: key(sent) in agent.seen)
            print(f"CLUSTER node kill mid-call: both_told_s={told_s:.2f} audio_again_s={audio_s:.2f} "
                  f"(node_ttl_s=2, heartbeat_s=0.5)")
            for p in peers.values():
                await p.close()


async def test_drain_lets_the_call_finish_and_cuts_none(redis_url: str, tmp_path: Path) -> None:
    with loopback_only():
        async with running_cluster(redis_url, tmp_path, {"SEGUE_CLUSTER_DRAIN_TIMEOUT_S": "120"}) as c:
            n1, n2 = (n.node_id for n in c.nodes)
            customer, agent, cid = await call_between(c, customer_node=n1, agent_node=n2)
            peers = {"customer": await offer(customer, cid, CUSTOMER), "agent": await offer(agent, cid, AGENT)}
            await hearing(peers)
            bystander = await c.client("/customer", {"v": 1}, node=n1).connect()  # chatting, no call

            c.nodes[0].terminate()  # SIGTERM: drain
            async with aiohttp.ClientSession() as http:
                async def not_ready() -> bool:
                    async with http.get(f"{c.nodes[0].url}/readyz") as resp:
                        return resp.status == 503 and (await resp.json())["reason"] == "draining"
                for _ in range(100):
                    if await not_ready():
                        break
                    await asyncio.sleep(0.1)
                assert await not_ready()
            # the bystander was moved to n2 (closed, reconnected through nginx); new sessions go there too
            await bystander.wait(lambda: len(bystander.sessions) >= 2)
            late = await c.client("/customer", {"v": 1}, node=n1).connect()
            assert late.sessions
            # the call on the draining node goes on: both still hear each other, nothing was cut
            await hearing(peers)
            assert c.nodes[0].alive
            # answered before the node stops (it once closed the socket first: tests/integration/test_drain.py)
            await customer.ok("call.hangup", {"conversation_id": cid})
            # its last call over, the node finishes draining and exits by itself
            for _ in range(300):
                if not c.nodes[0].alive:
                    break
                await asyncio.sleep(0.1)
            assert not c.nodes[0].alive and c.nodes[0].proc is not None and c.nodes[0].proc.returncode == 0
            ended = [e for e in await c.store.events(cid) if e["type"] == "call.ended"]
            cut = [e for e in ended if e["data"]["reason"] != "hangup"]
            assert len(ended) == 1 and not cut
            print(f"CLUSTER drain: calls_cut={len(cut)}")
            for p in peers.values():
                await p.close()
