"""Real Socket.IO clients for the chat, transfer, auth and bad-input tests.

``Peer`` wraps ``socketio.AsyncClient`` on one namespace: ``await peer.ok(event, payload)``
sends with an ack and asserts ``ok``; every push is recorded and ``await peer.next(name, pred)``
waits for one (de-duplicated by event id where it applies, as the SDK does).
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

import aiohttp
import socketio

from signaling import SIGNALING

PUSHES = ("session", "event", "conversation", "offer", "offer.revoked", "queue.position", "queues",
          "typing", "read", "error", "agent", "session.ended")


class Refused(Exception):
    pass


class Peer:
    def __init__(self, url: str, namespace: str) -> None:
        self.url = url.rstrip("/")
        self.ns = namespace
        self.sio = socketio.AsyncClient(reconnection=False)
        self.pushed: list[tuple[str, Any]] = []
        self._changed = asyncio.Event()
        self.refusal: Any = None
        for name in PUSHES:
            self.sio.on(name, self._recorder(name), namespace=namespace)
        self.sio.on("connect_error", self._refused, namespace=namespace)

    def _recorder(self, name: str) -> Callable[..., Any]:
        async def record(*args: Any) -> None:
            self.pushed.append((name, args[0] if args else None))
            self._changed.set()

        return record

    async def _refused(self, data: Any) -> None:
        # the packet is {message, data: {code, message}}; the SDK reads err.data
        self.refusal = data.get("data", data) if isinstance(data, dict) else data

    async def connect(self, auth: dict[str, Any]) -> "Peer":
        try:
            await self.sio.connect(self.url, namespaces=[self.ns], auth=auth, transports=["websocket"],
                                   wait_timeout=10)
        except socketio.exceptions.ConnectionError as exc:
            raise Refused(self.refusal or str(exc)) from None
        await self.next("session")
        return self

    @property
    def session(self) -> Any:
        return self.got("session")[-1]

    async def call(self, event: str, payload: Any = None, *args: Any) -> Any:
        data = (payload, *args) if args else payload
        return await self.sio.call(event, data, namespace=self.ns, timeout=15)

    async def ok(self, event: str, payload: Any = None) -> dict[str, Any]:
        reply = await self.call(event, payload if payload is not None else {})
        assert reply["ok"], f"{event} failed: {reply}"
        return reply

    async def fails(self, event: str, payload: Any, code: str) -> dict[str, Any]:
        reply = await self.call(event, payload)
        assert reply["ok"] is False, f"{event} should have failed with {code}: {reply}"
        assert reply["error"]["code"] == code, reply
        assert reply["error"]["message"], reply
        return reply["error"]

    async def emit(self, event: str, payload: Any = None) -> None:
        await self.sio.emit(event, payload, namespace=self.ns)

    def got(self, name: str, pred: Callable[[Any], bool] | None = None) -> list[Any]:
        return [d for n, d in self.pushed if n == name and (pred is None or pred(d))]

    def events(self, cid: str | None = None) -> list[dict[str, Any]]:
        """Pushed conversation events, de-duplicated by id, in id order."""
        seen: dict[str, dict[str, Any]] = {}
        for d in self.got("event"):
            if cid is None or d["conversation_id"] == cid:
                seen.setdefault(d["id"], d)
        return sorted(seen.values(), key=lambda e: tuple(int(x) for x in e["id"].split("-")))

    async def next(self, name: str, pred: Callable[[Any], bool] | None = None, timeout: float = 15.0,
                   after: int = 0) -> Any:
        """The first push ``name`` matching ``pred`` (waiting for it if needed)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for i, (n, d) in enumerate(self.pushed):
                if i >= after and n == name and (pred is None or pred(d)):
                    return d
            left = deadline - loop.time()
            if left <= 0:
                raise AssertionError(f"no {name!r} push matching on {self.ns}; got {[n for n, _ in self.pushed]}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def close(self) -> None:
        if self.sio.connected:
            await self.sio.disconnect()


async def http(method: str, url: str, token: str | None = None, json_body: Any = None,
               data: bytes | str | None = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    h = dict(headers or {})
    if token:
        h["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession() as session:
        async with session.request(method, url, json=json_body, data=data, headers=h) as resp:
            text = await resp.text()
            try:
                import json

                body = json.loads(text) if text else None
            except ValueError:
                body = text
            return resp.status, body


class World:
    """A node plus helpers to make agents, log in and connect clients; closes them all at the end."""

    def __init__(self, segue: Any) -> None:
        self.segue = segue
        self.url = segue.url.rstrip("/")
        self.service = segue.app[SIGNALING]
        self.peers: list[Peer] = []

    async def add_agent(self, username: str, role: str = "agent", skills: list[str] | None = None,
                        capacity: dict[str, int] | None = None, name: str | None = None,
                        password: str = "pw-" + "secret") -> str:
        await self.service.directory.create(username, password, name or username.title(), role, skills or [],
                                            capacity or {"chat": 3})
        return await self.login(username, password)

    async def login(self, username: str, password: str = "pw-secret") -> str:
        status, body = await http("POST", f"{self.url}/api/v1/auth/login",
                                  json_body={"username": username, "password": password})
        assert status == 200, body
        return body["token"]

    async def customer(self, **auth: Any) -> Peer:
        peer = Peer(self.url, "/customer")
        self.peers.append(peer)
        return await peer.connect({"v": 1, **auth})

    async def agent(self, token: str, available: bool = True) -> Peer:
        peer = Peer(self.url, "/agent")
        self.peers.append(peer)
        await peer.connect({"v": 1, "token": token})
        if available:
            await peer.ok("presence.set", {"status": "available"})
        return peer

    async def close(self) -> None:
        for peer in self.peers:
            await peer.close()


async def assigned_conversation(segue: Any, cid: str, customer: str = "v_1", agent: str = "a_1") -> Any:
    """Store a conversation already assigned to ``agent`` (as routing would leave it), with its
    creation event; returns the ``Store``. For call tests that bind sockets to these ids."""
    from signaling.store import Store, encode_event

    store = Store(segue.node.redis, segue.config.redis.key_prefix)
    await store.mutate(cid, {
        "create": {"id": cid, "state": "assigned", "customer": customer, "agent": agent, "queue": "general"},
        "add": [agent],
        "events": [encode_event("conversation.created", {"kind": "system", "id": "system"}, "all", {"channel": "chat"})],
    })
    return store


async def metric_counters(url: str, family_name: str, label: str) -> dict[str, float]:
    """A node's counters ``family_name`` from its /metrics, by the value of ``label``."""
    from prometheus_client.parser import text_string_to_metric_families

    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/metrics") as resp:
            text = await resp.text()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == family_name:
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    out[sample.labels[label]] = sample.value
    return out
