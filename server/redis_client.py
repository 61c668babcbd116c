"""The node's Redis client: a plain URL, or the primary that Redis Sentinel names.

Why a module: Sentinel changes where the primary is, so the client must ask the sentinels again
after a failover (redis-py's ``Sentinel.master_for`` does, on the next connection error), and
python-socketio's Redis manager must do the same (its ``redis+sentinel://`` URL). Both are built
from one URL: ``redis+sentinel://host1:26379,host2:26379/<db>/<primary name>``, which
``redis.sentinels`` + ``redis.sentinel_master`` produce (docs/redis.md).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any, Awaitable, Callable

import redis.asyncio as aioredis
import socketio
from redis.asyncio.sentinel import Sentinel

from signaling import fanout

SENTINEL_SCHEME = "redis+sentinel://"


def sentinel_url(sentinels: list[str], master: str, db: int = 0) -> str:
    """The ``redis+sentinel://`` URL of ``redis.sentinels`` and ``redis.sentinel_master``."""
    return f"{SENTINEL_SCHEME}{','.join(sentinels)}/{db}/{master}"


def _parse(url: str) -> tuple[list[tuple[str, int]], str, int]:
    rest = url[len(SENTINEL_SCHEME):]
    hosts, _, path = rest.partition("/")
    parts = [p for p in path.split("/") if p]
    db = int(parts[0]) if parts and parts[0].isdigit() else 0
    master = parts[1] if len(parts) > 1 else (parts[0] if parts and not parts[0].isdigit() else "mymaster")
    sentinels = []
    for entry in hosts.split(","):
        host, _, port = entry.rpartition(":")
        sentinels.append((host, int(port)))
    return sentinels, master, db


#: how long a socket's join of a room waits for the other nodes to drop their cached members of it
JOIN_ACK_TIMEOUT_S = 2.0
#: a ``resync`` names, as ``since``, the event id from which pushes may have been lost: this long
#: before this node saw its link to Redis fail (a publish may have been late, clocks may differ)
RESYNC_MARGIN_S = 10.0
#: a batch of emits published as one message stays under this size
BATCH_MAX_BYTES = 256 * 1024
#: cached rooms per node before the cache starts again (each entry: a room name and a few node ids)
CACHE_MAX = 200_000


class FanoutManager(socketio.AsyncRedisManager):
    """python-socketio's Redis manager, made to publish an emit only to the nodes that need it.

    Why: the stock manager publishes every emit on one channel that every node reads and decodes,
    whether or not one of its sockets is in the room; each node's cost grew with the whole
    cluster's traffic and the 2-node throughput stayed far from twice one node's (bench.load).
    Here (signaling/fanout.py has the registry):

    - an emit is delivered to this node's sockets at once (encoded once), then published only on
      the channels (``<channel>:<node id>``) of the other nodes that the room registry names for
      its rooms; an emit to a room without a colon (``agents``, a namespace, a sid on another
      node) goes on the shared channel that every node reads, as before;
    - the packet travels encoded: the receiving node reads a small header (namespace, rooms, sid
      to skip) and queues the packet text on its sockets without decoding it;
    - a socket's join of a targeted room that is new on this node registers the node in Redis,
      tells every node to drop its cached members of that room, and completes when they have
      answered (at most ``JOIN_ACK_TIMEOUT_S``): whatever another node stores after that is
      published to us, and what it stored before is in what the joining client reads next;
    - the last socket of a room leaving unregisters the node (a stale cache then only costs a
      publish that nobody here delivers).

    The client is made like the node's own (:func:`make_redis`): the stock one uses redis-py's
    default pool, which *raises* past 100 connections; under load, publishes failed and pushes
    were lost. A blocking pool makes a burst of emits wait for a free connection instead."""

    #: namespaces told ``resync`` after a reconnection (set by the app: /customer, /agent)
    resync_namespaces: tuple[str, ...] = ()

    def __init__(self, url: str, channel: str = "socketio", prefix: str = "", node_id: str = "") -> None:
        super().__init__(url, channel=channel)
        self.prefix = prefix
        self.node_id = node_id or self.host_id  # set to the cluster's node id by the app
        self._cache: dict[str, frozenset[str]] = {}
        self._generation = 0  # bumped by every invalidation: a registry read older than it is not cached
        self._joining: dict[str, asyncio.Future[None]] = {}
        self._ops: asyncio.Queue[tuple[str, str, asyncio.Future[None] | None]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._waiting_acks: dict[str, list[Any]] = {}  # invalidation id -> [answers still due, futures]
        self._subscribed = asyncio.Event()
        self._outbox: dict[str, list[bytes]] = {}  # channel -> messages not yet published
        self._flusher: asyncio.Task[None] | None = None
        self._outbox_done: asyncio.Future[None] | None = None  # completes when the outbox is published
        self._forgot_previous_run = False
        self._lost_at: float | None = None  # when the link failed (first failure since the last resync)
        #: what this node published and received (for /metrics and the tests)
        self.stats: dict[str, int] = {"published_to_nodes": 0, "published_to_all": 0, "kept_local": 0,
                                      "publishes": 0, "received": 0, "delivered": 0, "registry_reads": 0}

    @property
    def node_channel(self) -> str:
        return f"{self.channel}:{self.node_id}"

    def _registry(self) -> fanout.RoomRegistry:
        if not self.connected:
            self._redis_connect()
        return fanout.RoomRegistry(self.redis, self.prefix)

    def _redis_connect(self) -> None:
        first = not getattr(self, "_connected_once", False)
        self._connected_once = True
        # bytes, as the manager compares channel names with bytes
        self.redis = make_redis(self.redis_url, decode=False, max_connections=64, timeout=20)
        self.pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        self.connected = True
        if not first and self.resync_namespaces:
            # Redis pub/sub is at most once: while the connection was down, pushes made on other
            # nodes (and ours, if a publish was given up) did not reach this node's sockets. They
            # are stored; tell our clients to resume from their last event id (the SDK does).
            # The registry may have lost our rooms too (a Redis restarted without its data).
            task = asyncio.get_running_loop().create_task(self._resync())
            self._resync_task = task

    def _link_failed(self) -> None:
        if self._lost_at is None:
            self._lost_at = time.time()

    async def _resync(self) -> None:
        await asyncio.sleep(0.5)  # once the subscription is back
        for namespace, rooms in list(self.rooms.items()):
            for room in list(rooms):
                if fanout.targeted(room):
                    self._queue_op("join", fanout.room_key(namespace, room))
        # Resuming "after the last event id seen" is not enough: pushes flow again before this
        # resync, and one that arrived after the gap moves a client's last id past those lost in
        # it. So the resync says from when pushes may have been lost (an event id); clients resume
        # from there if that is earlier (what they already have comes again, dropped by id).
        data: dict[str, Any] = {"reason": "fanout_reconnected"}
        lost_at = self._lost_at
        if lost_at is not None:
            data["since"] = f"{int((lost_at - RESYNC_MARGIN_S) * 1000)}-0"
            if self._subscribed.is_set():  # pushes reach us again: a later resync starts afresh
                self._lost_at = None
        log = logging.getLogger(__name__)
        log.info("resync of this node's sockets%s", f" since {data['since']}" if "since" in data else "")
        for namespace in self.resync_namespaces:
            try:
                # this node's sockets only
                await self.emit_local("resync", data, namespace)
            except Exception:  # noqa: BLE001
                log.exception("resync of %s failed", namespace)

    # emitting ---------------------------------------------------------------------------------

    async def emit(self, event: str, data: Any, namespace: str | None = None, room: Any = None, skip_sid: Any = None,
                   callback: Any = None, to: Any = None, **kwargs: Any) -> None:
        room = to or room
        namespace = namespace or "/"
        if kwargs.get("ignore_queue"):
            await self.emit_local(event, data, namespace, room, skip_sid)
            return
        if callback is not None or isinstance(data, tuple) or isinstance(skip_sid, list):
            await super().emit(event, data, namespace=namespace, room=room, skip_sid=skip_sid, callback=callback)
            return
        try:
            text = fanout.event_packet(namespace, event, data)
        except TypeError:  # binary parts: python-socketio's own encoding
            await super().emit(event, data, namespace=namespace, room=room, skip_sid=skip_sid)
            return
        await fanout.send_local(self, text, namespace, room, skip_sid)
        nodes = await self._targets(namespace, room)
        if nodes is not None and not nodes:
            self.stats["kept_local"] += 1
            return
        message = fanout.emit_message(namespace, room, skip_sid, self.host_id, text)
        if nodes is None:
            self.stats["published_to_all"] += 1
            published = self._post(self.channel, message)
        else:
            for node in nodes:
                self.stats["published_to_nodes"] += 1
                published = self._post(f"{self.channel}:{node}", message)
        # the emitter (a handler about to ack) goes on once Redis has the publish: acknowledged then
        # means delivered here and handed to the other nodes, even if this node dies next
        await published

    def _post(self, channel: str, message: bytes) -> asyncio.Future[None]:
        """Queue a publish; returns what completes once it is published (or given up). What the
        emits of one turn of the event loop (and of the turns while a flush waits for Redis) send to
        one node goes as one message (signaling/fanout.py), in order: one PUBLISH, one message for
        the receiving node to read, however many emits. A publish given up makes this node
        reconnect and its clients resync (as before)."""
        box = self._outbox.get(channel)
        if box is None:
            self._outbox[channel] = [message]
        else:
            box.append(message)
        if self._outbox_done is None:
            self._outbox_done = asyncio.get_running_loop().create_future()
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush(), name="segue-fanout-flush")
        return self._outbox_done

    async def _flush(self) -> None:
        done: asyncio.Future[None] | None = None
        try:
            while self._outbox:
                boxes, self._outbox = self._outbox, {}
                done, self._outbox_done = self._outbox_done, None
                items = [(channel, batch) for channel, messages in boxes.items()
                         for batch in fanout.batches(messages, BATCH_MAX_BYTES)]

                async def publish_all() -> None:
                    async with self.redis.pipeline(transaction=False) as pipe:
                        for channel, batch in items:
                            pipe.publish(channel, batch)
                        await pipe.execute()
                    self.stats["publishes"] += len(items)

                await self._publish_retrying(publish_all, f"{len(items)} publishes")
                if done is not None and not done.done():
                    done.set_result(None)
                done = None
        finally:
            self._flusher = None
            for fut in (done, self._outbox_done if not self._outbox else None):
                if fut is not None and not fut.done():
                    fut.set_result(None)

    async def emit_local(self, event: str, data: Any, namespace: str, room: Any = None, skip_sid: Any = None) -> None:
        """Emit to this node's sockets only (what every node sends for itself, e.g. queue stats)."""
        if not isinstance(skip_sid, list):
            try:
                await fanout.send_local(self, fanout.event_packet(namespace, event, data), namespace, room, skip_sid)
                return
            except TypeError:  # binary parts: python-socketio's own encoding
                pass
        await socketio.AsyncManager.emit(self, event, data, namespace, room=room, skip_sid=skip_sid)

    async def _targets(self, namespace: str, room: Any) -> frozenset[str] | set[str] | None:
        """The other nodes to publish to (``None``: every node)."""
        nodes: set[str] = set()
        for r in fanout.rooms_of(room):
            if not fanout.targeted(r):
                if isinstance(r, str) and self.is_sid_room(namespace, r):
                    continue  # one of our sockets
                return None
            key = fanout.room_key(namespace, r)
            members = self._cache.get(key)
            if members is None:
                members = await self._read_registry(key)
                if members is None:
                    return None  # Redis trouble: the shared channel, as the stock manager does
            nodes.update(members)
        nodes.discard(self.node_id)
        return nodes

    async def _read_registry(self, key: str) -> frozenset[str] | None:
        generation = self._generation
        self.stats["registry_reads"] += 1
        try:
            members = await self._registry().nodes(key)
        except Exception as exc:  # noqa: BLE001
            logging.getLogger(__name__).info("room registry unavailable (%s): publishing to every node", exc)
            return None
        if generation == self._generation:  # nobody joined or left anything meanwhile
            if len(self._cache) >= CACHE_MAX:
                self._cache.clear()
            self._cache[key] = members
        return members

    async def _publish_retrying(self, publish: Callable[[], Awaitable[Any]], what: str) -> Any:
        """``publish()`` on a connected client, once more on a new connection if it fails; ``None``
        when it is given up (the next connection makes our clients resync)."""
        for attempt in (1, 2):
            try:
                if not self.connected:
                    self._redis_connect()
                return await publish()
            except Exception as exc:  # noqa: BLE001
                self.connected = False
                self._link_failed()
                logging.getLogger(__name__).error("cannot publish to Redis (%s)%s", exc, "; retrying" if attempt == 1
                                                  else f"; gave up {what} (clients resync)")
        return None

    # joining and leaving rooms ------------------------------------------------------------------

    async def enter_room(self, sid: str, namespace: str, room: Any, eio_sid: Any = None) -> None:
        local = self.is_connected(sid, namespace) or self.is_pre_connected(sid, namespace)
        if not local or not fanout.targeted(room):
            await super().enter_room(sid, namespace, room, eio_sid=eio_sid)
            return
        key = fanout.room_key(namespace, room)
        new = room not in self.rooms.get(namespace, {})
        self.basic_enter_room(sid, namespace, room, eio_sid=eio_sid)
        joining = self._queue_op("join", key) if new else self._joining.get(key)
        if joining is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(joining), JOIN_ACK_TIMEOUT_S + 1.0)
        except asyncio.TimeoutError:
            logging.getLogger(__name__).warning("room %s: the other nodes did not confirm the join in time", key)

    def basic_leave_room(self, sid: str, namespace: str, room: Any) -> None:
        was_here = fanout.targeted(room) and room in self.rooms.get(namespace, {})
        super().basic_leave_room(sid, namespace, room)
        if was_here and room not in self.rooms.get(namespace, {}):
            self._queue_op("leave", fanout.room_key(namespace, room))

    async def _handle_enter_room(self, message: dict[str, Any]) -> None:
        sid, namespace = message.get("sid"), message.get("namespace")
        if self.is_connected(sid, namespace) or self.is_pre_connected(sid, namespace):
            await self.enter_room(sid, namespace, message.get("room"))

    def _queue_op(self, op: str, key: str) -> asyncio.Future[None] | None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        if self._ops is None:
            self._ops = asyncio.Queue()
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._registry_worker(), name="segue-room-registry")
        fut: asyncio.Future[None] | None = None
        if op == "join":
            fut = loop.create_future()
            self._joining[key] = fut
            fut.add_done_callback(lambda f, k=key: self._joining.pop(k, None) if self._joining.get(k) is f else None)
        self._ops.put_nowait((op, key, fut))
        return fut

    async def _registry_worker(self) -> None:
        """Write joins and leaves to the registry in the order they happened (batched), and tell
        the other nodes; a join's future completes when they have answered."""
        assert self._ops is not None
        log = logging.getLogger(__name__)
        while True:
            batch = [await self._ops.get()]
            while not self._ops.empty():
                batch.append(self._ops.get_nowait())
            backoff = 0.1
            while True:
                try:
                    await self._write(batch)
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - Redis away: keep the order, try again
                    log.info("room registry: Redis unavailable (%s); retrying", exc)
                    self.connected = False
                    await asyncio.sleep(backoff)
                    backoff = min(2.0, backoff * 2)

    async def _write(self, batch: list[tuple[str, str, asyncio.Future[None] | None]]) -> None:
        registry = self._registry()
        if not self._forgot_previous_run:
            # a previous run of this node id (killed before it could clean up) left entries
            await registry.forget(self.node_id)
            self._forgot_previous_run = True
        # in order: a leave then a join of one room ends joined, a join then a leave ends left
        state: dict[str, str] = {}
        for op, key, _ in batch:
            state[key] = op
        joins = [k for k, op in state.items() if op == "join"]
        leaves = [k for k, op in state.items() if op == "leave"]
        await registry.apply(self.node_id, joins, leaves)
        futures = [fut for _, _, fut in batch if fut is not None and not fut.done()]
        rid = secrets.token_hex(6)
        if futures:
            self._waiting_acks[rid] = [0, futures]
        if not self._subscribed.is_set():
            try:  # our own subscription first: the answers come on our channel
                await asyncio.wait_for(self._subscribed.wait(), JOIN_ACK_TIMEOUT_S)
            except asyncio.TimeoutError:
                pass
        message = fanout.invalidate_message(list(state), self.host_id, self.node_id, rid if futures else "")
        receivers = await self.redis.publish(self.channel, message)
        if not futures:
            return
        # every subscriber of the shared channel but us answers
        due = int(receivers) - (1 if self._subscribed.is_set() else 0)
        entry = self._waiting_acks.get(rid)
        if entry is None:
            return
        entry[0] += due
        if entry[0] <= 0:
            self._finish(rid)
        else:
            asyncio.get_running_loop().call_later(JOIN_ACK_TIMEOUT_S, self._finish, rid)

    def _finish(self, rid: str) -> None:
        entry = self._waiting_acks.pop(rid, None)
        if entry is None:
            return
        for fut in entry[1]:
            if not fut.done():
                fut.set_result(None)

    # receiving --------------------------------------------------------------------------------

    async def _redis_listen_with_retries(self) -> Any:
        retry_sleep = 1.0
        while True:
            try:
                self._redis_connect()
                await self.pubsub.subscribe(self.channel, self.node_channel)
                self._subscribed.set()
                retry_sleep = 1.0
                async for message in self.pubsub.listen():
                    yield message
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                self._subscribed.clear()
                self._link_failed()
                logging.getLogger(__name__).error("cannot receive from Redis (%s); retrying in %.0f s", exc,
                                                  retry_sleep)
                await asyncio.sleep(retry_sleep)
                retry_sleep = min(60.0, retry_sleep * 2)

    async def _thread(self) -> None:
        log = logging.getLogger(__name__)
        async for message in self._redis_listen_with_retries():
            if message.get("type") != "message":
                continue
            data = message.get("data")
            if not isinstance(data, bytes) or not data:
                continue
            try:
                kind, header, text = fanout.read_message(data)
                if kind == "E":
                    await self._on_emit(header, text)
                elif kind == "M":
                    for one in fanout.unbatch(data):
                        _, header, text = fanout.read_message(one)
                        await self._on_emit(header, text)
                elif kind == "I":
                    await self._on_invalidate(header)
                elif kind == "A":
                    self._on_ack(header)
                else:
                    await self._on_stock(data)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the listener must live on
                log.exception("fan-out message not handled")

    async def _on_emit(self, h: dict[str, Any], text: str) -> None:
        if h.get("h") == self.host_id:
            return
        self.stats["received"] += 1
        self.stats["delivered"] += await fanout.send_local(self, text, h["ns"], h.get("r"), h.get("s"))

    async def _on_invalidate(self, h: dict[str, Any]) -> None:
        if h.get("h") == self.host_id:
            return
        self._generation += 1
        for key in h.get("k") or ():
            self._cache.pop(key, None)
        if h.get("id") and h.get("n"):
            channel, ack = f"{self.channel}:{h['n']}", fanout.ack_message(h["id"])
            await self._publish_retrying(lambda: self.redis.publish(channel, ack), "an answer")

    def _on_ack(self, h: dict[str, Any]) -> None:
        rid = h.get("id", "")
        entry = self._waiting_acks.get(rid)
        if entry is None:
            return
        entry[0] -= 1
        if entry[0] <= 0:
            self._finish(rid)

    async def _on_stock(self, data: bytes) -> None:
        """A message in python-socketio's own format (an emit with a callback, a disconnect, ...)."""
        try:
            message = self.json.loads(data)
        except ValueError:
            return
        if not isinstance(message, dict) or "method" not in message:
            return
        method = message["method"]
        if method == "callback":
            await self._handle_callback(message)
        elif message.get("host_id") != self.host_id:
            handler = {"emit": self._handle_emit, "disconnect": self._handle_disconnect,
                       "enter_room": self._handle_enter_room, "leave_room": self._handle_leave_room,
                       "close_room": self._handle_close_room}.get(method)
            if handler is not None:
                await handler(message)


def make_redis(url: str, decode: bool = True, **pool: Any) -> aioredis.Redis:
    """A client of ``url``: a blocking pool (a burst waits for a free connection instead of
    failing), or through Sentinel for a ``redis+sentinel://`` URL."""
    if url.startswith(SENTINEL_SCHEME):
        sentinels, master, db = _parse(url)
        sentinel = Sentinel(sentinels, socket_timeout=2, socket_connect_timeout=1)
        # the sentinel pool cannot block: a high bound instead of redis-py's 100
        return sentinel.master_for(master, db=db, decode_responses=decode, socket_timeout=5, socket_connect_timeout=2,
                                   health_check_interval=30, retry_on_timeout=True, max_connections=2000)
    return aioredis.Redis(connection_pool=aioredis.BlockingConnectionPool.from_url(
        url, decode_responses=decode, health_check_interval=30, **pool))
