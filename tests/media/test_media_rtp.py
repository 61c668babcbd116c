"""Byte-level helpers of the forwarder: RTCP builders (checked with aiortc's own parser), VP8
payload inspection, SDP reading, and the pre-encoded hold tone."""

from __future__ import annotations

import fractions

import av
import numpy as np
from aiortc import rtp as aiortc_rtp
from media_testkit import dominant_frequency

from media import _sdp, aiortc_hooks
from media.preencoded import encode_opus_tone
from media.rtp import (
    ReportBlock,
    Vp8Depacketizer,
    build_extensions,
    find_extension,
    h264_keyframe_start,
    rtcp_bye,
    rtcp_nack,
    rtcp_pli,
    rtcp_remb,
    rtcp_rr,
    rtcp_sdes_cname,
    rtcp_sr,
    vp8_descriptor,
    vp8_keyframe_size,
    vp8_keyframe_start,
    vp8_packetize,
)


def test_rtcp_builders_parse_with_aiortc() -> None:
    block = ReportBlock(ssrc=7, fraction_lost=12, packets_lost=-3, highest_sequence=70000, jitter=9, lsr=5, dlsr=6)
    compound = (
        rtcp_sr(1, 0x0123456789ABCDEF, 4242, 10, 1000, [block])
        + rtcp_sdes_cname(1, "segue-x")
        + rtcp_rr(2, [block])
        + rtcp_nack(1, 99, [100, 101, 117, 118, 300])
        + rtcp_pli(1, 99)
        + rtcp_remb(1, 1_500_000, [99, 98])
        + rtcp_bye([1])
    )
    sr, sdes, rr, nack, pli, remb, bye = aiortc_rtp.RtcpPacket.parse(compound)
    assert isinstance(sr, aiortc_rtp.RtcpSrPacket) and sr.sender_info.rtp_timestamp == 4242
    assert sr.sender_info.packet_count == 10 and sr.reports[0].highest_sequence == 70000
    assert sr.reports[0].packets_lost == -3 and sr.reports[0].fraction_lost == 12
    assert isinstance(sdes, aiortc_rtp.RtcpSdesPacket) and sdes.chunks[0].items == [(1, b"segue-x")]
    assert isinstance(rr, aiortc_rtp.RtcpRrPacket) and rr.reports[0].ssrc == 7
    assert isinstance(nack, aiortc_rtp.RtcpRtpfbPacket) and sorted(nack.lost) == [100, 101, 117, 118, 300]
    assert isinstance(pli, aiortc_rtp.RtcpPsfbPacket) and pli.fmt == 1 and pli.media_ssrc == 99
    bitrate, ssrcs = aiortc_rtp.unpack_remb_fci(remb.fci)
    assert ssrcs == [99, 98] and abs(bitrate - 1_500_000) / 1_500_000 < 0.001
    assert isinstance(bye, aiortc_rtp.RtcpByePacket) and bye.sources == [1]


def test_nack_wraps_around_sequence_numbers() -> None:
    (nack,) = aiortc_rtp.RtcpPacket.parse(rtcp_nack(1, 2, [65534, 65535, 0, 1]))
    assert sorted(seq & 0xFFFF for seq in nack.lost) == [0, 1, 65534, 65535]
    # aiortc reports PID + offset without wrapping; the forwarder sees 16-bit numbers
    (feedback,) = aiortc_hooks._to_feedback(nack, 2)
    assert sorted(feedback.lost) == [0, 1, 65534, 65535]


def test_header_extensions_round_trip() -> None:
    block = build_extensions([(1, b"0"), (2, b"\x2a"), (3, b"\x01\x02\x03")])
    assert len(block) % 4 == 0 and block[:2] == b"\xbe\xde"
    end = 4 + int.from_bytes(block[2:4], "big") * 4
    assert find_extension(block, 4, end, 1) == b"0"
    assert find_extension(block, 4, end, 2) == b"\x2a"
    assert find_extension(block, 4, end, 3) == b"\x01\x02\x03"
    assert find_extension(block, 4, end, 4) is None
    assert build_extensions([]) == b""


def _vp8_frames(width: int, height: int, count: int) -> list[av.Packet]:
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
    codec.time_base = fractions.Fraction(1, 90000)
    codec.framerate = 30
    codec.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    packets = []
    for i in range(count):
        img = np.random.default_rng(i).integers(0, 255, (height, width, 3), dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
        frame.pts = i * 3000
        frame.time_base = fractions.Fraction(1, 90000)
        packets += codec.encode(frame)
    return packets


def test_vp8_packetize_and_inspect() -> None:
    key, delta = _vp8_frames(320, 240, 2)[:2]
    payloads = vp8_packetize(bytes(key), picture_id=0x1234, max_size=300)
    assert len(payloads) > 1 and all(len(p) <= 300 for p in payloads)
    assert vp8_keyframe_start(payloads[0]) and not vp8_keyframe_start(payloads[1])
    assert vp8_keyframe_size(payloads[0]) == (320, 240)
    header_len, pid_pos, pid_bits, tl0_pos = vp8_descriptor(payloads[0])
    assert (header_len, pid_pos, pid_bits, tl0_pos) == (4, 2, 15, -1)
    assert ((payloads[0][2] & 0x7F) << 8 | payloads[0][3]) == 0x1234
    assert b"".join(p[4:] for p in payloads) == bytes(key)
    assert not vp8_keyframe_start(vp8_packetize(bytes(delta), 1)[0])


def test_vp8_depacketizer_rebuilds_frames_and_drops_to_the_next_keyframe_on_loss() -> None:
    """The recorder's reassembly: whole frames out, a lost packet drops the broken frame and the
    delta frames that depend on it until the next keyframe; late and duplicate packets are ignored."""
    frames = _vp8_frames(320, 240, 6)  # keyframe, then delta frames
    frames[4] = _vp8_frames(320, 240, 1)[0]  # a second keyframe at index 4
    packets = []  # (seq, ts, marker, payload)
    seq = 65530  # wraps around 0 on the way
    for i, frame in enumerate(frames):
        payloads = vp8_packetize(bytes(frame), picture_id=i, max_size=300)
        for j, payload in enumerate(payloads):
            packets.append((seq & 0xFFFF, 3000 * i, j == len(payloads) - 1, payload))
            seq += 1

    def run(feed: list[tuple[int, int, bool, bytes]]) -> list[tuple[bytes, bool]]:
        d = Vp8Depacketizer()
        return [out for out in (d.push(*p) for p in feed) if out is not None]

    whole = run(packets)
    assert [f for f, _ in whole] == [bytes(f) for f in frames]
    assert [k for _, k in whole] == [True, False, False, False, True, False]

    lost = next(k for k, p in enumerate(packets) if p[1] == 3000 * 2 and not p[2])  # inside frame 2
    damaged = run(packets[:lost] + packets[lost + 1:])
    assert [f for f, _ in damaged] == [bytes(frames[0]), bytes(frames[1]), bytes(frames[4]), bytes(frames[5])]

    late = packets[:5] + [packets[2], packets[4]] + packets[5:]  # a retransmission and a duplicate
    assert [f for f, _ in run(late)] == [bytes(f) for f in frames]

    assert run(packets[len(vp8_packetize(bytes(frames[0]), 0, 300)):])[0][0] == bytes(frames[4])  # joins mid-stream


def test_h264_keyframe_detection() -> None:
    assert h264_keyframe_start(bytes([0x65, 0x88]))  # IDR slice
    assert h264_keyframe_start(bytes([0x7C, 0x85, 0x00]))  # FU-A start of an IDR
    assert not h264_keyframe_start(bytes([0x7C, 0x05, 0x00]))  # FU-A continuation
    assert h264_keyframe_start(bytes([0x78, 0x00, 0x02, 0x67, 0x42]))  # STAP-A with SPS
    assert not h264_keyframe_start(bytes([0x41, 0x9A]))  # non-IDR slice


CHROME_OFFER = """v=0
o=- 1 2 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0 1
m=audio 9 UDP/TLS/RTP/SAVPF 111 0
c=IN IP4 0.0.0.0
a=mid:0
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid
a=sendrecv
a=rtpmap:111 opus/48000/2
a=rtcp-fb:111 transport-cc
a=fmtp:111 minptime=10;useinbandfec=1
a=rtpmap:0 PCMU/8000
a=ssrc:1111 cname:abc
m=video 9 UDP/TLS/RTP/SAVPF 96 97 102
c=IN IP4 0.0.0.0
a=mid:1
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid
a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time
a=recvonly
a=rtpmap:96 VP8/90000
a=rtcp-fb:96 nack
a=rtcp-fb:96 nack pli
a=rtpmap:97 rtx/90000
a=fmtp:97 apt=96
a=rtpmap:102 H264/90000
a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f
a=ssrc-group:FID 2222 3333
a=ssrc:2222 cname:abc
a=ssrc:3333 cname:abc
"""


def test_sdp_reading() -> None:
    audio, video = _sdp.parse(CHROME_OFFER)
    assert (audio.kind, audio.mid, audio.direction) == ("audio", "0", "sendrecv")
    assert audio.codecs[111].name == "OPUS" and audio.codecs[111].clock_rate == 48000
    assert audio.codecs[0].name == "PCMU" and not audio.codecs[111].nack
    assert audio.extensions == {"urn:ietf:params:rtp-hdrext:ssrc-audio-level": 1, "urn:ietf:params:rtp-hdrext:sdes:mid": 4}
    assert audio.primary_ssrcs == [1111] and audio.cname == "abc"
    assert (video.mid, video.direction) == ("1", "recvonly")
    assert video.rtx == {97: 96} and 97 not in video.codecs
    assert video.codecs[96].nack and video.fid == {2222: 3333} and video.primary_ssrcs == [2222]
    h264 = video.codecs[102]
    assert h264.param("packetization-mode") == "1"
    assert h264.matches(_sdp.CodecSpec("H264", 90000, fmtp=(("packetization-mode", "1"), ("profile-level-id", "42001f")))) == 3
    assert h264.matches(_sdp.CodecSpec("H264", 90000, fmtp=(("packetization-mode", "0"),))) == 0
    assert video.codecs[96].matches(h264) == 0


def test_hold_tone_is_encoded_once_and_decodes_to_the_tone() -> None:
    frames = encode_opus_tone(425.0, -16.0)
    assert encode_opus_tone(425.0, -16.0) is frames  # cached per process
    assert len(frames) == 50 and all(f.duration == 960 for f in frames)
    decoder = av.CodecContext.create("libopus", "r")
    decoder.sample_rate = 48000
    decoder.layout = "mono"
    decoder.format = "s16"
    pcm = []
    for frame in frames * 2:
        for decoded in decoder.decode(av.Packet(frame.data)):
            pcm.append(decoded.to_ndarray().reshape(-1))
    samples = np.concatenate(pcm)[48000:]  # the second pass over the loop, seam included
    assert abs(dominant_frequency(samples) - 425.0) < 2.0
    rms_dbfs = 20 * np.log10(np.sqrt(np.mean((samples / 32768.0) ** 2)))
    assert -21.0 < rms_dbfs < -17.0  # -16 dBFS peak sine: -19 dBFS RMS
    assert {f.audio_level for f in frames} == {19}
