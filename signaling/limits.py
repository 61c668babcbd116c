"""Rate limits and load shedding for the Socket.IO surface (``limits.*`` in config.yaml).

Why: before these, one anonymous socket could store 8,700 messages a second, and a crowd offering
three times what a node can do made it collapse (p50 18 s, pings timing out, sockets dropped)
instead of saying "not now". Now every client event passes three gates before python-socketio even
decodes it (:func:`install_gate`):

- a token bucket per connection (``events_per_s`` sustained, ``events_burst`` at once) and one per
  client address on this node (``ip_events_*``: a NAT full of customers shares one);
- the node as a whole admits a budget of client events a second that follows its own queueing
  delay (:class:`LoadMonitor`: how late its event loop runs, against ``shed_lag_ms``), under an
  optional fixed ceiling (``node_events_per_s``): the excess is refused before it costs a Redis
  round trip, so the work admitted finishes quickly and pings keep flowing;
- new connections (``connects_*`` per address) and new conversations (``conversations_*`` per
  connection and per address) have buckets of their own.

A refused event gets ``rate_limited`` with ``retry_after_ms`` (for load: a time on a calendar that
spreads the refused clients out); the SDK waits that long and sends the same request again (with the same ``client_id``, so nothing is stored twice). A connection that
keeps sending while refused (``disconnect_after_refusals`` in a row) is disconnected. The defaults
sit far above what a person types: they stop scripts, not people.

Buckets live in this node's memory: a client is limited per node (docs/config.md says so). An
idle bucket is full, and full buckets are dropped, so memory follows the active clients.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
import random
import re
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from media import ticks

from . import fastjson
from .fanout import event_packet

log = logging.getLogger(__name__)

LAG_PROBE_S = 0.01  # how often the load monitor looks at the event loop
PRUNE_EVERY = 4096  # takes between sweeps of idle buckets


class TokenBucket:
    """``rate`` tokens a second up to ``burst``; a request takes one (or waits for one)."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def take(self, now: float, cost: float = 1.0) -> float:
        """0.0 when allowed (a token is spent); otherwise the seconds until one is there."""
        tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if tokens >= cost:
            self.tokens = tokens - cost
            return 0.0
        self.tokens = tokens
        return (cost - tokens) / self.rate if self.rate > 0 else 60.0

    def full(self, now: float) -> bool:
        return self.tokens + (now - self.stamp) * self.rate >= self.burst


class Buckets:
    """Token buckets by key (a connection, a client address), created on first use; buckets that
    have refilled (idle clients) are dropped every few thousand takes."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, TokenBucket] = {}
        self._takes = 0

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, key: str, now: float) -> float:
        if self.rate <= 0:
            return 0.0  # 0 in config: no limit
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, now)
        self._takes += 1
        if self._takes >= PRUNE_EVERY:
            self._takes = 0
            self.prune(now)
        return bucket.take(now)

    def forget(self, key: str) -> None:
        self._buckets.pop(key, None)

    def prune(self, now: float) -> None:
        for key in [k for k, b in self._buckets.items() if b.full(now)]:
            del self._buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)


class LoadMonitor:
    """The node's admission budget: how many client events a second it takes now, found from its
    own queueing delay instead of set by hand (``limits.shed_lag_ms``; ``node_events_per_s`` is
    an optional fixed ceiling on top).

    Why the event loop's lateness: every socket of a node shares one event loop, so the time a
    tick runs late is the time any ready work — a frame just read, a Redis reply — waits its turn.
    Like CoDel, only a lateness that lasts a whole interval (its smallest sample over 100 ms is
    above the target) counts as a queue; a burst or one slow callback does not; nor does a loop
    that was idle (waiting for I/O) for 5 % of the interval or more, however late it ran: it had no
    work waiting, the process was not run (other processes on the same cores). On a machine that
    runs the node only a share of the time, the lateness counted is the lateness times that share
    (the node's own work that was waiting; the rest is the machine's doing). Then the budget
    goes below the level at which the queue appeared (the budget then in force; the first time, the
    best rate the node admitted in the last 5 s), scaled by target / lag (0.6-0.9), and the next cut
    waits 0.3 s for the queue to drain. While the loop is on time and events are still refused the
    budget climbs back half the way to that level an interval, then past it 5 % an interval,
    probing for room; after a second on time with nothing refused and every refused client back
    it is lifted. Below ``MIN_RATE`` admitted events a second the node
    is not what makes the loop late (another process, a slow disk), so it never sheds there, and
    the budget never falls below a quarter of the best rate of the last 5 s.

    A connection whose own queued requests (frames aiohttp holds behind the one read, times the
    time an event takes) would wait more than ``PIPELINE_TARGETS`` targets is refused the same way,
    whatever the budget, and from half that on with a growing chance (``_too_long``): the loop's
    lateness does not show a queue inside one connection.

    A refused connection is given a time to come back (``retry_after``) from a calendar: each
    refused connection gets the next free slot, and slots are ``1 / (RETRY_SHARE x budget)``
    apart, so refused clients return spread out at about a tenth of the budget a second instead
    of all at once. The calendar grows while refusals come faster than that (the excess waits
    longer) and shrinks as time passes. A connection that already holds a slot is given the same
    one again (its other in-flight requests do not push everyone else back), and when it comes back
    at its time, the requests refused meanwhile are served whatever the budget (a debt of at most
    one burst, paid by refusing newcomers): a client that waits as told is not refused twice."""

    INTERVAL_S = 0.1  # a lateness that lasts this long is a queue, not a burst
    HISTORY = 10  # intervals of admitted counts kept: the rate of the last second
    MIN_RATE = 100.0  # events/s: below this the node never sheds (its own work is not the cause)
    FLOOR_SHARE = 0.25  # the budget stays above this share of the best admitted rate of the last 5 s
    PEAK_INTERVALS = 50
    GROW = 1.05  # on time, past where the last queue appeared: the budget grows this much an interval
    PIPELINE_TARGETS = 4  # a connection whose own queued requests would wait longer than this many targets is refused
    IDLE_SHARE = 0.05  # a loop idle this share of an interval has no queue of its own, however late
    HOLD_S = 0.3  # after a cut, the next one waits this long (the queue drains first)
    LIFT_AFTER = 10  # intervals on time with nothing refused: the budget is lifted
    RETRY_SHARE = 0.1  # refused connections come back at most at this share of the budget a second
    MIN_RETRY_S = 0.05
    MAX_RETRY_S = 1.0  # past this, refused connections are spread over its second half at random

    def __init__(self, target_lag_s: float, ceiling: float = 0.0) -> None:
        self.target_lag_s = target_lag_s
        self.ceiling = ceiling if ceiling > 0 else math.inf  # limits.node_events_per_s
        self.rate = math.inf  # the adaptive budget (events/s); inf: none in force
        self.lag_s = 0.0  # the last lateness seen (for /metrics)
        self.shed = 0  # events refused for load (total)
        self.pipeline_shed = 0  # of which because their connection's own queue was too long
        now = time.monotonic()
        self._tokens = self._burst(self.budget)
        self._stamp = now
        self._admitted = 0  # this interval
        self._refused = 0
        self._min_lag = math.inf
        self._idle: float | None = None  # seconds the loop waited for I/O this interval
        self._interval_start = now
        self._history: deque[int] = deque(maxlen=self.HISTORY)
        self._peaks: deque[float] = deque(maxlen=self.PEAK_INTERVALS)  # admitted rates, last 5 s
        self._quiet = 0
        self._hold_until = 0.0
        self._queued_at = 0.0  # the budget (or admitted rate) at which the last standing queue appeared
        self._next_slot = 0.0  # the retry calendar's end
        self._slots: dict[str, list[float]] = {}  # connection -> [when it may send again, requests owed]
        self._task: asyncio.Task[None] | None = None

    @staticmethod
    def _burst(rate: float) -> float:
        return max(1.0, rate * 0.1) if rate < math.inf else 1.0

    @property
    def budget(self) -> float:
        """Client events a second the node admits now (``math.inf``: no limit in force)."""
        return min(self.rate, self.ceiling)

    @property
    def overloaded(self) -> bool:
        """Whether the adaptive budget is in force (the node found itself overloaded)."""
        return self.rate < math.inf

    def admit(self, now: float, key: str = "", waiting: float = 0.0) -> float:
        """0.0 when one more event (of connection ``key``) may run now; else the seconds its sender
        should wait. ``waiting``: how long the requests the connection has already sent behind this
        one will wait; past ``PIPELINE_TARGETS`` times the target it is refused as if the budget were
        spent (its own queue is too long, whatever the node's)."""
        rate = self.budget
        if self._too_long(waiting) and not (key in self._slots and self._slots[key][0] <= now):
            self.pipeline_shed += 1
            return self._refuse(now, key, rate if rate < math.inf else max(self._peaks, default=self.MIN_RATE))
        if rate == math.inf:
            self._admitted += 1
            return 0.0
        burst = self._burst(rate)
        self._tokens = min(burst, self._tokens + (now - self._stamp) * rate)
        self._stamp = now
        held = self._slots.get(key) if key else None
        if held is not None and held[0] <= now:
            # back at the time it was given: what was refused is served now, budget or not (the
            # debt, at most a burst, is paid by refusing newcomers), so a client that waits as told
            # is not refused again for the same requests
            if held[1] > 1:
                held[1] -= 1
            else:
                del self._slots[key]
            self._tokens = max(-burst, self._tokens - 1.0)
            self._admitted += 1
            return 0.0
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            self._admitted += 1
            return 0.0
        return self._refuse(now, key, rate, held)

    def _too_long(self, waiting: float) -> bool:
        """Whether a connection whose requests behind this one would wait ``waiting`` seconds is
        refused: always past ``PIPELINE_TARGETS`` targets, never below half that, and between the
        two with a chance growing from 0 to 1 (as RED does for a router's queue). Why not one
        threshold: every client of a crowd crosses it in the same instant, all are refused at once,
        come back at once, and the node swings between refusing everyone and taking everything."""
        limit = self.PIPELINE_TARGETS * self.target_lag_s
        if limit <= 0 or waiting <= limit / 2:
            return False
        return waiting > limit or random.random() < (waiting - limit / 2) / (limit / 2)

    def _refuse(self, now: float, key: str, rate: float, held: list[float] | None = None) -> float:
        self._refused += 1
        self.shed += 1
        if held is None and key:
            held = self._slots.get(key)
        if held is not None and held[0] > now:  # it holds a time already: the same time, one more owed
            held[1] += 1
            return held[0] - now
        slot = max(self._next_slot, now + self.MIN_RETRY_S) + 1.0 / max(1.0, self.RETRY_SHARE * rate)
        if slot - now <= self.MAX_RETRY_S:
            self._next_slot = slot
        else:  # the calendar is full: somewhere in its second half
            slot = now + self.MAX_RETRY_S * random.uniform(0.5, 1.0)
        if key:
            self._slots[key] = [slot, 1]
        return slot - now

    def forget(self, key: str) -> None:
        self._slots.pop(key, None)

    def observe(self, now: float, lag: float, idle: float | None = None, busy: float = 1.0) -> None:
        """One look at the event loop: it ran ``lag`` seconds late at ``now``, having waited ``idle``
        seconds for I/O with nothing to do since the last look (``None``: not known), its thread on a
        CPU ``busy`` of the time (a process the machine runs only a share of the time is late by its
        own waiting work divided by that share: ``lag x busy`` is the node's own queue)."""
        self.lag_s = lag
        self._min_lag = min(self._min_lag, lag * busy)
        if idle is not None:
            self._idle = (self._idle or 0.0) + idle
        if now - self._interval_start < self.INTERVAL_S - 1e-6:  # (a microsecond of slack: sums of float times)
            return
        # late, but the loop sat idle for a part of the time: it has no queue of its own, the
        # process was not run (other processes busy on the same cores); cutting would not help
        idle_share = None if self._idle is None else self._idle / max(1e-9, now - self._interval_start)
        self._history.append(self._admitted)
        recent = list(self._history)[-3:]
        admitted_rate = sum(recent) / (len(recent) * self.INTERVAL_S)  # what the node has just been doing
        self._peaks.append(admitted_rate)
        queue = (self.target_lag_s > 0 and self._min_lag > self.target_lag_s
                 and (idle_share is None or idle_share < self.IDLE_SHARE))
        if queue and admitted_rate >= self.MIN_RATE and now >= self._hold_until:
            # a standing queue: the budget goes below where the queue appeared, by how late the loop ran
            # (the first time, the best the node admitted lately: the loop may have read little in
            # the very interval the queue formed)
            self._queued_at = max(self._peaks) if self.rate == math.inf else self.rate
            factor = min(0.9, max(0.6, self.target_lag_s / self._min_lag))
            # (never below a quarter of what the node has shown it can do lately: on a machine busy
            # with other work a late loop is not all the node's doing, and cutting on would not help)
            self.rate = max(self.MIN_RATE, self.FLOOR_SHARE * max(self._peaks), self._queued_at * factor)
            self._hold_until = now + self.HOLD_S  # the queue drains before the cut is judged
            self._quiet = 0
        elif self.rate < math.inf and not queue:
            if self._refused:
                # on time and still refusing: back quickly towards where the queue appeared, then on,
                # gently, probing for room
                if self.rate < self._queued_at * 0.98:
                    self.rate += (self._queued_at - self.rate) / 2
                else:
                    self.rate *= self.GROW
                self._quiet = 0
            elif self._next_slot < now:  # nothing refused, and every refused client has come back
                self._quiet += 1
                if self._quiet >= self.LIFT_AFTER:
                    self.rate = math.inf
            if self.rate >= self.ceiling:
                self.rate = math.inf  # the fixed ceiling governs from here
        if self._slots and self._next_slot < now - self.MAX_RETRY_S:  # every client had time to come back
            self._slots.clear()
        self._admitted = self._refused = 0
        self._min_lag = math.inf
        self._idle = None
        self._interval_start = now

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="segue-load-monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _run(self) -> None:
        # while the loop is mostly idle there is no queue to find: a look per interval is enough
        async for tick in ticks(LAG_PROBE_S, idle_interval=self.INTERVAL_S):
            self.observe(tick.now, tick.lag, tick.idle, tick.busy)


@dataclass
class Refusal:
    """Why and for how long a request is refused (``rate_limited``)."""

    what: str
    retry_after_s: float

    @property
    def retry_after_ms(self) -> int:
        return max(1, int(self.retry_after_s * 1000 + 0.999))


class RateLimiter:
    """The gates of one node (see the module doc). ``config`` is the ``limits`` section."""

    def __init__(self, limits: Any) -> None:
        self.limits = limits
        self.events = Buckets(limits.events_per_s, limits.events_burst)
        self.ip_events = Buckets(limits.ip_events_per_s, limits.ip_events_burst)
        self.connects = Buckets(limits.connects_per_ip_per_s, limits.connects_burst)
        self.conversations = Buckets(limits.conversations_per_s, limits.conversations_burst)
        self.ip_conversations = Buckets(limits.ip_conversations_per_s, limits.ip_conversations_burst)
        self.load = LoadMonitor(limits.shed_lag_ms / 1000, limits.node_events_per_s)
        self._refused_in_a_row: dict[str, int] = {}

    def event(self, sid: str, address: str, exempt: bool = False, waiting: float = 0.0) -> Refusal | None:
        """Gate one client event of connection ``sid`` from ``address``. ``exempt``: events that
        are never shed for load (call signalling: a call half set up is worse than a message later).
        ``waiting``: how long the connection's requests behind this one will wait (seconds)."""
        now = time.monotonic()
        wait = self.events.take(sid, now)
        if wait:
            return self._refused(sid, Refusal(f"more than {self.limits.events_per_s:g} events a second on this "
                                              "connection", wait))
        wait = self.ip_events.take(address, now)
        if wait:
            return self._refused(sid, Refusal(f"more than {self.limits.ip_events_per_s:g} events a second from "
                                              "your address", wait))
        if not exempt:
            wait = self.load.admit(now, sid, waiting)
            if wait:
                return self._refused(sid, Refusal("the server is busy", wait))
        self._refused_in_a_row.pop(sid, None)
        return None

    def _refused(self, sid: str, refusal: Refusal) -> Refusal:
        self._refused_in_a_row[sid] = self._refused_in_a_row.get(sid, 0) + 1
        return refusal

    def persistent(self, sid: str) -> bool:
        """Whether ``sid`` went on sending through ``disconnect_after_refusals`` refusals in a row
        (it ignores ``retry_after_ms``: a script, not the SDK)."""
        limit = self.limits.disconnect_after_refusals
        return limit > 0 and self._refused_in_a_row.get(sid, 0) >= limit

    def connect(self, address: str) -> Refusal | None:
        wait = self.connects.take(address, time.monotonic())
        if wait:
            return Refusal(f"more than {self.limits.connects_per_ip_per_s:g} new connections a second from "
                           "your address", wait)
        return None

    def conversation(self, sid: str, address: str) -> Refusal | None:
        now = time.monotonic()
        wait = self.conversations.take(sid, now)
        if wait:
            return Refusal("too many new conversations on this connection", wait)
        wait = self.ip_conversations.take(address, now)
        if wait:
            return Refusal("too many new conversations from your address", wait)
        return None

    def forget(self, sid: str) -> None:
        """A connection closed: its buckets go (its address's stay until they refill)."""
        self.events.forget(sid)
        self.conversations.forget(sid)
        self.load.forget(sid)
        self._refused_in_a_row.pop(sid, None)


# --- the gate: refusals before the event is decoded ------------------------------------------------
#
# A refusal must cost a tiny fraction of what an admitted message costs, or an overloaded node spends
# its time saying no. python-socketio decodes a whole packet (the JSON payload too), finds the
# namespace, then runs the handler; the gate sits before all that, on the Engine.IO message: it reads
# only the packet's head (type, namespace, ack id, event name), asks the limiter, and answers a
# refusal with a ready-made ack — no JSON decoded, no validation, no handler, no Redis.

# an EVENT packet's head: 2[/namespace,][ack id], then maybe ["event name"
_EVENT_HEAD = re.compile(r'2(?:(/[^,]{0,200}),)?(\d{0,20})(?:\["([^"\\]{0,200})")?')
# set while python-socketio handles a packet the gate has already let through
_GATED: contextvars.ContextVar[bool] = contextvars.ContextVar("segue_gated", default=False)


def rate_limited_error(refusal: Refusal) -> dict[str, Any]:
    """The ``rate_limited`` error of a refusal, as ``ProtocolError.as_dict`` writes it."""
    ms = refusal.retry_after_ms
    return {"code": "rate_limited", "message": f"{refusal.what}: try again in {ms} ms",
            "retry_after_s": max(1, -(-ms // 1000)), "retry_after_ms": ms}


def install_gate(sio: Any, limiter: RateLimiter, namespaces: Mapping[str, Any],
                 exempt_prefix: str = "call.") -> None:
    """Gate every client event of ``sio`` (python-socketio's AsyncServer) through ``limiter``
    before python-socketio decodes it. ``namespaces``: namespace name -> its handler, which keeps
    ``addresses`` (sid -> client address). Events named ``exempt_prefix...`` (call signalling) are
    never refused for load. A refused event with an ack id gets ``{ok: false, error}`` as its ack,
    one without gets an ``error`` event (as the namespaces answer any error); a connection that
    sends through ``limits.disconnect_after_refusals`` refusals in a row is dropped.

    Binary events (Socket.IO sends their attachments separately; Segue never uses them, they are
    refused as ``invalid``) are gated once decoded, by the same limiter."""
    eio = sio.eio
    original = eio.handlers["message"]
    original_event = sio._handle_event
    manager = sio.manager
    _measure_pipelines(eio)
    environs = sio.environ if isinstance(getattr(sio, "environ", None), dict) else {}
    service = [0.0]  # how long an admitted event takes to handle (seconds, moving average)

    def check(eio_sid: str, ns: str, event: str) -> tuple[str, Refusal] | None:
        handler = namespaces.get(ns)
        sid = manager.sid_from_eio_sid(eio_sid, ns) if handler is not None else None
        if sid is None:  # not a connection of a Segue namespace: python-socketio ignores the event
            return None
        environ = environs.get(eio_sid)
        waiting = environ.get(_PIPELINE, 0) * service[0] if isinstance(environ, dict) else 0.0
        refusal = limiter.event(sid, handler.addresses.get(sid, "unknown"), exempt=event.startswith(exempt_prefix),
                                waiting=waiting)
        return None if refusal is None else (sid, refusal)

    async def on_message(eio_sid: str, data: Any) -> Any:
        if isinstance(data, str) and data[:1] == "2":
            head = _EVENT_HEAD.match(data)
            ns = head.group(1) or "/"
            event = head.group(3) or ""
            refused = check(eio_sid, ns, event)
            if refused is not None:
                await refuse(eio_sid, *refused, ns, head.group(2), event)
                return None
            token = _GATED.set(True)
            start = time.monotonic()
            try:
                return await original(eio_sid, data)
            finally:
                _GATED.reset(token)
                service[0] += (time.monotonic() - start - service[0]) / 64
        return await original(eio_sid, data)

    async def on_event(eio_sid: str, namespace: Any, id: Any, data: Any) -> Any:
        if not _GATED.get():  # a binary event, decoded only now
            ns = namespace or "/"
            event = data[0] if data and isinstance(data[0], str) else ""
            refused = check(eio_sid, ns, event)
            if refused is not None:
                await refuse(eio_sid, *refused, ns, "" if id is None else str(id), event)
                return None
        return await original_event(eio_sid, namespace, id, data)

    async def refuse(eio_sid: str, sid: str, refusal: Refusal, ns: str, ack: str, event: str) -> None:
        error = rate_limited_error(refusal)
        prefix = "" if ns == "/" else f"{ns},"
        if ack:
            text = f"3{prefix}{ack}{fastjson.dumps([{'ok': False, 'error': error}])}"
        else:
            error["event"] = event[:100]
            text = event_packet(ns, "error", error)
        await eio.send(eio_sid, text)
        if limiter.persistent(sid):
            log.info("disconnecting %s on %s: it kept sending through %d refusals", sid, ns,
                     limiter.limits.disconnect_after_refusals)
            limiter.forget(sid)
            # the whole Engine.IO connection, not only this namespace: the client reconnects (at
            # limits.connects_* from its address) or not at all
            drop_connection(sio, eio_sid)

    eio.handlers["message"] = on_message
    sio._handle_event = on_event


_PIPELINE = "segue.pipeline"  # environ key: frames a WebSocket client sent that wait behind the one read


def _measure_pipelines(eio: Any) -> None:
    """Have Engine.IO's aiohttp WebSocket note, each time it reads a frame, how many more of the
    client's frames aiohttp has already read and holds behind it (``environ[_PIPELINE]``).

    Why: a connection's events are handled one after another, so a client that sends requests
    without waiting for answers (up to 8 in ``bench.chat``) queues them in its own connection,
    where the event loop's lateness does not show them; their wait is that count times the time an
    event takes. Where the drivers differ from what is expected, nothing is noted (count 0)."""
    drivers = getattr(eio, "_async", None)
    base = drivers.get("websocket") if isinstance(drivers, dict) else None
    if base is None or getattr(base, "_segue_measured", False):
        return

    class MeasuredWebSocket(base):  # type: ignore[misc, valid-type]
        _segue_measured = True

        async def wait(self) -> Any:
            data = await super().wait()
            buffer = getattr(getattr(getattr(self, "_sock", None), "_reader", None), "_buffer", None)
            environ = getattr(self, "environ", None)
            if buffer is not None and isinstance(environ, dict):
                environ[_PIPELINE] = len(buffer)
            return data

    eio._async = {**drivers, "websocket": MeasuredWebSocket}


def client_address(remote: str | None, forwarded_for: str | None, trusted: Iterable[str]) -> str:
    """The client's address: ``remote``, or, when ``remote`` is a trusted proxy
    (``auth.trusted_proxies``), the last address in X-Forwarded-For that is not one."""
    addr = remote or "unknown"
    trusted = set(trusted)
    if addr in trusted and forwarded_for:
        for hop in reversed(forwarded_for.split(",")):
            hop = hop.strip()[:64]
            if hop and hop not in trusted:
                return hop
    return addr


def environ_address(environ: Any, trusted: Iterable[str]) -> str:
    """:func:`client_address` of a Socket.IO connection (python-engineio's WSGI-style environ;
    its REMOTE_ADDR is always 127.0.0.1 under aiohttp, so the aiohttp request is asked)."""
    if not isinstance(environ, dict):
        return "unknown"
    request = environ.get("aiohttp.request")
    remote = getattr(request, "remote", None) if request is not None else environ.get("REMOTE_ADDR")
    return client_address(remote, environ.get("HTTP_X_FORWARDED_FOR"), trusted)


# --- bounded send queues ---------------------------------------------------------------------------
#
# python-engineio gives every socket an unbounded asyncio.Queue of packets to send; its writer task
# takes them out as fast as the client reads. A client that stops reading (a stalled tab, a script)
# leaves every push to it in that queue, for ever: the node's memory grows with each message of the
# conversation. Each queue is bounded here (``limits.send_queue_packets`` / ``send_queue_bytes``);
# past either bound the socket is disconnected and its transport aborted, and what it missed it
# gets back by resuming (``conversation.resume`` with the last event id), as after any reconnect.


def _packet_size(pkt: Any) -> int:
    data = getattr(pkt, "data", None)
    return len(data) if isinstance(data, (str, bytes)) else 64


class SendQueue(asyncio.Queue):  # type: ignore[type-arg]
    """An Engine.IO socket's outbound queue with a bound; calls ``on_overflow(self)`` once when a
    packet would cross it, and drops what comes after (the socket is being closed)."""

    def __init__(self, max_packets: int, max_bytes: int, on_overflow: Any) -> None:
        super().__init__()
        self.max_packets = max_packets
        self.max_bytes = max_bytes
        self.bytes = 0
        self.peak = 0
        self.overflowed = False
        self._on_overflow = on_overflow

    def put_nowait(self, item: Any) -> None:
        if item is None:  # the writer's stop signal always goes through
            super().put_nowait(item)
            return
        if self.overflowed:
            return
        size = _packet_size(item)
        if self.qsize() >= self.max_packets or self.bytes + size > self.max_bytes:
            self.overflowed = True
            self._on_overflow(self)
            return
        self.bytes += size
        self.peak = max(self.peak, self.qsize() + 1)
        super().put_nowait(item)

    def get_nowait(self) -> Any:
        item = super().get_nowait()
        if item is not None:
            self.bytes -= _packet_size(item)
        return item


def bound_send_queues(sio: Any, max_packets: int, max_bytes: int) -> None:
    """Give every Engine.IO socket of ``sio`` (python-socketio's AsyncServer) a :class:`SendQueue`."""
    eio = sio.eio
    if max_packets <= 0 and max_bytes <= 0:
        return
    max_packets = max_packets if max_packets > 0 else 1 << 30
    max_bytes = max_bytes if max_bytes > 0 else 1 << 62

    def on_overflow(queue: SendQueue) -> None:
        sid = next((s for s, sock in list(eio.sockets.items()) if sock.queue is queue), None)
        if sid is None:
            return
        log.warning("disconnecting Engine.IO socket %s: it is not reading (%d packets, %d bytes waiting)",
                    sid, queue.qsize(), queue.bytes)
        drop_connection(sio, sid)

    def create_queue(*args: Any, **kwargs: Any) -> asyncio.Queue:  # type: ignore[type-arg]
        if args or kwargs:  # someone else's queue (not a socket's send queue)
            return asyncio.Queue(*args, **kwargs)
        return SendQueue(max_packets, max_bytes, on_overflow)

    eio.create_queue = create_queue


def drop_connection(sio: Any, eio_sid: str) -> None:
    """Close an Engine.IO socket of ``sio`` now, without waiting for the client: its TCP connection
    is aborted (a client that ignores the close packet, or does not read, cannot keep it open) and
    the socket closed (Socket.IO's disconnect handlers run)."""
    eio = sio.eio
    environ = sio.environ.get(eio_sid) if isinstance(getattr(sio, "environ", None), dict) else None
    request = environ.get("aiohttp.request") if isinstance(environ, dict) else None
    transport = getattr(request, "transport", None)
    if transport is not None:
        transport.abort()  # a blocked writer fails at once instead of waiting on the client
    socket = eio.sockets.get(eio_sid)
    if socket is not None:
        eio.start_background_task(socket.close, wait=False, abort=True)
