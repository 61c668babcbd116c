"""A periodic tick that also says how late the event loop ran it.

Why one helper: the forwarder's RTCP report clock and the signaling layer's load monitor
(``signaling/limits.py``) both wake every few milliseconds, and the load monitor needs exactly what
every such wake-up can measure for free: how much later than asked the loop ran it. Every socket,
leg and timer of a node shares one event loop, so that lateness is the time any ready work waits
its turn — the node's queueing delay — whatever the work is.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Tick:
    """One wake-up of :func:`ticks`: when it ran (``time.monotonic()``) and how late (seconds, >= 0)."""

    now: float
    lag: float


async def ticks(interval: float) -> AsyncIterator[Tick]:
    """Yield a :class:`Tick` every ``interval`` seconds for ever (cancel the consuming task to stop).

    The next sleep starts when the consumer asks for the next tick, so a slow consumer makes the
    ticks sparser, never a burst of late ones."""
    if interval <= 0:
        raise ValueError(f"ticks(interval={interval!r}): the interval must be above 0 seconds")
    while True:
        before = time.monotonic()
        await asyncio.sleep(interval)
        now = time.monotonic()
        yield Tick(now, max(0.0, now - before - interval))
