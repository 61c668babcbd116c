"""Segue media: server-side aiortc legs and the RTP forwarder that joins them.

The calls layer needs only these names:

- :class:`Forwarder` — one per process; ``add_leg(pc)`` adopts a peer connection, ``hold_tone()``
  gives the shared hold source.
- :class:`Leg` — a participant's connection; ``prepare()`` before answering, then
  ``source(kind)`` (what they send) and ``sink(kind)`` (what they receive).
- :class:`RtpSink` — ``attach(source)`` switches what a participant receives (hold tone, agent A,
  agent B) with no renegotiation; one source per sink, a second sink for a second voice.
- :class:`RtpSource` — anything attachable: a leg's inbound stream, :class:`HoldTone`,
  :class:`PreEncodedSource`; ``tap()`` for packet observers (recorder).
- :func:`peer_configuration` / :func:`new_peer` — ICE servers from config, max-bundle;
  :func:`loopback_only` for tests and benchmarks.

See docs/media-forwarder.md.
"""

from .forwarder import (
    CodecMismatch,
    Forwarder,
    Leg,
    LegState,
    RtpPacketInfo,
    RtpSink,
    RtpSource,
    SinkState,
    SourceState,
    StreamStats,
)
from .ice import (PortRangeExhausted, announce, loopback_only, new_peer, peer_configuration, set_host_addresses,
                  set_loopback_only)
from .preencoded import EncodedFrame, HoldTone, PreEncodedSource

__all__ = [
    "CodecMismatch",
    "EncodedFrame",
    "Forwarder",
    "HoldTone",
    "Leg",
    "LegState",
    "PortRangeExhausted",
    "PreEncodedSource",
    "RtpPacketInfo",
    "RtpSink",
    "RtpSource",
    "SinkState",
    "SourceState",
    "StreamStats",
    "loopback_only",
    "new_peer",
    "peer_configuration",
    "set_loopback_only",
]


# --- calls (issue 4): legs that answer offers, and calls that join them -----------------------
from .call import Call, CallState, MonitorMode  # noqa: E402
from .leg import MAX_SDP_CHARS, CallLeg, LegError  # noqa: E402
from .recorder import CallRecorder  # noqa: E402

__all__ += ["Call", "CallLeg", "CallRecorder", "CallState", "LegError", "MAX_SDP_CHARS", "MonitorMode"]

# --- hostile input (issue 11): what an offer may contain ------------------------------------------
from .sdp_limits import SdpRefused, check_offer  # noqa: E402

__all__ += ["SdpRefused", "check_offer"]
__all__ += ["announce", "set_host_addresses"]  # media.host_addresses / media.public_address (several nodes)

# --- the event loop's clock: periodic ticks that say how late the loop ran them (the forwarder's
# report clock; signaling's load monitor measures the node's queueing delay with it)
from .loopclock import Tick, ticks  # noqa: E402

__all__ += ["Tick", "ticks"]
