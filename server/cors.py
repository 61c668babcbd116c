"""Cross-origin access to a node's HTTP routes and Socket.IO handshake (``cors.*``, docs/deployment.md).

Why here: which origin may use which surface is one rule (``signaling.OriginPolicy``); this module
applies it to everything HTTP in one place, after every component has added its routes:

- static files and REST routes get CORS headers and preflight answers from ``aiohttp-cors``
  (customer paths: ``cors.customer_origins``; agent paths: ``cors.agent_origins``);
- a request whose ``Origin`` a surface refuses gets a 403 ``origin_not_allowed`` JSON error naming
  the setting to change, instead of a response the browser silently hides;
- the Engine.IO handshake lets through every origin that either list allows (the namespaces then
  decide per namespace, ``signaling.namespaces``) and refuses the rest.

Credentials travel in the ``Authorization`` header, never in cookies, so no response allows
credentials and ``"*"`` can stay ``"*"``.
"""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable, Mapping

import aiohttp_cors
from aiohttp import hdrs, web

from signaling import OriginPolicy, Surface, environ_own_origins, own_origins

log = logging.getLogger(__name__)

# Path prefixes of each surface. Versioned SDK paths (/sdk/<version>/, /sdk/v1/) are under /sdk/.
# /api/v1/public/ (the knowledge base customers search) and /kb/ (its article pages): docs/knowledge.md
CUSTOMER_PREFIXES = ("/sdk/", "/widget/", "/vendor/", "/api/v1/public/", "/kb/")
AGENT_PREFIXES = ("/api/", "/agent/", "/supervisor/")
# Request headers a cross-origin page may send (credentials go in Authorization, never cookies).
ALLOWED_HEADERS = ("Authorization", "Content-Type")
# Response headers a cross-origin script may read besides the safelisted ones (a 429's wait).
EXPOSED_HEADERS = ("Retry-After",)
# How long a browser may reuse a preflight answer (Chromium caps it at 7200 s).
PREFLIGHT_MAX_AGE_S = 600

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_POLICY: web.AppKey[OriginPolicy] = web.AppKey("segue_origin_policy", OriginPolicy)


def origin_policy(config: Any) -> OriginPolicy:
    """The node's policy from its settings (``cors.*``, ``http.public_url``)."""
    return OriginPolicy.from_config(config)


def surface_of(path: str) -> Surface | None:
    """The surface a path belongs to; ``None`` for paths that are neither (``/``, ``/healthz``)."""
    probe = path if path.endswith("/") else path + "/"
    if probe.startswith(CUSTOMER_PREFIXES):
        return Surface.CUSTOMER
    if probe.startswith(AGENT_PREFIXES):
        return Surface.AGENT
    return None


def request_own_origins(request: web.Request, public_url: str) -> set[str]:
    """This node's own origins as seen by ``request`` (same-origin pages are always allowed)."""
    h = request.headers
    return own_origins(request.scheme, h.get(hdrs.HOST), h.get("X-Forwarded-Proto"), h.get("X-Forwarded-Host"),
                       public_url)


def engineio_origin_check(policy: OriginPolicy) -> Callable[[str | None, Mapping[str, Any]], bool]:
    """python-engineio's ``cors_allowed_origins`` callable: an origin passes the handshake when
    either surface allows it; which namespace it may join is decided at the namespace's connect."""
    logged: set[str] = set()

    def allowed(origin: str | None, environ: Mapping[str, Any]) -> bool:
        if not origin:
            return True
        if policy.allows_somewhere(origin, environ_own_origins(environ, policy.public_url)):
            return True
        if origin not in logged and len(logged) < 256:  # once per origin: a refused site may retry often
            logged.add(origin)
            log.warning("refused a Socket.IO handshake from origin %s: it is in neither "
                        "cors.customer_origins nor cors.agent_origins", origin)
        return False

    return allowed


@web.middleware
async def refuse_foreign_origins(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A request from a page whose origin may not use this path's surface: 403 ``origin_not_allowed``."""
    origin = request.headers.get(hdrs.ORIGIN)
    surface = surface_of(request.path) if origin else None
    if surface is None:
        return await handler(request)
    policy = request.app[_POLICY]
    refused = policy.check(surface, origin, request_own_origins(request, policy.public_url), request.path)
    if refused is None:
        return await handler(request)
    log.info("refused %s %s: %s", request.method, request.path, refused.message)
    return web.json_response({"error": refused.as_dict()}, status=403)


def _methods(resource: web.AbstractResource) -> list[str]:
    found = {route.method for route in resource if route.method not in (hdrs.METH_OPTIONS, hdrs.METH_ANY)}
    if hdrs.METH_GET in found:
        found.add(hdrs.METH_HEAD)
    return sorted(found)


def _origins_config(policy: OriginPolicy, surface: Surface, methods: list[str]) -> dict[str, Any]:
    options = aiohttp_cors.ResourceOptions(
        allow_credentials=False,
        allow_headers=ALLOWED_HEADERS,
        expose_headers=EXPOSED_HEADERS,
        allow_methods=methods,
        max_age=PREFLIGHT_MAX_AGE_S,
    )
    origins = ["*"] if policy.allows_any(surface) else sorted(policy.listed(surface))
    return {origin: options for origin in origins}


def setup_cors(app: web.Application, policy: OriginPolicy) -> None:
    """Apply ``policy`` to every route registered so far (call it after all components' setups)."""
    app[_POLICY] = policy
    cors = aiohttp_cors.setup(app)
    methods_of: dict[web.AbstractResource, str] = {}
    for resource in list(app.router.resources()):
        path = resource.canonical
        surface = surface_of(path)
        if surface is None:
            continue
        methods = _methods(resource)
        try:
            cors.add(resource, _origins_config(policy, surface, methods))
        except ValueError as exc:  # a route of its own for OPTIONS or for every method
            log.warning("CORS not applied to %s: %s", path, exc)
            continue
        methods_of[resource] = ", ".join(methods)

    async def complete(request: web.Request, response: web.StreamResponse) -> None:
        # aiohttp-cors echoes the allowed origin, so caches must key on it; and its preflight
        # answer names only the method asked about, where the resource's methods let the browser
        # reuse one preflight for all of them.
        if hdrs.ACCESS_CONTROL_ALLOW_ORIGIN not in response.headers:
            return
        resource = request.match_info.route.resource
        if resource not in methods_of:
            return
        vary = response.headers.get(hdrs.VARY, "")
        if "origin" not in vary.lower():
            response.headers[hdrs.VARY] = f"{vary}, Origin" if vary else "Origin"
        if request.method == hdrs.METH_OPTIONS and hdrs.ACCESS_CONTROL_ALLOW_METHODS in response.headers:
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_METHODS] = methods_of[resource]

    app.on_response_prepare.append(complete)
    app.middlewares.append(refuse_foreign_origins)
