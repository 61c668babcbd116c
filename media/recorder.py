"""Call recording without decoding: the Opus packets both sides send, muxed into WebM with av.

Why no decoding: the forwarder already holds every participant's encoded audio; a tap on a source
(:meth:`media.forwarder.RtpSource.tap`) hands each RTP payload over, and an Opus RTP payload *is*
an Opus packet, so recording costs a mux call per packet. Two tracks: 0 = customer, 1 = agent
(whoever holds the agent role at the time: a transfer continues on the same track). Timestamps are
arrival times on one clock, so the tracks stay aligned and silence (hold, mute) is a gap.
"""

from __future__ import annotations

import fractions
import logging
import time
from collections.abc import Callable
from pathlib import Path

import av

from .forwarder import RtpPacketInfo, RtpSource

log = logging.getLogger(__name__)

TRACKS = ("customer", "agent")
TIME_BASE = fractions.Fraction(1, 48000)


class CallRecorder:
    """``rec = CallRecorder(path)``; ``rec.follow("customer", source)`` (None: stop following);
    ``rec.close()``. Packets that are not Opus are skipped."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._out = av.open(str(self.path), "w", format="webm")
        self._streams = {}
        for name in TRACKS:
            stream = self._out.add_stream("libopus", rate=48000)
            stream.codec_context.layout = "stereo"
            stream.codec_context.format = "s16"
            stream.time_base = TIME_BASE
            stream.metadata["title"] = name
            self._streams[name] = stream
        self._out.start_encoding()
        self._t0 = time.monotonic()
        self._following: dict[str, tuple[RtpSource, Callable[[], None]]] = {}
        self._last_pts = {name: -960 for name in TRACKS}
        self.packets = {name: 0 for name in TRACKS}
        self.closed = False

    def follow(self, track: str, source: RtpSource | None) -> None:
        current = self._following.get(track)
        if current is not None and current[0] is source:
            return
        if current is not None:
            current[1]()
            del self._following[track]
        if source is None or self.closed:
            return
        opus = {pt for pt, codec in source.codecs.items() if codec.name == "OPUS"}
        if not opus:
            return
        untap = source.tap(lambda info: self._write(track, opus, info))
        self._following[track] = (source, untap)

    def _write(self, track: str, opus: set[int], info: RtpPacketInfo) -> None:
        if self.closed or info.payload_type not in opus or not info.payload:
            return
        pts = int((info.arrival - self._t0) * 48000)
        pts = max(pts, self._last_pts[track] + 1)
        self._last_pts[track] = pts
        packet = av.Packet(info.payload)
        packet.stream = self._streams[track]
        packet.pts = packet.dts = pts
        packet.time_base = TIME_BASE
        try:
            self._out.mux(packet)
            self.packets[track] += 1
        except Exception:  # noqa: BLE001 - a bad packet must not break forwarding
            log.exception("recording %s: a packet failed to mux", self.path.name)

    def close(self) -> None:
        if self.closed:
            return
        for _source, untap in self._following.values():
            untap()
        self._following.clear()
        self.closed = True
        try:
            self._out.close()
        except Exception:  # noqa: BLE001
            log.exception("recording %s: closing failed", self.path.name)
