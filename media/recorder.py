"""Call recording without decoding: what both sides send, muxed into one WebM with av.

Why no decoding: the forwarder already holds every participant's encoded media; a tap on a source
(:meth:`media.forwarder.RtpSource.tap`) hands each RTP payload over, and an Opus RTP payload *is*
an Opus packet, so recording audio costs a mux call per packet. VP8 needs only reassembly: the
payloads of one frame, descriptors stripped (:class:`media.rtp.Vp8Depacketizer`), are the frame.

Four tracks, all declared at the start (the WebM header is written then): 0 = customer audio,
1 = agent audio, 2 = customer video, 3 = agent video (the agent tracks follow whoever holds the
agent role at the time: a transfer continues on the same tracks). A video track follows the
participant's camera, else their screen share; after each switch it waits for a keyframe and asks
the source for one. Other video codecs (H264) are not recorded. Timestamps are arrival times on
one clock, so the tracks stay aligned and silence (hold, mute, camera off) is a gap.

Why the blank frames: ffmpeg's interleaver does not wait for an audio track with nothing to
write (after ``max_interleave_delta``, 10 s) but does wait for a VP8 track with nothing queued,
so a call without video would sit in memory until it ends. A video track with nothing written
for :data:`KEEPALIVE_S` therefore gets a tiny *invisible* keyframe (16x16, show_frame=0), which
players and decoders skip; the track then waits for a real keyframe again.
"""

from __future__ import annotations

import fractions
import functools
import logging
import time
from collections.abc import Callable
from pathlib import Path

import av

from .forwarder import RtpPacketInfo, RtpSource
from .rtp import Vp8Depacketizer

log = logging.getLogger(__name__)

AUDIO_TRACKS = ("customer", "agent")
VIDEO_TRACKS = ("customer_video", "agent_video")
TRACKS = AUDIO_TRACKS + VIDEO_TRACKS
TIME_BASE = fractions.Fraction(1, 48000)
VIDEO_TIME_BASE = fractions.Fraction(1, 90000)
VIDEO_SIZE = (640, 480)  # nominal, in the header only: decoders use the size in the VP8 frames
KEEPALIVE_S = 4.0  # a video track without frames this long gets an invisible blank keyframe
KEYFRAME_RETRY_S = 1.0  # while waiting for a keyframe, ask the source again at most this often


@functools.cache
def _blank_vp8() -> bytes | None:
    """A 16x16 VP8 keyframe with show_frame cleared (decoders take it and show nothing)."""
    try:
        encoder = av.CodecContext.create("libvpx", "w")
        encoder.width = encoder.height = 16
        encoder.pix_fmt = "yuv420p"
        encoder.time_base = fractions.Fraction(1, 30)
        frame = av.VideoFrame(16, 16, "yuv420p")
        for plane, value in zip(frame.planes, (16, 128, 128)):
            plane.update(bytes([value]) * plane.buffer_size)
        data = bytearray(b"".join(bytes(p) for p in [*encoder.encode(frame), *encoder.encode(None)]))
        data[0] &= ~0x10  # frame tag: show_frame = 0
        return bytes(data)
    except Exception:  # noqa: BLE001 - without it, a call without video is buffered until it ends
        log.exception("recording: no VP8 encoder for the blank keep-alive frame")
        return None


class CallRecorder:
    """``rec = CallRecorder(path)``; ``rec.follow("customer", source)`` (None: stop following;
    tracks: :data:`TRACKS`); ``rec.close()``. Audio that is not Opus and video that is not VP8
    are skipped. ``packets`` counts what each track got (audio packets, video frames)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._out = av.open(str(self.path), "w", format="webm")
        self._streams = {}
        for name in AUDIO_TRACKS:
            stream = self._out.add_stream("libopus", rate=48000)
            stream.codec_context.layout = "stereo"
            stream.codec_context.format = "s16"
            stream.time_base = TIME_BASE
            stream.metadata["title"] = name
            self._streams[name] = stream
        for name in VIDEO_TRACKS:
            stream = self._out.add_mux_stream("vp8", width=VIDEO_SIZE[0], height=VIDEO_SIZE[1])
            stream.time_base = VIDEO_TIME_BASE
            stream.metadata["title"] = name
            self._streams[name] = stream
        self._out.start_encoding()
        _blank_vp8()  # encoded once per process, here rather than in a packet callback
        self._t0 = time.monotonic()
        self._following: dict[str, tuple[RtpSource, Callable[[], None]]] = {}
        self._last_pts = {name: -960 for name in AUDIO_TRACKS} | {name: -90 for name in VIDEO_TRACKS}
        self._depacketizers = {name: Vp8Depacketizer() for name in VIDEO_TRACKS}
        self._last_frame = {name: self._t0 for name in VIDEO_TRACKS}  # arrival of the last one muxed
        self._asked = {name: 0.0 for name in VIDEO_TRACKS}  # last keyframe request
        self._next_keepalive_check = self._t0 + 1.0
        self._skipped: set[tuple[str, str]] = set()
        self.packets = {name: 0 for name in TRACKS}
        self.closed = False

    def follow(self, track: str, source: RtpSource | None) -> None:
        current = self._following.get(track)
        if current is not None and current[0] is source:
            return
        if current is not None:
            current[1]()
            del self._following[track]
        if track in self._depacketizers:
            self._depacketizers[track].reset()
        if source is None or self.closed:
            return
        if track in self._depacketizers:
            untap = source.tap(lambda info: self._write_video(track, source, info))
            self._following[track] = (source, untap)
            self._ask_keyframe(track, source, time.monotonic(), force=True)
            return
        opus = {pt for pt, codec in source.codecs.items() if codec.name == "OPUS"}
        if not opus:
            return
        untap = source.tap(lambda info: self._write(track, opus, info))
        self._following[track] = (source, untap)

    def _write(self, track: str, opus: set[int], info: RtpPacketInfo) -> None:
        if self.closed or info.payload_type not in opus or not info.payload:
            return
        if info.arrival >= self._next_keepalive_check:
            self._keep_alive(info.arrival)
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

    def _write_video(self, track: str, source: RtpSource, info: RtpPacketInfo) -> None:
        if self.closed or not info.payload:
            return
        try:
            if info.arrival >= self._next_keepalive_check:
                self._keep_alive(info.arrival)
            codec = source.codecs.get(info.payload_type)
            if codec is None or codec.name != "VP8":
                name = codec.name if codec is not None else f"payload type {info.payload_type}"
                if (track, name) not in self._skipped:
                    self._skipped.add((track, name))
                    log.info("recording %s: %s video is not recorded (VP8 only)", self.path.name, name)
                return
            depacketizer = self._depacketizers[track]
            frame = depacketizer.push(info.sequence_number, info.timestamp, info.marker, info.payload)
            if frame is None:
                if depacketizer.waiting:
                    self._ask_keyframe(track, source, info.arrival)
                return
            self._mux_video(track, frame[0], frame[1], info.arrival)
            self.packets[track] += 1
        except Exception:  # noqa: BLE001 - a bad frame must not break forwarding
            log.exception("recording %s: a video frame failed to mux", self.path.name)

    def _mux_video(self, track: str, data: bytes, keyframe: bool, arrival: float) -> None:
        pts = max(int((arrival - self._t0) * 90000), self._last_pts[track] + 90)
        self._last_pts[track] = pts
        self._last_frame[track] = arrival
        packet = av.Packet(data)
        packet.stream = self._streams[track]
        packet.pts = packet.dts = pts
        packet.time_base = VIDEO_TIME_BASE
        packet.is_keyframe = keyframe
        self._out.mux(packet)

    def _ask_keyframe(self, track: str, source: RtpSource, now: float, force: bool = False) -> None:
        if force or now - self._asked[track] >= KEYFRAME_RETRY_S:
            self._asked[track] = now
            source.request_keyframe()

    def _keep_alive(self, now: float) -> None:
        """Blank invisible keyframes into video tracks that had nothing for a while (see the
        module docstring); such a track then waits for a real keyframe again."""
        self._next_keepalive_check = now + 1.0
        blank = _blank_vp8()
        if blank is None:
            return
        for track in VIDEO_TRACKS:
            if now - self._last_frame[track] >= KEEPALIVE_S:
                self._depacketizers[track].reset()
                try:
                    self._mux_video(track, blank, True, now)
                except Exception:  # noqa: BLE001 - never into the forwarder's hot path
                    log.exception("recording %s: a blank frame failed to mux", self.path.name)

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
