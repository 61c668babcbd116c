"""Running several nodes: health, readiness, metrics, the sticky cookie and draining.

Why one module: these are what a load balancer and an operator see of a node, and they share
one state — whether the node takes work. ``/healthz`` says the process is alive (a liveness probe:
never restart a node because Redis blinked), ``/readyz`` says it takes work (Redis answers, not
draining: a load balancer's check), ``/metrics`` is Prometheus text. Every HTTP answer carries
the sticky cookie (``cluster.sticky_cookie``, value: this node's id) that the nginx sample in
docs/deployment.md maps back to this node, so Socket.IO's polling requests stay on one node.

Draining (SIGTERM, docs/deployment.md): ``/readyz`` turns 503, new Socket.IO connections are
answered 503 (nginx moves them to another node: ``proxy_next_upstream ... http_503``), sockets not
in a call here are closed (they reconnect elsewhere and resume from their last event id), calls
running here go on until they end or ``cluster.drain_timeout_s`` passes; then the node stops and
the calls still running move to another node.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Iterator

import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .version import __version__

log = logging.getLogger(__name__)

_REDIS_ERRORS = (OSError, aioredis.RedisError, asyncio.TimeoutError)


def setup_ops(app: web.Application) -> None:
    """Routes /healthz, /readyz, /metrics; the sticky cookie; refusal of new sockets while draining."""
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.on_response_prepare.append(_sticky_cookie)
    app.middlewares.append(_refuse_while_draining)


def _node(app: web.Application) -> Any:
    from .app import NODE

    return app[NODE]


def _cluster(app: web.Application) -> Any:
    from signaling import SIGNALING

    service = app.get(SIGNALING)
    return getattr(service, "cluster", None) if service is not None else None


def _draining(app: web.Application) -> bool:
    cluster = _cluster(app)
    return bool(cluster is not None and cluster.draining)


async def _sticky_cookie(request: web.Request, response: web.StreamResponse) -> None:
    node = _node(request.app)
    name = node.config.cluster.sticky_cookie
    node_id = node.node_id
    if name and node_id and request.cookies.get(name) != node_id:
        # no Max-Age: a browser session; SameSite=Lax: sent on the page's own requests. (The
        # header itself: cookies set on the response object are serialised before this hook runs.)
        response.headers.add("Set-Cookie", f"{name}={node_id}; Path=/; HttpOnly; SameSite=Lax")


@web.middleware
async def _refuse_while_draining(request: web.Request, handler: Any) -> web.StreamResponse:
    if (_draining(request.app) and request.path.startswith("/socket.io")
            and "sid" not in request.query):
        # a new Engine.IO session: the proxy tries another node (proxy_next_upstream http_503)
        return web.json_response({"error": {"code": "unavailable", "message": "this node is draining: connect again"}},
                                 status=503, headers={"Retry-After": "1"})
    return await handler(request)


async def _redis_state(node: Any) -> tuple[str, float]:
    t0 = time.perf_counter()
    try:
        await asyncio.wait_for(node.redis.ping(), timeout=2)
        return "ok", time.perf_counter() - t0
    except _REDIS_ERRORS as exc:
        return f"error: {exc or type(exc).__name__}", time.perf_counter() - t0


async def healthz(request: web.Request) -> web.Response:
    """Alive: 200 while the process answers; the body says how Redis is (``/readyz`` acts on it)."""
    node = _node(request.app)
    redis_state, _ = await _redis_state(node)
    body: dict[str, Any] = {
        "status": "ok" if redis_state == "ok" else "degraded",
        "version": __version__,
        "node": node.node_id,
        "redis": redis_state,
        "draining": _draining(request.app),
        "uptime_s": round(time.monotonic() - node.started_at, 3),
    }
    return web.json_response(body, status=200)


async def readyz(request: web.Request) -> web.Response:
    """Taking work: 200 when Redis answers and the node is not draining, else 503 with the reason."""
    node = _node(request.app)
    redis_state, _ = await _redis_state(node)
    draining = _draining(request.app)
    ready = redis_state == "ok" and not draining
    reason = "" if ready else ("draining" if draining else f"redis {redis_state}")
    body = {"ready": ready, "node": node.node_id, "redis": redis_state, "draining": draining}
    if reason:
        body["reason"] = reason
    return web.json_response(body, status=200 if ready else 503)


class _NodeCollector:
    """Reads the node's state at scrape time (nothing is counted twice on the hot path)."""

    def __init__(self, app: web.Application, redis_latency: float, queues: list[Any]) -> None:
        self.app = app
        self.redis_latency = redis_latency
        self.queues = queues

    def collect(self) -> Iterator[Any]:
        from signaling import SIGNALING

        node = _node(self.app)
        service = self.app.get(SIGNALING)
        labels = ["node"]
        me = [node.node_id]
        conns = GaugeMetricFamily("segue_connections", "Socket.IO connections on this node", labels=labels + ["namespace"])
        events = CounterMetricFamily("segue_events", "Socket.IO events handled by this node", labels=labels + ["namespace"])
        for ns in (getattr(service, "customer_ns", None), getattr(service, "agent_ns", None)):
            if ns is not None:
                conns.add_metric(me + [ns.namespace], len(ns.sessions))
                events.add_metric(me + [ns.namespace], getattr(ns, "events_handled", 0))
        yield conns
        yield events
        waiting = GaugeMetricFamily("segue_queue_waiting", "Conversations waiting in a queue", labels=["queue"])
        longest = GaugeMetricFamily("segue_queue_longest_wait_seconds", "Longest wait in a queue now", labels=["queue"])
        available = GaugeMetricFamily("segue_queue_agents_available", "Agents available for a queue", labels=["queue"])
        for q in self.queues:
            waiting.add_metric([q.name], q.waiting)
            longest.add_metric([q.name], q.longest_wait_s)
            available.add_metric([q.name], q.agents_available)
        yield waiting
        yield longest
        yield available
        calls = getattr(service, "calls", None)
        yield _gauge("segue_calls", "Calls anchored on this node", me, len(calls.records) if calls else 0)
        packets_in = packets_out = lost = 0
        legs = 0
        forwarder = getattr(calls, "forwarder", None) if calls else None
        if forwarder is not None:
            for leg in forwarder.legs:
                legs += 1
                try:
                    for source in leg.sources:
                        packets_in += source.stats.packets
                    for sink in leg.sinks:
                        packets_out += sink.stats.packets
                        lost += sink.stats.remote_packets_lost
                except Exception:  # noqa: BLE001 - a leg closing while we read
                    continue
        yield _gauge("segue_forwarder_legs", "Media legs on this node", me, legs)
        yield _gauge("segue_forwarder_packets_received", "RTP packets received by the live legs", me, packets_in)
        yield _gauge("segue_forwarder_packets_sent", "RTP packets forwarded by the live legs", me, packets_out)
        yield _gauge("segue_forwarder_packets_lost", "Packets the far ends report lost (live legs)", me, lost)
        lag = service.limiter.load.lag_s if service is not None else 0.0
        yield _gauge("segue_event_loop_lag_seconds", "How late the event loop runs", me, lag)
        yield _gauge("segue_redis_latency_seconds", "Round trip of a Redis PING", me, self.redis_latency)
        cluster = _cluster(self.app)
        yield _gauge("segue_draining", "1 while the node drains", me, 1 if cluster is not None and cluster.draining else 0)
        yield _counter("segue_nodes_reaped", "Dead nodes this node took over", me,
                       len(cluster.reaped) if cluster is not None else 0)
        search = getattr(getattr(service, "desk", None), "search", None)
        if search is not None:
            indexed = CounterMetricFamily(
                "segue_search_indexed_events", "Events this node's conversation search indexed: stored (events this "
                "node stored, from memory), read (read back from Redis: other nodes' events, catch-ups)",
                labels=labels + ["source"])
            for source, value in search.indexed.items():
                indexed.add_metric(me + [source], value)
            yield indexed
        stats = getattr(node.sio.manager, "stats", None)  # the Redis fan-out (server/redis_client.py)
        if isinstance(stats, dict):
            fanout = CounterMetricFamily(
                "segue_fanout_messages", "Fan-out of emits between nodes: published_to_nodes (one per other node "
                "with sockets in the rooms), published_to_all (rooms every node may have), kept_local (no other "
                "node in the rooms: not published), publishes (PUBLISH commands: a batch of emits to one node is one), "
                "received (emits from other nodes), delivered (to sockets here), "
                "registry_reads (room members read from Redis: cache misses)", labels=labels + ["kind"])
            for kind, value in stats.items():
                fanout.add_metric(me + [kind], value)
            yield fanout


def _gauge(name: str, doc: str, node: list[str], value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=["node"])
    family.add_metric(node, value)
    return family


def _counter(name: str, doc: str, node: list[str], value: float) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=["node"])
    family.add_metric(node, value)
    return family


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format: connections, events, queues, calls, forwarder, loop lag, Redis latency."""
    from signaling import SIGNALING

    node = _node(request.app)
    _, latency = await _redis_state(node)
    service = request.app.get(SIGNALING)
    queues: list[Any] = []
    if service is not None:
        try:
            queues = await service.router.queue_stats()
        except _REDIS_ERRORS:
            queues = []
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_NodeCollector(request.app, latency, queues))  # type: ignore[arg-type]
    body = generate_latest(registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def drain(app: web.Application, timeout_s: float) -> int:
    """Stop taking work, close the sockets not in a call here, wait for this node's calls to end
    (up to ``timeout_s``). Returns how many calls were still running at the deadline."""
    from signaling import AGENT_NS, CUSTOMER_NS, SIGNALING, drop_connection

    cluster = _cluster(app)
    if cluster is not None:
        await cluster.set_draining(True)
    service = app.get(SIGNALING)
    calls = getattr(service, "calls", None)
    keep = set(calls.call_sockets()) if calls is not None else set()
    node = _node(app)
    closed = 0
    dropped: set[str] = set()
    # a connection with a socket in a call here stays (whatever its other namespaces)
    kept = {node.sio.manager.eio_sid_from_sid(sid, ns) for ns, sid in keep}
    dropped |= {e for e in kept if e is not None}
    for ns_obj, ns in ((getattr(service, "customer_ns", None), CUSTOMER_NS), (getattr(service, "agent_ns", None), AGENT_NS)):
        if ns_obj is None:
            continue
        for sid in list(ns_obj.sessions):
            if (ns, sid) in keep:
                continue
            # the connection itself, as a network loss would: the client reconnects (through the
            # proxy, to another node) and resumes; a Socket.IO disconnect would tell it not to
            eio_sid = node.sio.manager.eio_sid_from_sid(sid, ns)
            if eio_sid is None or eio_sid in dropped:
                continue
            dropped.add(eio_sid)
            try:
                drop_connection(node.sio, eio_sid)
                closed += 1
            except Exception:  # noqa: BLE001
                log.debug("closing %s on %s failed", sid, ns, exc_info=True)
    running = len(calls.records) if calls is not None else 0
    log.info("draining: %d sockets closed, %d calls running here (waiting up to %.0f s)", closed, running, timeout_s)
    started = time.monotonic()
    deadline = started + timeout_s

    def busy() -> bool:
        # the last call's hangup is answered too (to its socket, or to the node that forwarded
        # it) before the node stops and closes its sockets: signaling/calls.py ``busy``
        return bool(calls is not None and calls.busy) or bool(cluster is not None and cluster.answering)

    while busy() and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    left = len(calls.records) if calls is not None else 0
    if running and not left:
        log.info("draining: the calls here are over (after %.1f s); stopping", time.monotonic() - started)
    if left:
        log.warning("drain deadline: %d calls still running move to another node", left)
    return left
