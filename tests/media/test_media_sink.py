"""RtpSink re-stamping without a network: long streams, switches, reordering, NACK mapping.

The end-to-end tests prove the far end accepts what the forwarder sends; these drive many more
packets through one sink than a real-time test could (sequence wrap, an hour of audio).
"""

from __future__ import annotations

import struct
from types import SimpleNamespace

from media import LegState, RtpSink, RtpSource, SinkState
from media._sdp import CodecSpec, MediaSection
from media.forwarder import KEYFRAME_GAP, KEYFRAME_GAP_S, InboundSource
from media.rtp import Feedback, FeedbackKind, keyframe_start, vp8_packetize

OPUS = CodecSpec("OPUS", 48000, 2)


class Writer:
    """Stands in for the leg's SRTP writer: keeps what would be encrypted and sent."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.raw: list[bytes] = []

    def send_rtp(self, packet: bytes) -> bytes:
        self.sent.append(packet)
        return packet

    def send_raw(self, data: bytes) -> None:
        self.raw.append(data)

    def send_rtcp(self, packet: bytes) -> bool:
        return True

    def headers(self) -> list[tuple[int, int, int, int]]:
        """(marker|pt, seq, ts, ssrc) of every packet sent."""
        return [struct.unpack_from("!xBHII", p) for p in self.sent]


class Source(RtpSource):
    def __init__(self, pt: int = 111) -> None:
        super().__init__("audio", {pt: OPUS}, label="stub")
        self.pt = pt
        self.asked: list[list[int]] = []

    def send(self, seq: int, ts: int, now: float, payload: bytes = b"\x01\x02") -> None:
        self._deliver(0, 0, self.pt, seq & 0xFFFF, ts & 0xFFFFFFFF, payload, None, now)

    def _request_retransmit(self, seqs: list[int]) -> None:
        self.asked.append(seqs)


def make_sink(nack: bool = False, video: bool = False) -> tuple[RtpSink, Writer]:
    section = MediaSection(index=0, kind="video" if video else "audio", mid="0")
    if video:
        section.codecs = {100: CodecSpec("VP8", 90000, nack=nack)}
    else:
        section.codecs = {109: CodecSpec("OPUS", 48000, 2, nack=nack)}
    section.extensions = {"urn:ietf:params:rtp-hdrext:sdes:mid": 3}
    leg = SimpleNamespace(name="leg", state=LegState.CONNECTED)
    sink = RtpSink(leg, section, ssrc=0xABCD)  # type: ignore[arg-type]
    writer = Writer()
    sink._writer = writer  # type: ignore[assignment]
    return sink, writer


def assert_continuous(headers: list[tuple[int, int, int, int]]) -> None:
    for (_, s1, t1, _), (_, s2, t2, _) in zip(headers, headers[1:]):
        assert (s2 - s1) & 0xFFFF == 1
        assert 0 < (t2 - t1) & 0xFFFFFFFF < 48000


def test_an_hour_of_audio_wraps_sequence_numbers_without_a_drop() -> None:
    sink, writer = make_sink()
    source = Source()
    sink.attach(source)
    n = 3 * 65536 + 123  # more than an hour at 50 packets/s
    for i in range(n):
        source.send(60000 + i, 1_000 + i * 960, i * 0.02)
    assert sink.stats.packets == n and sink.stats.dropped == 0
    headers = writer.headers()
    assert_continuous(headers)
    assert {h[0] & 0x7F for h in headers} == {109}  # the payload type this leg negotiated
    assert {h[3] for h in headers} == {0xABCD}


def test_switches_keep_one_continuous_stream() -> None:
    sink, writer = make_sink()
    hold, agent_a, agent_b = Source(pt=111), Source(pt=96), Source(pt=111)
    now = 0.0
    for source, seq0, ts0 in ((hold, 5, 0), (agent_a, 40000, 123456789), (agent_b, 65530, 4294967000)):
        sink.attach(source)
        assert sink.state is SinkState.FORWARDING
        for i in range(100):
            source.send(seq0 + i, ts0 + i * 960, now)
            now += 0.02
        now += 0.5  # a gap while switching: the timestamps jump by about that much
    headers = writer.headers()
    assert len(headers) == 300
    assert_continuous(headers)
    assert [h[0] & 0x80 for h in headers[::100]] == [0x80, 0x80, 0x80]  # marker: new talkspurt
    assert (headers[100][2] - headers[99][2]) & 0xFFFFFFFF == int(0.52 * 48000)
    assert agent_a.sinks == [] and agent_b.sinks == [sink]


def test_stragglers_from_before_a_switch_are_dropped() -> None:
    sink, writer = make_sink()
    first, second = Source(), Source()
    sink.attach(first)
    for i in range(10):
        first.send(100 + i, i * 960, i * 0.02)
    sink.attach(second)
    second.send(500, 0, 1.0)
    second.send(499, 0, 1.0)  # reordered: older than the packet the switch started with
    second.send(501, 960, 1.02)
    assert sink.stats.dropped == 1
    assert_continuous(writer.headers())


def test_nack_served_from_history_or_mapped_to_the_source() -> None:
    sink, writer = make_sink(nack=True)
    source = Source()
    sink.attach(source)
    for i in range(50):
        source.send(7000 + i, i * 960, i * 0.02)
    out = [h[1] for h in writer.headers()]
    # the far end lost out[10]: served from history, nothing asked upstream
    sink._on_feedback(Feedback(FeedbackKind.NACK, lost=(out[10],)))
    assert writer.raw == [writer.sent[10]] and source.asked == []
    # a packet the sink never had (lost upstream): asked of the source in its own numbering
    missing = (out[-1] + 1) & 0xFFFF
    sink._on_feedback(Feedback(FeedbackKind.NACK, lost=(missing,)))
    assert source.asked == [[(7000 + 50) & 0xFFFF]]
    assert sink.stats.retransmitted == 1 and sink.stats.nacks_forwarded == 1


def test_detach_sends_nothing_and_idles() -> None:
    sink, writer = make_sink()
    source = Source()
    sink.attach(source)
    source.send(1, 0, 0.0)
    sink.detach()
    source.send(2, 960, 0.02)
    assert sink.state is SinkState.IDLE and len(writer.sent) == 1 and source.sinks == []


class Camera:
    """A participant's VP8 camera as its leg receives it: raw RTP (and RTX) into a real
    :class:`InboundSource`, so the source's own hole detection runs. Frames are fake VP8 (only the
    descriptor and the keyframe bit are read), ``packets`` per frame, 15 fps."""

    def __init__(self) -> None:
        section = MediaSection(index=0, kind="video", mid="1")
        section.codecs = {96: CodecSpec("VP8", 90000, nack=True)}
        section.rtx = {97: 96}
        self.rtcp: list[bytes] = []
        leg = SimpleNamespace(name="customer", _writer_for=lambda mid: self)
        self.source = InboundSource(leg, section)  # type: ignore[arg-type]
        self.asked: list[list[int]] = []
        self.source._request_retransmit = self.asked.append  # type: ignore[method-assign]
        self.seq, self.ts, self.pid, self.now = 65500, 4_000_000_000, 300, 100.0  # both wrap on the way
        self.sent: dict[int, bytes] = {}  # seq -> packet, as the camera sent it

    def send_rtcp(self, packet: bytes) -> bool:
        self.rtcp.append(packet)
        return True

    def frame(self, key: bool = False, packets: int = 3, lost: bool = False) -> list[int]:
        """Send one frame (or lose it on the way: ``lost``); returns its sequence numbers."""
        body = bytes([0x00 if key else 0x01]) + bytes(100 * packets - 1)
        self.source.ssrc = 0x5151  # learned from the first packet (a sink attached before asks nothing)
        seqs = []
        for i, payload in enumerate(vp8_packetize(body, self.pid, max_size=104)):
            marker = 0x80 if i == packets - 1 else 0
            packet = struct.pack("!BBHII", 0x80, marker | 96, self.seq, self.ts, 0x5151) + payload
            self.sent[self.seq] = packet
            if not lost:
                self.source._on_packet(packet, False, self.now)
            seqs.append(self.seq)
            self.seq = (self.seq + 1) & 0xFFFF
        self.ts = (self.ts + 6000) & 0xFFFFFFFF
        self.pid = (self.pid + 1) & 0x7FFF
        self.now += 1 / 15
        return seqs

    def retransmit(self, seq: int) -> None:
        """What the camera sends on NACK: RTX (RFC 4588) of one packet it still holds."""
        original = self.sent[seq]
        rtx = struct.pack("!BBHII", 0x80, 97, 7, 0, 0x6161) + original[2:4] + original[12:]
        self.source._on_packet(rtx, True, self.now)


def payload_of(packet: bytes) -> bytes:
    pos = 12
    if packet[0] & 0x10:
        pos += 4 + (struct.unpack_from("!H", packet, 14)[0] << 2)
    return packet[pos:]


def test_a_hole_upstream_is_closed_at_the_next_keyframe() -> None:
    """An outage on the camera's way in: the viewer gets no sequence hole to wait on (a stock
    aiortc receiver would hold every later frame for 512 packets) but the keyframe right after
    the last packet it had. Packets from before the hole keep their numbers (a retransmission
    fills the viewer's older hole), packets from inside it have none."""
    camera = Camera()
    sink, writer = make_sink(nack=True, video=True)
    sink.attach(camera.source)
    camera.frame(key=True)
    for _ in range(9):
        camera.frame()
    early = camera.frame(lost=True)  # an ordinary loss just before the outage: NACK can fill it
    camera.frame()
    before = len(writer.sent)
    assert before == 33 and sink.stats.gaps_closed == 0
    lost = [seq for _ in range(KEYFRAME_GAP // 3 + 4) for seq in camera.frame(lost=True)]
    camera.frame()  # the first packets after the outage: delta frames no one can decode
    assert sink.state is SinkState.WAITING_KEYFRAME and sink.stats.gaps_closed == 1
    assert camera.source.stats.keyframe_requests == 1 and len(camera.rtcp) == 1  # the PLI
    camera.frame()
    camera.retransmit(lost[-1])  # from inside the hole: dropped, the viewer never missed it
    assert len(writer.sent) == before
    camera.retransmit(early[0])  # from before it: sent under the number the viewer is missing
    assert len(writer.sent) == before + 1
    keyframe = camera.frame(key=True)
    for _ in range(5):
        camera.frame()
    camera.retransmit(lost[0])
    camera.retransmit(early[1])
    assert sink.state is SinkState.FORWARDING
    headers = writer.headers()
    assert len(headers) == before + 20
    stream = headers[:before] + headers[before + 1 : -1]  # without the two retransmissions
    out = [h[1] for h in stream]
    steps = [(b - a) & 0xFFFF for a, b in zip(out, out[1:])]
    assert steps == [1] * 29 + [4] + [1] * 20  # only the ordinary loss is a hole
    assert (headers[before][1], headers[-1][1]) == ((out[29] + 1) & 0xFFFF, (out[29] + 2) & 0xFFFF)
    assert keyframe_start("VP8", payload_of(writer.sent[before + 1]))
    assert not keyframe_start("VP8", payload_of(writer.sent[before - 1]))
    # the same camera's clock: the timestamps jump by the media time the hole and the dropped
    # delta frames covered (lip sync keeps its offset), never backwards
    assert (stream[before][2] - stream[before - 1][2]) & 0xFFFFFFFF == 6000 * (len(lost) // 3 + 3)
    # NACK after the rewrite: packets from before the hole and after it come from history
    sink._on_feedback(Feedback(FeedbackKind.NACK, lost=(out[before - 2], out[before + 4])))
    assert writer.raw == [writer.sent[before - 2], writer.sent[before + 5]]
    # ones the sink never sent are asked of the camera in its own numbering, on both sides
    sink._on_feedback(Feedback(FeedbackKind.NACK, lost=((out[29] + 3) & 0xFFFF, (out[-1] + 1) & 0xFFFF)))
    assert camera.asked == [[early[2], camera.seq]]
    assert keyframe[0] == (camera.seq - 18) & 0xFFFF


def test_a_long_silent_hole_is_closed_though_few_packets_are_missing() -> None:
    """A sender that sends little while it hears nothing back (Chromium) leaves a hole of a few
    packets covering seconds; it keeps packets for about a second, so NACK cannot fill it."""
    camera = Camera()
    sink, writer = make_sink(nack=True, video=True)
    sink.attach(camera.source)
    camera.frame(key=True, packets=1)
    camera.frame(packets=1)
    frames_lost = int(KEYFRAME_GAP_S * 15) + 2
    for _ in range(frames_lost):
        camera.frame(packets=1, lost=True)
    assert frames_lost < KEYFRAME_GAP
    camera.frame(packets=1)
    assert sink.stats.gaps_closed == 1 and camera.source.stats.keyframe_requests == 1
    camera.frame(key=True, packets=1)
    seqs = [h[1] for h in writer.headers()]
    assert len(seqs) == 3 and (seqs[2] - seqs[1]) & 0xFFFF == 1


def test_a_short_hole_stays_for_nack_to_fill() -> None:
    """A few packets lost within a frame or two: the sender still has them, the viewer's NACK
    reaches it through the sink, and the picture needs no keyframe."""
    camera = Camera()
    sink, writer = make_sink(nack=True, video=True)
    sink.attach(camera.source)
    camera.frame(key=True)
    lost = camera.frame(lost=True)
    camera.frame()
    assert sink.stats.gaps_closed == 0 and camera.source.stats.keyframe_requests == 0
    seqs = [h[1] for h in writer.headers()]
    assert (seqs[3] - seqs[2]) & 0xFFFF == 4
    sink._on_feedback(Feedback(FeedbackKind.NACK, lost=tuple((seqs[2] + 1 + i) & 0xFFFF for i in range(3))))
    assert camera.asked == [lost]
    camera.retransmit(lost[1])
    assert [h[1] for h in writer.headers()][-1] == (seqs[2] + 2) & 0xFFFF


def test_audio_holes_are_forwarded_as_holes() -> None:
    """Audio receivers conceal each lost packet and play on; the hole tells them how much was lost."""
    sink, writer = make_sink()
    source = Source()
    sink.attach(source)
    for i in range(10):
        source.send(100 + i, i * 960, i * 0.02)
    for i in range(10):
        source.send(300 + i, (200 + i) * 960, (200 + i) * 0.02)
    seqs = [h[1] for h in writer.headers()]
    assert len(seqs) == 20 and (seqs[10] - seqs[9]) & 0xFFFF == 191 and sink.stats.gaps_closed == 0
