"""Call recordings with several nodes (docs/deployment.md "Recordings with several nodes"): two
real nodes (subprocesses) on one Redis, each with its own disk, behind nginx. A call is recorded
on node 1 (real aiortc peers hearing each other's tone); the recording downloads through node 2
byte for byte (streamed from node 1's internal endpoint, byte ranges too); that endpoint refuses
requests without a valid node token; with node 1 dead, node 2 answers 503 naming it (through
nginx too); with a recordings folder every node shares, node 2 reads it without asking node 1;
and a recorded call whose node dies goes on in a new file on the survivor, named like the first.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp

from cluster_kit import Cluster, login, running_cluster
from media.ice import loopback_only
from signaling import ApiKeys, Signer
from test_cluster_calls import AGENT, CUSTOMER, call_between, hearing, offer
from test_rest_recordings import audio_frames

RECORD_CALLS = {"SEGUE_ROUTING_QUEUES": "[{name: general, record_calls: true}]"}


async def recorded_call(c: Cluster, tmp_path: Path, folder: Path | None = None) -> tuple[str, Path]:
    """A voice call held by node 1 (the customer asks for it there; the agent is on node 2),
    recorded while both hear each other, then hung up: (recording id, its file on node 1's disk,
    or in ``folder`` when the nodes share one)."""
    n1, n2 = (n.node_id for n in c.nodes)
    customer, agent, cid = await call_between(c, customer_node=n1, agent_node=n2)
    peers = {"customer": await offer(customer, cid, CUSTOMER), "agent": await offer(agent, cid, AGENT)}
    try:
        await hearing(peers)
        await asyncio.sleep(1.0)  # a second more of both tones in the file
        await customer.ok("call.hangup", {"conversation_id": cid})  # answered once the file is closed
    finally:
        for p in peers.values():
            await p.close()
    recorded = [e for e in await c.store.events(cid) if e["type"] == "call.recording"]
    assert len(recorded) == 1, recorded
    rid = recorded[0]["data"]["id"]
    entry = await c.redis.hgetall(f"{c.prefix}rec:{rid}")
    assert entry["conversation"] == cid and entry["node"] == n1, entry  # Redis names the node with the file
    if folder is not None:
        return rid, folder / entry["file"]
    path = tmp_path / "data1" / "recordings" / entry["file"]
    assert path.is_file() and not (tmp_path / "data2" / "recordings" / entry["file"]).exists()
    return rid, path


def frames_per_track(path: str) -> list[int]:
    """The audio frames av decodes from each audio track of the file (customer's, agent's)."""
    import av

    with av.open(path) as container:
        tracks = len(container.streams.audio)
    counts = []
    for i in range(tracks):  # one pass each: a pass reads the file to its end
        with av.open(path) as container:
            counts.append(sum(1 for _ in container.decode(audio=i)))
    return counts


async def reader_key(c: Cluster) -> str:
    """An API key that reads conversations (what a CRM or QA tool holds)."""
    _, token = await ApiKeys(c.redis, c.prefix).create("qa", ["conversations:read"], "test")
    return token


async def get(url: str, headers: dict[str, str] | None = None, method: str = "GET") -> tuple[int, bytes, Any]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        async with http.request(method, url, headers=headers or {}) as resp:
            return resp.status, await resp.read(), resp.headers


def error_of(body: bytes) -> dict[str, Any]:
    return json.loads(body)["error"]


async def test_a_recording_made_on_one_node_downloads_through_the_other(redis_url: str, tmp_path: Path) -> None:
    with loopback_only():
        async with running_cluster(redis_url, tmp_path, RECORD_CALLS) as c:
            node1, node2 = c.nodes
            rid, path = await recorded_call(c, tmp_path)
            original = path.read_bytes()
            assert len(original) > 1000
            auth = {"Authorization": f"Bearer {await reader_key(c)}"}

            # through node 2, whose disk lacks the file: the same bytes, as a download
            status, body, headers = await get(f"{node2.url}/api/v1/recordings/{rid}", auth)
            assert status == 200, body[:300]
            assert body == original
            assert headers["Content-Type"] == "audio/webm" and headers["Content-Length"] == str(len(original))
            assert headers["Content-Disposition"] == f'attachment; filename="{rid}.webm"'
            (tmp_path / "via-node2.webm").write_bytes(body)
            frames = await asyncio.to_thread(audio_frames, str(tmp_path / "via-node2.webm"))
            assert frames > 25
            print(f"CLUSTER recording via the other node: bytes={len(original)} audio_frames={frames} (first track)")

            # a byte range (a player seeking) is passed to node 1 and its answer back
            status, body, headers = await get(f"{node2.url}/api/v1/recordings/{rid}", {**auth, "Range": "bytes=100-1099"})
            assert status == 206 and body == original[100:1100], (status, body[:200])
            assert headers["Content-Range"] == f"bytes 100-1099/{len(original)}"
            status, _, _ = await get(f"{node2.url}/api/v1/recordings/{rid}", {**auth, "Range": f"bytes={len(original) + 10}-"})
            assert status == 416

            # the console's way: an agent's token, through the load balancer, whichever node answers
            token = await login(c.url, "alice", "pw-secret-1")
            for node in (node1, node2):
                status, body, _ = await get(f"{c.url}/api/v1/recordings/{rid}",
                                            {"Authorization": f"Bearer {token}", "Cookie": f"segue_node={node.node_id}"})
                assert status == 200 and body == original, (node.node_id, status, body[:300])

            # the scope is checked before anything is fetched from node 1
            _, other = await ApiKeys(c.redis, c.prefix).create("crm", ["customers:read"], "test")
            status, body, _ = await get(f"{node2.url}/api/v1/recordings/{rid}", {"Authorization": f"Bearer {other}"})
            assert status == 403 and "conversations:read" in error_of(body)["message"]
            # the internal endpoint is not reachable through the load balancer
            status, _, _ = await get(f"{c.url}/internal/v1/recordings/{rid}")
            assert status == 404


async def test_the_internal_endpoint_wants_a_node_token_signed_with_the_secret(redis_url: str, tmp_path: Path) -> None:
    with loopback_only():
        async with running_cluster(redis_url, tmp_path, RECORD_CALLS) as c:
            node1, node2 = c.nodes
            rid, path = await recorded_call(c, tmp_path)
            url = f"{node1.url}/internal/v1/recordings/{rid}"
            signer = Signer(node1.env["SEGUE_AUTH_SECRET"].encode())
            key = await reader_key(c)
            refused = {
                "no token": ({}, "X-Segue-Node-Token"),
                "an API key": ({"Authorization": f"Bearer {key}"}, "X-Segue-Node-Token"),
                "another secret": ({"X-Segue-Node-Token": Signer(b"not the cluster's secret").sign(
                    "n", f"{node2.node_id}|{rid}", 60)}, "signature does not match"),
                "a visitor token": ({"X-Segue-Node-Token": signer.sign("v", f"{node2.node_id}|{rid}", 60)},
                                    "not a node-to-node token"),
                "another recording": ({"X-Segue-Node-Token": signer.sign("n", f"{node2.node_id}|rec_{'B' * 32}", 60)},
                                      "another recording"),
                "expired": ({"X-Segue-Node-Token": signer.sign("n", f"{node2.node_id}|{rid}", 60, now=time.time() - 120)},
                            "expired"),
                "garbage": ({"X-Segue-Node-Token": "x" * 5000}, "malformed"),
            }
            for case, (headers, says) in refused.items():
                status, body, _ = await get(url, headers)
                error = error_of(body)
                assert status == 403 and error["code"] == "forbidden" and says in error["message"], (case, status, error)
            # what node 2 sends: the file
            status, body, _ = await get(url, {"X-Segue-Node-Token": signer.sign("n", f"{node2.node_id}|{rid}", 60)})
            assert status == 200 and body == path.read_bytes()


async def test_a_dead_owner_node_is_a_503_naming_it(redis_url: str, tmp_path: Path) -> None:
    with loopback_only():
        async with running_cluster(redis_url, tmp_path, RECORD_CALLS) as c:
            node1, node2 = c.nodes
            rid, _ = await recorded_call(c, tmp_path)
            auth = {"Authorization": f"Bearer {await reader_key(c)}"}
            registered = await c.redis.hgetall(f"{c.prefix}node:{node1.node_id}")
            assert registered["internal_url"] == node1.url  # the default: http://<http.host>:<http.port>
            node1.kill()

            def says_node1_is_unreachable(status: int, body: bytes) -> str:
                error = error_of(body)
                assert status == 503 and error["code"] == "unavailable", (status, error)
                assert f"recording {rid} is on node {node1.node_id}, which is not reachable" in error["message"], error
                return str(error["message"])

            # at once (node 1 may still count as alive: its address does not answer) ...
            status, body, _ = await get(f"{node2.url}/api/v1/recordings/{rid}", auth)
            says_node1_is_unreachable(status, body)
            # ... and once node 2 has found it dead and reaped it
            for _ in range(300):
                if await c.redis.zscore(f"{c.prefix}nodes", node1.node_id) is None:
                    break
                await asyncio.sleep(0.1)
            status, body, _ = await get(f"{node2.url}/api/v1/recordings/{rid}", auth)
            assert "not running" in says_node1_is_unreachable(status, body)
            # through nginx too, whichever node the cookie names: the 503 comes through (not a 502)
            for cookie in (node1.node_id, node2.node_id):
                status, body, _ = await get(f"{c.url}/api/v1/recordings/{rid}", {**auth, "Cookie": f"segue_node={cookie}"})
                says_node1_is_unreachable(status, body)

            # a node that counts as alive but does not answer at its address (a wrong
            # cluster.internal_url looks like this): the address tried is named
            await c.redis.hset(f"{c.prefix}node:{node1.node_id}", "internal_url", node1.url)
            await c.redis.zadd(f"{c.prefix}nodes", {node1.node_id: int(time.time() * 1000) + 60_000})
            status, body, _ = await get(f"{node2.url}/api/v1/recordings/{rid}", auth)
            message = says_node1_is_unreachable(status, body)
            assert node1.url in message and "cluster.internal_url" in message
            await c.redis.zrem(f"{c.prefix}nodes", node1.node_id)

            # an unknown id is still a 404 (not a 503)
            status, body, _ = await get(f"{node2.url}/api/v1/recordings/rec_{'A' * 32}", auth)
            assert status == 404 and error_of(body)["code"] == "not_found"


async def test_a_shared_recordings_folder_is_read_first_even_with_the_owner_dead(redis_url: str, tmp_path: Path) -> None:
    shared = tmp_path / "shared-recordings"  # a mount every node sees (NFS, a cloud file share)
    with loopback_only():
        async with running_cluster(redis_url, tmp_path, {**RECORD_CALLS, "SEGUE_MEDIA_RECORDINGS_DIR": str(shared)}) as c:
            node1, node2 = c.nodes
            rid, path = await recorded_call(c, tmp_path, shared)
            original = path.read_bytes()
            node1.kill()  # node 2 reads the shared folder: node 1 is not asked
            status, body, _ = await get(f"{node2.url}/api/v1/recordings/{rid}", {"Authorization": f"Bearer {await reader_key(c)}"})
            assert status == 200 and body == original, (status, body[:300])


async def test_a_recorded_call_whose_node_dies_goes_on_in_a_file_on_the_survivor(redis_url: str, tmp_path: Path) -> None:
    with loopback_only():
        async with running_cluster(redis_url, tmp_path, RECORD_CALLS) as c:
            node1, node2 = c.nodes
            customer, agent, cid = await call_between(c, customer_node=node1.node_id, agent_node=node2.node_id)
            peers = {"customer": await offer(customer, cid, CUSTOMER), "agent": await offer(agent, cid, AGENT)}
            try:
                await hearing(peers)
                node1.kill()
                await agent.wait(lambda: agent.got("call.migrated"), timeout=30)
                # the agent's side connects again, to node 2, which holds the call now (and records it)
                old, peers["agent"] = peers["agent"], await offer(agent, cid, AGENT)
                await old.close()
                await asyncio.sleep(2.0)  # two seconds of the agent's tone in the new file
                await agent.ok("call.hangup", {"conversation_id": cid})
            finally:
                for p in peers.values():
                    await p.close()
            first, second = [e["data"] for e in await c.store.events(cid) if e["type"] == "call.recording"]
            assert second["continues"] == first["id"] and second["url"] == f"/api/v1/recordings/{second['id']}"
            assert await c.redis.hget(f"{c.prefix}rec:{first['id']}", "node") == node1.node_id
            assert await c.redis.hget(f"{c.prefix}rec:{second['id']}", "node") == node2.node_id
            auth = {"Authorization": f"Bearer {await reader_key(c)}"}
            # the part recorded on node 2: from any node (node 2's disk); the start: on dead node 1
            status, body, _ = await get(f"{c.url}/api/v1/recordings/{second['id']}", auth)
            assert status == 200 and body == (tmp_path / "data2" / "recordings" / f"{second['id']}.webm").read_bytes()
            (tmp_path / "second.webm").write_bytes(body)
            # the customer's track is empty (their side did not come back in this test): the agent's holds audio
            assert (await asyncio.to_thread(frames_per_track, str(tmp_path / "second.webm")))[1] > 25
            status, body, _ = await get(f"{node2.url}/api/v1/recordings/{first['id']}", auth)
            assert status == 503 and node1.node_id in error_of(body)["message"]
            # the conversation lists both parts of the call, the second saying which it continues
            status, body, _ = await get(f"{node2.url}/api/v1/conversations/{cid}", auth)
            listed = json.loads(body)["conversation"]["recordings"]
            assert [r["id"] for r in listed] == [first["id"], second["id"]], listed
            assert listed[1]["continues"] == first["id"] and "continues" not in listed[0], listed


async def test_a_node_started_again_keeps_its_id_and_serves_the_recordings_it_made(redis_url: str, tmp_path: Path) -> None:
    """No ``cluster.node_id``: node 1 draws an id at its first start and keeps it in its data folder,
    so after a clean stop, and after a crash, its recordings download through node 2 as before."""
    with loopback_only():
        async with running_cluster(redis_url, tmp_path, {**RECORD_CALLS, "SEGUE_CLUSTER_NODE_ID": ""}) as c:
            node1, node2 = c.nodes
            drawn = node1.node_id
            assert drawn and node2.node_id != drawn  # each data folder keeps its own id
            assert (tmp_path / "data1" / "node-id").read_text().strip() == drawn
            rid, path = await recorded_call(c, tmp_path)
            original = path.read_bytes()
            auth = {"Authorization": f"Bearer {await reader_key(c)}"}

            node1.stop()  # a clean stop: node 2 reaps it at once
            for _ in range(300):
                if await c.redis.zscore(f"{c.prefix}nodes", drawn) is None:
                    break
                await asyncio.sleep(0.1)
            status, body, _ = await get(f"{node2.url}/api/v1/recordings/{rid}", auth)
            assert status == 503 and drawn in error_of(body)["message"], (status, body[:300])

            for restart in ("after a clean stop", "after a crash"):
                node1.start()
                await node1.ready()
                assert node1.node_id == drawn, (restart, node1.node_id)
                status, body, headers = await get(f"{node2.url}/api/v1/recordings/{rid}", auth)
                assert status == 200 and body == original, (restart, status, body[:300])
                assert headers["Content-Length"] == str(len(original))
                # HEAD: the same headers, no body (from node 1's disk, and relayed by node 2)
                for node in (node1, node2):
                    status, body, head = await get(f"{node.url}/api/v1/recordings/{rid}", auth, "HEAD")
                    assert status == 200 and body == b"", (restart, node.node_id, status, body[:300])
                    for name in ("Content-Length", "Content-Type", "Content-Disposition"):
                        assert head[name] == headers[name], (restart, node.node_id, name, head.get(name))
                if restart == "after a clean stop":
                    node1.kill()  # no clean-up: started again at once, before or while node 2 reaps it

            # past the TTL: node 2 took no reap of the previous run for a death of this one
            await asyncio.sleep(3.0)
            assert node1.alive
            assert await c.redis.zscore(f"{c.prefix}nodes", drawn) is not None
            assert (await c.redis.hgetall(f"{c.prefix}node:{drawn}"))["internal_url"] == node1.url
            status, body, _ = await get(f"{c.url}/api/v1/recordings/{rid}", {**auth, "Cookie": f"segue_node={node2.node_id}"})
            assert status == 200 and body == original, (status, body[:300])


async def test_a_node_started_under_another_id_claims_the_recordings_left_in_its_folder(redis_url: str, tmp_path: Path) -> None:
    """A recording Redis names with an id that was not kept (made by a node without cluster.node_id
    before Segue kept its id, or its node-id file lost with the recordings folder kept): node 1,
    started again on the same folder under a new id, names itself the holder of the recordings in
    its folder whose node is not running, and they download through node 2 again. An entry naming a
    running node, and a file Redis does not name, are left as they are."""
    with loopback_only():
        async with running_cluster(redis_url, tmp_path, RECORD_CALLS) as c:
            node1, node2 = c.nodes
            rid, path = await recorded_call(c, tmp_path)
            original = path.read_bytes()
            auth = {"Authorization": f"Bearer {await reader_key(c)}"}
            folder = tmp_path / "data1" / "recordings"
            # sorted around the real one: node 1 goes through its folder in name order
            gone, running, unnamed = f"rec_{'z' * 32}", f"rec_{'-' * 32}", f"rec_{'-' * 31}0"
            for name in (gone, running, unnamed):
                (folder / f"{name}.webm").write_bytes(b"webm")
            await c.redis.hset(f"{c.prefix}rec:{gone}", mapping={"conversation": "c1", "file": f"{gone}.webm",
                                                                "node": "a-node-long-gone"})
            await c.redis.hset(f"{c.prefix}rec:{running}", mapping={"conversation": "c1", "file": f"{running}.webm",
                                                                   "node": node2.node_id})
            old_id = node1.node_id
            node1.stop()
            status, body, _ = await get(f"{node2.url}/api/v1/recordings/{rid}", auth)
            assert status == 503 and old_id in error_of(body)["message"], (status, body[:300])

            node1.env["SEGUE_CLUSTER_NODE_ID"] = f"{old_id}-renamed"
            node1.start()
            await node1.ready()
            assert node1.node_id == f"{old_id}-renamed"
            for _ in range(300):  # claimed in the background once the node runs
                if await c.redis.hget(f"{c.prefix}rec:{gone}", "node") == node1.node_id:
                    break
                await asyncio.sleep(0.1)
            assert await c.redis.hget(f"{c.prefix}rec:{rid}", "node") == node1.node_id
            assert await c.redis.hget(f"{c.prefix}rec:{gone}", "node") == node1.node_id
            assert await c.redis.hget(f"{c.prefix}rec:{running}", "node") == node2.node_id
            assert not await c.redis.exists(f"{c.prefix}rec:{unnamed}")
            status, body, headers = await get(f"{node2.url}/api/v1/recordings/{rid}", auth)
            assert status == 200 and body == original, (status, body[:300])
            assert headers["Content-Length"] == str(len(original))
