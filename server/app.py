"""The aiohttp application: wires config, Redis, Socket.IO, the REST API and the static pages.

Why here: ``server/`` is the only layer that knows every other one. ``signaling`` and ``media``
each expose one ``setup(...)`` function; this module calls them in order, so a reader can see
what a node consists of in one place.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

import redis.asyncio as aioredis
import socketio
from aiohttp import web

from .config import Config, ConfigError
from .embedded_redis import RedisUnavailable
from .i18n import Message, recognise
from .redis_client import FanoutManager, make_redis
from .security import setup_security_headers
from .sdk import add_sdk_routes
from .version import __version__

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent.parent / "web"


@dataclass
class Node:
    """What every component of one server process shares: settings, Redis, Socket.IO, start time.

    Components find it with ``request.app[NODE]`` (or the ``app`` passed to their ``setup``).
    """

    config: Config
    redis: aioredis.Redis
    redis_url: str
    sio: socketio.AsyncServer
    secret: bytes
    started_at: float = field(default_factory=time.monotonic)
    # this node's name among several (cluster.node_id, else the one kept in data_dir/node-id): the sticky cookie's value
    node_id: str = ""
    # Coroutines run at shutdown, before Redis closes (e.g. close media legs, flush state).
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)


NODE: web.AppKey[Node] = web.AppKey("segue_node", Node)


def load_secret(config: Config) -> bytes:
    """The signing secret: from config, else generated once and kept (mode 0600) in the data folder."""
    if config.auth.secret:
        return config.auth.secret.encode()
    path = config.data_path / "secret"
    if path.exists():
        return path.read_text().strip().encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    path.write_text(value + "\n")
    path.chmod(0o600)
    return value.encode()


def create_app(config: Config, redis_url: str) -> web.Application:
    """Build one node. ``redis_url`` is the Redis to use (the embedded one's URL when none is configured)."""
    from .cors import engineio_origin_check, origin_policy, setup_cors  # imports signaling, which imports server
    from .guard import handler_args, make_guard  # the same

    max_event = config.limits.max_event_bytes
    manager_args: dict[str, Any] = {}
    if config.redis.fanout:
        # Several nodes: an emit to a room reaches sockets on every node through Redis pub/sub.
        # (a blocking pool under python-socketio's manager: server/redis_client.py says why)
        # (an emit goes only to the nodes with sockets in its rooms: server/redis_client.py)
        manager_args["client_manager"] = FanoutManager(redis_url, channel=f"{config.redis.key_prefix}socketio",
                                                       prefix=config.redis.key_prefix)
        manager_args["client_manager"].resync_namespaces = ("/customer", "/agent")
    sio = socketio.AsyncServer(
        **manager_args,
        async_mode="aiohttp",
        # an origin either cors list allows passes the handshake; each namespace then checks its own
        # list (signaling.namespaces). No cookies are used, so credentials are never allowed.
        cors_allowed_origins=engineio_origin_check(origin_policy(config)),
        cors_credentials=False,
        # The engine.io limit sits well above ours, so an oversized event reaches our handler and
        # gets a clear error instead of a dropped connection.
        max_http_buffer_size=max(1_000_000, 4 * max_event),
        logger=False,
        engineio_logger=False,
        # Each client's events run one after another in its receive loop instead of as a task
        # each: a client's events keep their order (SDP before candidates, messages in sequence),
        # and under load it costs far less scheduling (bench/chat.py: p99 latency several times
        # lower). A handler must therefore not wait for a later event of the same client.
        async_handlers=False,
    )
    # header timeout and line limits (server/guard.py): a half-open request is closed, not held
    app = web.Application(client_max_size=max(1_000_000, 4 * max_event), handler_args=handler_args(config))
    app.middlewares.insert(0, make_guard(config))  # outermost: connections per address, body timeout
    node = Node(
        config=config,
        # A blocking pool: a burst of requests waits for a free connection instead of failing with
        # "Too many connections" (redis-py's default pool raises past 100).
        redis=make_redis(redis_url, max_connections=64, timeout=20),  # server/redis_client.py (Sentinel too)
        redis_url=redis_url,
        sio=sio,
        secret=load_secret(config),
    )
    app[NODE] = node
    sio.attach(app)

    from .ops import healthz as ops_healthz, setup_ops

    if not node.node_id:
        node.node_id = config.cluster.node_id or _kept_node_id(app, config)
    if isinstance(sio.manager, FanoutManager):
        sio.manager.node_id = node.node_id  # its channel and its entries in the room registry
    app.router.add_get("/healthz", ops_healthz)  # alive; /readyz: taking work (server/ops.py)
    setup_ops(app)
    _add_pages(app)

    # Components register their routes, namespaces and start/stop hooks.
    # signaling gets what it needs from this node (it never imports the server layer); then the
    # REST API, which sits on signaling's service
    import signaling

    from . import rest

    signaling.setup(app, node)
    rest.setup(app)
    from . import knowledge_api  # search and the knowledge base (docs/knowledge.md)

    knowledge_api.setup(app)
    # after every component's routes exist: CORS covers all of them (server/cors.py)
    setup_cors(app, origin_policy(config))
    setup_security_headers(app)  # CSP, frame-ancestors, nosniff, Referrer-Policy (server/security.py)

    app.on_startup.insert(0, _check_redis)  # before components' start-up hooks, which use Redis
    app.on_startup.append(_tune_gc)
    app.on_shutdown.append(_shutdown)
    return app


def _kept_node_id(app: web.Application, config: Config) -> str:
    """The id this node drew at its first start, kept in its data folder (signaling/cluster.py
    ``claim_node_id``: its recordings stay reachable through other nodes after a restart); the
    folder's file is held until the app is cleaned up."""
    from signaling import NodeIdError, claim_node_id

    try:
        claim = claim_node_id(config.data_path)
    except NodeIdError as exc:
        from .cli import SIGNALING_ERRORS  # the command line prints it translated (server/i18n.py)

        problem = recognise(str(exc), SIGNALING_ERRORS) or str(exc)
        raise ConfigError(Message("{problem} (or set cluster.node_id)", problem=problem)) from None

    async def release(_app: web.Application) -> None:
        claim.release()

    app.on_cleanup.append(release)
    return claim.node_id


def _add_pages(app: web.Application) -> None:
    async def index(_request: web.Request) -> web.FileResponse:
        return web.FileResponse(WEB_DIR / "index.html")

    app.router.add_get("/", index)
    # /sdk/<version>/ and /sdk/v1/ (server/sdk.py): before the plain /sdk/ route, which would
    # otherwise take /sdk/<another version>/... as a file name
    add_sdk_routes(app)
    for sub in sorted(p for p in WEB_DIR.iterdir() if p.is_dir()):
        app.router.add_get(f"/{sub.name}", _redirect_to(f"/{sub.name}/"))
        app.router.add_get(f"/{sub.name}/", _index_of(sub))
        app.router.add_static(f"/{sub.name}/", sub, append_version=False)
    # The socket.io client moved into the SDK (web/sdk/vendor/); pages written against /vendor/ keep working.
    app.router.add_static("/vendor/", WEB_DIR / "sdk" / "vendor", append_version=False)


def _redirect_to(location: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(_request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(location)

    return handler


def _index_of(folder: Path) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(_request: web.Request) -> web.StreamResponse:
        page = folder / "index.html"
        if not page.exists():
            raise web.HTTPNotFound(text=f"no page at /{folder.name}/")
        return web.FileResponse(page)

    return handler


async def _check_redis(app: web.Application) -> None:
    node = app[NODE]
    try:
        await asyncio.wait_for(node.redis.ping(), timeout=node.config.redis.startup_timeout_s)
    except (OSError, aioredis.RedisError, asyncio.TimeoutError) as exc:
        raise RedisUnavailable(Message(  # printed translated by the command line (server/i18n.py)
            "cannot reach Redis at {url}: {reason}"
            " (check redis.url / SEGUE_REDIS_URL, or leave it empty to use the embedded Redis)",
            url=node.redis_url, reason=str(exc) or type(exc).__name__,
        )) from None


async def _tune_gc(_app: web.Application) -> None:
    """Keep the cyclic garbage collector from stalling the event loop.

    A node holds many long-lived objects (modules, sockets, sessions) and allocates many
    short-lived ones per event, nearly all freed by reference counting. With the default
    thresholds, full collections ran every few seconds under load and each scanned the whole heap
    (~150 ms with 1,000 sockets: bench/chat.py's p99 latency). So: objects alive at start-up are
    frozen out of collection, and young objects are collected less often (cycles are still found).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


async def _shutdown(app: web.Application) -> None:
    """Close client connections and components; Redis closes last so pending writes complete."""
    node = app[NODE]
    try:
        if node.sio.eio.sockets:
            # every connected client; bounded, because python-engineio's close of a polling session
            # whose client went away waits for a poll that never comes
            await asyncio.wait_for(node.sio.eio.disconnect(), timeout=node.config.http.shutdown_timeout_s)
    except asyncio.TimeoutError:
        log.warning("some Socket.IO clients did not close within http.shutdown_timeout_s; going on")
    except Exception:  # noqa: BLE001 - shutdown must go on
        log.exception("closing Socket.IO connections failed")
    for closer in reversed(node.closers):
        try:
            await closer()
        except Exception:  # noqa: BLE001
            log.exception("a component failed to close")
    await node.sio.shutdown()
    await node.redis.aclose()
