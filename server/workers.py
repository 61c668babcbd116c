"""``segue serve --workers N``: N full nodes on one machine, one process each.

Why processes and not threads: one node's event loop uses one core (Socket.IO, routing, and the
media forwarder all run on it), so a machine with N cores runs N nodes. Each is an ordinary
``python -m server serve`` with its own port (``http.port`` + i: distinct upstream ports are what
nginx's sticky map needs, docs/deployment.md) and node id, sharing one Redis with fan-out on.
With no ``redis.url`` this parent runs the embedded Redis for all of them (supervised: restarted
on its data if it dies). A node that dies is started again; SIGTERM is passed on, so every node
drains (its calls finish) before the parent exits.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import time

from .config import Config
from .embedded_redis import EmbeddedRedis
from .i18n import Message, _

log = logging.getLogger("segue")

RESTART_DELAY_S = 1.0


def worker_count(requested: int) -> int:
    """``0``: one per core this process may use."""
    if requested > 0:
        return requested
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def worker_env(config: Config, redis_url: str, index: int, secret: str) -> dict[str, str]:
    """The environment of worker ``index`` (0-based): its port and node id, the shared Redis."""
    env = dict(os.environ)
    port = config.http.port + index
    host = socket.gethostname().split(".")[0] or "node"
    base = config.cluster.node_id or host
    env.update({
        "SEGUE_HTTP_PORT": str(port),
        "SEGUE_REDIS_URL": redis_url,
        "SEGUE_REDIS_FANOUT": "true",
        "SEGUE_CLUSTER_NODE_ID": f"{base}-{index + 1}",
        "SEGUE_AUTH_SECRET": secret,
        "SEGUE_DATA_DIR": str(config.data_path),
    })
    return env


async def run_workers(config: Config, count: int) -> int:
    """Start ``count`` nodes and keep them running until SIGINT/SIGTERM (passed on to them)."""
    from .app import load_secret

    if config.http.port == 0:
        from .cli import UsageError

        raise UsageError(Message("--workers needs a fixed http.port (workers listen on http.port, http.port + 1, ...)"))
    embedded: EmbeddedRedis | None = None
    redis_url = config.redis.url
    if config.redis.sentinels:
        from .cli import UsageError

        raise UsageError(Message(
            "--workers with redis.sentinels: run one `segue serve` per node instead (each asks the sentinels)"))
    if not redis_url:
        embedded = await EmbeddedRedis.start(config.data_path, config.redis.startup_timeout_s,
                                             appendfsync=config.redis.appendfsync)
        embedded.supervise(config.redis.restarts_per_minute)
        redis_url = embedded.url
    secret = load_secret(config).decode()
    procs: dict[int, asyncio.subprocess.Process] = {}
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)

    async def spawn(i: int) -> None:
        args = [sys.executable, "-m", "server"]
        if os.environ.get("SEGUE_CONFIG"):
            args += ["--config", os.environ["SEGUE_CONFIG"]]
        procs[i] = await asyncio.create_subprocess_exec(*args, "serve", env=worker_env(config, redis_url, i, secret))

    try:
        for i in range(count):
            await spawn(i)
        ports = ", ".join(str(config.http.port + i) for i in range(count))
        print(_("Segue: {count} nodes on ports {ports} (Redis {redis}); put nginx in front (docs/deployment.md)").format(
            count=count, ports=ports, redis=redis_url), flush=True)
        while not stopping.is_set():
            waits = {asyncio.ensure_future(p.wait()): i for i, p in procs.items()}
            stop_wait = asyncio.ensure_future(stopping.wait())
            done, _pending = await asyncio.wait([*waits, stop_wait], return_when=asyncio.FIRST_COMPLETED)
            for fut in waits:
                if fut not in done:
                    fut.cancel()
            if stopping.is_set():
                break
            stop_wait.cancel()
            for fut in done:
                if fut in waits:
                    i = waits[fut]
                    log.warning("node %d exited with code %s; starting it again", i + 1, procs[i].returncode)
                    await asyncio.sleep(RESTART_DELAY_S)
                    if not stopping.is_set():
                        await spawn(i)
    finally:
        for p in procs.values():
            if p.returncode is None:
                p.send_signal(signal.SIGTERM)  # each node drains, then exits
        deadline = time.monotonic() + config.cluster.drain_timeout_s + config.http.shutdown_timeout_s + 10
        for p in procs.values():
            try:
                await asyncio.wait_for(p.wait(), max(0.1, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                p.kill()
                await p.wait()
        if embedded is not None:
            await embedded.stop()
    return 0
