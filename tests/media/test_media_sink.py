"""RtpSink re-stamping without a network: long streams, switches, reordering, NACK mapping.

The end-to-end tests prove the far end accepts what the forwarder sends; these drive many more
packets through one sink than a real-time test could (sequence wrap, an hour of audio).
"""

from __future__ import annotations

import struct
from types import SimpleNamespace

from media import RtpSink, RtpSource, SinkState
from media._sdp import CodecSpec, MediaSection
from media.rtp import Feedback, FeedbackKind

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


def make_sink(nack: bool = False) -> tuple[RtpSink, Writer]:
    section = MediaSection(index=0, kind="audio", mid="0")
    section.codecs = {109: CodecSpec("OPUS", 48000, 2, nack=nack)}
    section.extensions = {"urn:ietf:params:rtp-hdrext:sdes:mid": 3}
    sink = RtpSink(SimpleNamespace(name="leg"), section, ssrc=0xABCD)  # type: ignore[arg-type]
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
