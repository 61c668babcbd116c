"""Security headers on every response (docs/security.md, "Headers").

Why one place: the pages, the SDK files and the API are served by several routes (pages, static
folders, REST, Socket.IO's polling transport); a response-prepare hook sees them all.

- every response: ``X-Content-Type-Options: nosniff`` (a JSON answer or a user's text is never run
  as a script or page) and ``Referrer-Policy: no-referrer`` (a URL with a token in it never leaves
  in a Referer header);
- every HTML page: a Content-Security-Policy without inline script or inline style: scripts,
  styles, fonts and images from this node only (``data:`` images for the inline favicon);
  ``connect-src 'self'`` for the agent surface, any http(s)/ws(s) server for the customer
  surface's demo pages (they may talk to another node);
- the agent console, the wallboard, the start page and the API: ``frame-ancestors 'self'`` (and
  ``X-Frame-Options: SAMEORIGIN`` for older browsers), so no other site can frame them
  (clickjacking). The customer surface (``/sdk/``, ``/widget/``) stays embeddable anywhere.
"""

from __future__ import annotations

from aiohttp import web

# paths whose pages and answers only this node's own pages may frame
FRAMED_BY_SELF = ("/agent", "/supervisor", "/api/")
CUSTOMER_SURFACE = ("/sdk/", "/widget/")

_BASE = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
         "media-src 'self' blob: mediastream:; font-src 'self'; object-src 'none'; base-uri 'self'; "
         "form-action 'self'")
AGENT_CSP = f"{_BASE}; connect-src 'self'; frame-ancestors 'self'"
CUSTOMER_CSP = f"{_BASE}; connect-src 'self' http: https: ws: wss:"


def _framed_by_self(path: str) -> bool:
    return path == "/" or path.startswith(FRAMED_BY_SELF)


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    path = request.path
    if _framed_by_self(path):
        headers.setdefault("X-Frame-Options", "SAMEORIGIN")
    if (response.content_type or "").startswith("text/html") or path.endswith((".html", "/")):
        if path.startswith(CUSTOMER_SURFACE):
            headers.setdefault("Content-Security-Policy", CUSTOMER_CSP)
        else:
            headers.setdefault("Content-Security-Policy", AGENT_CSP)


def setup_security_headers(app: web.Application) -> None:
    app.on_response_prepare.append(security_headers)
