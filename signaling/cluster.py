"""Several nodes on one Redis: who is alive, what a dead node leaves behind, and a message bus.

Why here: a node holds things only it can vouch for — its agents' Socket.IO connections and the
aiortc legs of its calls. When it dies (SIGKILL, a lost machine) nobody is left to say those are
gone, so every node writes a heartbeat into Redis and every node watches the others':

- ``<prefix>nodes`` (sorted set): node id -> time of its last heartbeat (ms). A node silent for
  ``cluster.node_ttl_s`` is dead. One survivor (``SET NX`` on ``node:<id>:reaper``) then
  *reaps* it: removes its agents' sockets from their presence sets (an agent with no socket left
  goes offline, their ringing offers go to others, and their assigned conversations return to
  their queue after ``cluster.reassign_after_s`` unless they come back), and hands the calls it
  anchored to the calls layer, which re-creates them on this node (clients re-offer).
- ``<prefix>node:<id>:agents`` (set of ``agent\\tsid``) and ``<prefix>node:<id>:calls`` (set of
  conversation ids): what each node holds, written as it happens.
- ``<prefix>node:<id>:rooms``: the Socket.IO rooms it has sockets in (signaling/fanout.py), removed
  with it so that the fan-out stops publishing to it.
- ``<prefix>node:<id>`` (hash): its start time, whether it drains, and its ``internal_url``, where
  the other nodes reach its HTTP port (they fetch the call recordings on its disk there).
- ``<prefix>node:<id>:rpc`` (pub/sub channel): requests to one node (a ``call.*`` event for a
  call that lives there) and their replies.

A node is named by ``cluster.node_id``, else by an id it draws at its first start and keeps in its
data folder (:func:`claim_node_id`): a node started again is the same node to the others (its call
recordings stay reachable), so it waits out a reap of its previous run before it registers again.

See docs/deployment.md "When a node dies" for the bounds this gives.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import secrets
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

import redis.asyncio as aioredis

from .fanout import RoomRegistry

log = logging.getLogger(__name__)

#: ``handler(message) -> reply`` for one kind of bus message (``op``)
BusHandler = Callable[[dict[str, Any]], Awaitable[Any]]

_REDIS_ERRORS = (aioredis.ConnectionError, aioredis.TimeoutError, OSError)


class NodeUnavailable(Exception):
    """The node a request was sent to did not answer in time (it is dead or overloaded)."""


def default_node_id(port: int = 0) -> str:
    """``<host name>-<random>``: unique even for nodes of one machine started with the same settings
    (the port a node finally listens on is not known when it is built). Deployments set
    ``cluster.node_id`` to stable names (nginx's map uses them); a node without one keeps the id
    it drew in its data folder (:func:`claim_node_id`)."""
    host = socket.gethostname().split(".")[0] or "node"
    clean = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in host)
    return f"{clean}-{secrets.token_hex(3)}"


#: the file in the data folder that keeps a node's drawn id (``node-id.2``... for more nodes on one folder)
NODE_ID_FILE = "node-id"
#: how many nodes may share one data folder, each keeping its own id
MAX_NODES_PER_FOLDER = 64


class NodeIdError(ValueError):
    """A node-id file holds something that is not a node id (edited by hand, or another program's)."""


@dataclass
class NodeIdClaim:
    """The id a node without ``cluster.node_id`` runs under, and its hold on the file keeping it.

    Why a file, and held: Redis names each call recording by the node that wrote it, and other
    nodes fetch the file from that node by its id. A node that drew a new id at every start would
    orphan its recordings at its first restart, though the files are still on its disk. So the id
    is drawn once and kept in the data folder, which survives restarts and is the node's own
    (two nodes with one folder would otherwise run under one id: each holds an exclusive lock on
    its file while it runs, and a second node on the folder takes the next file).
    ``path`` is None when the folder could not be used (the id then lasts one run)."""

    node_id: str
    path: Path | None = None
    fd: int | None = None

    def release(self) -> None:
        """Let another node (this one, started again) take the file: the node has stopped."""
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops its lock
            self.fd = None


def valid_node_id(text: str) -> bool:
    """What ``cluster.node_id`` accepts: letters, digits, ``-``, ``_`` and ``.``."""
    return bool(text) and all(ch.isalnum() or ch in "-_." for ch in text)


def claim_node_id(folder: Path) -> NodeIdClaim:
    """This node's id when ``cluster.node_id`` is not set: the one kept in ``<folder>/node-id``
    (drawn and written there at the first start), or in ``node-id.2``, ``.3``... when another
    running node holds that file. ``NodeIdError`` when a file holds something else than an id;
    a folder that cannot be written gives an id for this run only (with a warning)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for slot in range(1, MAX_NODES_PER_FOLDER + 1):
            path = folder / (NODE_ID_FILE if slot == 1 else f"{NODE_ID_FILE}.{slot}")
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)  # a running node holds it
                continue
            try:
                return NodeIdClaim(_read_or_draw(fd, path), path, fd)
            except BaseException:
                os.close(fd)
                raise
    except OSError as exc:
        node_id = default_node_id()
        log.warning("cannot keep this node's id in %s (%s): it runs as %s until it stops, and the recordings it "
                    "makes are not found through other nodes after a restart; make the folder writable or set "
                    "cluster.node_id", folder, exc, node_id)
        return NodeIdClaim(node_id)
    node_id = default_node_id()
    log.warning("%d running nodes hold the node-id files of %s already: this one runs as %s until it stops; "
                "give each node a data_dir of its own or set cluster.node_id", MAX_NODES_PER_FOLDER, folder, node_id)
    return NodeIdClaim(node_id)


def _read_or_draw(fd: int, path: Path) -> str:
    text = os.read(fd, 1024).decode("utf-8", errors="replace").strip()
    if text:
        if not valid_node_id(text):
            raise NodeIdError(f"{path} should hold this node's id (letters, digits, - _ and . only), not {text[:100]!r}: "
                              "put the node's id back or delete the file (the node then draws a new id and its earlier "
                              "recordings are no longer found through other nodes)")
        return text
    node_id = default_node_id()  # the first start on this folder (or the file was emptied)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{node_id}\n".encode(), 0)
    os.fsync(fd)
    return node_id


def internal_url(config: Any, port: int | None = None) -> str:
    """How the other nodes reach this node's HTTP port (``cluster.internal_url``), without the
    proxy in front: set, as written; else ``http://<http.host>:<port>`` (``port``: where the node
    listens, default ``http.port``), with the host name when the node listens on every interface
    (``0.0.0.0``, ``::``), whose address others cannot use."""
    if config.cluster.internal_url:
        return str(config.cluster.internal_url).rstrip("/")
    host = config.http.host
    if host in ("", "0.0.0.0", "::"):
        host = socket.gethostname()
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    return f"http://{host}:{port or config.http.port}"


@dataclass
class ReapReport:
    """What reaping one dead node did (logged, and counted in /metrics)."""

    node: str
    sockets: int = 0
    offline: list[str] = field(default_factory=list)
    calls: int = 0
    silent_s: float = 0.0


class ClusterKeys:
    """Redis key names of the cluster registry, from the node's key prefix."""

    def __init__(self, prefix: str) -> None:
        self.p = prefix
        self.nodes = f"{prefix}nodes"
        self.orphans = f"{prefix}orphans"  # agent -> when their conversations return to the queue (ms)

    def node(self, node: str) -> str:
        return f"{self.p}node:{node}"

    def agents(self, node: str) -> str:
        return f"{self.p}node:{node}:agents"

    def calls(self, node: str) -> str:
        return f"{self.p}node:{node}:calls"

    def reaper(self, node: str) -> str:
        return f"{self.p}node:{node}:reaper"

    def rpc(self, node: str) -> str:
        return f"{self.p}node:{node}:rpc"


class Cluster:
    """This node's membership: heartbeat, the watch on the others, and its request bus.

    Why one object: the heartbeat, the reaping of dead nodes and the bus share one notion of
    "this node" and one Redis; the service and the calls layer register what reaping must do
    (``on_agent_lost``, ``on_calls_orphaned``) and which bus messages they answer (``handle``).
    """

    def __init__(self, redis: aioredis.Redis, prefix: str, config: Any, node_id: str) -> None:
        self.redis = redis
        self.config = config
        self.node_id = node_id
        self.keys = ClusterKeys(prefix)
        self.heartbeat_s = config.cluster.heartbeat_s
        self.ttl_ms = int(config.cluster.node_ttl_s * 1000)
        self.draining = False
        self.started_ms = int(time.time() * 1000)
        # what reaping calls back (set by the service and the calls layer)
        self.on_agent_lost: Callable[[str], Awaitable[None]] | None = None
        self.on_calls_orphaned: Callable[[str, list[str]], Awaitable[int]] | None = None
        self.on_orphan_due: Callable[[str], Awaitable[None]] | None = None
        self.local_agent_sockets: dict[str, str] = {}  # sid -> agent id (re-registered after a false death)
        self._handlers: dict[str, BusHandler] = {}
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._spawned: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self.redis_latency_s = 0.0  # of the last heartbeat (for /metrics)
        self.reaped: list[ReapReport] = []
        # written with every heartbeat into <prefix>node:<id>: what the other nodes need from us
        self.info: dict[str, str] = {"internal_url": internal_url(config)}
        self._leftover = False
        self._own_reaper_mark = False

    # lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        await self._after_reap_of_previous_run()
        # a previous run of this node id (a restart after a crash) left sockets and calls: its
        # sockets are gone now; its calls are taken over at the first sweep (the calls layer
        # starts after us)
        self._leftover = await self.redis.exists(self.keys.agents(self.node_id), self.keys.calls(self.node_id)) > 0
        if self._leftover:
            await self._reap_agents(self.node_id, ReapReport(self.node_id))
        await self._beat()
        others = [n for n in await self.live_nodes() if n != self.node_id]
        if others and not self.config.redis.fanout:
            log.warning("other nodes share this Redis (%s) but redis.fanout is off: pushes made on one node will not "
                        "reach sockets on another; set redis.fanout: true (SEGUE_REDIS_FANOUT=true) on every node",
                        ", ".join(sorted(others)[:5]))
        self._tasks = [asyncio.create_task(self._heartbeat_loop(), name="segue-heartbeat"),
                       asyncio.create_task(self._bus_loop(), name="segue-bus")]

    async def _after_reap_of_previous_run(self) -> None:
        """A node keeps its id across restarts (:func:`claim_node_id`), so its previous run may be
        being reaped by a survivor right now (it died, or left, shortly before): wait until that
        reap is over (it would drop what this run registers), then hold the reaper mark until this
        run's first sweep, so that no survivor starts reaping the previous run meanwhile. The mark
        a finished reap leaves (60 s) goes: a death of this run is reaped at once."""
        reaper = self.keys.reaper(self.node_id)
        mark_s = max(1, int(self.ttl_ms / 1000 + 0.999))  # a run dying before its first sweep: reaped a TTL late
        deadline = time.monotonic() + max(10.0, 2 * self.ttl_ms / 1000)
        while not await self.redis.set(reaper, self.node_id, nx=True, ex=mark_s):
            holder = await self.redis.get(reaper)
            if holder == self.node_id:
                break  # a mark of this node's own (a restart within the mark's life)
            if holder is not None and await self.redis.zscore(self.keys.nodes, self.node_id) is None:
                # that reap is over (its last step drops the node): its mark only delays the next one
                await self.redis.delete(reaper)
                continue
            if time.monotonic() > deadline:
                log.warning("node %s: the reap of its previous run by node %s does not end; starting anyway",
                            self.node_id, holder)
                break
            await asyncio.sleep(0.1)
        self._own_reaper_mark = True

    async def _clear_own_reaper_mark(self) -> None:
        if self._own_reaper_mark:
            self._own_reaper_mark = False
            if await self.redis.get(self.keys.reaper(self.node_id)) == self.node_id:
                await self.redis.delete(self.keys.reaper(self.node_id))

    async def stop(self, leave: bool = True) -> None:
        """Stop beating. ``leave``: say so in the registry at once (a clean exit), so survivors take
        over what is left (calls past the drain deadline) without waiting out the TTL."""
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        self._tasks = []
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(NodeUnavailable("this node is shutting down"))
        if leave:
            try:
                await self._clear_own_reaper_mark()  # stopped before its first sweep
                # an old heartbeat: the next survivor's sweep reaps us now (our calls move)
                await self.redis.zadd(self.keys.nodes, {self.node_id: 0})
            except _REDIS_ERRORS:
                pass

    async def set_draining(self, draining: bool = True) -> None:
        self.draining = draining
        try:
            await self.redis.hset(self.keys.node(self.node_id), "draining", "1" if draining else "0")
        except _REDIS_ERRORS:
            pass

    # heartbeat and the watch on the others -----------------------------------------------------

    async def _beat(self) -> None:
        t0 = time.perf_counter()
        now = int(time.time() * 1000)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zscore(self.keys.nodes, self.node_id)
            pipe.zadd(self.keys.nodes, {self.node_id: now})
            pipe.hset(self.keys.node(self.node_id), mapping={
                "started_ms": str(self.started_ms), "draining": "1" if self.draining else "0", **self.info})
            score, _, _ = await pipe.execute()
        self.redis_latency_s = time.perf_counter() - t0
        if score is None and self._tasks and not self._stopping:
            await self._rejoin()

    async def _rejoin(self) -> None:
        """Others took us for dead (Redis was unreachable longer than the TTL): our sockets were
        dropped from presence; put them back (our calls were taken over: they end here)."""
        log.warning("node %s was taken for dead by the others; registering its sockets again", self.node_id)
        for sid, agent in list(self.local_agent_sockets.items()):
            await self.add_agent_socket(agent, sid)

    async def _heartbeat_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.heartbeat_s)
            try:
                await self._beat()
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except _REDIS_ERRORS as exc:
                log.info("heartbeat: Redis unavailable (%s)", exc)
            except Exception:  # noqa: BLE001 - the heartbeat must go on
                log.exception("heartbeat failed; going on")

    async def live_nodes(self) -> dict[str, bool]:
        """Nodes alive now -> whether they take work (not draining)."""
        cutoff = int(time.time() * 1000) - self.ttl_ms
        nodes = await self.redis.zrangebyscore(self.keys.nodes, cutoff, "+inf")
        out: dict[str, bool] = {}
        for node in nodes:
            out[node] = (await self.redis.hget(self.keys.node(node), "draining")) != "1"
        return out

    async def is_alive(self, node: str) -> bool:
        score = await self.redis.zscore(self.keys.nodes, node)
        return score is not None and float(score) >= time.time() * 1000 - self.ttl_ms

    def listening_on(self, port: int) -> None:
        """The port the node listens on is known (``http.port: 0`` picks one): advertise it from
        the next heartbeat on (unless ``cluster.internal_url`` is set)."""
        self.info["internal_url"] = internal_url(self.config, port)

    async def address_of(self, node: str) -> str | None:
        """The ``internal_url`` of ``node`` while it is alive (its heartbeat is fresh), else None."""
        if not await self.is_alive(node):
            return None
        return await self.redis.hget(self.keys.node(node), "internal_url")

    async def sweep(self) -> list[ReapReport]:
        """Reap every node whose heartbeat is older than the TTL (one survivor each), then
        return to their queues the conversations of agents who did not come back in time."""
        now = int(time.time() * 1000)
        dead = await self.redis.zrangebyscore(self.keys.nodes, "-inf", now - self.ttl_ms, withscores=True)
        reports = []
        if self._leftover:
            self._leftover = False
            report = ReapReport(self.node_id)
            await self._reap_calls(self.node_id, report)
            if report.calls:
                log.warning("took over %d calls left by this node's previous run", report.calls)
        await self._clear_own_reaper_mark()  # set by start(): the previous run is cleaned up now
        for node, score in dead:
            if node == self.node_id:
                continue
            if not await self.redis.set(self.keys.reaper(node), self.node_id, nx=True, ex=60):
                continue  # another survivor is on it
            fresh = await self.redis.zscore(self.keys.nodes, node)
            if fresh is None or float(fresh) >= now - self.ttl_ms:
                # reaped by another survivor meanwhile, or started again (its id is kept): leave it
                await self.redis.delete(self.keys.reaper(node))
                continue
            reports.append(await self.reap(node, (now - float(score)) / 1000 if score else 0.0))
        if self.on_orphan_due is not None:
            for agent in await self.redis.zrangebyscore(self.keys.orphans, "-inf", now):
                if await self.redis.zrem(self.keys.orphans, agent):  # only one node does it
                    try:
                        await self.on_orphan_due(agent)
                    except Exception:  # noqa: BLE001
                        log.exception("returning agent %s's conversations to their queues failed", agent)
        return reports

    async def reap(self, node: str, silent_s: float = 0.0) -> ReapReport:
        """Take over what dead ``node`` left: its agents' sockets, then its calls."""
        report = ReapReport(node, silent_s=round(silent_s, 3))
        await self._reap_agents(node, report)
        await self._reap_calls(node, report)
        await RoomRegistry(self.redis, self.keys.p).forget(node)  # the fan-out stops publishing to it
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(self.keys.nodes, node)
            pipe.delete(self.keys.agents(node), self.keys.calls(node), self.keys.node(node))
            await pipe.execute()
        self.reaped.append(report)
        del self.reaped[:-20]
        log.warning("node %s is gone (silent %.1f s): %d agent sockets dropped, %d agents offline, %d calls taken over",
                    node, report.silent_s, report.sockets, len(report.offline), report.calls)
        return report

    async def _reap_agents(self, node: str, report: ReapReport) -> None:
        from .store import Keys

        keys = Keys(self.keys.p)
        for entry in await self.redis.smembers(self.keys.agents(node)):
            agent, _, sid = entry.partition("\t")
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.srem(keys.agent_sockets(agent), sid)
                pipe.scard(keys.agent_sockets(agent))
                _, left = await pipe.execute()
            report.sockets += 1
            if left == 0 and agent not in report.offline:
                report.offline.append(agent)
        for agent in report.offline:
            if self.on_agent_lost is not None:
                try:
                    await self.on_agent_lost(agent)
                except Exception:  # noqa: BLE001
                    log.exception("taking agent %s offline failed", agent)
        await self.redis.delete(self.keys.agents(node))

    async def _reap_calls(self, node: str, report: ReapReport) -> None:
        calls = sorted(await self.redis.smembers(self.keys.calls(node)))
        if calls and self.on_calls_orphaned is not None:
            try:
                report.calls = await self.on_calls_orphaned(node, calls)
            except Exception:  # noqa: BLE001
                log.exception("taking over the calls of node %s failed", node)

    # what this node holds ------------------------------------------------------------------

    async def add_agent_socket(self, agent: str, sid: str) -> None:
        from .store import Keys

        self.local_agent_sockets[sid] = agent
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.sadd(Keys(self.keys.p).agent_sockets(agent), sid)
            pipe.sadd(self.keys.agents(self.node_id), f"{agent}\t{sid}")
            pipe.zrem(self.keys.orphans, agent)  # back in time: their conversations stay theirs
            await pipe.execute()

    async def remove_agent_socket(self, agent: str, sid: str) -> int:
        """Forget one of this node's agent sockets; returns how many the agent has left (all nodes)."""
        from .store import Keys

        self.local_agent_sockets.pop(sid, None)
        sockets = Keys(self.keys.p).agent_sockets(agent)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.srem(sockets, sid)
            pipe.srem(self.keys.agents(self.node_id), f"{agent}\t{sid}")
            pipe.scard(sockets)
            _, _, left = await pipe.execute()
        return int(left)

    async def orphan(self, agent: str) -> None:
        """The agent went offline with a dead node: their conversations return to the queue after
        ``cluster.reassign_after_s`` unless they come back first."""
        due = int((time.time() + self.config.cluster.reassign_after_s) * 1000)
        await self.redis.zadd(self.keys.orphans, {agent: due}, nx=True)

    # the bus ---------------------------------------------------------------------------------

    def handle(self, op: str, handler: BusHandler) -> None:
        self._handlers[op] = handler

    @property
    def answering(self) -> int:
        """Requests from other nodes being answered here (the reply not yet published): a
        draining node waits for them before it stops (server/ops.py ``drain``)."""
        return len(self._spawned)

    async def request(self, node: str, op: str, body: dict[str, Any], timeout: float | None = None) -> Any:
        """Send ``op`` to ``node`` and wait for its reply (``NodeUnavailable`` after the timeout)."""
        rid = secrets.token_hex(8)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        try:
            message = json.dumps({"op": op, "id": rid, "from": self.node_id, "body": body}, separators=(",", ":"))
            receivers = await self.redis.publish(self.keys.rpc(node), message)
            if not receivers:
                raise NodeUnavailable(f"node {node} is not listening")
            return await asyncio.wait_for(fut, timeout or self.config.cluster.forward_timeout_s)
        except asyncio.TimeoutError:
            raise NodeUnavailable(f"node {node} did not answer in time") from None
        finally:
            self._pending.pop(rid, None)

    async def tell(self, node: str, op: str, body: dict[str, Any]) -> None:
        """Send ``op`` to ``node`` without waiting for a reply."""
        message = json.dumps({"op": op, "from": self.node_id, "body": body}, separators=(",", ":"))
        try:
            await self.redis.publish(self.keys.rpc(node), message)
        except _REDIS_ERRORS as exc:
            log.info("could not tell node %s %s: %s", node, op, exc)

    async def _bus_loop(self) -> None:
        backoff = 0.2
        while not self._stopping:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.keys.rpc(self.node_id))
                backoff = 0.2
                while not self._stopping:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None or message.get("type") != "message":
                        continue
                    self._dispatch(message["data"])
            except asyncio.CancelledError:
                raise
            except _REDIS_ERRORS as exc:
                log.info("node bus: Redis unavailable (%s); resubscribing", exc)
                await asyncio.sleep(backoff)
                backoff = min(2.0, backoff * 2)
            except Exception:  # noqa: BLE001
                log.exception("node bus failed; resubscribing")
                await asyncio.sleep(backoff)
            finally:
                try:
                    await pubsub.aclose()
                except Exception:  # noqa: BLE001
                    pass

    def _dispatch(self, data: Any) -> None:
        try:
            message = json.loads(data)
        except ValueError:
            return
        op = message.get("op")
        if op == "reply":
            fut = self._pending.get(message.get("id", ""))
            if fut is not None and not fut.done():
                fut.set_result(message.get("body"))
            return
        handler = self._handlers.get(op)
        if handler is None:
            return
        task = asyncio.ensure_future(self._answer(handler, message))
        self._spawned.add(task)
        task.add_done_callback(self._spawned.discard)

    async def _answer(self, handler: BusHandler, message: dict[str, Any]) -> None:
        try:
            result = await handler(message.get("body") or {})
        except Exception:  # noqa: BLE001 - the asking node gets an answer either way
            log.exception("bus request %s failed", message.get("op"))
            result = {"ok": False, "error": {"code": "internal", "message": "internal error: it was logged; retry or report it"}}
        if message.get("id") and message.get("from"):
            reply = json.dumps({"op": "reply", "id": message["id"], "body": result}, separators=(",", ":"))
            try:
                await self.redis.publish(self.keys.rpc(message["from"]), reply)
            except _REDIS_ERRORS as exc:
                log.info("could not answer node %s: %s", message["from"], exc)
