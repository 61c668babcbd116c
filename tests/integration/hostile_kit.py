"""What the hostile-input tests share: a healthy client that keeps chatting, and a tally.

``Healthy`` is an ordinary customer in a conversation of its own, sending a message every 50 ms in
the background while a test throws bad input at the node; afterwards it reports how many of its
messages were acknowledged, the slowest round trip and how many took longer than
``STALL_S`` (a "stall"). Tests assert that every message was acknowledged and print the rest
(the machine is shared; nothing asserts on time).

``report(kind, count, **figures)`` prints one ``HOSTILE {...}`` JSON line per kind of input, for
the issue note (run with ``-s`` to see them).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from segue_clients import World

STALL_S = 0.25


class Healthy:
    def __init__(self, world: World) -> None:
        self.world = world
        self.latencies: list[float] = []
        self.failures: list[Any] = []
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    async def __aenter__(self) -> "Healthy":
        self.peer = await self.world.customer()
        self.cid = (await self.peer.ok("conversation.start", {"text": "healthy"}))["conversation"]["id"]
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            start = time.perf_counter()
            try:
                reply = await self.peer.call("message.send", {"conversation_id": self.cid, "text": f"h{n}"})
            except Exception as exc:  # noqa: BLE001 - recorded and asserted on by the test
                self.failures.append(repr(exc))
                return
            if not reply.get("ok"):
                if reply.get("error", {}).get("code") == "rate_limited":
                    await asyncio.sleep(reply["error"].get("retry_after_ms", 100) / 1000)
                    continue
                self.failures.append(reply)
            self.latencies.append(time.perf_counter() - start)
            await asyncio.sleep(0.05)

    async def __aexit__(self, *exc: Any) -> None:
        for _ in range(200):  # a few round trips at least, however quick the test was
            if len(self.latencies) >= 5 or self.failures or self._task is None or self._task.done():
                break
            await asyncio.sleep(0.05)
        self._stop.set()
        if self._task is not None:
            await self._task

    def reset(self) -> None:
        """Forget the round trips so far: the figures cover what follows (the hostile part)."""
        self.latencies.clear()

    @property
    def stalls(self) -> int:
        return sum(1 for t in self.latencies if t > STALL_S)

    def figures(self) -> dict[str, Any]:
        return {"healthy_messages": len(self.latencies), "healthy_failures": len(self.failures),
                "healthy_max_ms": round(1000 * max(self.latencies, default=0), 1), "healthy_stalls": self.stalls}

    def check(self) -> None:
        assert not self.failures, self.failures
        assert self.latencies, "the healthy client sent nothing"


def report(kind: str, count: int, **figures: Any) -> None:
    print("HOSTILE " + json.dumps({"kind": kind, "count": count, **figures}), flush=True)
