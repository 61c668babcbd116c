"""A Socket.IO client that sends packet text as given: for what a well-behaved client cannot send.

python-socketio's client encodes payloads with ``json`` (which cannot even encode 2,000 levels of
nesting) and refuses reserved event names; an attacker writes the packet text by hand. ``RawSocket``
speaks Engine.IO v4 over a WebSocket (``/socket.io/?EIO=4&transport=websocket``), answers the
server's pings, and keeps every packet it receives.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp


class RawSocket:
    def __init__(self, url: str, namespace: str = "/customer") -> None:
        self.url = url.rstrip("/")
        self.ns = namespace
        self.session: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.received: list[str] = []
        self._acks: dict[int, asyncio.Future[Any]] = {}
        self._next_id = 100
        self._reader: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()
        self.refusal: Any = None

    async def open(self, auth: Any = None, auth_text: str | None = None,
                   address: str | None = None) -> "RawSocket":
        """Connect and join the namespace (``auth_text``: the CONNECT payload verbatim; ``address``:
        the client address to claim through X-Forwarded-For, which the node believes from loopback,
        a trusted proxy by default)."""
        self.session = aiohttp.ClientSession()
        ws_url = self.url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
        headers = {"X-Forwarded-For": address} if address else None
        self.ws = await self.session.ws_connect(ws_url, max_msg_size=0, headers=headers)
        first = await self.ws.receive_str(timeout=10)
        assert first.startswith("0"), first
        self._connected: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read())
        text = auth_text if auth_text is not None else json.dumps({"v": 1} if auth is None else auth)
        await self.ws.send_str(f"40{self.ns},{text}")
        await asyncio.wait_for(self._connected, 15)
        return self

    @property
    def connected(self) -> bool:
        return self._connected.done() and self.refusal is None and not self.closed.is_set()

    async def _read(self) -> None:
        assert self.ws is not None
        prefix = f"{self.ns},"
        try:
            async for msg in self.ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                text = msg.data
                self.received.append(text)
                if text == "2":
                    await self.ws.send_str("3")
                    continue
                if not text.startswith("4"):
                    continue
                kind, body = text[1:2], text[2:]
                if body.startswith(prefix):
                    body = body[len(prefix):]
                if kind == "0" and not self._connected.done():
                    self._connected.set_result(json.loads(body))
                elif kind == "4" and not self._connected.done():
                    self.refusal = json.loads(body)
                    self._connected.set_result(None)
                elif kind == "3":
                    digits = len(body) - len(body.lstrip("0123456789"))
                    fut = self._acks.pop(int(body[:digits]), None)
                    if fut is not None and not fut.done():
                        fut.set_result(json.loads(body[digits:]))
        finally:
            self.closed.set()
            if not self._connected.done():
                self._connected.set_result(None)
            for fut in self._acks.values():
                if not fut.done():
                    fut.set_exception(ConnectionError("socket closed"))

    async def call_text(self, event: str, payload_text: str, timeout: float = 15.0) -> tuple[Any, float]:
        """Send ``["event", <payload_text>]`` with an ack; return (ack payload, seconds it took)."""
        assert self.ws is not None
        self._next_id += 1
        ack_id = self._next_id
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._acks[ack_id] = fut
        start = time.perf_counter()
        await self.ws.send_str(f"42{self.ns},{ack_id}[{json.dumps(event)},{payload_text}]")
        reply = await asyncio.wait_for(fut, timeout)
        return (reply[0] if isinstance(reply, list) and reply else reply), time.perf_counter() - start

    async def call(self, event: str, payload: Any, timeout: float = 15.0) -> tuple[Any, float]:
        return await self.call_text(event, json.dumps(payload), timeout)

    async def burst(self, event: str, payloads: list[Any], timeout: float = 30.0) -> list[Any]:
        """Send every payload at once (no waiting for acks in between), then collect the acks in order."""
        assert self.ws is not None
        futures = []
        for payload in payloads:
            self._next_id += 1
            fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._acks[self._next_id] = fut
            futures.append(fut)
            await self.ws.send_str(f"42{self.ns},{self._next_id}[{json.dumps(event)},{json.dumps(payload)}]")
        replies = await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), timeout)
        return [r[0] if isinstance(r, list) and r else r for r in replies]

    async def send_text(self, text: str) -> None:
        assert self.ws is not None
        await self.ws.send_str(text)

    async def close(self) -> None:
        if self.ws is not None and not self.ws.closed:
            await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
        if self.session is not None:
            await self.session.close()


def nested(depth: int, inner: str = "1") -> str:
    """JSON text of ``depth`` nested lists around ``inner``."""
    return "[" * depth + inner + "]" * depth
