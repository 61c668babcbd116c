"""ICE settings for every Segue peer, and the loopback mode tests and benchmarks use.

Why: aiortc falls back to a public STUN server when no ICE servers are given and waits on it
(seconds on a closed network), so every peer is created with an explicit list (empty by default,
from config in the server). ``max-bundle`` keeps one transport per leg, which the forwarder's
per-transport receive hook and the browser both expect.

aioice never gathers loopback addresses. Tests and benchmarks must stay on 127.0.0.1 (the
machine's interface is shared), so :func:`loopback_only` makes aioice gather 127.0.0.1 only.
It changes process-wide state: use it in test/benchmark processes, never in the server.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from typing import Any

from aiortc import RTCBundlePolicy, RTCConfiguration, RTCIceServer, RTCPeerConnection

from . import aiortc_hooks


def ice_server(urls: str | list[str], username: str | None = None, credential: str | None = None) -> RTCIceServer:
    """One STUN/TURN server entry (TURN with time-limited REST credentials in production)."""
    return RTCIceServer(urls=urls, username=username, credential=credential)


def peer_configuration(ice_servers: Sequence[RTCIceServer | dict[str, Any]] = ()) -> RTCConfiguration:
    """``RTCConfiguration`` with an explicit ICE server list and ``max-bundle``."""
    servers = [s if isinstance(s, RTCIceServer) else RTCIceServer(**s) for s in ice_servers]
    return RTCConfiguration(iceServers=servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)


PORT_RANGE_SETTING = "media.udp_port_min/max"


def new_peer(
    ice_servers: Sequence[RTCIceServer | dict[str, Any]] = (), *, port_range: tuple[int, int] | None = None
) -> RTCPeerConnection:
    """An ``RTCPeerConnection`` configured the Segue way (see :func:`peer_configuration`).

    ``port_range=(min, max)`` binds this peer's host candidates to UDP ports inside the range
    (``media.udp_port_min/max``, for firewalls that open only those); ``None`` or ``(0, 0)``
    lets the OS choose. Per peer, not process-wide. When every port of the range is taken,
    ``setLocalDescription`` raises :class:`PortRangeExhausted` saying which setting to widen.
    One leg uses one port per host address (max-bundle), so size the range for the legs a
    node runs at once times its addresses.
    """
    pc = RTCPeerConnection(peer_configuration(ice_servers))
    if port_range is not None and tuple(port_range) != (0, 0):
        low, high = port_range
        aiortc_hooks.restrict_host_ports(pc, low, high, setting=PORT_RANGE_SETTING)
    return pc


PortRangeExhausted = aiortc_hooks.PortRangeExhausted


def set_loopback_only(enabled: bool = True) -> None:
    """Gather only 127.0.0.1 host candidates from now on (process-wide), or restore the stock list."""
    aiortc_hooks.set_loopback_only(enabled)


def set_host_addresses(addresses: Sequence[str]) -> None:
    """``media.host_addresses``: the addresses this node's legs gather host candidates on
    (process-wide; a node process sets it once at start). Empty: every interface."""
    aiortc_hooks.set_host_addresses(list(addresses))


_CANDIDATE = re.compile(r"^(a=candidate:\S+ \d+ udp \d+ )(\S+)( \d+ typ host.*)$", re.IGNORECASE | re.MULTILINE)


def announce(sdp: str, public_address: str) -> str:
    """``media.public_address``: the answer's host candidates carry this address instead of the
    interface's (a 1:1 NAT forwards the same ports), so browsers send media straight to this node.
    Also the ``c=`` lines. Empty: unchanged."""
    if not public_address:
        return sdp
    sdp = _CANDIDATE.sub(lambda m: f"{m.group(1)}{public_address}{m.group(3)}", sdp)
    return re.sub(r"^c=IN IP4 \S+", f"c=IN IP4 {public_address}", sdp, flags=re.MULTILINE)


@contextlib.contextmanager
def loopback_only() -> Iterator[None]:
    """``with loopback_only(): ...`` — peers that gather candidates (``setLocalDescription``)
    inside the block use 127.0.0.1 only."""
    was = aiortc_hooks.loopback_only_enabled()
    aiortc_hooks.set_loopback_only(True)
    try:
        yield
    finally:
        aiortc_hooks.set_loopback_only(was)
