"""Rate limits and load shedding for the Socket.IO surface (``limits.*`` in config.yaml).

Why: before these, one anonymous socket could store 8,700 messages a second, and a crowd offering
three times what a node can do made it collapse (p50 18 s, pings timing out, sockets dropped)
instead of saying "not now". Now every client event passes three gates before any handler runs:

- a token bucket per connection (``events_per_s`` sustained, ``events_burst`` at once) and one per
  client address on this node (``ip_events_*``: a NAT full of customers shares one);
- the node as a whole admits at most ``node_events_per_s`` client events (its capacity, measured
  with ``bench.chat --overload``; 0: no cap) and sheds load while its event loop runs more than
  ``shed_lag_ms`` late (:class:`LoadMonitor`): the excess is refused before it costs a Redis
  round trip, so the work admitted finishes quickly and pings keep flowing;
- new connections (``connects_*`` per address) and new conversations (``conversations_*`` per
  connection and per address) have buckets of their own.

A refused event gets ``rate_limited`` with ``retry_after_ms``; the SDK waits that long and sends
the same request again (with the same ``client_id``, so nothing is stored twice). A connection that
keeps sending while refused (``disconnect_after_refusals`` in a row) is disconnected. The defaults
sit far above what a person types: they stop scripts, not people.

Buckets live in this node's memory: a client is limited per node (docs/config.md says so). An
idle bucket is full, and full buckets are dropped, so memory follows the active clients.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from typing import Any, Iterable

log = logging.getLogger(__name__)

LAG_PROBE_S = 0.05  # how often the load monitor looks at the event loop
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
    """Decides whether the node admits one more client event now: a fixed cap on the rate of
    events (``limits.node_events_per_s``, the node's measured capacity; 0: none), and, as a safety
    net, shedding while the event loop runs later than ``shed_lag_ms``.

    Why the loop's lateness: every socket of a node shares one event loop, so when it runs late
    every client waits; it rises with overload whatever the work is, and costs one timer every
    50 ms. It cannot tell the node's own load from a machine busy with other work, so it only
    switches shedding on for a moment (at least half a second, twice the lag seen); the steady
    guard is the cap, set to what ``python -m bench.chat --overload`` measures for the machine.

    A refused client is told to wait in proportion to how overloaded the node is (refused per
    admitted event in the last half second, 0.25-5 s, jittered), so the excess backs off instead
    of coming straight back."""

    WINDOW_S = 0.5

    def __init__(self, shed_lag_s: float, node_rate: float = 0.0) -> None:
        self.shed_lag_s = shed_lag_s
        self.node_rate = node_rate
        self.lag_s = 0.0
        self.shedding_until = 0.0
        self.shed = 0  # events refused for load (total)
        self._tokens = max(1.0, node_rate * 0.1)
        self._stamp = time.monotonic()
        self._admitted = 0
        self._refused = 0
        self._pressure = 1.0  # refused per admitted event, last window
        self._task: asyncio.Task[None] | None = None

    @property
    def overloaded(self) -> bool:
        return self.shed_lag_s > 0 and time.monotonic() < self.shedding_until

    def admit(self, now: float) -> float:
        """0.0 when this event may run; else the seconds its sender should wait."""
        refused = now < self.shedding_until
        if not refused and self.node_rate > 0:
            self._tokens = min(max(1.0, self.node_rate * 0.1), self._tokens + (now - self._stamp) * self.node_rate)
            self._stamp = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
            else:
                refused = True
        if not refused:
            self._admitted += 1
            return 0.0
        self._refused += 1
        self.shed += 1
        return min(5.0, max(0.25, self._pressure)) * random.uniform(0.5, 1.5)

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
        window_start = time.monotonic()
        while True:
            before = time.monotonic()
            await asyncio.sleep(LAG_PROBE_S)
            now = time.monotonic()
            self.lag_s = max(0.0, now - before - LAG_PROBE_S)
            if self.shed_lag_s > 0 and self.lag_s > self.shed_lag_s:
                self.shedding_until = max(self.shedding_until, now + max(self.WINDOW_S, 2 * self.lag_s))
            if now - window_start >= self.WINDOW_S:
                self._pressure = self._refused / max(1, self._admitted)
                self._admitted = self._refused = 0
                window_start = now


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

    def event(self, sid: str, address: str, exempt: bool = False) -> Refusal | None:
        """Gate one client event of connection ``sid`` from ``address``. ``exempt``: events that
        are never shed for load (call signalling: a call half set up is worse than a message later)."""
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
            wait = self.load.admit(now)
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
        self._refused_in_a_row.pop(sid, None)


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
