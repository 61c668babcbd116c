"""Per-key asyncio locks that disappear when nobody holds or waits for them.

Why: python-socketio runs each incoming event as its own task, so two messages of one
conversation (from one client, or from both sides) could reach Redis out of order. Every handler
that writes to a conversation takes that conversation's lock *before its first await*; tasks
start in arrival order and ``asyncio.Lock`` wakes waiters first-in first-out, so writes happen
in arrival order. Across nodes the stream id is the order.
"""

from __future__ import annotations

import asyncio
from typing import Any


class _Entry:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class _Held:
    __slots__ = ("_owner", "_key", "_entry")

    def __init__(self, owner: "KeyedLocks", key: str) -> None:
        self._owner = owner
        self._key = key
        entry = owner._entries.get(key)
        if entry is None:
            entry = owner._entries[key] = _Entry()
        entry.users += 1
        self._entry = entry

    async def __aenter__(self) -> None:
        try:
            await self._entry.lock.acquire()
        except BaseException:
            self._release_entry()
            raise

    async def __aexit__(self, *exc: Any) -> None:
        self._entry.lock.release()
        self._release_entry()

    def _release_entry(self) -> None:
        self._entry.users -= 1
        if self._entry.users == 0:
            self._owner._entries.pop(self._key, None)


class KeyedLocks:
    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}

    def __call__(self, key: str) -> _Held:
        """``async with locks(conversation_id): ...`` (registers as a waiter at once, in call order)."""
        return _Held(self, key)

    def __len__(self) -> int:
        return len(self._entries)
