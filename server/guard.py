"""HTTP-level protection of a node: request timeouts and a cap on connections per client address.

Why: aiohttp waits as long as a client likes for the rest of a request (1,000 half-open requests
were all still held after 25 s, a file descriptor each), and any one address could open as many
connections as the node has descriptors. Here:

- headers: aiohttp's ``keepalive_timeout`` (set from ``limits.http_header_timeout_s`` by
  :func:`handler_args`) also runs from the moment a connection is made, and closes a connection
  whose request has not fully arrived by then — a half-open request — as well as an idle
  keep-alive connection;
- bodies: :func:`guard` reads a request's body within ``limits.http_body_timeout_s`` (408 past it);
  Socket.IO's long-polling POSTs, which python-engineio reads itself, are given the same time;
- connections: at most ``limits.max_connections_per_ip`` requests (a WebSocket is one long
  request) in progress per client address; more get 429 ``rate_limited`` with ``Retry-After``.

The client address follows ``auth.trusted_proxies`` like the rest of Segue
(:func:`signaling.limits.client_address`).
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

from aiohttp import web

from signaling import client_address

from .config import Config

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: longest request line and header line accepted (aiohttp's defaults are 8,190 bytes each)
MAX_LINE_SIZE = 8190
MAX_FIELD_SIZE = 8190


def handler_args(config: Config) -> dict[str, Any]:
    """Arguments for aiohttp's request handler (``web.Application(handler_args=...)``)."""
    return {
        "keepalive_timeout": config.limits.http_header_timeout_s,
        "max_line_size": MAX_LINE_SIZE,
        "max_field_size": MAX_FIELD_SIZE,
    }


def _error(status: int, code: str, message: str, retry_after_s: int | None = None) -> web.Response:
    body: dict[str, Any] = {"code": code, "message": message}
    headers = {"Connection": "close"}
    if retry_after_s is not None:
        body["retry_after_s"] = retry_after_s
        headers["Retry-After"] = str(retry_after_s)
    return web.json_response({"error": body}, status=status, headers=headers)


def make_guard(config: Config) -> Any:
    """The middleware (outermost: a refusal costs nothing else)."""
    limit = config.limits.max_connections_per_ip
    body_timeout = config.limits.http_body_timeout_s
    trusted = tuple(config.auth.trusted_proxies)
    in_progress: dict[str, int] = {}

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        address = client_address(request.remote, request.headers.get("X-Forwarded-For"), trusted)
        count = in_progress.get(address, 0)
        if limit and count >= limit:
            return _error(429, "rate_limited", f"too many connections from your address (at most {limit} at a time): "
                                               "close some, then try again", retry_after_s=5)
        in_progress[address] = count + 1
        try:
            if body_timeout and request.body_exists:
                try:
                    async with asyncio.timeout(body_timeout):
                        if request.path.startswith("/socket.io/"):
                            return await handler(request)  # python-engineio reads the body itself
                        await request.read()  # kept by aiohttp: the handler reads it again for free
                except TimeoutError:
                    return _error(408, "timeout", f"the request body did not arrive within {body_timeout:g} s")
            return await handler(request)
        finally:
            left = in_progress.get(address, 1) - 1
            if left > 0:
                in_progress[address] = left
            else:
                in_progress.pop(address, None)

    guard.in_progress = in_progress  # type: ignore[attr-defined]  (for tests and metrics)
    return guard
