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
from typing import Any

import redis.asyncio as aioredis
import socketio
from redis.asyncio.sentinel import Sentinel

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


class FanoutManager(socketio.AsyncRedisManager):
    """python-socketio's Redis manager on a client made like the node's own (:func:`make_redis`).

    Why: the stock manager builds its client with redis-py's default pool, which *raises* past 100
    connections ("Too many connections"); every emit is a ``PUBLISH``, so under load (measured with
    bench.load: 1,000 customers on 2 nodes) publishes failed, the manager dropped its client,
    retried once and gave the emit up: pushes were lost (stored events, but not delivered live). A
    blocking pool makes a burst of emits wait for a free connection instead."""

    #: namespaces told ``resync`` after a reconnection (set by the app: /customer, /agent)
    resync_namespaces: tuple[str, ...] = ()

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
            task = asyncio.get_running_loop().create_task(self._resync())
            self._resync_task = task

    async def _resync(self) -> None:
        await asyncio.sleep(0.5)  # once the subscription is back
        for namespace in self.resync_namespaces:
            try:
                # this node's sockets only (the parent class's emit does not publish)
                await socketio.AsyncManager.emit(self, "resync", {"reason": "fanout_reconnected"},
                                                 namespace=namespace)
            except Exception:  # noqa: BLE001
                logging.getLogger(__name__).exception("resync of %s failed", namespace)


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
