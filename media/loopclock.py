"""A periodic tick that also says how late the event loop ran it, and how long it sat idle.

Why one helper: the forwarder's RTCP report clock and the signaling layer's load monitor
(``signaling/limits.py``) both wake every few milliseconds, and the load monitor needs exactly what
every such wake-up can measure for free: how much later than asked the loop ran it. Every socket,
leg and timer of a node shares one event loop, so that lateness is the time any ready work waits
its turn — the node's queueing delay — whatever the work is.

Lateness alone cannot tell a loop with more work than it can do from a process the machine did not
run (other busy processes on the same cores): both make ticks late. The difference is whether the
loop had nothing to do meanwhile. A loop with a backlog never waits in its selector (it polls
with a zero timeout and goes on), so each tick also says how long the loop sat waiting in its
selector since the last one (``idle``): late and never idle is a queue of the node's own. And a
loop that has work but gets only a share of a CPU (``busy``, from the thread's CPU time) runs late
by its work divided by that share: ``lag x busy`` is the work of its own that was waiting.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Tick:
    """One wake-up of :func:`ticks`: when it ran (``time.monotonic()``), how late (seconds, >= 0),
    how long the loop waited in its selector with nothing to do since the previous tick (seconds;
    ``None`` on loops whose selector cannot be timed, such as uvloop), the share of the time
    since the previous tick its thread was running on a CPU (``busy``: below 1 while it waited for
    I/O, or while the machine ran other processes), and the interval it was asked for."""

    now: float
    lag: float
    idle: float | None
    busy: float = 1.0  # the share of the tick's time the loop's thread ran on a CPU (0-1)
    interval: float = 0.0  # the time this tick was asked for after the previous one (seconds)


class _IdleMeter:
    """Adds up the time an asyncio selector loop spends in ``select()`` (waiting for I/O)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.idle = 0.0
        selector: Any = getattr(loop, "_selector", None)  # asyncio's selector loops (not uvloop)
        original = getattr(selector, "select", None)
        self.available = callable(original)
        if not self.available:
            return

        def select(timeout: float | None = None) -> Any:
            start = time.monotonic()
            try:
                return original(timeout)
            finally:
                self.idle += time.monotonic() - start

        selector.select = select


_METERS: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _IdleMeter]" = weakref.WeakKeyDictionary()


def _meter(loop: asyncio.AbstractEventLoop) -> _IdleMeter:
    meter = _METERS.get(loop)
    if meter is None:
        meter = _METERS[loop] = _IdleMeter(loop)
    return meter


async def ticks(interval: float, idle_interval: float | None = None) -> AsyncIterator[Tick]:
    """Yield a :class:`Tick` every ``interval`` seconds for ever (cancel the consuming task to stop).

    The next sleep starts when the consumer asks for the next tick, so a slow consumer makes the
    ticks sparser, never a burst of late ones. ``idle_interval``: after a tick whose loop sat idle
    at least half the time, the next one comes after this longer interval instead. Why: on an
    idle loop each tick is a wake-up of its own (on a virtual machine a timer wake-up costs tens
    of microseconds of CPU: an idle node ticking every 10 ms used 3 % of a core), while a busy
    loop is awake anyway."""
    if interval <= 0 or (idle_interval is not None and idle_interval < interval):
        raise ValueError(f"ticks(interval={interval!r}, idle_interval={idle_interval!r}): the interval must be "
                         "above 0 seconds, and the idle interval (if any) at least as long")
    meter = _meter(asyncio.get_running_loop())
    wait = interval
    while True:
        before, idle_before, cpu_before = time.monotonic(), meter.idle, time.thread_time()
        await asyncio.sleep(wait)
        now = time.monotonic()
        busy = min(1.0, (time.thread_time() - cpu_before) / max(1e-9, now - before))
        idle = meter.idle - idle_before if meter.available else None
        tick = Tick(now, max(0.0, now - before - wait), idle, busy, wait)
        wait = interval
        if idle_interval is not None and idle is not None and idle >= 0.5 * (now - before):
            wait = idle_interval
        yield tick
