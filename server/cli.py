"""The ``segue`` command (also ``python -m server``).

``segue serve`` runs one node: the embedded Redis unless ``redis.url`` is set, the HTTP and
Socket.IO server, the pages. Errors a person can fix (bad config, Redis unreachable, port taken)
print one line naming the cause and exit non-zero; they never print a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import os
import signal
import sys
from typing import Callable, Sequence

from aiohttp import web

from .app import create_app
from .config import Config, ConfigError, load_config
from .demo import DemoExposed, check_demo
from .embedded_redis import EmbeddedRedis, RedisUnavailable
from .redis_client import sentinel_url
from .logs import setup_logging
from .version import __version__

log = logging.getLogger("segue")

# Subcommands added by other layers: name -> (configure parser, run). See signaling's CLI.
Command = tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace, Config], int]]
EXTRA_COMMANDS: dict[str, Command] = {}


class UsageError(Exception):
    """A problem the person running the command can fix; printed as one line."""


def public_url(config: Config, host: str, port: int) -> str:
    if config.http.public_url:
        return config.http.public_url.rstrip("/") + "/"
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else ("[::1]" if host == "::" else host)
    return f"http://{shown}:{port}/"


async def serve(config: Config, ready: Callable[[str], None] | None = None) -> None:
    """Run one node until SIGINT or SIGTERM, then shut down in order: clients, components, Redis."""
    try:
        check_demo(config)
    except DemoExposed as exc:
        raise UsageError(str(exc)) from None
    embedded: EmbeddedRedis | None = None
    redis_url = config.redis.url
    if config.redis.sentinels:  # the primary Sentinel names (server/redis_client.py)
        redis_url = sentinel_url(config.redis.sentinels, config.redis.sentinel_master)
    if not redis_url:
        embedded = await EmbeddedRedis.start(config.data_path, config.redis.startup_timeout_s,
                                             appendfsync=config.redis.appendfsync)
        # if redis-server dies, it is started again on its data: no server restart (docs/redis.md)
        embedded.supervise(config.redis.restarts_per_minute)
        redis_url = embedded.url
    runner: web.AppRunner | None = None
    try:
        app = create_app(config, redis_url)
        runner = web.AppRunner(app, shutdown_timeout=config.http.shutdown_timeout_s, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, config.http.host, config.http.port)
        try:
            await site.start()
        except OSError as exc:
            reason = "address already in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
            raise UsageError(
                f"cannot listen on {config.http.host}:{config.http.port}: {reason}"
                " (set http.port / SEGUE_HTTP_PORT to a free port)"
            ) from None
        host, port = runner.addresses[0][:2]
        from signaling import SIGNALING

        cluster = getattr(app[SIGNALING], "cluster", None)
        if cluster is not None:  # the other nodes fetch recordings at this port (http.port 0: known now)
            cluster.listening_on(port)
        url = public_url(config, config.http.host, port)
        log.info("segue is running", extra={"url": url, "version": __version__, "redis": redis_url})
        print(f"Segue {__version__} is running at {url}", flush=True)
        print(f"  customer widget: {url}widget/   agent console: {url}agent/   supervisor: {url}supervisor/", flush=True)
        if config.demo.enabled:
            print(f"  demo agent login: {config.demo.agent_username} / {config.demo.agent_password}", flush=True)
        if ready:
            ready(url)
        stop = asyncio.Event()
        drain_asked = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, stop.set)

        def on_term() -> None:  # the first SIGTERM drains, a second one stops at once
            (stop if drain_asked.is_set() else drain_asked).set()

        loop.add_signal_handler(signal.SIGTERM, on_term)
        drain_wait = asyncio.ensure_future(drain_asked.wait())
        stop_wait = asyncio.ensure_future(stop.wait())
        await asyncio.wait([drain_wait, stop_wait], return_when=asyncio.FIRST_COMPLETED)
        if drain_asked.is_set() and not stop.is_set():
            # no new conversations or calls here; running calls finish (docs/deployment.md "Draining")
            from .ops import drain

            drain_task = asyncio.ensure_future(drain(app, config.cluster.drain_timeout_s))
            await asyncio.wait([drain_task, stop_wait], return_when=asyncio.FIRST_COMPLETED)
            if not drain_task.done():
                drain_task.cancel()
        drain_wait.cancel()
        stop_wait.cancel()
        log.info("shutting down")
    finally:
        if runner is not None:
            await runner.cleanup()
        if embedded is not None:
            await embedded.stop()
            log.info("embedded redis stopped")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segue", description="Segue WebRTC contact server")
    parser.add_argument("--version", action="version", version=f"segue {__version__}")
    parser.add_argument(
        "--config", default=os.environ.get("SEGUE_CONFIG"),
        help="config file (default: config.yaml at the repository root; env SEGUE_CONFIG)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p_serve = sub.add_parser("serve", help="run a node: HTTP, Socket.IO, media; embedded Redis unless configured")
    p_serve.add_argument("--host", help="override http.host")
    p_serve.add_argument("--port", type=int, help="override http.port")
    p_serve.add_argument("--data-dir", help="override data_dir")
    p_serve.add_argument(
        "--workers", type=int, nargs="?", const=0, default=None, metavar="N",
        help="run N nodes on this machine (ports http.port, +1, ...; one Redis, fan-out on); "
             "--workers alone: one per core (docs/deployment.md)",
    )
    for name, (configure, _run) in EXTRA_COMMANDS.items():
        # each command states what it is for as its parser's description: `segue --help` lists it
        probe = argparse.ArgumentParser(add_help=False)
        configure(probe)
        summary = (probe.description or "").strip().splitlines()[0] if probe.description else ""
        configure(sub.add_parser(name, help=summary or f"segue {name} --help for its actions"))
    return parser


def _register_extra_commands() -> None:
    from . import accounts_cli  # noqa: F401  (segue agent ..., segue apikey ...)
    from . import webhook_cli  # noqa: F401  (segue webhook ...)


def main(argv: Sequence[str] | None = None) -> int:
    _register_extra_commands()
    parser = build_parser()
    args = parser.parse_args(argv)
    command = args.command or "serve"
    try:
        overrides: dict[str, object] = {}
        if command == "serve":
            for attr, dotted in (("host", "http.host"), ("port", "http.port"), ("data_dir", "data_dir")):
                value = getattr(args, attr, None)
                if value is not None:
                    overrides[dotted] = value
        config = load_config(args.config, overrides=overrides)
        setup_logging(config.log.level, config.log.format)
        if command == "serve":
            workers = getattr(args, "workers", None)
            if workers is not None:
                from .workers import run_workers, worker_count

                if workers < 0:
                    raise UsageError("--workers takes a number of nodes (0 or nothing: one per core)")
                count = worker_count(workers)
                if count > 1:
                    return asyncio.run(run_workers(config, count))
            asyncio.run(serve(config))
            return 0
        _configure, run = EXTRA_COMMANDS[command]
        return run(args, config)
    except (ConfigError, RedisUnavailable, UsageError) as exc:
        print(f"segue: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
    except KeyboardInterrupt:
        return 130
