"""The node's Redis client: a plain URL, or the primary that Redis Sentinel names.

Why a module: Sentinel changes where the primary is, so the client must ask the sentinels again
after a failover (redis-py's ``Sentinel.master_for`` does, on the next connection error), and
python-socketio's Redis manager must do the same (its ``redis+sentinel://`` URL). Both are built
from one URL: ``redis+sentinel://host1:26379,host2:26379/<db>/<primary name>``, which
``redis.sentinels`` + ``redis.sentinel_master`` produce (docs/redis.md).
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
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


def make_redis(url: str, **pool: Any) -> aioredis.Redis:
    """A client of ``url``: a blocking pool (a burst waits for a free connection instead of
    failing), or through Sentinel for a ``redis+sentinel://`` URL."""
    if url.startswith(SENTINEL_SCHEME):
        sentinels, master, db = _parse(url)
        sentinel = Sentinel(sentinels, socket_timeout=2, socket_connect_timeout=1)
        return sentinel.master_for(master, db=db, decode_responses=True, socket_timeout=5, socket_connect_timeout=2,
                                   health_check_interval=30, retry_on_timeout=True)
    return aioredis.Redis(connection_pool=aioredis.BlockingConnectionPool.from_url(
        url, decode_responses=True, health_check_interval=30, **pool))
