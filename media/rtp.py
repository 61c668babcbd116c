"""RTP/RTCP byte helpers for the forwarder: no aiortc, no objects on the hot path.

Everything here works on ``bytes`` with :mod:`struct`; the forwarder calls these per packet, so
they avoid building objects. RTCP builders return complete (unencrypted) packets.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

RTP_HEADER = struct.Struct("!BBHII")  # V/P/X/CC, M/PT, seq, timestamp, SSRC
SEQ_TS = struct.Struct("!HI")
U16 = struct.Struct("!H")
U32 = struct.Struct("!I")

# RTCP packet types and feedback formats (RFC 3550, 4585, 5104).
RTCP_SR = 200
RTCP_RR = 201
RTCP_SDES = 202
RTCP_BYE = 203
RTCP_RTPFB = 205
RTCP_PSFB = 206
NACK_FMT = 1
PLI_FMT = 1
FIR_FMT = 4
REMB_FMT = 15

NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900 to 1970


def is_rtcp(data: bytes) -> bool:
    """RFC 5761 demultiplexing: RTCP packet types 192..223 share the second byte with RTP M/PT."""
    return len(data) >= 2 and 191 < data[1] < 224


def seq_newer(a: int, b: int) -> bool:
    """True when 16-bit sequence number ``a`` comes after ``b`` (modular)."""
    return a != b and ((a - b) & 0xFFFF) < 0x8000


def ntp_time(wallclock: float) -> int:
    """64-bit NTP timestamp for a UNIX time."""
    return int((wallclock + NTP_EPOCH_OFFSET) * (1 << 32)) & 0xFFFFFFFFFFFFFFFF


# --- header extensions -------------------------------------------------------------------------

URI_MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
URI_AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
URI_ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"


def find_extension(data: bytes, start: int, end: int, ext_id: int) -> bytes | None:
    """Value of one header extension element in ``data[start:end]`` (the extension body).

    Handles the one-byte (0xBEDE) and two-byte (0x100x) forms; ``start`` points just past the
    4-byte extension header whose profile is at ``start - 4``.
    """
    profile = (data[start - 4] << 8) | data[start - 3]
    pos = start
    if profile == 0xBEDE:
        while pos < end:
            b = data[pos]
            if b == 0:  # padding
                pos += 1
                continue
            eid = b >> 4
            length = (b & 0x0F) + 1
            if eid == 15:
                return None
            if eid == ext_id:
                return data[pos + 1 : pos + 1 + length]
            pos += 1 + length
    elif (profile & 0xFFF0) == 0x1000:
        while pos + 1 < end:
            eid = data[pos]
            if eid == 0:
                pos += 1
                continue
            length = data[pos + 1]
            if eid == ext_id:
                return data[pos + 2 : pos + 2 + length]
            pos += 2 + length
    return None


def build_extensions(elements: list[tuple[int, bytes]]) -> bytes:
    """One-byte-header extension block (RFC 8285) for ``[(id, value), ...]``; b"" when empty."""
    body = b"".join(bytes([(eid << 4) | (len(value) - 1)]) + value for eid, value in elements)
    if not body:
        return b""
    body += b"\x00" * (-len(body) % 4)
    return b"\xbe\xde" + U16.pack(len(body) // 4) + body


# --- codec payload inspection ------------------------------------------------------------------


def vp8_descriptor(payload: bytes) -> tuple[int, int, int, int]:
    """Parse a VP8 payload descriptor (RFC 7741).

    Returns ``(header_len, picture_id_pos, picture_id_bits, tl0_pos)``; positions are -1 when
    the field is absent, ``picture_id_bits`` is 7 or 15 (0 when absent). A descriptor that runs
    past the payload (a hostile or broken sender; tests/fuzz) gives ``header_len`` beyond the
    payload and no positions: there is no frame in it.
    """
    truncated = (len(payload) + 1, -1, 0, -1)
    if len(payload) < 3 and (not payload or payload[0] & 0x80):
        return truncated
    b = payload[0]
    pos = 1
    pid_pos = -1
    pid_bits = 0
    tl0_pos = -1
    if b & 0x80:  # X
        x = payload[1]
        pos = 2
        if x & 0x80:  # I
            pid_pos = pos
            if payload[pos] & 0x80:
                pid_bits = 15
                pos += 2
            else:
                pid_bits = 7
                pos += 1
        if x & 0x40:  # L
            tl0_pos = pos
            pos += 1
        if x & 0x30:  # T or K
            pos += 1
    if pos > len(payload):
        return truncated
    return pos, pid_pos, pid_bits, tl0_pos


def vp8_keyframe_start(payload: bytes) -> bool:
    """True for the first packet of a VP8 keyframe (S=1, PID=0, P=0 in the VP8 payload header)."""
    if len(payload) < 2:
        return False
    b = payload[0]
    if not (b & 0x10) or (b & 0x0F):
        return False
    hlen = vp8_descriptor(payload)[0]
    return len(payload) > hlen and not (payload[hlen] & 0x01)


def vp8_keyframe_size(payload: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from the first packet of a VP8 keyframe, else None (no decoding)."""
    if not vp8_keyframe_start(payload):
        return None
    hlen = vp8_descriptor(payload)[0]
    frame = payload[hlen:]
    if len(frame) < 10 or frame[3:6] != b"\x9d\x01\x2a":
        return None
    width = (frame[6] | (frame[7] << 8)) & 0x3FFF
    height = (frame[8] | (frame[9] << 8)) & 0x3FFF
    return width, height


def h264_keyframe_start(payload: bytes) -> bool:
    """True when an H264 RTP payload (RFC 6184) starts an IDR picture or carries SPS."""
    if not payload:
        return False
    nal = payload[0] & 0x1F
    if nal in (5, 7):
        return True
    if nal == 24:  # STAP-A
        pos = 1
        while pos + 2 < len(payload):
            size = (payload[pos] << 8) | payload[pos + 1]
            if pos + 2 < len(payload) and (payload[pos + 2] & 0x1F) in (5, 7):
                return True
            pos += 2 + size
        return False
    if nal == 28 and len(payload) > 1:  # FU-A start fragment
        return bool(payload[1] & 0x80) and (payload[1] & 0x1F) in (5, 7)
    return False


def keyframe_start(codec_name: str, payload: bytes) -> bool:
    """Codec-dispatching keyframe test (audio codecs are always "key")."""
    if codec_name == "VP8":
        return vp8_keyframe_start(payload)
    if codec_name == "H264":
        return h264_keyframe_start(payload)
    return True


def vp8_packetize(frame: bytes, picture_id: int, max_size: int = 1200) -> list[bytes]:
    """Split one VP8 frame into RTP payloads with a 15-bit picture id descriptor."""
    out = []
    pos = 0
    first = True
    chunk = max_size - 4
    while pos < len(frame) or first:
        head = bytes([0x90 if first else 0x80, 0x80, 0x80 | (picture_id >> 8), picture_id & 0xFF])
        out.append(head + frame[pos : pos + chunk])
        pos += chunk
        first = False
    return out


class Vp8Depacketizer:
    """Reassembles VP8 frames from RTP payloads (RFC 7741) without decoding (the recorder's).

    ``push(seq, ts, marker, payload)`` returns ``(frame, keyframe)`` when a frame completes, else
    None. A frame is the payloads (descriptor stripped) of consecutive packets with one RTP
    timestamp, from the packet starting partition 0 (S=1, PID=0) to the one with the marker bit.
    A sequence gap (or a frame left without its marker) drops the partial frame and everything up
    to the next keyframe, since later frames refer to what was lost; so does a fresh start.
    ``waiting`` is True while a keyframe is needed. Late or duplicate packets are ignored.
    """

    __slots__ = ("waiting", "_parts", "_ts", "_key", "_last_seq")

    def __init__(self) -> None:
        self.waiting = True
        self._parts: list[bytes] | None = None
        self._ts = 0
        self._key = False
        self._last_seq = -1

    def reset(self) -> None:
        """Forget the partial frame and wait for a keyframe (new source, or the decoder's state
        was disturbed)."""
        self.waiting = True
        self._parts = None
        self._last_seq = -1

    def push(self, seq: int, ts: int, marker: bool, payload: bytes) -> tuple[bytes, bool] | None:
        last = self._last_seq
        if last >= 0:
            if not seq_newer(seq, last):
                return None
            if seq != (last + 1) & 0xFFFF:
                self._parts = None
                self.waiting = True
        self._last_seq = seq
        try:
            hlen = vp8_descriptor(payload)[0]
        except IndexError:
            hlen = len(payload) + 1
        if hlen > len(payload):  # truncated descriptor: treat like a loss
            self._parts = None
            self.waiting = True
            return None
        if self._parts is not None and ts != self._ts:  # the frame never got its marker
            self._parts = None
            self.waiting = True
        b = payload[0]
        if (b & 0x17) == 0x10:  # S=1, PID=0: a frame starts
            key = len(payload) > hlen and not (payload[hlen] & 0x01)
            if self.waiting and not key:
                self._parts = None
                return None
            self.waiting = False
            self._parts = [payload[hlen:]]
            self._ts = ts
            self._key = key
        elif self._parts is not None:
            self._parts.append(payload[hlen:])
        else:
            return None
        if not marker:
            return None
        frame = b"".join(self._parts)
        self._parts = None
        return frame, self._key


# --- RTCP builders ------------------------------------------------------------------------------


@dataclass(slots=True)
class ReportBlock:
    """One reception report (RFC 3550 6.4.1) about a stream the server receives."""

    ssrc: int
    fraction_lost: int
    packets_lost: int
    highest_sequence: int
    jitter: int = 0
    lsr: int = 0
    dlsr: int = 0

    def pack(self) -> bytes:
        lost = self.packets_lost
        lost = max(-0x800000, min(lost, 0x7FFFFF)) & 0xFFFFFF
        return struct.pack(
            "!IB3sIIII",
            self.ssrc,
            self.fraction_lost & 0xFF,
            lost.to_bytes(3, "big"),
            self.highest_sequence & 0xFFFFFFFF,
            self.jitter,
            self.lsr,
            self.dlsr,
        )


def _rtcp_header(count: int, ptype: int, body_len: int) -> bytes:
    return struct.pack("!BBH", 0x80 | count, ptype, (body_len + 4) // 4 - 1)


def rtcp_sr(ssrc: int, ntp: int, rtp_ts: int, packets: int, octets: int, reports: list[ReportBlock]) -> bytes:
    body = struct.pack("!IQIII", ssrc, ntp, rtp_ts & 0xFFFFFFFF, packets & 0xFFFFFFFF, octets & 0xFFFFFFFF)
    body += b"".join(r.pack() for r in reports[:31])
    return _rtcp_header(min(len(reports), 31), RTCP_SR, len(body)) + body


def rtcp_rr(ssrc: int, reports: list[ReportBlock]) -> bytes:
    body = U32.pack(ssrc) + b"".join(r.pack() for r in reports[:31])
    return _rtcp_header(min(len(reports), 31), RTCP_RR, len(body)) + body


def rtcp_sdes_cname(ssrc: int, cname: str) -> bytes:
    raw = cname.encode()[:255]
    chunk = U32.pack(ssrc) + bytes([1, len(raw)]) + raw + b"\x00"
    chunk += b"\x00" * (-len(chunk) % 4)
    return _rtcp_header(1, RTCP_SDES, len(chunk)) + chunk


def rtcp_bye(ssrcs: list[int]) -> bytes:
    body = b"".join(U32.pack(s) for s in ssrcs[:31])
    return _rtcp_header(min(len(ssrcs), 31), RTCP_BYE, len(body)) + body


def rtcp_pli(sender_ssrc: int, media_ssrc: int) -> bytes:
    return _rtcp_header(PLI_FMT, RTCP_PSFB, 8) + struct.pack("!II", sender_ssrc, media_ssrc)


def rtcp_nack(sender_ssrc: int, media_ssrc: int, lost: list[int]) -> bytes:
    """Generic NACK (RFC 4585 6.2.1): pairs of PID + bitmask of the following 16."""
    fci = b""
    seqs = sorted(set(s & 0xFFFF for s in lost), key=lambda s: (s - lost[0]) & 0xFFFF)
    i = 0
    while i < len(seqs):
        pid = seqs[i]
        blp = 0
        i += 1
        while i < len(seqs) and 0 < ((seqs[i] - pid) & 0xFFFF) <= 16:
            blp |= 1 << (((seqs[i] - pid) & 0xFFFF) - 1)
            i += 1
        fci += struct.pack("!HH", pid, blp)
    body = struct.pack("!II", sender_ssrc, media_ssrc) + fci
    return _rtcp_header(NACK_FMT, RTCP_RTPFB, len(body)) + body


def rtcp_remb(sender_ssrc: int, bitrate: int, ssrcs: list[int]) -> bytes:
    """Receiver Estimated Maximum Bitrate (draft-alvestrand-rmcat-remb)."""
    exp = 0
    mantissa = max(0, int(bitrate))
    while mantissa > 0x3FFFF:
        mantissa >>= 1
        exp += 1
    fci = b"REMB" + bytes([len(ssrcs), (exp << 2) | (mantissa >> 16)]) + U16.pack(mantissa & 0xFFFF)
    fci += b"".join(U32.pack(s) for s in ssrcs)
    body = struct.pack("!II", sender_ssrc, 0) + fci
    return _rtcp_header(REMB_FMT, RTCP_PSFB, len(body)) + body


# --- feedback arriving from a sink's far end -----------------------------------------------------


class FeedbackKind(enum.Enum):
    """What a receiver asked of the stream the server sends it."""

    NACK = "nack"
    PLI = "pli"
    FIR = "fir"
    REMB = "remb"
    REPORT = "report"


@dataclass(slots=True)
class Feedback:
    """RTCP feedback about one outbound stream, decoupled from aiortc's RTCP classes."""

    kind: FeedbackKind
    lost: tuple[int, ...] = ()
    bitrate: int = 0
    fraction_lost: int = 0
    packets_lost: int = 0
    jitter: int = 0
