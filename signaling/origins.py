"""Which web origins may use which surface of a node (``cors.*`` settings, docs/deployment.md).

A node has two browser surfaces. The customer surface (SDK and widget files, the ``/customer``
namespace) is embedded in other sites' pages, so by default any origin may use it. The agent and
supervisor surface (``/agent``, the REST API, the console and the wallboard) belongs to the
node's own origin plus an explicit list. The same rule must hold for static files, REST and the
Socket.IO handshake, so it lives here once; ``server.cors`` applies it to HTTP and the namespaces
apply it to Socket.IO connects.

Requests without an ``Origin`` header do not come from a cross-origin page (browsers send it on
every cross-origin request that could read the answer), so they are not refused here: servers,
command-line tools and same-origin navigations pass, and authentication decides.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Iterable, Mapping


class Surface(enum.Enum):
    """Who a path or namespace is for; each has its own list of allowed origins."""

    CUSTOMER = "customer"
    AGENT = "agent"

    @property
    def setting(self) -> str:
        return f"cors.{self.value}_origins"


def _origin_of(url: str) -> str:
    """``scheme://host[:port]`` of a URL, lower-case (how browsers send ``Origin``)."""
    scheme, sep, rest = url.strip().partition("://")
    if not sep:
        return ""
    host = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    scheme, host = scheme.lower(), host.lower()
    default_port = {"http": ":80", "https": ":443"}.get(scheme)
    if default_port and host.endswith(default_port):
        host = host[: -len(default_port)]
    return f"{scheme}://{host}"


def own_origins(scheme: str, host: str | None, forwarded_proto: str | None = None,
                forwarded_host: str | None = None, public_url: str = "") -> set[str]:
    """The origins a request to this node counts as same-origin for.

    ``http.public_url`` when set; else the ``Host`` header with the request's scheme, and the
    ``X-Forwarded-Proto``/``X-Forwarded-Host`` a reverse proxy sets (first value of each), the
    same rule python-engineio applies to its handshake. A plain-HTTP request that names no
    forwarded scheme may come through a TLS-terminating proxy, so ``https://`` + the same
    ``Host`` counts too (the host and port are what identify the site).
    """
    found: set[str] = set()
    if public_url:
        found.add(_origin_of(public_url))
    if host:
        found.add(_origin_of(f"{scheme}://{host}"))
        if scheme.lower() == "http" and not forwarded_proto:
            found.add(_origin_of(f"https://{host}"))
        if forwarded_proto or forwarded_host:
            proto = (forwarded_proto or scheme).split(",")[0].strip()
            fhost = (forwarded_host or host).split(",")[0].strip()
            found.add(_origin_of(f"{proto}://{fhost}"))
    found.discard("")
    return found


def environ_own_origins(environ: Mapping[str, Any], public_url: str = "") -> set[str]:
    """:func:`own_origins` of a Socket.IO handshake (python-engineio's WSGI-style environ)."""
    return own_origins(str(environ.get("wsgi.url_scheme") or "http"), environ.get("HTTP_HOST"),
                       environ.get("HTTP_X_FORWARDED_PROTO"), environ.get("HTTP_X_FORWARDED_HOST"), public_url)


@dataclass(frozen=True)
class OriginRefused:
    """Why an origin may not use a surface: ``code`` and a message that says which setting to change."""

    origin: str
    surface: Surface
    where: str  # the path or namespace asked for

    code = "origin_not_allowed"

    @property
    def message(self) -> str:
        return f"origin {self.origin} is not allowed on {self.where}: add it to {self.surface.setting}"

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class OriginPolicy:
    """The ``cors`` settings as a decision: may a page on ``origin`` use ``surface``?

    Built once per node from the settings tree (``config.cors``, ``config.http.public_url``).
    """

    def __init__(self, customer_origins: Iterable[str], agent_origins: Iterable[str], public_url: str = "") -> None:
        customer = [o.strip() for o in customer_origins]
        self.customer_any = "*" in customer
        self.customer = frozenset(o for o in customer if o != "*")
        self.agent = frozenset(o.strip() for o in agent_origins if o.strip() != "*")
        self.public_url = public_url

    @classmethod
    def from_config(cls, config: Any) -> "OriginPolicy":
        return cls(config.cors.customer_origins, config.cors.agent_origins, config.http.public_url)

    def listed(self, surface: Surface) -> frozenset[str]:
        """The configured origins of ``surface`` (without ``*``)."""
        return self.customer if surface is Surface.CUSTOMER else self.agent

    def allows_any(self, surface: Surface) -> bool:
        return surface is Surface.CUSTOMER and self.customer_any

    def allows(self, surface: Surface, origin: str | None, own: set[str]) -> bool:
        """Whether a page on ``origin`` may use ``surface`` (``own``: this node's origins for the request)."""
        if not origin:
            return True
        if origin in own or self.allows_any(surface):
            return True
        return origin in self.listed(surface)

    def allows_somewhere(self, origin: str | None, own: set[str]) -> bool:
        """Whether ``origin`` may use at least one surface (the Socket.IO handshake, before a namespace)."""
        return any(self.allows(s, origin, own) for s in Surface)

    def check(self, surface: Surface, origin: str | None, own: set[str], where: str) -> OriginRefused | None:
        """``None`` when allowed, else the refusal to send back."""
        if self.allows(surface, origin, own):
            return None
        return OriginRefused(str(origin), surface, where)
