"""Several real nodes behind a real nginx, for the scale-out and failover tests.

- :class:`NodeProcess`: ``python -m server serve`` as a subprocess with ``SEGUE_*`` settings, so a
  ``SIGKILL`` is a real death (no clean-up runs).
- :class:`Nginx`: Debian's nginx with the configuration of docs/deployment.md (read from the page,
  so the docs cannot drift), ports and node ids substituted, its own prefix, pid and logs.
- :class:`ChatClient`: a Socket.IO client that behaves like the SDK: reconnects by itself, resumes
  every conversation from the last event id it saw, drops repeated ids (and counts them), and
  re-sends a message whose ack was lost with the same ``client_id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import aiohttp
import redis.asyncio as aioredis
import socketio

from signaling.agents import Directory
from signaling.store import Store

ROOT = Path(__file__).resolve().parents[2]
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


#: waits before asking again for a resume after ``resync`` that was answered ``unavailable`` (the SDK's
#: RESUME_RETRY_MS in web/sdk/segue.js)
RESYNC_RETRY_S = (0.5, 1.0, 2.0, 4.0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_nginx() -> str:
    if not Path(NGINX).exists():
        raise AssertionError("nginx is missing: run `make test` (it installs Debian's nginx as root) or "
                             "`apt-get install -y nginx`")
    return NGINX


class NodeProcess:
    """One node as a real process."""

    def __init__(self, node_id: str, env: dict[str, str], log_path: Path) -> None:
        self.node_id = node_id
        self.port = int(env["SEGUE_HTTP_PORT"])
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "NodeProcess":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "server", "serve"], cwd=ROOT, env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        return self

    async def ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise AssertionError(f"node {self.node_id} exited: {self.log_tail()}")
                try:
                    async with http.get(f"{self.url}/readyz") as resp:
                        if resp.status == 200:
                            # the id it runs under (a node started without SEGUE_CLUSTER_NODE_ID draws one)
                            self.node_id = (await resp.json()).get("node") or self.node_id
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError(f"node {self.node_id} not ready in {timeout} s: {self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def terminate(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def node_env(redis_url: str, prefix: str, node_id: str, data_dir: Path, secret: str,
             extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGUE_")}
    env.update({
        "SEGUE_HTTP_PORT": str(free_port()),
        "SEGUE_REDIS_URL": redis_url,
        "SEGUE_REDIS_KEY_PREFIX": prefix,
        "SEGUE_REDIS_FANOUT": "true",
        "SEGUE_CLUSTER_NODE_ID": node_id,
        "SEGUE_CLUSTER_HEARTBEAT_S": "0.5",
        "SEGUE_CLUSTER_NODE_TTL_S": "2",
        "SEGUE_DATA_DIR": str(data_dir),
        "SEGUE_AUTH_SECRET": secret,
        # SEGUE_TEST_NODE_LOG_LEVEL=info (or debug) in the test run's environment: fuller node logs
        # (tmp_path/node<i>.log) when a test must be understood
        "SEGUE_LOG_LEVEL": os.environ.get("SEGUE_TEST_NODE_LOG_LEVEL", "warning"),
        "SEGUE_MEDIA_HOST_ADDRESSES": '["127.0.0.1"]',  # one machine: media on loopback
        "SEGUE_WEBHOOKS_ENABLED": "false",
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra or {})
    return env


def nginx_block() -> str:
    """The nginx configuration of docs/deployment.md ("nginx in front")."""
    text = (ROOT / "docs" / "deployment.md").read_text()
    blocks = re.findall(r"```nginx\n(.*?)```", text, re.S)
    found = [b for b in blocks if "$cookie_segue_node" in b]
    assert len(found) == 1, "docs/deployment.md must hold exactly one nginx block using $cookie_segue_node"
    return found[0]


class Nginx:
    """nginx from docs/deployment.md in front of ``nodes`` (node-1 -> nodes[0], node-2 -> nodes[1])."""

    def __init__(self, folder: Path, nodes: list[NodeProcess]) -> None:
        self.folder = folder
        self.nodes = nodes
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def config(self) -> str:
        block = nginx_block()
        assert len(self.nodes) == 2, "the documented block has two nodes"
        for i, node in enumerate(self.nodes, start=1):
            block = block.replace(f"127.0.0.1:{8080 + i}", f"127.0.0.1:{node.port}")
            block = re.sub(rf"^(\s+)node-{i}(\s)", rf"\g<1>{node.node_id}\g<2>", block, flags=re.M)
        block = block.replace("listen 443 ssl;", f"listen 127.0.0.1:{self.port};")
        f = self.folder
        user = "user root;\n" if os.geteuid() == 0 else ""
        return (f"{user}worker_processes 1;\npid {f}/nginx.pid;\nerror_log {f}/error.log warn;\n"
                f"events {{ worker_connections 4096; }}\n"
                f"http {{\n access_log off;\n client_body_temp_path {f}/body;\n proxy_temp_path {f}/proxy;\n"
                f" fastcgi_temp_path {f}/fastcgi;\n uwsgi_temp_path {f}/uwsgi;\n scgi_temp_path {f}/scgi;\n"
                f"{block}\n}}\n")

    def start(self) -> "Nginx":
        nginx = require_nginx()
        self.folder.mkdir(parents=True, exist_ok=True)
        conf = self.folder / "nginx.conf"
        conf.write_text(self.config())
        check = subprocess.run([nginx, "-t", "-p", str(self.folder), "-c", str(conf)], capture_output=True, text=True)
        assert check.returncode == 0, f"nginx rejects the documented configuration: {check.stderr}"
        self.proc = subprocess.Popen([nginx, "-p", str(self.folder), "-c", str(conf), "-g", "daemon off;"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"nginx did not listen: {(self.folder / 'error.log').read_text(errors='replace')}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def login(url: str, username: str = "demo", password: str = "demo") -> str:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/api/v1/auth/login", json={"username": username, "password": password}) as r:
            assert r.status == 200, await r.text()
            return (await r.json())["token"]


class ChatClient:
    """A Socket.IO client through nginx that behaves like the SDK after a lost connection."""

    def __init__(self, url: str, namespace: str, auth: dict[str, Any], node: str | None = None,
                 reconnect: bool = True) -> None:
        self.url, self.ns, self.auth = url, namespace, auth
        self.headers = {"Cookie": f"segue_node={node}"} if node else {}
        self.sio = socketio.AsyncClient(reconnection=reconnect, reconnection_delay=0.2, reconnection_delay_max=0.5,
                                        randomization_factor=0.1)
        self.sessions: list[dict[str, Any]] = []
        self.pushed: list[tuple[str, Any]] = []
        self.seen: dict[str, dict[str, Any]] = {}  # "<conversation>/<event id>" -> event (the SDK's de-duplication)
        self.repeats = 0  # events that arrived again (at-least-once on the wire), dropped by id
        self.last_id: dict[str, str] = {}  # conversation -> last event id seen
        self.conversations: set[str] = set()
        self.changed = asyncio.Event()
        self.disconnects = 0
        self.last_refusal: Any = None
        self.dropped = asyncio.Event()
        for name in ("event", "offer", "offer.revoked", "conversation", "agent", "error", "call.state",
                     "call.requested", "call.accepted", "call.migrated", "call.ended"):
            self.sio.on(name, self._recorder(name), namespace=namespace)
        self.sio.on("session", self._on_session, namespace=namespace)
        self.resyncs = 0
        # what each resume answered ("<time> <event> <conversation> after=<id>: <ok or error>"): a
        # test that waits in vain for events says what the client asked and got
        self.resume_log: list[str] = []
        self.sio.on("resync", self._on_resync, namespace=namespace)
        self.sio.on("disconnect", self._on_disconnect, namespace=namespace)

    def _recorder(self, name: str) -> Callable[..., Any]:
        async def record(data: Any = None) -> None:
            if name == "event" and isinstance(data, dict):
                self._ingest([data])
            self.pushed.append((name, data))
            self.changed.set()

        return record

    def _ingest(self, events: list[dict[str, Any]]) -> None:
        for e in events:
            key = f'{e["conversation_id"]}/{e["id"]}'  # an id is unique within its conversation's log
            if key in self.seen:
                self.repeats += 1
                continue
            self.seen[key] = e
            cid = e["conversation_id"]
            current = self.last_id.get(cid)
            if current is None or _id_key(e["id"]) > _id_key(current):
                self.last_id[cid] = e["id"]

    async def _on_disconnect(self, *args: Any) -> None:
        self.disconnects += 1
        self.dropped.set()

    async def _on_session(self, data: Any) -> None:
        self.sessions.append(data)
        if isinstance(data, dict) and data.get("visitor_token"):
            self.auth["visitor_token"] = data["visitor_token"]  # the same visitor after a reconnect (the SDK's way)
        self.changed.set()
        if len(self.sessions) > 1:  # a reconnect: resume every conversation from the last id seen
            asyncio.ensure_future(self.resume_all())

    async def _on_resync(self, data: Any = None) -> None:
        self.resyncs += 1  # pushes may have been missed: resume, as the SDK does
        self.resume_log.append(f"{time.time():.3f} resync {data}")
        since = data.get("since") if isinstance(data, dict) else None
        # from the last id seen or, if earlier, from when pushes may have been lost (pushes that
        # came after the gap moved the last id past the lost ones); taken now, before later pushes
        after = {cid: _earlier(self.last_id.get(cid), since) for cid in self.conversations}
        asyncio.ensure_future(self.resume_all(after))

    async def resume_all(self, after_ids: dict[str, str | None] | None = None) -> None:
        """Resume every conversation (from ``after_ids``: after a resync, asking again while the
        node answers ``unavailable``, as the SDK does; else from the last id seen)."""
        for cid in sorted(self.conversations):
            event = "conversation.resume" if self.ns == "/customer" else "conversation.open"
            after = after_ids.get(cid) if after_ids is not None else self.last_id.get(cid)
            for wait in (*RESYNC_RETRY_S, None) if after_ids is not None else (None,):
                asked = f"{time.time():.3f} {event} {cid} after={after}"
                try:
                    reply = await self.sio.call(event, {"conversation_id": cid, "after": after} if after else
                                                {"conversation_id": cid}, namespace=self.ns, timeout=10)
                except socketio.exceptions.TimeoutError:
                    reply = {"ok": False, "error": {"code": "timeout"}}
                except Exception as exc:  # noqa: BLE001 - disconnected again: the next session resumes
                    self.resume_log.append(f"{asked}: {exc!r}")
                    return
                events = reply.get("events") or []
                self.resume_log.append(f"{asked}: " + (f"ok, {len(events)} events" if reply.get("ok") else str(reply.get("error"))))
                if reply.get("ok"):
                    self._ingest(events)
                    self.changed.set()
                    break
                if wait is None or (reply.get("error") or {}).get("code") not in ("unavailable", "timeout"):
                    break
                await asyncio.sleep(wait)

    async def connect(self) -> "ChatClient":
        await self.sio.connect(self.url, namespaces=[self.ns], auth=self.auth, transports=["websocket"],
                               headers=self.headers, wait_timeout=10)
        await self.wait(lambda: self.sessions)
        return self

    async def call(self, event: str, payload: Any, timeout: float = 10) -> Any:
        return await self.sio.call(event, payload, namespace=self.ns, timeout=timeout)

    async def ok(self, event: str, payload: Any, timeout: float = 10) -> dict[str, Any]:
        reply = await self.call(event, payload, timeout)
        assert reply.get("ok"), f"{event} failed: {reply}"
        return reply

    async def send(self, cid: str, text: str, deadline_s: float = 60.0) -> dict[str, Any]:
        """Send until acknowledged (same client_id each time): the stored event."""
        client_id = uuid.uuid4().hex
        deadline = time.monotonic() + deadline_s
        while True:
            try:
                if self.sio.connected and self.sio.namespaces.get(self.ns):
                    # an ack lost with the connection is not waited for (the SDK re-sends on reconnect)
                    self.dropped.clear()
                    sending = asyncio.ensure_future(self.call("message.send", {"conversation_id": cid, "text": text,
                                                                               "client_id": client_id}, timeout=5))
                    dropped = asyncio.ensure_future(self.dropped.wait())
                    await asyncio.wait([sending, dropped], return_when=asyncio.FIRST_COMPLETED)
                    dropped.cancel()
                    if not sending.done():
                        sending.cancel()
                        continue
                    reply = sending.result()
                    if reply.get("ok"):
                        self._ingest([reply["event"]])
                        return reply["event"]
                    self.last_refusal = reply.get("error")
            except (socketio.exceptions.TimeoutError, socketio.exceptions.BadNamespaceError,
                    socketio.exceptions.DisconnectedError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"message not acknowledged within {deadline_s} s (connected: {self.sio.connected}, "
                                     f"sessions: {len(self.sessions)}, last refusal: {self.last_refusal})")
            await asyncio.sleep(0.05)

    def got(self, name: str) -> list[Any]:
        return [d for n, d in self.pushed if n == name]

    async def wait(self, check: Callable[[], Any], timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError("condition not met in time")
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), timeout=0.1)
            except asyncio.TimeoutError:
                pass

    async def close(self) -> None:
        try:
            await self.sio.disconnect()
        except Exception:  # noqa: BLE001
            pass


def _id_key(event_id: str) -> tuple[int, int]:
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq or 0)


def _earlier(last: str | None, since: str | None) -> str | None:
    """Where to resume from: the last id seen, or ``since`` when that is earlier (no last id: the
    whole log)."""
    if last is None or since is None:
        return last
    return since if _id_key(since) < _id_key(last) else last


@dataclass
class Cluster:
    nodes: list[NodeProcess]
    nginx: Nginx
    redis: aioredis.Redis
    prefix: str
    store: Store
    directory: Directory
    clients: list[ChatClient]

    @property
    def url(self) -> str:
        return self.nginx.url

    def client(self, namespace: str, auth: dict[str, Any], node: str | None = None, reconnect: bool = True) -> ChatClient:
        c = ChatClient(self.url, namespace, auth, node, reconnect)
        self.clients.append(c)
        return c

    async def agent(self, username: str, node: str, reconnect: bool = True, capacity: int = 3) -> ChatClient:
        await self.directory.create(username, "pw-secret-1", username.title(), "agent", [], {"chat": capacity})
        token = await login(self.url, username, "pw-secret-1")
        a = await self.client("/agent", {"v": 1, "token": token}, node, reconnect).connect()
        await a.ok("presence.set", {"status": "available"})
        return a


@contextlib.asynccontextmanager
async def running_cluster(redis_url: str, tmp_path: Path, extra: dict[str, str] | None = None) -> AsyncIterator[Cluster]:
    prefix = f"test-{uuid.uuid4().hex[:10]}:"
    secret = secrets.token_urlsafe(24)
    nodes = []
    for i in (1, 2):
        env = node_env(redis_url, prefix, f"n{i}-{prefix[5:11]}", tmp_path / f"data{i}", secret,
                       {"SEGUE_CLUSTER_REASSIGN_AFTER_S": "3", "SEGUE_DEMO_ENABLED": "false", **(extra or {})})
        nodes.append(NodeProcess(env["SEGUE_CLUSTER_NODE_ID"], env, tmp_path / f"node{i}.log").start())
    nginx = None
    redis = aioredis.Redis.from_url(redis_url, decode_responses=True)
    cluster = None
    try:
        for node in nodes:
            await node.ready()
        nginx = Nginx(tmp_path / "nginx", nodes).start()
        cluster = Cluster(nodes, nginx, redis, prefix, Store(redis, prefix), Directory(redis, prefix), [])
        yield cluster
    finally:
        if cluster is not None:
            for c in cluster.clients:
                await c.close()
        if nginx is not None:
            nginx.stop()
        for node in nodes:
            node.stop()
        await redis.aclose()


async def cut_pubsub(redis: aioredis.Redis, nodes: list[NodeProcess]) -> int:
    """Close, on the Redis side, the pub/sub connections of ``nodes`` (their fan-out link, bus,
    watches), Redis itself staying up: what a node sees when its subscriber is cut off (output
    buffer limit, a network blip). Returns how many were closed."""
    import psutil

    ports: set[int] = set()
    for node in nodes:
        assert node.proc is not None
        ports |= {c.laddr.port for c in psutil.Process(node.proc.pid).net_connections("tcp") if c.raddr}
    cut = 0
    for client in await redis.client_list(_type="pubsub"):
        if int(str(client["addr"]).rpartition(":")[2]) in ports:
            cut += await redis.client_kill_filter(_id=client["id"])
    return cut


async def start_conversation(customer: ChatClient, agent: ChatClient, text: str = "hello") -> str:
    started = await customer.ok("conversation.start", {"text": text, "name": "Ada"})
    cid = started["conversation"]["id"]
    customer.conversations.add(cid)
    customer._ingest(started.get("events") or [])
    await agent.wait(lambda: [o for o in agent.got("offer") if o["conversation"]["id"] == cid])
    accepted = await agent.ok("offer.accept", {"conversation_id": cid})
    agent.conversations.add(cid)
    agent._ingest(accepted["events"])
    return cid


def key(event: dict[str, Any]) -> str:
    """How :attr:`ChatClient.seen` names an event."""
    return f'{event["conversation_id"]}/{event["id"]}'
