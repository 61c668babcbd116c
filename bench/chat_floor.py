"""The floor under Segue for ``bench.chat``: a bare python-socketio server that acks and forwards.

    python -m bench.chat_floor --port N

It speaks just enough of Segue's protocol for ``bench.chat``'s clients (docs/protocol.md):
``/agent`` and ``/customer`` namespaces; ``presence.set``; ``conversation.start`` pairs the
customer with the next available agent (an ``offer`` push), ``offer.accept`` assigns it (a
``conversation.assigned`` event to the customer); ``message.send`` is acked with an event id and
pushed as ``event`` to the other side. No Redis, no storage, no validation, no limits: what any
Socket.IO chat server must at least do per message, on the same stack (aiohttp, python-socketio,
the same JSON and ``async_handlers=False``). ``bench.chat --floor`` runs it beside Segue and prints
Segue's server CPU per message as a ratio to this floor's.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import signal
import sys
import time
from typing import Any

import socketio
from aiohttp import web

try:
    import orjson

    class _Json:
        @staticmethod
        def dumps(obj: Any, **_: Any) -> str:
            return orjson.dumps(obj).decode()

        loads = staticmethod(orjson.loads)

    JSON: Any = _Json
except ImportError:  # pragma: no cover
    import json as JSON  # noqa: N812


def build() -> web.Application:
    sio = socketio.AsyncServer(async_mode="aiohttp", cors_allowed_origins="*", async_handlers=False, json=JSON)
    app = web.Application()
    sio.attach(app)
    ids = itertools.count(1)
    available: list[str] = []  # agent sids
    ends: dict[str, dict[str, str]] = {}  # conversation id -> {"customer": sid, "agent": sid}
    waiting: dict[str, str] = {}  # conversation id -> customer sid (offered, not accepted)

    def event_id() -> str:
        return f"{int(time.time() * 1000)}-{next(ids)}"

    @sio.on("connect", namespace="/agent")
    async def agent_connect(sid: str, environ: Any, auth: Any = None) -> bool:
        return True

    @sio.on("connect", namespace="/customer")
    async def customer_connect(sid: str, environ: Any, auth: Any = None) -> bool:
        return True

    @sio.on("presence.set", namespace="/agent")
    async def presence(sid: str, data: Any) -> dict[str, Any]:
        available.append(sid)
        return {"ok": True}

    @sio.on("conversation.start", namespace="/customer")
    async def start(sid: str, data: Any) -> dict[str, Any]:
        cid = f"c_{next(ids)}"
        waiting[cid] = sid
        agent = available.pop(0)
        await sio.emit("offer", {"conversation": {"id": cid}}, to=agent, namespace="/agent")
        return {"ok": True, "conversation": {"id": cid}, "events": []}

    @sio.on("offer.accept", namespace="/agent")
    async def accept(sid: str, data: Any) -> dict[str, Any]:
        cid = data["conversation_id"]
        customer = waiting.pop(cid)
        ends[cid] = {"customer": customer, "agent": sid}
        await sio.emit("event", {"id": event_id(), "conversation_id": cid, "type": "conversation.assigned",
                                 "author": {"kind": "system"}, "data": {}}, to=customer, namespace="/customer")
        return {"ok": True}

    async def send(sid: str, data: Any, kind: str, other: str, namespace: str) -> dict[str, Any]:
        cid = data["conversation_id"]
        event = {"id": event_id(), "conversation_id": cid, "type": "message", "author": {"kind": kind},
                 "visibility": "all", "data": {"text": data["text"], "client_id": data.get("client_id")}}
        await sio.emit("event", event, to=ends[cid][other], namespace=namespace)
        return {"ok": True, "event": event}

    @sio.on("message.send", namespace="/customer")
    async def customer_send(sid: str, data: Any) -> dict[str, Any]:
        return await send(sid, data, "customer", "agent", "/agent")

    @sio.on("message.send", namespace="/agent")
    async def agent_send(sid: str, data: Any) -> dict[str, Any]:
        return await send(sid, data, "agent", "customer", "/customer")

    return app


async def serve(port: int) -> None:
    runner = web.AppRunner(build(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print(f"floor server is running at http://127.0.0.1:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chat_floor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
