"""Where the server may send HTTP requests of its own (webhook deliveries): public addresses only,
unless the admin allows private ones (``webhooks.allow_private_urls``).

Why: a webhook URL is chosen by whoever holds ``webhooks:manage``. Pointed at ``127.0.0.1``, a
``10.x`` host or ``169.254.169.254`` (a cloud's metadata service), the node would send requests
for them inside its own network (server-side request forgery). So the address is checked when an
endpoint is created or changed (``invalid`` naming ``url``) and again when a delivery connects:
DNS may answer differently later, and the connection's resolver (``PublicOnlyResolver``) refuses
a non-public answer at the moment it is used, so nothing can slip in between check and connect.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

HINT = ("webhooks go to public addresses only; to deliver inside your own network, an admin sets "
        "webhooks.allow_private_urls: true")
RESOLVE_TIMEOUT_S = 5.0

# checked in this order: loopback and link-local addresses are private too, the first name wins
_KINDS = (("is_unspecified", "an unspecified"), ("is_loopback", "a loopback"), ("is_link_local", "a link-local"),
          ("is_multicast", "a multicast"), ("is_private", "a private"), ("is_reserved", "a reserved"))


class PrivateDestination(OSError):
    """A destination that is not a public address (its text says which address and why)."""


def refusal(address: str) -> str | None:
    """Why the IP address ``address`` is no public destination (``"10.0.0.5 is a private address"``),
    or None when it is public or is no IP address at all (a host name)."""
    kind = non_public_kind(address)
    return None if kind is None else f"{address} is {kind}"


def non_public_kind(address: str) -> str | None:
    """``"a private address"``, ``"a loopback address"``...: what kind of non-public address
    ``address`` is; None for a public address or a host name."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 zone (fe80::1%eth0) names no address
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 reaches 127.0.0.1
    for attribute, kind in _KINDS:
        if getattr(ip, attribute):
            return f"{kind} address"
    if not ip.is_global:  # e.g. 100.64.0.0/10, shared by carriers
        return "not a public address"
    return None


async def check_public(host: str, port: int) -> None:
    """Raise :class:`PrivateDestination` when ``host`` is, or resolves to, a non-public address.
    A name that does not resolve now passes: it may exist later, and every delivery checks again."""
    reason = refusal(host)
    if reason is not None:
        raise PrivateDestination(reason)
    try:
        ipaddress.ip_address(host)
        return  # a public address
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT_S)
    except (OSError, asyncio.TimeoutError):
        return
    for *_, sockaddr in infos:
        _refuse_resolved(host, str(sockaddr[0]))


def _refuse_resolved(host: str, address: str) -> None:
    kind = non_public_kind(address)
    if kind is not None:
        raise PrivateDestination(f"{host} resolves to {address}, {kind}")


class PublicOnlyResolver(AbstractResolver):
    """aiohttp's resolver, refusing names that resolve to any non-public address (a name that
    answers with a public and a private address is refused too: the client might try either).
    aiohttp skips the resolver for IP literals: check those with :func:`refusal` before connecting."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            _refuse_resolved(host, result["host"])
        return results

    async def close(self) -> None:
        await self._inner.close()
