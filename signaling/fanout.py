"""Pushes to this node's sockets, and the registry of which nodes have sockets in which room.

Why a module: a push (a stored chat message, a summary, a typing notice) goes to Socket.IO rooms.
On one node, the cheapest way is to encode the packet once and queue it on each socket of the
rooms (python-socketio's ``emit`` re-scans the data for binary parts and makes a task per
recipient). With several nodes, the same packet must also reach the sockets of those rooms on
*other* nodes, and only those: python-socketio's Redis manager publishes every emit to every
node, which decodes it whether or not one of its sockets is in the room, so each node's cost grew
with the whole cluster's traffic (bench.load). So:

- :func:`event_packet` / :func:`send_local`: one encoded packet to this node's sockets in some rooms
  (used by the service's pushes on one node and by the fan-out for what other nodes send);
- :class:`RoomRegistry`: ``<prefix>room:<namespace>|<room>`` (a set of node ids) says which nodes
  have at least one socket in a *targeted* room (a name ``<kind>:<id>``, e.g. ``customer:…``,
  ``agent:…``, ``watch:…``, ``conv:…``); ``<prefix>node:<id>:rooms`` lists a node's entries so
  that a dead node's are removed when it is reaped (signaling/cluster.py) or when it starts again.

Rooms without a colon (``agents``, ``supervisors``, a socket's own sid room on another node, the
whole namespace) still go to every node. server/redis_client.py's ``FanoutManager`` keeps a
cache of the registry on each node; docs/redis.md describes the protocol and why a join waits for
the other nodes to drop their cached entry before the join completes.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterable

import redis.asyncio as aioredis
from engineio import packet as eio_packets

from . import fastjson

log = logging.getLogger(__name__)


def targeted(room: Any) -> bool:
    """Whether emits to ``room`` go only to the nodes the registry names (``<kind>:<id>`` rooms)."""
    return isinstance(room, str) and ":" in room


def room_key(namespace: str, room: str) -> str:
    """How the registry and the caches name a room of a namespace."""
    return f"{namespace}|{room}"


def event_packet(namespace: str, event: str, data: Any) -> str:
    """The Socket.IO EVENT packet (without Engine.IO's type) of ``event`` with one argument: what
    ``socketio.Packet.encode`` makes for non-binary data, without its recursive scan for bytes.
    Raises ``TypeError`` for data JSON cannot hold (bytes): send that through python-socketio."""
    text = fastjson.dumps([event, data])
    return f"2{text}" if namespace == "/" else f"2{namespace},{text}"


def rooms_of(rooms: str | Iterable[str] | None) -> list[Any]:
    """``rooms`` as a list (``None``: the whole namespace)."""
    if rooms is None or isinstance(rooms, str):
        return [rooms]
    return list(rooms)


async def send_local(manager: Any, packet_text: str | Callable[[], str], namespace: str,
                     rooms: str | list[str] | None, skip_sid: str | None = None) -> int:
    """Queue one encoded packet on each of this node's sockets in ``rooms``; returns how many.
    ``packet_text`` may be a function that makes it: then it is encoded only if a socket is found.
    A socket in several of the rooms gets it once; a broken socket does not stop the others."""
    if namespace not in manager.rooms:
        return 0
    eio = manager.server.eio
    pkt = None
    sent = 0
    for sid, eio_sid in manager.get_participants(namespace, rooms):
        if sid == skip_sid:
            continue
        if pkt is None:
            pkt = eio_packets.Packet(eio_packets.MESSAGE, packet_text if isinstance(packet_text, str) else packet_text())
        try:
            await eio.send_packet(eio_sid, pkt)
            sent += 1
        except Exception:  # noqa: BLE001 - one broken socket must not stop the others
            log.debug("send to %s failed", sid, exc_info=True)
    return sent


class RoomRegistry:
    """Which nodes have sockets in which targeted room, in Redis (see the module's docstring).

    Why a class: the fan-out writes it as its sockets join and leave rooms, and reads it when it
    misses its cache; the cluster's reaper and a node starting again remove a node's entries."""

    def __init__(self, redis: aioredis.Redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix

    def members_key(self, key: str) -> str:
        return f"{self.prefix}room:{key}"

    def node_key(self, node: str) -> str:
        return f"{self.prefix}node:{node}:rooms"

    async def apply(self, node: str, joins: Iterable[str], leaves: Iterable[str]) -> None:
        """Record that ``node`` now has sockets in ``joins`` and none left in ``leaves`` (in that order)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in joins:
                pipe.sadd(self.members_key(key), node)
                pipe.sadd(self.node_key(node), key)
            for key in leaves:
                pipe.srem(self.members_key(key), node)
                pipe.srem(self.node_key(node), key)
            await pipe.execute()

    async def nodes(self, key: str) -> frozenset[str]:
        """The nodes with sockets in the room ``key``."""
        members = await self.redis.smembers(self.members_key(key))
        return frozenset(m.decode() if isinstance(m, bytes) else m for m in members)

    async def forget(self, node: str) -> int:
        """Remove every entry of ``node`` (it died, or starts again under the same id); returns how many."""
        keys = await self.redis.smembers(self.node_key(node))
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.srem(self.members_key(key.decode() if isinstance(key, bytes) else key), node)
            pipe.delete(self.node_key(node))
            await pipe.execute()
        return len(keys)


# The fan-out's messages on Redis pub/sub: one letter, then a small JSON header (then, for an emit,
# a newline and the encoded packet, which the receiving node queues on its sockets as it is).

def emit_message(namespace: str, rooms: Any, skip_sid: str | None, host: str, packet_text: str) -> bytes:
    header = fastjson.dumps({"ns": namespace, "r": rooms, "s": skip_sid, "h": host})
    return f"E{header}\n{packet_text}".encode()


def invalidate_message(keys: list[str], host: str, node: str, request_id: str) -> bytes:
    """Rooms whose members changed on ``node``; ``request_id``: answer it on ``node``'s channel."""
    return b"I" + fastjson.dumps({"k": keys, "h": host, "n": node, "id": request_id}).encode()


def ack_message(request_id: str) -> bytes:
    return b"A" + fastjson.dumps({"id": request_id}).encode()


def batches(messages: list[bytes], max_bytes: int) -> Iterable[bytes]:
    """Emit messages to one node as few messages: ``M`` then the messages joined by NUL bytes
    (JSON texts hold no raw control characters); a single one as it is."""
    if len(messages) == 1:
        yield messages[0]
        return
    chunk: list[bytes] = []
    size = 0
    for message in messages:
        if chunk and size + len(message) > max_bytes:
            yield b"M" + b"\0".join(chunk)
            chunk, size = [], 0
        chunk.append(message)
        size += len(message) + 1
    if chunk:
        yield chunk[0] if len(chunk) == 1 else b"M" + b"\0".join(chunk)


def unbatch(data: bytes) -> list[bytes]:
    """The emit messages of an ``M`` message."""
    return data[1:].split(b"\0")


def read_message(data: bytes) -> tuple[str, dict[str, Any], str]:
    """(kind ``E``/``I``/``A``/``M``, header, packet text) of a fan-out message; kind ``""`` for another
    format (python-socketio's JSON messages)."""
    kind = data[:1]
    if kind == b"E":
        header, _, text = data[1:].partition(b"\n")
        return "E", fastjson.loads(header), text.decode()
    if kind in (b"I", b"A"):
        return kind.decode(), fastjson.loads(data[1:]), ""
    if kind == b"M":
        return "M", {}, ""  # emits batched: unbatch()
    return "", {}, ""
