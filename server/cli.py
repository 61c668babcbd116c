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
from .i18n import Message, N_, _, localized, recognise, translate_argparse
from .redis_client import sentinel_url
from .logs import setup_logging
from .version import __version__

log = logging.getLogger("segue")

# Subcommands added by other layers: name -> (configure parser, run). See signaling's CLI.
Command = tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace, Config], int]]
EXTRA_COMMANDS: dict[str, Command] = {}


class UsageError(Exception):
    """A problem the person running the command can fix; printed as one line.

    Give it a :class:`~server.i18n.Message` (or a string already translated) so the line is printed
    in the reader's language (docs/cli.md "Languages").
    """


# The errors of signaling the commands meet (the protocol's, in English for every client; the node-id
# file's), as signaling formats them: recognised here, they print in the reader's language; one not
# listed prints as it is.
SIGNALING_ERRORS: tuple[str, ...] = (
    N_("agent {name} already exists"),
    N_("agent {name} does not exist"),
    N_("agent {name} was changed at the same time: try again"),
    N_("role must be one of {choices}"),
    N_("channels: {channel} needs a capacity of 1 or more (capacity.{key})"),
    N_("capacity must look like chat=3,voice=1 (got {part})"),
    N_("API key {id} does not exist"),
    N_("there are already {count} API keys: revoke unused ones first"),
    N_("{field}: give at least one scope (one of {scopes})"),
    N_("{field}: unknown scope {scope} (known: {scopes})"),
    N_("{field}: must be 1 to 64 letters, digits, spaces or _ . : - (starting with a letter or digit)"),
    N_("webhook endpoint {id} does not exist"),
    N_("delivery {delivery} of webhook endpoint {id} does not exist"),
    N_("{field}: give the endpoint's URL (http or https, up to {count} characters)"),
    N_("{field}: not a valid URL ({reason}): e.g. https://example.com/hooks/segue"),
    N_("{field}: the URL must start with https:// (or http://), e.g. https://example.com/hooks/segue"),
    N_("{field}: the URL has no host name, e.g. https://example.com/hooks/segue"),
    N_("{field}: put no user name or password in the URL: verify deliveries by their signature"),
    N_("{field}: a webhook URL has no #fragment"),
    N_("{field}: port 0 is not a port to deliver to"),
    N_('{field}: "*" (every event) cannot be combined with other event types'),
    N_('{field}: unknown event type {name} (known: {known}, or "*")'),
    N_("{path} should hold this node's id (letters, digits, - _ and . only), not {text}: put the node's id back or "
       "delete the file (the node then draws a new id and its earlier recordings are no longer found through other "
       "nodes)"),
)


def protocol_error(exc: Exception, option: str | None = None) -> UsageError:
    """A protocol error (``ProtocolError``, or the ``ValueError`` of a parser) met by a command, as
    one line for the reader; ``option`` names the command-line option the bad value came from."""
    text = str(getattr(exc, "message", exc))
    message: str = recognise(text, SIGNALING_ERRORS) or text
    return UsageError(Message("{option}: {problem}", option=option, problem=message) if option else message)


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
        raise UsageError(*exc.args) from None
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
            reason = Message("address already in use") if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
            raise UsageError(Message(
                "cannot listen on {address}: {reason} (set http.port / SEGUE_HTTP_PORT to a free port)",
                address=config.http.host + ":" + str(config.http.port), reason=reason,
            )) from None
        host, port = runner.addresses[0][:2]
        from signaling import SIGNALING

        cluster = getattr(app[SIGNALING], "cluster", None)
        if cluster is not None:  # the other nodes fetch recordings at this port (http.port 0: known now)
            cluster.listening_on(port)
        # before the lines below: whoever read them may stop the node at once (a signal then stops it cleanly)
        stop = asyncio.Event()
        drain_asked = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, stop.set)

        def on_term() -> None:  # the first SIGTERM drains, a second one stops at once
            (stop if drain_asked.is_set() else drain_asked).set()

        loop.add_signal_handler(signal.SIGTERM, on_term)
        url = public_url(config, config.http.host, port)
        log.info("segue is running", extra={"url": url, "version": __version__, "redis": redis_url})
        # the first line ends with the URL in every language (bench/ and tests read it; docs/cli.md)
        print(_("Segue {version} is running at {url}").format(version=__version__, url=url), flush=True)
        print("  " + _("customer widget: {widget}   agent console: {agent}   supervisor: {supervisor}").format(
            widget=f"{url}widget/", agent=f"{url}agent/", supervisor=f"{url}supervisor/"), flush=True)
        if config.demo.enabled:
            print("  " + _("demo agent login: {username} / {password}").format(
                username=config.demo.agent_username, password=config.demo.agent_password), flush=True)
        if ready:
            ready(url)
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
    parser = argparse.ArgumentParser(prog="segue", description=_("Segue WebRTC contact server"))
    parser.add_argument("--version", action="version", version=f"segue {__version__}",
                        help=_("show program's version number and exit"))  # argparse 3.11 leaves its own untranslated
    parser.add_argument(
        "--config", default=os.environ.get("SEGUE_CONFIG"),
        help=_("config file (default: config.yaml at the repository root; env SEGUE_CONFIG)"),
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p_serve = sub.add_parser("serve", help=_("run a node: HTTP, Socket.IO, media; embedded Redis unless configured"))
    p_serve.add_argument("--host", help=_("override {setting}").format(setting="http.host"))
    p_serve.add_argument("--port", type=int, help=_("override {setting}").format(setting="http.port"))
    p_serve.add_argument("--data-dir", help=_("override {setting}").format(setting="data_dir"))
    p_serve.add_argument(
        "--workers", type=int, nargs="?", const=0, default=None, metavar="N",
        help=_("run N nodes on this machine (ports http.port, +1, ...; one Redis, fan-out on); "
               "--workers alone: one per core (docs/deployment.md)"),
    )
    for name, (configure, _run) in EXTRA_COMMANDS.items():
        # each command states what it is for as its parser's description: `segue --help` lists it
        probe = argparse.ArgumentParser(add_help=False)
        configure(probe)
        summary = (probe.description or "").strip().splitlines()[0] if probe.description else ""
        configure(sub.add_parser(name, help=summary or _("segue {name} --help for its actions").format(name=name)))
    return parser


def _register_extra_commands() -> None:
    from . import accounts_cli  # noqa: F401  (segue agent ..., segue apikey ...)
    from . import webhook_cli  # noqa: F401  (segue webhook ...)


def main(argv: Sequence[str] | None = None) -> int:
    translate_argparse()  # usage:, options, error: ... in the reader's language too
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
                    raise UsageError(Message("--workers takes a number of nodes (0 or nothing: one per core)"))
                count = worker_count(workers)
                if count > 1:
                    return asyncio.run(run_workers(config, count))
            asyncio.run(serve(config))
            return 0
        _configure, run = EXTRA_COMMANDS[command]
        return run(args, config)
    except (ConfigError, RedisUnavailable, UsageError) as exc:
        print(_("segue: error: {message}").format(message=localized(exc)), file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
    except KeyboardInterrupt:
        return 130
