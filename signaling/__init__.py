"""Segue's signaling layer: the Socket.IO protocol, conversations and their event log, routing.

``setup(app)`` (called by ``server.app.create_app``) builds one :class:`Signaling` service for the
node, attaches the ``/customer`` and ``/agent`` namespaces to the node's Socket.IO server, and
starts the routing loop with the app (stopped on shutdown). Other layers reach it through
``app[SIGNALING]``:

- ``signaling.customer_ns`` / ``signaling.agent_ns``: ``.register(event, schema, handler)`` adds
  an event to a namespace (the calls layer adds ``call.*``);
- ``signaling.append(...)``: store and push a conversation event (e.g. ``call.started``).

See docs/protocol.md (the wire), docs/conversations.md (states, access, Redis keys).
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Protocol

import redis.asyncio as aioredis
import socketio
from aiohttp import web

from .agents import ROLES, Account, Directory, parse_capacity
from .apikeys import MANAGE_KEYS, SCOPES, ApiKey, ApiKeys, scopes_for_role
from . import listing, outreach  # the REST API's listing and server-written conversations
from . import fanout  # pushes to this node's sockets and the room registry (server/redis_client.py)
from .errors import ProtocolError, log_unexpected
from .identity import IdentityError, sign_identity, verify_identity
from .passwords import hash_password, verify_password
from .origins import OriginPolicy, OriginRefused, Surface, environ_own_origins, own_origins
from .routing import RoutingError
from .limits import RateLimiter, client_address, drop_connection
from .schema import CHANNEL_RE, EVENT_ID_RE, ID_RE, USERNAME_RE, json_schema, validate
from .service import AGENT_NS, CUSTOMER_NS, Principal, Signaling, summary
from .webhooks import EVENT_TYPES as WEBHOOK_EVENT_TYPES, Webhooks
from .tokens import Signer, TokenClaims, TokenError
from .throttle import LoginThrottle
from .desk import DESK, Desk
from .knowledge import ArticleCreate, ArticleUpdate, KnowledgeBase, render_markdown
from .search import parse_search
from .recordings import INTERNAL_PATH as INTERNAL_RECORDING_PATH, NODE_TOKEN_HEADER, RECORDINGS, RecordingPlace, Recordings
from .cluster import NodeIdClaim, NodeIdError, claim_node_id  # a node's id kept in its data folder

__all__ = [
    "setup", "Host", "HOST", "SIGNALING", "Signaling", "Principal", "ProtocolError", "RoutingError", "CUSTOMER_NS", "AGENT_NS",
    "EVENT_ID_RE", "validate", "Directory", "summary",
    "WEBHOOKS", "Webhooks", "WEBHOOK_EVENT_TYPES",
    "SCOPES", "MANAGE_KEYS", "ApiKey", "ApiKeys", "scopes_for_role", "listing", "outreach", "fanout", "ID_RE", "json_schema",
    "Signer", "TokenClaims", "TokenError", "hash_password", "verify_password", "IdentityError", "sign_identity",
    "verify_identity",
    "LoginThrottle", "log_unexpected", "ROLES", "Account", "parse_capacity", "CHANNEL_RE", "USERNAME_RE",
    "OriginPolicy", "OriginRefused", "Surface", "own_origins", "environ_own_origins",
    "RateLimiter", "client_address", "drop_connection",
    "DESK", "Desk", "ArticleCreate", "ArticleUpdate", "KnowledgeBase", "render_markdown", "parse_search",
    "RECORDINGS", "Recordings", "RecordingPlace", "NODE_TOKEN_HEADER", "INTERNAL_RECORDING_PATH",
    "NodeIdClaim", "NodeIdError", "claim_node_id",
]

SIGNALING: web.AppKey[Signaling] = web.AppKey("segue_signaling", Signaling)
WEBHOOKS: web.AppKey[Webhooks] = web.AppKey("segue_webhooks", Webhooks)


class Host(Protocol):
    """What signaling needs from the process that hosts it (``server.app.Node`` is one): the
    Socket.IO server, Redis, the settings, the signing secret, and a list of coroutines to run at
    shutdown. Passed in by the server layer, so signaling never imports it."""

    sio: socketio.AsyncServer
    redis: aioredis.Redis
    config: Any
    secret: bytes
    closers: list[Callable[[], Awaitable[None]]]


HOST: web.AppKey[Any] = web.AppKey("segue_signaling_host", object)


def setup(app: web.Application, host: Host) -> None:
    from .namespaces import AgentNamespace, CustomerNamespace, install_ack_hook

    app[HOST] = host
    node = host
    # Socket.IO packets encoded and decoded with orjson (what AsyncServer(json=...) sets, too)
    from .fastjson import SocketIOJson

    node.sio.packet_class.json = SocketIOJson
    # a client that stops reading is disconnected before its pushes fill the node's memory
    from .limits import bound_send_queues

    bound_send_queues(node.sio, node.config.limits.send_queue_packets, node.config.limits.send_queue_bytes)
    service = Signaling(node.sio, node.redis, node.config, node.secret)
    _setup_cluster(app, node, service)
    # where each call recording is, and the tokens nodes show each other to read one (recordings.py)
    app[RECORDINGS] = Recordings(service.redis, node.config, service.signer, service.cluster)
    _claim_orphan_recordings(app, node, app[RECORDINGS])
    install_ack_hook(node.sio)
    service.customer_ns = CustomerNamespace(service)  # type: ignore[attr-defined]
    service.agent_ns = AgentNamespace(service)  # type: ignore[attr-defined]
    node.sio.register_namespace(service.customer_ns)  # type: ignore[attr-defined]
    node.sio.register_namespace(service.agent_ns)  # type: ignore[attr-defined]
    # rate limits and load shedding on every client event, before it is decoded (signaling/limits.py)
    from .limits import install_gate

    install_gate(node.sio, service.limiter, {ns.namespace: ns for ns in (service.customer_ns, service.agent_ns)})  # type: ignore[attr-defined]
    app[SIGNALING] = service
    try:  # the calls layer (call.* events) rides on these namespaces when media is installed
        from .calls import register as register_calls
    except ImportError as exc:
        import logging

        logging.getLogger(__name__).info("calls are not available: %s", exc)
    else:
        service.calls = register_calls(app)

    async def start(_app: web.Application) -> None:
        await service.startup()

    async def stop() -> None:
        await service.shutdown()

    app.on_startup.append(start)
    node.closers.append(stop)
    _setup_webhooks(app, service)
    # search and the knowledge base (signaling/desk.py): in-process indexes fed from Redis
    from .desk import install as install_desk

    install_desk(app, service, node.closers)


def _claim_orphan_recordings(app: web.Application, host: Any, recordings: Recordings) -> None:
    """Once the node is in the cluster, in the background: the recordings in its folder that Redis
    names with a node not running become this node's (``Recordings.claim_orphans``)."""
    import asyncio
    import logging

    tasks: list[asyncio.Task[Any]] = []

    async def claim() -> None:
        try:
            await recordings.claim_orphans()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the node runs without it (those recordings stay out of reach)
            logging.getLogger(__name__).exception("claiming the recordings left in this node's folder failed")

    async def start(_app: web.Application) -> None:
        tasks.append(asyncio.ensure_future(claim()))

    async def stop() -> None:
        for task in tasks:
            task.cancel()

    app.on_startup.append(start)  # after the cluster's start (it is alive, its id registered)
    host.closers.append(stop)


def _setup_webhooks(app: web.Application, service: Signaling) -> None:
    """The webhook engine: every store that appends conversation events feeds its outbox (the
    service's and the calls layer's), and its worker runs with the app."""
    from .webhooks import store_describer

    config = service.config
    webhooks = Webhooks(service.redis, config.redis.key_prefix, config, store_describer(service.store, summary))
    for store in (service.store, getattr(service.calls, "store", None)):
        if store is not None:
            webhooks.attach(store)
    app[WEBHOOKS] = webhooks

    async def start(_app: web.Application) -> None:
        await webhooks.start()

    app.on_startup.insert(0, start)  # subscriptions loaded before anything stores an event
    app[HOST].closers.append(webhooks.stop)  # closers run in reverse: stops before the service


def _setup_cluster(app: web.Application, host: Any, service: Signaling) -> None:
    """This node's membership of the cluster (signaling/cluster.py): heartbeat, the watch on
    other nodes, the bus that carries call.* events to the node holding a call. Started before
    the service (the namespaces record sockets with it), stopped after every socket closed."""
    from .cluster import Cluster, default_node_id

    config = service.config
    node_id = getattr(host, "node_id", "") or config.cluster.node_id or default_node_id(config.http.port)
    cluster = Cluster(service.redis, config.redis.key_prefix, config, node_id)
    cluster.on_agent_lost = service.agent_lost
    cluster.on_orphan_due = service.requeue_lost_agent
    service.cluster = cluster

    async def start(_app: web.Application) -> None:
        await cluster.start()

    app.on_startup.append(start)
    host.closers.insert(0, cluster.stop)  # closers run in reverse: the cluster stops last
