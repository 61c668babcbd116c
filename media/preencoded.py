"""Pre-encoded sources: media encoded once, replayed as RTP with proper timing.

Why: hold music/tones, "please wait" slates and benchmark load must not cost an encoder per
call. The packets are encoded once per process (at first use) and a single clock replays them to
every attached sink; each sink re-stamps them like any other source.
"""

from __future__ import annotations

import array
import asyncio
import fractions
import functools
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import av

from ._sdp import CodecSpec
from .forwarder import RtpSource, SourceState
from .rtp import vp8_packetize

OPUS = CodecSpec("OPUS", 48000, 2)
VP8 = CodecSpec("VP8", 90000)
OPUS_PT = 111
VP8_PT = 96
MAX_LAG_S = 0.25  # behind by more than this (event loop stalled): skip ahead, never burst


@dataclass(frozen=True)
class EncodedFrame:
    """One encoded frame: its bytes, how long it lasts (clock ticks), whether decoding can start
    there, and the RTP audio level (-dBov, 0..127) when known."""

    data: bytes
    duration: int
    keyframe: bool = True
    audio_level: int | None = None


class PreEncodedSource(RtpSource):
    """Replays a loop of :class:`EncodedFrame` on its own clock to every attached sink.

    The clock runs only while something is attached. A keyframe request (a new viewer) jumps to
    the next keyframe in the loop. Sequence numbers and timestamps run on continuously across
    loops, so a sink sees an ordinary live stream.
    """

    def __init__(
        self,
        kind: str,
        codec: CodecSpec,
        frames: Sequence[EncodedFrame],
        payload_type: int | None = None,
        label: str = "",
    ) -> None:
        if not frames:
            raise ValueError("a pre-encoded source needs at least one frame")
        pt = payload_type if payload_type is not None else (VP8_PT if codec.name == "VP8" else OPUS_PT)
        super().__init__(kind, {pt: codec}, label=label or f"preencoded-{codec.name.lower()}")
        self.codec = codec
        self.frames = tuple(frames)
        self._pt = pt
        self._index = 0
        self._seq = 0
        self._ts = 0
        self._picture_id = 0
        self._next = 0.0
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._seconds = [f.duration / codec.clock_rate for f in self.frames]

    @classmethod
    def from_packets(
        cls, kind: str, codec: CodecSpec, packets: Sequence[av.Packet], label: str = ""
    ) -> "PreEncodedSource":
        """From PyAV packets (e.g. an encoder's output): durations from pts deltas."""
        frames = []
        rate = codec.clock_rate
        stamps = [p.pts if p.pts is not None else 0 for p in packets]
        for i, packet in enumerate(packets):
            base = packet.time_base or fractions.Fraction(1, rate)
            if i + 1 < len(packets):
                ticks = (stamps[i + 1] - stamps[i]) * base * rate
            else:
                ticks = (packet.duration or 0) * base * rate or (frames[-1].duration if frames else rate // 50)
            frames.append(EncodedFrame(bytes(packet), max(int(ticks), 1), bool(packet.is_keyframe)))
        return cls(kind, codec, frames, label=label)

    def request_keyframe(self) -> None:
        if self.kind != "video" or self.frames[self._index].keyframe:
            return
        self.stats.keyframe_requests += 1
        n = len(self.frames)
        for step in range(1, n + 1):
            j = (self._index + step) % n
            if self.frames[j].keyframe:
                self._index = j
                return

    def stop(self) -> None:
        """Stop the clock for good and detach every sink."""
        self.state = SourceState.ENDED
        for sink in list(self._sinks):
            sink.attach(None)
        self._taps.clear()
        self._consumers_changed()

    def _consumers_changed(self) -> None:
        wanted = bool(self._sinks or self._taps) and self.state is SourceState.LIVE
        if wanted and self._handle is None:
            self._loop = asyncio.get_running_loop()
            self._next = self._loop.time()
            self._handle = self._loop.call_at(self._next, self._tick)
        elif not wanted and self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self) -> None:
        loop = self._loop
        assert loop is not None
        now = loop.time()
        if now - self._next > MAX_LAG_S:
            self._next = now
        while self._next <= now + 0.0005 and self._handle is not None:
            self._emit(now)
            self._next += self._seconds[self._index - 1]
        if self._handle is not None:
            self._handle = loop.call_at(self._next, self._tick)

    def _emit(self, now: float) -> None:
        frame = self.frames[self._index]
        self._index = (self._index + 1) % len(self.frames)
        if self.codec.name == "VP8":
            payloads = vp8_packetize(frame.data, self._picture_id)
            self._picture_id = (self._picture_id + 1) & 0x7FFF
        else:
            payloads = [frame.data]
        last = len(payloads) - 1
        for i, payload in enumerate(payloads):
            self.stats.packets += 1
            self.stats.octets += len(payload)
            self._deliver(0, 0x80 if i == last else 0, self._pt, self._seq, self._ts, payload, frame.audio_level, now)
            self._seq = (self._seq + 1) & 0xFFFF
        self._ts = (self._ts + frame.duration) & 0xFFFFFFFF


def _dbov(samples: Sequence[float]) -> int:
    rms = math.sqrt(sum(s * s for s in samples) / max(len(samples), 1))
    if rms <= 1e-9:
        return 127
    return max(0, min(127, int(round(-20 * math.log10(rms)))))


@functools.lru_cache(maxsize=16)
def encode_opus_tone(
    frequency: float = 425.0,
    level_dbfs: float = -16.0,
    on_ms: int = 1000,
    off_ms: int = 0,
    loop_ms: int = 1000,
    bitrate: int = 32000,
) -> tuple[EncodedFrame, ...]:
    """A loop of 20 ms Opus frames: a sine at ``frequency`` (``on_ms`` on, ``off_ms`` silent).

    The loop is encoded twice over and the second pass kept, so the encoder has settled and the
    loop seam sounds like any other frame boundary. ``loop_ms`` should hold a whole number of
    cadence periods and of tone cycles (1 s loops do for integer frequencies).
    """
    rate, frame = 48000, 960
    amplitude = 10 ** (level_dbfs / 20)
    n_frames = loop_ms // 20
    period = on_ms + off_ms
    codec = av.CodecContext.create("libopus", "w")
    codec.bit_rate = bitrate
    codec.sample_rate = rate
    codec.layout = "mono"
    codec.format = "s16"
    codec.time_base = fractions.Fraction(1, rate)
    codec.options = {"application": "voip"}
    packets: list[bytes] = []
    levels: list[int] = []
    for i in range(2 * n_frames):
        t0 = (i % n_frames) * frame
        samples = []
        for k in range(frame):
            ms = ((t0 + k) * 1000 // rate) % period if period else 0
            on = ms < on_ms
            samples.append(amplitude * math.sin(2 * math.pi * frequency * (t0 + k) / rate) if on else 0.0)
        pcm = array.array("h", (int(max(-1.0, min(1.0, s)) * 32767) for s in samples))
        if sys.byteorder != "little":
            pcm.byteswap()
        audio = av.AudioFrame(format="s16", layout="mono", samples=frame)
        audio.planes[0].update(pcm.tobytes())
        audio.sample_rate = rate
        audio.pts = i * frame
        audio.time_base = fractions.Fraction(1, rate)
        for packet in codec.encode(audio):
            packets.append(bytes(packet))
        if i >= n_frames:
            levels.append(_dbov(samples))
    for packet in codec.encode(None):
        packets.append(bytes(packet))
    loop = packets[n_frames : 2 * n_frames]
    return tuple(EncodedFrame(data, frame, True, level) for data, level in zip(loop, levels))


class HoldTone(PreEncodedSource):
    """The hold tone: pre-encoded Opus, so holding a caller costs no encoder.

    Share one instance (``Forwarder.hold_tone()``) between all held sinks; it runs only while at
    least one sink is attached. Defaults: 425 Hz at -16 dBFS, continuous.
    """

    def __init__(
        self, frequency: float = 425.0, level_dbfs: float = -16.0, on_ms: int = 1000, off_ms: int = 0
    ) -> None:
        loop_ms = max(1000, on_ms + off_ms)
        frames = encode_opus_tone(frequency, level_dbfs, on_ms, off_ms, loop_ms)
        super().__init__("audio", OPUS, frames, label=f"hold-tone-{frequency:g}Hz")
        self.frequency = frequency
