"""The forwarder end to end: real aiortc peers, real UDP on 127.0.0.1, real SRTP.

Clients are stock aiortc peers (they encode what they send and decode what they receive, as a
browser does); the server legs are owned by the forwarder, which never decodes. Every test checks
what the far end decoded (tone frequency and level, frame colour) and the RTP it received
(sequence continuity across source switches).
"""

from __future__ import annotations

import fractions

import av
import numpy as np
import pytest

from media import CodecMismatch, EncodedFrame, HoldTone, PreEncodedSource, SinkState
from media.preencoded import VP8

from media_testkit import ColorTrack, MediaLab, ToneTrack, dominant_frequency, level_dbfs, tone_purity, until

RED, BLUE, GREEN = (200, 30, 30), (30, 30, 200), (30, 180, 60)


def seq_gaps(packets: list[tuple[int, int, int, bool, int]]) -> list[tuple[int, int]]:
    """Consecutive received sequence numbers that are not +1 apart (mod 2^16)."""
    seqs = [p[0] for p in packets]
    return [(a, b) for a, b in zip(seqs, seqs[1:]) if (b - a) & 0xFFFF != 1]


def mean_rgb(frame: np.ndarray) -> np.ndarray:
    return frame.reshape(-1, 3).mean(axis=0)


def is_colour(frame: np.ndarray, rgb: tuple[int, int, int]) -> bool:
    # the moving white box lifts every channel a little; the dominant channel must match
    mean = mean_rgb(frame)
    return bool(np.all(np.abs(mean - np.array(rgb)) < 40))


async def test_opus_tone_arrives_intact(lab: MediaLab) -> None:
    a = await lab.join("A", send=ToneTrack(1000.0, level=0.3))
    b = await lab.join("B", receive=("audio",))
    sink = b.leg.sink("audio")
    source = a.leg.source("audio")
    sink.attach(source)
    assert sink.state is SinkState.FORWARDING

    await until(lambda: len(b.frames["audio"]) >= 120, "B decodes 2.4 s of audio")
    samples = b.audio(start=20)  # skip the jitter buffer's start-up
    assert abs(dominant_frequency(samples) - 1000.0) < 3.0
    assert tone_purity(samples, 1000.0) > 0.95
    # 0.3 full scale sine: -13.5 dBFS; Opus at aiortc's bitrate keeps the level within a few dB
    assert -20.0 < level_dbfs(samples) < -10.0

    packets = b.rtp["audio"]
    assert len(packets) >= 120
    assert seq_gaps(packets) == []
    opus_pt = {pt for pt, codec in b.leg.sink("audio").codecs.items() if codec.name == "OPUS"}
    assert {p[2] for p in packets} <= opus_pt
    assert all((q[1] - p[1]) & 0xFFFFFFFF == 960 for p, q in zip(packets, packets[1:]))
    assert source.stats.packets >= len(packets)
    assert sink.stats.dropped == 0
    assert sink.stats.packets >= len(packets)


async def test_audio_switch_hold_tone_agent_a_agent_b(lab: MediaLab) -> None:
    a = await lab.join("A", send=ToneTrack(1000.0))
    c = await lab.join("C", send=ToneTrack(600.0))
    b = await lab.join("B", receive=("audio",))
    sink = b.leg.sink("audio")
    hold = lab.forwarder.hold_tone()
    assert isinstance(hold, HoldTone)

    segments = []
    for source, frequency in ((hold, hold.frequency), (a.leg.source("audio"), 1000.0), (c.leg.source("audio"), 600.0)):
        start = len(b.frames["audio"])
        sink.attach(source)
        assert sink.source is source
        await until(lambda: len(b.frames["audio"]) >= start + 60, f"B hears {frequency} Hz")
        segments.append((start, len(b.frames["audio"]), frequency))

    for start, end, frequency in segments:
        samples = b.audio(start + 15, end)  # after the switch has cleared the jitter buffer
        assert abs(dominant_frequency(samples) - frequency) < 5.0, (frequency, dominant_frequency(samples))
        assert tone_purity(samples, frequency) > 0.9

    # one continuous stream for B: same SSRC, no sequence gaps, timestamps always move forward
    packets = b.rtp["audio"]
    assert seq_gaps(packets) == []
    steps = [(q[1] - p[1]) & 0xFFFFFFFF for p, q in zip(packets, packets[1:])]
    assert all(0 < step < 48000 for step in steps)
    assert hold.state.value == "live" and hold.sinks == []  # detached from the hold tone


def slate_source(rgb: tuple[int, int, int]) -> PreEncodedSource:
    """A pre-encoded VP8 "slate" (still picture, one keyframe per second), 320x240 at 15 fps."""
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height, codec.pix_fmt = 320, 240, "yuv420p"
    codec.bit_rate = 300_000
    codec.time_base = fractions.Fraction(1, 90000)
    codec.framerate = 15
    codec.gop_size = 15
    codec.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    img = np.empty((240, 320, 3), np.uint8)
    img[:] = rgb
    frames = []
    for i in range(15):
        frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
        frame.pts = i * 6000
        frame.time_base = fractions.Fraction(1, 90000)
        for packet in codec.encode(frame):
            frames.append(EncodedFrame(bytes(packet), 6000, bool(packet.is_keyframe)))
    assert frames[0].keyframe
    return PreEncodedSource("video", VP8, frames, label="slate")


async def test_vp8_keyframe_request_on_attach_and_switch(lab: MediaLab) -> None:
    a = await lab.join("A", send=ColorTrack(RED))
    c = await lab.join("C", send=ColorTrack(BLUE))
    b = await lab.join("B", receive=("video",))
    # A and C have been sending for a while: their one keyframe (aiortc's encoder makes one per
    # 3000 frames) is long gone, so B can only decode if the forwarder gets a new one for it
    await until(lambda: a.leg.source("video").stats.packets > 40 and c.leg.source("video").stats.packets > 40, "A, C send")
    sink = b.leg.sink("video")
    slate = slate_source(GREEN)

    sequence = [(slate, GREEN), (a.leg.source("video"), RED), (c.leg.source("video"), BLUE)]
    for source, rgb in sequence:
        requests = source.stats.keyframe_requests
        sink.attach(source)
        await until(lambda: b.frames["video"] and is_colour(b.frames["video"][-1][1], rgb), f"B decodes {rgb}")
        start = len(b.frames["video"])
        await until(lambda: len(b.frames["video"]) >= start + 8, f"B keeps decoding {rgb}")
        assert all(is_colour(f, rgb) for _, f in b.frames["video"][start:])
        if source is not slate:
            assert source.stats.keyframe_requests > requests  # the PLI went to the new source

    assert sink.state is SinkState.FORWARDING
    assert sink.stats.keyframe_requests >= 3
    packets = b.rtp["video"]
    assert seq_gaps(packets) == []
    assert len({p[2] for p in packets}) == 1  # one payload type for the far end throughout
    assert all(frame.shape == (240, 320, 3) for _, frame in b.frames["video"])
    slate.stop()


class LossyWriter:
    """Wraps a sink's writer: encrypts every packet but does not send the chosen ones."""

    def __init__(self, writer: object, drop_every: int, limit: int) -> None:
        self.writer = writer
        self.drop_every = drop_every
        self.limit = limit
        self.count = 0
        self.dropped: list[int] = []

    def send_rtp(self, packet: bytes) -> bytes | None:
        self.count += 1
        if self.count % self.drop_every == 0 and len(self.dropped) < self.limit:
            self.dropped.append(int.from_bytes(packet[2:4], "big"))
            return self.writer._tx.protect(packet)  # type: ignore[attr-defined]
        return self.writer.send_rtp(packet)  # type: ignore[attr-defined]

    def send_raw(self, data: bytes) -> None:
        self.writer.send_raw(data)  # type: ignore[attr-defined]

    def send_rtcp(self, packet: bytes) -> bool:
        return self.writer.send_rtcp(packet)  # type: ignore[attr-defined]


async def test_nack_served_from_sink_history(lab: MediaLab) -> None:
    a = await lab.join("A", send=ColorTrack(RED))
    b = await lab.join("B", receive=("video",))
    sink = b.leg.sink("video")
    sink.attach(a.leg.source("video"))
    await until(lambda: len(b.frames["video"]) >= 3, "B decodes")
    lossy = LossyWriter(sink._writer, drop_every=7, limit=5)
    sink._writer = lossy  # type: ignore[assignment]
    await until(lambda: len(lossy.dropped) == 5, "five packets withheld")
    received = lambda: {p[0] for p in b.rtp["video"]}  # noqa: E731
    await until(lambda: set(lossy.dropped) <= received(), "B recovers every withheld packet by NACK")
    assert sink.stats.retransmitted >= 5
    start = len(b.frames["video"])
    await until(lambda: len(b.frames["video"]) >= start + 10, "B keeps decoding")
    assert is_colour(b.frames["video"][-1][1], RED)


class Outage:
    """Wraps a source's packet entry: loses ``count`` packets in a row from when armed, and every
    retransmission (RTX) from then on, like a sender whose history no longer holds the hole."""

    def __init__(self, source: object, count: int) -> None:
        self.inner = source._on_packet  # type: ignore[attr-defined]
        self.count = count
        self.armed = False
        self.lost: list[int] = []
        self.after = 0  # packets the source delivered after the hole
        source._on_packet = self._on_packet  # type: ignore[attr-defined]

    def _on_packet(self, data: bytes, rtx: bool, now: float) -> None:
        if self.armed and (rtx or len(self.lost) < self.count):
            if not rtx:
                self.lost.append(int.from_bytes(data[2:4], "big"))
            return
        if self.armed:
            self.after += 1
        self.inner(data, rtx, now)


async def test_viewer_decodes_again_at_the_keyframe_after_an_outage_upstream(lab: MediaLab) -> None:
    """A's camera loses more on its way in than it can retransmit: the forwarder asks it for a
    keyframe and B, a stock aiortc receiver, sees one continuous stream resuming at that keyframe.
    With the hole forwarded, B's jitter buffer would hold every later frame until 512 packets
    went by (docs/media-forwarder.md, "Under bad networks")."""
    a = await lab.join("A", send=ColorTrack(RED))
    b = await lab.join("B", receive=("video",))
    sink, source = b.leg.sink("video"), a.leg.source("video")
    sink.attach(source)
    await until(lambda: len(b.frames["video"]) >= 5, "B decodes")
    outage = Outage(source, count=60)
    requests = source.stats.keyframe_requests
    outage.armed = True
    await until(lambda: len(outage.lost) == 60, "A's packets lost on the way in")
    decoded = len(b.frames["video"])
    await until(lambda: len(b.frames["video"]) >= decoded + 10, "B decodes again after the outage")
    assert outage.after < 300, outage.after  # well before 512 packets past the hole
    assert all(is_colour(f, RED) for _, f in b.frames["video"][decoded:])
    assert sink.stats.gaps_closed == 1 and source.stats.keyframe_requests > requests
    assert seq_gaps(b.rtp["video"]) == []


async def test_attach_rejects_what_the_leg_cannot_play(lab: MediaLab) -> None:
    b = await lab.join("B", receive=("audio", "video"), codecs={"audio": ["PCMU"]})
    hold = lab.forwarder.hold_tone()
    with pytest.raises(CodecMismatch, match="OPUS"):
        b.leg.sink("audio").attach(hold)  # the leg negotiated G.711 only
    with pytest.raises(CodecMismatch):
        b.leg.sink("video").attach(hold)  # audio into video
    assert b.leg.sink("audio").state is SinkState.IDLE
    with pytest.raises(KeyError, match="no audio #1"):
        b.leg.sink("audio", 1)


async def test_supervisor_hears_both_sides_on_two_sinks(lab: MediaLab) -> None:
    customer = await lab.join("customer", send=ToneTrack(500.0))
    agent = await lab.join("agent", send=ToneTrack(900.0))
    supervisor = await lab.join("supervisor", receive=("audio", "audio"))
    first, second = supervisor.leg.sink("audio", 0), supervisor.leg.sink("audio", 1)
    first.attach(customer.leg.source("audio"))
    second.attach(agent.leg.source("audio"))
    # the agent also hears the customer: one source, two sinks
    agent.leg.sink("audio").attach(customer.leg.source("audio"))
    await until(
        lambda: len(supervisor.frames["audio"]) >= 80 and len(supervisor.frames["audio#1"]) >= 80,
        "supervisor decodes both streams",
    )
    await until(lambda: len(agent.frames.get("audio", [])) >= 60, "agent decodes the customer")
    assert customer.leg.source("audio").sinks == [first, agent.leg.sink("audio")]
    assert abs(dominant_frequency(supervisor.audio(15)) - 500.0) < 5.0
    assert abs(dominant_frequency(supervisor.audio(15, key="audio#1")) - 900.0) < 5.0
    assert abs(dominant_frequency(agent.audio(15)) - 500.0) < 5.0
    assert seq_gaps(supervisor.rtp["audio"]) == [] and seq_gaps(supervisor.rtp["audio#1"]) == []


async def test_h264_is_forwarded_when_negotiated(lab: MediaLab) -> None:
    h264 = {"video": ["H264"]}
    a = await lab.join("A", send=ColorTrack(RED), codecs=h264)
    c = await lab.join("C", send=ColorTrack(BLUE), codecs=h264)
    b = await lab.join("B", receive=("video",), codecs=h264)
    assert {codec.name for codec in b.leg.sink("video").codecs.values()} == {"H264"}
    sink = b.leg.sink("video")
    for source, rgb in ((a.leg.source("video"), RED), (c.leg.source("video"), BLUE)):
        sink.attach(source)
        await until(lambda: b.frames["video"] and is_colour(b.frames["video"][-1][1], rgb), f"B decodes H264 {rgb}")
        start = len(b.frames["video"])
        await until(lambda: len(b.frames["video"]) >= start + 5, f"B keeps decoding {rgb}")
        assert source.stats.keyframe_requests >= 1
    assert seq_gaps(b.rtp["video"]) == []
    assert {p[2] for p in b.rtp["video"]} <= set(sink.codecs)
    assert sink.state is SinkState.FORWARDING
