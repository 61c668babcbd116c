"""The RTP forwarder: encoded media between server-side aiortc legs, no decoding, no encoding.

Why: aiortc's stock relay decodes each inbound frame and re-encodes it per outbound leg; one
process saturates at about ten audio calls. Moving the encoded RTP payload from one leg to another
(decrypt, re-stamp the header for the outbound leg, encrypt) costs a few microseconds a packet.

Shape:

- :class:`Forwarder` — one per process (event loop). Adopts peer connections as :class:`Leg`\\ s,
  sends their RTCP reports, owns the shared hold tone.
- :class:`Leg` — one participant's ``RTCPeerConnection``. Its m-sections become an
  :class:`RtpSource` (what the participant sends) and an :class:`RtpSink` (what it receives).
- :class:`RtpSink` — one outbound stream. It forwards exactly one source at a time;
  :meth:`RtpSink.attach` switches (hold tone -> agent A -> agent B) keeping sequence numbers and
  timestamps continuous, and, for video, waits for the new source's next keyframe (asking for it
  at once).

All packet work happens synchronously inside the datagram callback (see ``aiortc_hooks``).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiortc import MediaStreamTrack, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError

from . import _sdp, aiortc_hooks
from .loopclock import ticks
from .rtp import (
    RTP_HEADER,
    SEQ_TS,
    U16,
    U32,
    URI_ABS_SEND_TIME,
    URI_AUDIO_LEVEL,
    URI_MID,
    Feedback,
    FeedbackKind,
    ReportBlock,
    build_extensions,
    find_extension,
    keyframe_start,
    ntp_time,
    rtcp_nack,
    rtcp_pli,
    rtcp_remb,
    rtcp_rr,
    rtcp_bye,
    rtcp_sdes_cname,
    rtcp_sr,
    vp8_descriptor,
)

if TYPE_CHECKING:
    from .preencoded import HoldTone

logger = logging.getLogger(__name__)

CodecSpec = _sdp.CodecSpec

HISTORY_SIZE = 512  # per outbound stream that negotiated NACK (video): ~5 s at 1 Mbit/s
KEYFRAME_RETRY_S = 0.3  # a sink waiting for a keyframe asks again after this long
KEYFRAME_MIN_INTERVAL_S = 0.2  # upstream PLI rate limit per source
KEYFRAME_GAP = 48  # inbound video packets missing at once past which the source is asked for a keyframe
# ... or media time a hole of inbound video covers past which it is: Chromium keeps what it sent
# for about a second, so the NACK for the hole's first packets would come too late
KEYFRAME_GAP_S = 0.5
MAX_LEARNED_SSRCS = 32
GUARD_PACKETS = 1024  # after a switch, packets older than its first one are dropped this long


class CodecMismatch(ValueError):
    """The source sends no codec the sink's far end negotiated (e.g. G.711 into an Opus-only leg)."""


class LegState(enum.Enum):
    """Lifecycle of a leg: NEW until ICE+DTLS connect, CONNECTED, CLOSED (terminal)."""

    NEW = "new"
    CONNECTED = "connected"
    CLOSED = "closed"


class SourceState(enum.Enum):
    """LIVE while packets can arrive, ENDED once the leg closed or the source was stopped."""

    LIVE = "live"
    ENDED = "ended"


class SinkState(enum.Enum):
    """IDLE: nothing attached (the far end hears silence / sees a frozen frame).
    WAITING_KEYFRAME: video switched to a new source, dropping until its next keyframe.
    FORWARDING: packets flow. CLOSED: the leg is gone (terminal)."""

    IDLE = "idle"
    WAITING_KEYFRAME = "waiting_keyframe"
    FORWARDING = "forwarding"
    CLOSED = "closed"


@dataclass
class StreamStats:
    """Counters of one source or sink; read them for metrics and tests."""

    packets: int = 0
    octets: int = 0
    dropped: int = 0
    retransmitted: int = 0  # NACKs served from the sink's history
    nacks_forwarded: int = 0  # lost packets asked of the source
    keyframe_requests: int = 0
    gaps_closed: int = 0  # video holes upstream a sink hid from its far end (dropped to the next keyframe)
    remote_fraction_lost: int = 0  # from the far end's receiver report (x/256)
    remote_packets_lost: int = 0
    remote_jitter: int = 0
    remote_reports: int = 0  # receiver reports from the far end (sinks)
    remb_bitrate: int = 0


@dataclass(slots=True)
class RtpPacketInfo:
    """One packet as a tap sees it (after RTX unwrapping, before any per-sink rewriting)."""

    payload_type: int
    sequence_number: int
    timestamp: int
    marker: bool
    payload: bytes
    arrival: float  # time.monotonic()
    audio_level: int | None = None


Tap = Callable[[RtpPacketInfo], None]


class RtpSource:
    """Something sinks can forward: a participant's inbound stream or pre-encoded media.

    Why a common base: a sink must not care whether it forwards the customer, an agent or the hold
    tone; switching between them is the whole point. Subclasses deliver packets through
    ``_deliver`` and answer keyframe/retransmission requests their own way.
    """

    def __init__(self, kind: str, codecs: dict[int, CodecSpec], label: str = "") -> None:
        self.kind = kind
        self.codecs: dict[int, CodecSpec] = dict(codecs)  # payload type (as sent by it) -> codec
        self.label = label
        self.state = SourceState.LIVE
        self.stats = StreamStats()
        self._sinks: list[RtpSink] = []
        self._taps: list[Tap] = []

    # public ---------------------------------------------------------------------------------

    @property
    def sinks(self) -> list["RtpSink"]:
        return list(self._sinks)

    def request_keyframe(self) -> None:
        """Ask for a keyframe as soon as possible (no-op for audio)."""

    def tap(self, callback: Tap) -> Callable[[], None]:
        """Call ``callback(RtpPacketInfo)`` for every packet (recorder, meters, benchmarks).

        Runs inside the datagram callback: keep it short, never block. Returns an "untap".
        """
        self._taps.append(callback)
        self._consumers_changed()

        def untap() -> None:
            if callback in self._taps:
                self._taps.remove(callback)
                self._consumers_changed()

        return untap

    # for subclasses and sinks --------------------------------------------------------------

    def _deliver(
        self, padbit: int, marker: int, pt: int, seq: int, ts: int, payload: bytes, level: int | None, now: float
    ) -> None:
        for sink in self._sinks:
            sink._write(padbit, marker, pt, seq, ts, payload, level, now)
        if self._taps:
            info = RtpPacketInfo(pt, seq, ts, bool(marker), payload, now, level)
            for tap in self._taps:
                tap(info)

    def _request_retransmit(self, seqs: list[int]) -> None:
        """Sinks ask for packets they do not hold (sequence numbers in this source's space)."""

    def _timing_reference(self, now: float) -> tuple[int, int] | None:
        """``(NTP, RTP timestamp)`` of this source's clock at ``now`` when the sender told us
        (its sender report); sinks translate it so lip sync survives re-stamping."""
        return None

    def _feedback_changed(self) -> None:
        """A sink's bitrate estimate changed (REMB)."""

    def _consumers_changed(self) -> None:
        """Sinks or taps were added/removed (pre-encoded sources start/stop their clock)."""

    def _add_sink(self, sink: "RtpSink") -> None:
        if sink not in self._sinks:
            self._sinks.append(sink)
            self._consumers_changed()

    def _remove_sink(self, sink: "RtpSink") -> None:
        if sink in self._sinks:
            self._sinks.remove(sink)
            self._consumers_changed()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.kind} {self.label} {self.state.value}>"


class InboundSource(RtpSource):
    """What one participant sends on one m-section of its leg (created by :class:`Leg`).

    Why separate from the leg: a leg may carry several (audio, video, screen share), each switched
    independently into other legs' sinks.
    """

    def __init__(self, leg: "Leg", section: _sdp.MediaSection) -> None:
        super().__init__(section.kind, section.codecs, label=f"{leg.name}/{section.mid}")
        self.leg = leg
        self.mid = section.mid
        self.ssrc: int | None = None  # primary SSRC (from SDP or learned)
        self._rtx_apt: dict[int, int] = {}
        self._level_id = 0
        self._rtcp_ssrc = 0
        self._last_keyframe_request = -1e9
        # reception statistics for our receiver reports
        self._received = 0
        self._base_seq = 0
        self._max_seq = 0
        self._max_ts = 0  # RTP timestamp of the newest packet (how much media time a hole covers)
        self._cycles = 0
        self._expected_prior = 0
        self._received_prior = 0
        self._lsr = 0
        self._lsr_time = 0.0
        self._sr: tuple[int, int, float] | None = None
        self._last_remb = 0
        self._configure(section, 0)

    def _configure(self, section: _sdp.MediaSection, rtcp_ssrc: int) -> None:
        self.codecs = dict(section.codecs)
        self._rtx_apt = dict(section.rtx)
        self._level_id = section.extensions.get(URI_AUDIO_LEVEL, 0)
        self._rtcp_ssrc = rtcp_ssrc

    def request_keyframe(self) -> None:
        if self.kind != "video" or self.ssrc is None or self.state is not SourceState.LIVE:
            return
        now = time.monotonic()
        if now - self._last_keyframe_request < KEYFRAME_MIN_INTERVAL_S:
            return
        self._last_keyframe_request = now
        self.stats.keyframe_requests += 1
        self.leg._writer_for(self.mid).send_rtcp(rtcp_pli(self._rtcp_ssrc, self.ssrc))

    def _request_retransmit(self, seqs: list[int]) -> None:
        if self.ssrc is None or not seqs or self.state is not SourceState.LIVE:
            return
        self.leg._writer_for(self.mid).send_rtcp(rtcp_nack(self._rtcp_ssrc, self.ssrc, seqs))

    def _on_packet(self, data: bytes, rtx: bool, now: float) -> None:
        b0 = data[0]
        seq, ts = SEQ_TS.unpack_from(data, 2)
        pos = 12 + ((b0 & 0x0F) << 2)
        level = None
        size = len(data)
        if b0 & 0x10:
            if pos + 4 > size:
                return  # the CSRC list or extension header runs past the packet (tests/fuzz)
            end = pos + 4 + (((data[pos + 2] << 8) | data[pos + 3]) << 2)
            if end > size:
                return
            if self._level_id:
                value = find_extension(data, pos + 4, end, self._level_id)
                if value:
                    level = value[0] & 0x7F
            pos = end
        pt = data[1] & 0x7F
        if rtx:
            apt = self._rtx_apt.get(pt)
            pad = data[-1] if b0 & 0x20 else 0
            if apt is None or len(data) - pad - pos <= 2:
                return  # unknown RTX payload type, or padding-only probe
            seq = (data[pos] << 8) | data[pos + 1]
            pos += 2
            pt = apt
        else:
            # reception statistics (RFC 3550 A.1, without jitter)
            if self._received:
                delta = (seq - self._max_seq) & 0xFFFF
                if 0 < delta < 0x8000:
                    if seq < self._max_seq:
                        self._cycles += 0x10000
                    self._max_seq = seq
                    if delta > 1 and self.kind == "video":
                        span = (ts - self._max_ts) & 0xFFFFFFFF  # media time the hole covers
                        if delta > KEYFRAME_GAP or KEYFRAME_GAP_S * 90000 < span < 0x80000000:
                            self._on_gap(seq, now)
                    self._max_ts = ts
            else:
                self._base_seq = self._max_seq = seq
                self._max_ts = ts
            self._received += 1
        stats = self.stats
        stats.packets += 1
        stats.octets += len(data) - pos
        self._deliver(b0 & 0x20, data[1] & 0x80, pt, seq, ts, data[pos:], level, now)

    def _on_gap(self, seq: int, now: float) -> None:
        """An outage, not a few lost packets: retransmissions cannot bring the picture back (the
        sender no longer holds them all; receivers lost their reference frames), a keyframe can.
        Sinks hide the hole from their far end and resume at that keyframe (:meth:`RtpSink._source_gap`)."""
        self.request_keyframe()
        for sink in self._sinks:
            sink._source_gap(seq, now)

    def _reset_reception(self) -> None:
        self._received = self._base_seq = self._max_seq = self._max_ts = self._cycles = 0
        self._expected_prior = self._received_prior = 0
        self._lsr = 0
        self._sr = None

    def _on_sender_report(self, ssrc: int, ntp: int, rtp_ts: int, arrival: float) -> None:
        if ssrc == self.ssrc:
            self._lsr = (ntp >> 16) & 0xFFFFFFFF
            self._lsr_time = arrival
            self._sr = (ntp, rtp_ts, arrival)

    def _timing_reference(self, now: float) -> tuple[int, int] | None:
        if self._sr is None:
            return None
        ntp, rtp_ts, arrival = self._sr
        clock = next(iter(self.codecs.values())).clock_rate if self.codecs else 90000
        elapsed = max(now - arrival, 0.0)
        return (ntp + int(elapsed * (1 << 32))) & 0xFFFFFFFFFFFFFFFF, rtp_ts + int(elapsed * clock)

    def _report_block(self, now: float) -> ReportBlock | None:
        if not self._received or self.ssrc is None:
            return None
        extended = self._cycles + self._max_seq
        expected = extended - self._base_seq + 1
        lost = expected - self._received
        expected_interval = expected - self._expected_prior
        received_interval = self._received - self._received_prior
        self._expected_prior = expected
        self._received_prior = self._received
        lost_interval = expected_interval - received_interval
        fraction = 0 if expected_interval <= 0 or lost_interval <= 0 else (lost_interval << 8) // expected_interval
        dlsr = int((now - self._lsr_time) * 65536) if self._lsr else 0
        return ReportBlock(self.ssrc, min(fraction, 255), lost, extended, 0, self._lsr, dlsr & 0xFFFFFFFF)

    def _remb_packet(self) -> bytes | None:
        """Smallest bitrate the viewers of this video asked for, passed up to the sender."""
        if self.kind != "video" or self.ssrc is None:
            return None
        rates = [s.stats.remb_bitrate for s in self._sinks if s.stats.remb_bitrate]
        if not rates:
            return None
        self._last_remb = min(rates)
        return rtcp_remb(self._rtcp_ssrc, self._last_remb, [self.ssrc])

    def _feedback_changed(self) -> None:
        rates = [s.stats.remb_bitrate for s in self._sinks if s.stats.remb_bitrate]
        if rates and self._last_remb and min(rates) < self._last_remb * 0.8:
            packet = self._remb_packet()  # a viewer's estimate dropped: tell the sender now
            if packet:
                self.leg._writer_for(self.mid).send_rtcp(packet)


class _PlaceholderTrack(MediaStreamTrack):
    """Outbound track that never yields a frame: it makes aiortc negotiate and start a sender
    (SSRC, RTCP) while the forwarder supplies the packets."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._ended: asyncio.Future[None] | None = None

    async def recv(self) -> Any:
        if self.readyState != "live":
            raise MediaStreamError
        if self._ended is None:
            self._ended = asyncio.get_running_loop().create_future()
        await self._ended
        raise MediaStreamError

    def stop(self) -> None:
        super().stop()
        if self._ended is not None and not self._ended.done():
            self._ended.set_result(None)


class RtpSink:
    """One outbound stream of a leg: forwards the attached source, re-stamped for this leg.

    Why per sink state: each leg negotiated its own SSRC, payload types and header-extension ids,
    and the far end must see one continuous stream (sequence numbers, timestamps, VP8 picture
    ids) whatever source feeds it. One sink forwards one source; to let a participant hear two
    (a supervisor monitoring both sides, a whisper), negotiate a second audio m-section and use
    a second sink: the browser mixes on playback, the server never decodes.
    """

    def __init__(self, leg: "Leg", section: _sdp.MediaSection, ssrc: int) -> None:
        self.leg = leg
        self.kind = section.kind
        self.mid = section.mid
        self.ssrc = ssrc
        self.state = SinkState.IDLE
        self.stats = StreamStats()
        self.codecs: dict[int, CodecSpec] = {}
        self._source: RtpSource | None = None
        self._writer: aiortc_hooks.SrtpWriter | None = None
        self._pt_map: dict[int, int] = {}
        self._src_codecs: dict[int, CodecSpec] = {}
        self._clock_rate = 90000 if self.kind == "video" else 48000
        self._resync = True
        self._resume: int | None = None  # after a source's hole: resume at a keyframe from this seq on
        # the last hole closed (see _source_gap): the sequence offset before it and the first and
        # last numbers the source's packets were sent under before it
        self._hole: tuple[int, int, int] | None = None
        self._seq_off = 0
        self._ts_off = 0
        self._start_oseq = 0
        self._guard = False  # True shortly after a switch: drop the new source's stragglers
        self._last_seq: int | None = None
        self._last_ts = 0
        self._last_time = 0.0
        self._last_request = -1e9
        self._vp8_off: tuple[int, int] | None = None  # (picture id offset, tl0picidx offset)
        self._last_pid: int | None = None
        self._last_tl0: int | None = None
        self._history: list[bytes | None] | None = None
        self._ext_static = b""
        self._ext_levels: dict[int, bytes] = {}
        self._ext_elements: list[tuple[int, bytes]] = []
        self._level_id = 0
        self._ast_id = 0
        self._ast_head = b""
        self._ast_pad = b""
        self._configure(section)

    # public ---------------------------------------------------------------------------------

    @property
    def source(self) -> RtpSource | None:
        return self._source

    def attach(self, source: RtpSource | None) -> None:
        """Forward ``source`` from now on (None: send nothing). Switching keeps the stream
        continuous for the far end; video waits for the new source's keyframe and asks for it."""
        if self.state is SinkState.CLOSED:
            raise RuntimeError("sink is closed (its leg was closed)")
        if source is self._source:
            if source is not None and self.kind == "video":
                source.request_keyframe()
            return
        if source is not None:
            if source.kind != self.kind:
                raise CodecMismatch(f"cannot forward {source.kind} into a {self.kind} sink")
            pt_map = self._map_codecs(source.codecs)
            if not pt_map:
                raise CodecMismatch(
                    f"{source!r} sends {sorted({c.name for c in source.codecs.values()})}, "
                    f"this leg negotiated {sorted({c.name for c in self.codecs.values()})}"
                )
        old = self._source
        if old is not None:
            old._remove_sink(self)
        self._source = source
        self._resync = True
        self._resume = None
        self._hole = None
        if source is None:
            self.state = SinkState.IDLE
            self._pt_map = {}
            return
        self._pt_map = pt_map
        self._src_codecs = dict(source.codecs)
        self.state = SinkState.WAITING_KEYFRAME if self.kind == "video" else SinkState.FORWARDING
        source._add_sink(self)
        if self.kind == "video":
            self._last_request = time.monotonic()
            self.stats.keyframe_requests += 1
            source.request_keyframe()

    def detach(self) -> None:
        """Same as ``attach(None)``."""
        self.attach(None)

    def _source_gap(self, seq: int, now: float) -> None:
        """The video source lost more on its way in than retransmission can repair (``seq``: the
        first packet after the hole). Drop until its next keyframe, then go on with the next
        sequence number, as after a switch: the far end sees no hole to wait on. A receiver that
        holds everything after a hole until it is retransmitted (aiortc's jitter buffer does, for
        512 packets) would stay frozen long past the keyframe. Audio keeps its holes: receivers
        conceal each lost packet and play on, and the hole tells them how much was lost."""
        if self.kind != "video" or self._resync:
            return  # audio, or already waiting for a keyframe (switched, or idle)
        self._resync = True
        self._resume = seq
        last: int = self._last_seq  # type: ignore[assignment]
        first = self._start_oseq if self._guard else (last - GUARD_PACKETS) & 0xFFFF
        self._hole = (self._seq_off, first, last)
        self.state = SinkState.WAITING_KEYFRAME
        self._last_request = now  # the source was just asked for one
        self.stats.gaps_closed += 1

    def _before_hole(self, seq: int) -> int | None:
        """The number a packet from before the last closed hole (late, or retransmitted on NACK)
        was or would have been sent under: the far end may still wait for it. None for one from
        inside the hole (the far end never missed it), from before a switch, or from long ago."""
        if self._hole is None:
            return None
        oseq = (seq + self._hole[0]) & 0xFFFF
        return oseq if self._sent_before_hole(oseq) else None

    def _sent_before_hole(self, oseq: int) -> bool:
        """``oseq`` numbers a packet of the current source from before the last closed hole."""
        hole = self._hole
        return hole is not None and ((oseq - hole[1]) & 0xFFFF) <= ((hole[2] - hole[1]) & 0xFFFF)

    # configuration -------------------------------------------------------------------------

    def _configure(self, section: _sdp.MediaSection) -> None:
        self.codecs = dict(section.codecs)
        if self._source is not None:
            self._pt_map = self._map_codecs(self._source.codecs)
        # the one-byte header form (RFC 8285) is what this writer produces: ids 1-14 only. An id
        # past 14 (an offer may use the two-byte range) leaves that extension out of what we send.
        ext = {uri: i for uri, i in section.extensions.items() if 1 <= i <= 14}
        elements: list[tuple[int, bytes]] = []
        mid_id = ext.get(URI_MID)
        if mid_id and section.mid:
            elements.append((mid_id, section.mid.encode()))
        self._ext_elements = elements
        self._ext_static = build_extensions(elements)
        self._ext_levels = {}
        self._level_id = ext.get(URI_AUDIO_LEVEL, 0)
        self._ast_id = ext.get(URI_ABS_SEND_TIME, 0)
        if self._ast_id:
            elems = b"".join(bytes([(eid << 4) | (len(v) - 1)]) + v for eid, v in elements)
            body_len = len(elems) + 4  # + abs-send-time: id byte and 3 value bytes
            pad = -body_len % 4
            self._ast_head = b"\xbe\xde" + U16.pack((body_len + pad) // 4) + elems + bytes([(self._ast_id << 4) | 2])
            self._ast_pad = b"\0" * pad
        if any(c.nack for c in self.codecs.values()) and self._history is None:
            self._history = [None] * HISTORY_SIZE

    def _map_codecs(self, source_codecs: dict[int, CodecSpec]) -> dict[int, int]:
        mapping = {}
        for in_pt, codec in source_codecs.items():
            best, best_score = None, 0
            for out_pt, mine in self.codecs.items():
                score = codec.matches(mine)
                if score > best_score:
                    best, best_score = out_pt, score
            if best is not None:
                mapping[in_pt] = best
        return mapping

    def _extensions(self, level: int | None, now: float) -> bytes:
        if self._ast_id:
            if level is None or not self._level_id:
                # prebuilt: 0xBEDE, length, MID element, abs-send-time id byte | 3 bytes | padding
                return self._ast_head + (int(now * 262144) & 0xFFFFFF).to_bytes(3, "big") + self._ast_pad
            elements = list(self._ext_elements)
            elements.append((self._level_id, bytes([level])))
            elements.append((self._ast_id, (int(now * 262144) & 0xFFFFFF).to_bytes(3, "big")))
            return build_extensions(elements)
        if level is None or not self._level_id:
            return self._ext_static
        ext = self._ext_levels.get(level)
        if ext is None:
            ext = self._ext_levels[level] = build_extensions(self._ext_elements + [(self._level_id, bytes([level]))])
        return ext

    # hot path ---------------------------------------------------------------------------------

    def _write(
        self, padbit: int, marker: int, pt: int, seq: int, ts: int, payload: bytes, level: int | None, now: float
    ) -> None:
        early = False  # from before a hole, arriving while the sink waits for the keyframe after it
        if self._resync:
            resume = self._resume
            if resume is not None and ((seq - resume) & 0xFFFF) >= 0x8000:
                early = True
            elif not self._begin(pt, seq, ts, payload, now):
                return
            else:
                marker = 0x80 if self.kind == "audio" else marker
        out_pt = self._pt_map.get(pt)
        if out_pt is None:
            self.stats.dropped += 1  # a codec this leg did not negotiate
            return
        oseq = (seq + self._seq_off) & 0xFFFF
        newest = not early and ((oseq - self._last_seq) & 0xFFFF) < 0x8000  # type: ignore[operator]
        if early or (not newest and self._guard and ((oseq - self._start_oseq) & 0xFFFF) >= 0x8000):
            # reordered or retransmitted from before a switch (not ours to send) or a closed hole
            # (sent under the number it had, so the far end's NACK is answered)
            before = self._before_hole(seq)
            if before is None:
                self.stats.dropped += 1
                return
            oseq = before
        ots = (ts + self._ts_off) & 0xFFFFFFFF
        if self._vp8_off is not None:
            payload = self._rewrite_vp8(payload)
        ext = self._extensions(level, now) if (self._ast_id or level is not None) else self._ext_static
        packet = RTP_HEADER.pack(
            (0x90 if ext else 0x80) | padbit, marker | out_pt, oseq, ots, self.ssrc
        ) + ext + payload
        writer = self._writer
        sent = writer.send_rtp(packet) if writer is not None else None
        if sent is None:
            self.stats.dropped += 1
            return
        if self._history is not None:
            self._history[oseq % HISTORY_SIZE] = sent
        if newest:
            self._last_seq = oseq
            self._last_ts = ots
            self._last_time = now
            if self._guard and ((oseq - self._start_oseq) & 0xFFFF) > GUARD_PACKETS:
                self._guard = False  # long past the switch: stop comparing with its start
                self._hole = None
        stats = self.stats
        stats.packets += 1
        stats.octets += len(payload)

    def _begin(self, pt: int, seq: int, ts: int, payload: bytes, now: float) -> bool:
        """First packet after attach: pick offsets so the far end sees a continuous stream."""
        codec = self._src_codecs.get(pt)
        if codec is None or pt not in self._pt_map:
            self.stats.dropped += 1
            return False
        if self.kind == "video":
            if self.leg.state is not LegState.CONNECTED:
                # Nothing can be sent before the leg is connected (a sink attached right after
                # the answer, e.g. a transfer): starting on this keyframe would drop it and the
                # far end would begin with delta frames. Keep waiting; ask again once connected.
                self.stats.dropped += 1
                self._last_request = -1e9
                return False
            if not keyframe_start(codec.name, payload):
                self.stats.dropped += 1
                if now - self._last_request > KEYFRAME_RETRY_S and self._source is not None:
                    self._last_request = now
                    self.stats.keyframe_requests += 1
                    self._source.request_keyframe()
                return False
        if self._last_seq is None:
            base_seq = random.getrandbits(15)  # lower half: no early wrap (SRTP index)
            base_ts = random.getrandbits(32)
        else:
            base_seq = (self._last_seq + 1) & 0xFFFF
            base_ts = (ts + self._ts_off) & 0xFFFFFFFF
            if self._resume is None or not 0 < ((base_ts - self._last_ts) & 0xFFFFFFFF) < 0x80000000:
                # another source (or one whose clock went back): its timestamps say nothing here;
                # after a hole the same source keeps its own clock (and lip sync its offset)
                elapsed = max(int((now - self._last_time) * self._clock_rate), 1)
                base_ts = (self._last_ts + elapsed) & 0xFFFFFFFF
        self._seq_off = (base_seq - seq) & 0xFFFF
        self._ts_off = (base_ts - ts) & 0xFFFFFFFF
        self._start_oseq = base_seq
        self._guard = True
        if self._last_seq is None:
            self._last_seq = (base_seq - 1) & 0xFFFF
        if self._resume is None:  # after a hole the same source keeps its VP8 picture ids
            self._vp8_off = None
            if codec.name == "VP8":
                self._begin_vp8(payload)
        self._resync = False
        self._resume = None
        self.state = SinkState.FORWARDING
        return True

    def _begin_vp8(self, payload: bytes) -> None:
        _, pid_pos, pid_bits, tl0_pos = vp8_descriptor(payload)
        pid_off = tl0_off = 0
        if pid_pos >= 0 and self._last_pid is not None:
            pid = ((payload[pid_pos] & 0x7F) << 8 | payload[pid_pos + 1]) if pid_bits == 15 else payload[pid_pos]
            pid_off = (self._last_pid + 1 - pid) & 0x7FFF
        if tl0_pos >= 0 and self._last_tl0 is not None:
            tl0_off = (self._last_tl0 + 1 - payload[tl0_pos]) & 0xFF
        self._vp8_off = (pid_off, tl0_off)

    def _rewrite_vp8(self, payload: bytes) -> bytes:
        """Shift VP8 picture id / TL0PICIDX so they continue across source switches."""
        _, pid_pos, pid_bits, tl0_pos = vp8_descriptor(payload)
        pid_off, tl0_off = self._vp8_off  # type: ignore[misc]
        if pid_pos < 0 and tl0_pos < 0:
            return payload
        if not pid_off and not tl0_off:
            if pid_pos >= 0:
                self._last_pid = ((payload[pid_pos] & 0x7F) << 8 | payload[pid_pos + 1]) if pid_bits == 15 else payload[pid_pos]
            if tl0_pos >= 0:
                self._last_tl0 = payload[tl0_pos]
            return payload
        out = bytearray(payload)
        if pid_pos >= 0:
            if pid_bits == 15:
                pid = (((out[pid_pos] & 0x7F) << 8 | out[pid_pos + 1]) + pid_off) & 0x7FFF
                out[pid_pos] = 0x80 | (pid >> 8)
                out[pid_pos + 1] = pid & 0xFF
            else:
                pid = (out[pid_pos] + pid_off) & 0x7F
                out[pid_pos] = pid
            self._last_pid = pid
        if tl0_pos >= 0:
            out[tl0_pos] = (out[tl0_pos] + tl0_off) & 0xFF
            self._last_tl0 = out[tl0_pos]
        return bytes(out)

    # feedback from the far end -----------------------------------------------------------------

    def _on_feedback(self, feedback: Feedback) -> None:
        kind = feedback.kind
        source = self._source
        if kind is FeedbackKind.NACK:
            missing = []
            history = self._history
            writer = self._writer
            for seq in feedback.lost:
                entry = history[seq % HISTORY_SIZE] if history is not None else None
                if entry is not None and U16.unpack_from(entry, 2)[0] == seq and writer is not None:
                    writer.send_raw(entry)
                    self.stats.retransmitted += 1
                elif not self._guard or ((seq - self._start_oseq) & 0xFFFF) < 0x8000:
                    missing.append((seq - self._seq_off) & 0xFFFF)  # in the current source's numbers
                elif self._sent_before_hole(seq):
                    missing.append((seq - self._hole[0]) & 0xFFFF)  # type: ignore[index]  # before the closed hole
            if missing and source is not None:
                self.stats.nacks_forwarded += len(missing)
                source._request_retransmit(missing)
        elif kind in (FeedbackKind.PLI, FeedbackKind.FIR):
            if source is not None:
                self.stats.keyframe_requests += 1
                source.request_keyframe()
        elif kind is FeedbackKind.REMB:
            self.stats.remb_bitrate = feedback.bitrate
            if source is not None:
                source._feedback_changed()
        elif kind is FeedbackKind.REPORT:
            self.stats.remote_reports += 1
            self.stats.remote_fraction_lost = feedback.fraction_lost
            self.stats.remote_packets_lost = feedback.packets_lost
            self.stats.remote_jitter = feedback.jitter

    def _sender_report(self, reports: list[ReportBlock], now: float, wallclock: float) -> bytes | None:
        if not self.stats.packets or self._last_seq is None:
            return None
        reference = self._source._timing_reference(now) if self._source is not None and not self._resync else None
        if reference is not None:
            # the source's own NTP/RTP pair, moved into this stream's timestamp space: audio and
            # video of one sender stay in sync at the far end whatever we re-stamped
            ntp, rtp_ts = reference[0], reference[1] + self._ts_off
        else:
            ntp, rtp_ts = ntp_time(wallclock), self._last_ts + int((now - self._last_time) * self._clock_rate)
        return rtcp_sr(self.ssrc, ntp, rtp_ts, self.stats.packets, self.stats.octets, reports)

    def _close(self) -> None:
        if self._source is not None:
            self._source._remove_sink(self)
        self._source = None
        self._writer = None
        self._history = None
        self.state = SinkState.CLOSED

    def __repr__(self) -> str:
        return f"<RtpSink {self.leg.name}/{self.mid} {self.kind} {self.state.value} <- {self._source!r}>"


class Leg:
    """One participant's server-side ``RTCPeerConnection``, adopted by the forwarder.

    Why: the browser offers, the server answers (see DESIGN "Offers go one way"); after each
    answer the leg re-reads what was negotiated (payload types, header-extension ids, SSRCs) so
    forwarding follows renegotiation (voice -> video -> screen share) on the same connection.

    Use: ``leg = forwarder.add_leg(pc)``; ``await pc.setRemoteDescription(offer)``;
    ``leg.prepare()``; answer. Then ``leg.source("audio")`` / ``leg.sink("audio")``.
    """

    def __init__(self, forwarder: "Forwarder", pc: RTCPeerConnection, name: str) -> None:
        self.forwarder = forwarder
        self.pc = pc
        self.name = name
        self.state = LegState.NEW
        self.cname = f"segue-{uuid.uuid4().hex[:12]}"
        self._sources: dict[str, InboundSource] = {}
        self._sinks: dict[str, RtpSink] = {}
        self._by_ssrc: dict[int, tuple[InboundSource, bool]] = {}
        self._writers: dict[int, aiortc_hooks.SrtpWriter] = {}  # id(dtls) -> writer
        self._mid_writer: dict[str, aiortc_hooks.SrtpWriter] = {}
        self._hooked: dict[int, Callable[[], None]] = {}
        self._pumped: dict[int, Callable[[], None]] = {}
        self._transports: dict[int, Any] = {}
        self._taken_senders: set[int] = set()
        self._observed_receivers: set[int] = set()
        self._seen: tuple[str, str] | None = None
        # bumped by every signalling/connection state change: refresh() reads (and aiortc
        # re-serialises) both descriptions only when one may have changed since the last read;
        # source()/sink() call it on every lookup, dozens of times per call set-up
        self._generation = 0
        self._read_generation = -1
        self._mid_ext_id = 0
        self._errors = 0
        self._stock_rtcp_pending = True
        pc.on("signalingstatechange", self._on_signaling)
        pc.on("connectionstatechange", self._on_connection)

    # public ---------------------------------------------------------------------------------

    @property
    def sources(self) -> list[RtpSource]:
        self.refresh()
        return list(self._sources.values())

    @property
    def sinks(self) -> list[RtpSink]:
        self.refresh()
        return list(self._sinks.values())

    def source(self, kind: str = "audio", index: int = 0) -> RtpSource:
        """The participant's ``index``-th inbound stream of ``kind`` (KeyError if not negotiated)."""
        found = [s for s in self.sources if s.kind == kind]
        if index >= len(found):
            raise KeyError(f"leg {self.name} receives no {kind} #{index} (negotiated: {self._describe()})")
        return found[index]

    def sink(self, kind: str = "audio", index: int = 0) -> RtpSink:
        """The ``index``-th outbound stream of ``kind`` toward the participant."""
        found = [s for s in self.sinks if s.kind == kind]
        if index >= len(found):
            raise KeyError(f"leg {self.name} sends no {kind} #{index} (negotiated: {self._describe()})")
        return found[index]

    def prepare(self) -> None:
        """After ``setRemoteDescription(offer)``, before ``createAnswer``: make every audio/video
        transceiver able to send (placeholder track, direction sendrecv) so the answer gives each
        m-section an outbound stream the forwarder can fill. Safe to call after every offer."""
        for transceiver in self.pc.getTransceivers():
            if transceiver.kind not in ("audio", "video") or transceiver.stopped:
                continue
            if transceiver.sender.track is None:
                transceiver.sender.replaceTrack(_PlaceholderTrack(transceiver.kind))
            if transceiver.direction in ("recvonly", "inactive"):
                transceiver.direction = "sendrecv"

    def refresh(self) -> None:
        """Re-read the negotiated parameters (automatic after each completed negotiation)."""
        if self.state is LegState.CLOSED or self._read_generation == self._generation:
            return
        if self.pc.signalingState != "stable":
            return
        local, remote = self.pc.localDescription, self.pc.remoteDescription
        if local is None or remote is None:
            return
        self._read_generation = self._generation
        key = (local.sdp, remote.sdp)
        if key == self._seen:
            return
        self._seen = key
        self._stock_rtcp_pending = True
        answer = local if local.type == "answer" else remote
        answer_sections = {s.mid: s for s in _sdp.parse(answer.sdp)}
        remote_sections = {s.mid: s for s in _sdp.parse(remote.sdp)}
        for transceiver in self.pc.getTransceivers():
            mid = transceiver.mid
            if mid is None or transceiver.kind not in ("audio", "video") or mid not in answer_sections:
                continue
            section = answer_sections[mid]
            direction = transceiver.currentDirection or "inactive"
            dtls = transceiver.receiver.transport
            self._hook_transport(dtls)
            writer = self._writers[id(dtls)]
            self._mid_writer[mid] = writer
            if URI_MID in section.extensions:
                self._mid_ext_id = section.extensions[URI_MID]
            rtcp_ssrc = aiortc_hooks.sender_ssrc(transceiver.sender)
            if direction in ("sendrecv", "recvonly") and section.port != 0:
                self._refresh_source(transceiver, section, remote_sections.get(mid), rtcp_ssrc)
            elif mid in self._sources:
                self._end_source(mid)
            if direction in ("sendrecv", "sendonly") and section.port != 0:
                sink = self._sinks.get(mid)
                if sink is None:
                    sink = self._sinks[mid] = RtpSink(self, section, rtcp_ssrc)
                else:
                    sink._configure(section)
                sink._writer = writer
                if id(transceiver.sender) not in self._taken_senders:
                    self._taken_senders.add(id(transceiver.sender))
                    aiortc_hooks.take_over_sender(transceiver.sender, sink._on_feedback)
            elif mid in self._sinks:
                self._sinks.pop(mid)._close()

    async def close(self) -> None:
        """Say BYE for our outbound streams, close the peer connection, end sources and sinks."""
        if self.state is LegState.CONNECTED:
            for mid, sink in self._sinks.items():
                writer = self._mid_writer.get(mid)
                if writer is not None and sink.stats.packets:
                    writer.send_rtcp(rtcp_bye([sink.ssrc]))
        self._closed()
        await self.pc.close()

    # internals ---------------------------------------------------------------------------------

    def _describe(self) -> str:
        return ", ".join(
            [f"source {s.kind} mid={m}" for m, s in self._sources.items()]
            + [f"sink {s.kind} mid={m}" for m, s in self._sinks.items()]
        ) or "nothing"

    def _refresh_source(
        self, transceiver: Any, section: _sdp.MediaSection, remote: _sdp.MediaSection | None, rtcp_ssrc: int
    ) -> None:
        source = self._sources.get(section.mid)
        if source is None:
            source = self._sources[section.mid] = InboundSource(self, section)
        source._configure(section, rtcp_ssrc)
        source.state = SourceState.LIVE
        if remote is not None and remote.primary_ssrcs:
            for key, (src, _) in list(self._by_ssrc.items()):
                if src is source:
                    del self._by_ssrc[key]
            source.ssrc = remote.primary_ssrcs[0]
            self._by_ssrc[source.ssrc] = (source, False)
            rtx = remote.fid.get(source.ssrc)
            if rtx is not None:
                self._by_ssrc[rtx] = (source, True)
        if id(transceiver.receiver) not in self._observed_receivers:
            self._observed_receivers.add(id(transceiver.receiver))
            aiortc_hooks.observe_sender_reports(transceiver.receiver, source._on_sender_report)

    def _end_source(self, mid: str) -> None:
        source = self._sources.pop(mid)
        source.state = SourceState.ENDED
        for key, (src, _) in list(self._by_ssrc.items()):
            if src is source:
                del self._by_ssrc[key]

    def _hook_transport(self, dtls: Any) -> None:
        if id(dtls) not in self._hooked:
            self._transports[id(dtls)] = dtls
            self._writers[id(dtls)] = aiortc_hooks.SrtpWriter(dtls)
            self._hooked[id(dtls)] = aiortc_hooks.intercept_rtp(dtls, self._on_rtp)
        if self.state is LegState.CONNECTED and id(dtls) not in self._pumped:
            pump = self.forwarder._pump
            release = pump.adopt(dtls, self._on_rtp) if pump is not None else None
            if release is not None:
                self._pumped[id(dtls)] = release

    def _writer_for(self, mid: str) -> aiortc_hooks.SrtpWriter:
        return self._mid_writer[mid]

    def _on_rtp(self, data: bytes) -> None:
        try:
            entry = self._by_ssrc.get(U32.unpack_from(data, 8)[0])
            if entry is None:
                entry = self._learn(data)
                if entry is None:
                    return
            entry[0]._on_packet(data, entry[1], time.monotonic())
        except Exception:
            self._errors += 1
            if self._errors <= 5:
                logger.exception("leg %s: dropping an RTP packet that failed to forward", self.name)

    def _learn(self, data: bytes) -> tuple[InboundSource, bool] | None:
        """An SSRC the SDP did not announce: find its m-section by MID extension, else by PT."""
        if len(data) < 12 or len(self._by_ssrc) >= MAX_LEARNED_SSRCS:
            return None
        ssrc = U32.unpack_from(data, 8)[0]
        pt = data[1] & 0x7F
        source: InboundSource | None = None
        b0 = data[0]
        pos = 12 + ((b0 & 0x0F) << 2)
        if b0 & 0x10 and self._mid_ext_id and len(data) >= pos + 4:
            end = pos + 4 + (((data[pos + 2] << 8) | data[pos + 3]) << 2)
            mid = find_extension(data, pos + 4, end, self._mid_ext_id)
            if mid is not None:
                source = self._sources.get(mid.decode(errors="replace"))
        if source is None:
            candidates = [s for s in self._sources.values() if pt in s.codecs or pt in s._rtx_apt]
            if len(candidates) != 1:
                return None
            source = candidates[0]
        is_rtx = pt in source._rtx_apt
        if not is_rtx:
            if source.ssrc is not None and source.ssrc != ssrc:
                # the sender changed SSRC (new track): the new one wins
                self._by_ssrc.pop(source.ssrc, None)
                source._reset_reception()
            source.ssrc = ssrc
        entry = (source, is_rtx)
        self._by_ssrc[ssrc] = entry
        return entry

    def _send_reports(self, now: float, wallclock: float) -> None:
        """Per report interval: SR for each outbound stream that sent, RR for what we receive,
        and the viewers' bitrate estimates passed up to video senders."""
        if self._stock_rtcp_pending:
            settled = True
            for transceiver in self.pc.getTransceivers():
                if transceiver.mid in self._sinks or transceiver.mid in self._sources:
                    settled &= aiortc_hooks.stop_stock_rtcp(transceiver.sender, transceiver.receiver)
            self._stock_rtcp_pending = not settled
        by_writer: dict[int, tuple[aiortc_hooks.SrtpWriter, list[bytes], list[ReportBlock], int]] = {}
        for mid, source in self._sources.items():
            writer = self._mid_writer.get(mid)
            if writer is None:
                continue
            entry = by_writer.setdefault(id(writer), (writer, [], [], source._rtcp_ssrc))
            block = source._report_block(now)
            if block is not None:
                entry[2].append(block)
        for mid, sink in self._sinks.items():
            writer = self._mid_writer.get(mid)
            if writer is None:
                continue
            entry = by_writer.setdefault(id(writer), (writer, [], [], sink.ssrc))
            packet = sink._sender_report(entry[2], now, wallclock)
            if packet is not None:
                if not entry[1]:
                    entry[2].clear()  # the first SR carries the reception reports
                entry[1].append(packet)
        for writer, packets, blocks, ssrc in by_writer.values():
            compound = packets if packets else ([rtcp_rr(ssrc, blocks)] if blocks else [])
            if not compound:
                continue
            compound.append(rtcp_sdes_cname(ssrc, self.cname))
            writer.send_rtcp(b"".join(compound))
        for mid, source in self._sources.items():
            packet = source._remb_packet()
            if packet is not None and mid in self._mid_writer:
                self._mid_writer[mid].send_rtcp(packet)

    def _on_signaling(self) -> None:
        self._generation += 1
        if self.pc.signalingState == "stable":
            asyncio.get_running_loop().call_soon(self.refresh)

    def _on_connection(self) -> None:
        state = self.pc.connectionState
        self._generation += 1
        if state == "connected" and self.state is LegState.NEW:
            self.state = LegState.CONNECTED
            self.refresh()
            for dtls in list(self._transports.values()):
                self._hook_transport(dtls)
        elif state in ("closed", "failed"):
            self._closed()

    def _closed(self) -> None:
        if self.state is LegState.CLOSED:
            return
        self.state = LegState.CLOSED
        for writer in self._writers.values():
            writer.close()
        for release in self._pumped.values():
            release()
        self._pumped.clear()
        for undo in self._hooked.values():
            undo()
        for source in self._sources.values():
            source.state = SourceState.ENDED
            for sink in list(source._sinks):
                sink.attach(None)
        for sink in self._sinks.values():
            sink._close()
        self._by_ssrc.clear()
        self.forwarder._legs.discard(self)


class Forwarder:
    """Process-wide owner of the legs and of the RTCP report clock.

    Why one object: the report timer, the shared hold tone and the set of live legs are per event
    loop; calls (a later layer) only join legs' sinks to sources and never see RTP.
    """

    def __init__(self, report_interval: float = 1.0, batch_interval: float = 0.0) -> None:
        """``batch_interval``: seconds the receive pump may wait to batch packets (0: never)."""
        aiortc_hooks.check_compatibility()
        self.report_interval = report_interval
        self._pump = aiortc_hooks.DatagramPump(batch_interval) if aiortc_hooks.PUMP_AVAILABLE else None
        self._legs: set[Leg] = set()
        self._task: asyncio.Task[None] | None = None
        self._hold_tone: HoldTone | None = None
        self._count = 0

    @property
    def legs(self) -> list[Leg]:
        return list(self._legs)

    def add_leg(self, pc: RTCPeerConnection, name: str | None = None) -> Leg:
        """Adopt a peer connection (before or after negotiation; the forwarder then owns its RTP)."""
        self._count += 1
        leg = Leg(self, pc, name or f"leg{self._count}")
        self._legs.add(leg)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._report_loop())
        leg.refresh()
        return leg

    def hold_tone(self) -> "HoldTone":
        """The shared hold tone: one clock and one set of pre-encoded packets for every held sink."""
        if self._hold_tone is None:
            from .preencoded import HoldTone

            self._hold_tone = HoldTone()
        return self._hold_tone

    async def close(self) -> None:
        """Close every leg and stop the report clock."""
        for leg in list(self._legs):
            await leg.close()
        if self._hold_tone is not None:
            self._hold_tone.stop()
        if self._pump is not None:
            self._pump.close()
            self._pump = None
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _report_loop(self) -> None:
        """Each leg reports once per interval at its own phase: a slice of the legs every tick,
        so a thousand legs never stall the loop for one long burst of RTCP."""
        due: dict[Leg, float] = {}
        async for tick in ticks(0.05):
            now, wallclock = tick.now, time.time()
            for leg in list(self._legs):
                when = due.get(leg)
                if when is None:
                    due[leg] = now + random.random() * self.report_interval
                    continue
                if when > now or leg.state is not LegState.CONNECTED:
                    continue
                due[leg] = now + self.report_interval * (0.75 + random.random() / 2)
                try:
                    leg._send_reports(now, wallclock)
                except Exception:
                    logger.exception("leg %s: RTCP reports failed", leg.name)
            if len(due) > len(self._legs):
                for leg in [leg for leg in due if leg not in self._legs]:
                    del due[leg]
