"""Sessions follow credentials on every node.

Why a module of its own: an account's tokens end in one place (``Directory.update/delete/revoke``,
on any node or in the CLI), but its sockets may be held by any node. Each node subscribes to the
``P sessions:ended`` channel of its Redis; a message names an account id, and the node closes that
account's sockets whose token is no longer valid (the namespace checks). Redis pub/sub delivers
to the nodes subscribed at that moment: a node that was away reconnects its subscription, and a
socket's token is checked again on every reconnect anyway.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

import redis.asyncio as aioredis

log = logging.getLogger(__name__)

RETRY_S = 1.0


class SessionWatch:
    """Listens on the channel and hands each account id to ``on_ended``."""

    def __init__(self, redis: aioredis.Redis, channel: str, on_ended: Callable[[str], Awaitable[None]]) -> None:
        self.redis = redis
        self.channel = channel
        self.on_ended = on_ended
        self._task: asyncio.Task[None] | None = None
        self._pubsub: aioredis.client.PubSub | None = None

    async def start(self) -> None:
        """Subscribed when this returns: a change made after a node started reaches it."""
        self._pubsub = await self._subscribe()
        self._task = asyncio.create_task(self._run(), name="segue-session-watch")

    async def _subscribe(self) -> aioredis.client.PubSub:
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(self.channel)
        return pubsub

    async def _run(self) -> None:
        while True:
            try:
                if self._pubsub is None:
                    self._pubsub = await self._subscribe()
                async for message in self._pubsub.listen():
                    if message.get("type") == "message":
                        try:
                            await self.on_ended(str(message["data"]))
                        except Exception:  # noqa: BLE001 - one failure must not stop the watch
                            log.exception("ending the sessions of %s failed", message.get("data"))
            except asyncio.CancelledError:
                raise
            except (aioredis.ConnectionError, aioredis.TimeoutError, OSError) as exc:
                log.warning("session watch lost Redis (%s); resubscribing", exc)
            await self._drop()
            await asyncio.sleep(RETRY_S)

    async def _drop(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            try:
                await pubsub.aclose()
            except Exception:  # noqa: BLE001
                pass

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
            self._task = None
        await self._drop()
