"""Coverage-guided fuzz targets (atheris, libFuzzer) for the parsers a hostile peer reaches.

    python tests/fuzz/atheris_targets.py TARGET [libFuzzer flags...] [corpus dirs...]

TARGET is one of:

- ``sdp``: an offer's text through :func:`media.sdp_limits.check_offer`; what passes must parse in
  Segue's own SDP reader (``media._sdp``) without any exception, and in aiortc's with none but the
  ones :class:`media.leg.CallLeg` turns into ``invalid``;
- ``rtp``: an RTP packet (as SRTP delivers it, from a peer that holds the keys) through the
  forwarder's inbound header parsing (``InboundSource._on_packet``: extensions, RTX, padding)
  and the payload inspectors (VP8/H264 keyframes, the VP8 depacketiser);
- ``rtcp``: an RTCP compound packet through aiortc's parser (``ValueError`` only) and the
  forwarder's feedback reading (``_to_feedback``: NACK, PLI, FIR, REMB, reports), no exception;
- ``stun``: a datagram through aioice's STUN parser (``ValueError`` only): what any address can
  send to a media port.

Any other exception is a crash: libFuzzer stops, prints the traceback and writes the input to
``-artifact_prefix``. ``tests/fuzz/test_fuzz_atheris.py`` runs each target for a bounded time with
the seed corpus kept in ``tests/fuzz/corpus/<target>/``.
"""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import atheris

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

with atheris.instrument_imports(include=["media", "aiortc.sdp", "aiortc.rtp", "aioice.stun"]):
    import aioice.stun
    import aiortc.rtp
    import aiortc.sdp

    from media import _sdp, rtp
    from media.aiortc_hooks import _to_feedback
    from media.forwarder import InboundSource
    from media.leg import _AIORTC_REFUSALS
    from media.sdp_limits import SdpRefused, check_offer

SEED_OFFER = (ROOT / "tests" / "fuzz" / "corpus" / "sdp" / "aiortc-offer-audio-video-screen.sdp")


def _sections() -> list[_sdp.MediaSection]:
    text = SEED_OFFER.read_text() if SEED_OFFER.exists() else ""
    return _sdp.parse(text)


def fuzz_sdp(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    try:
        check_offer(text)
    except SdpRefused:
        return
    _sdp.parse(text)
    _sdp.transport_identity(text)
    try:
        aiortc.sdp.SessionDescription.parse(text)
    except _AIORTC_REFUSALS:
        pass


_SOURCES: list[InboundSource] = []


def fuzz_rtp(data: bytes) -> None:
    if not _SOURCES:
        leg = types.SimpleNamespace(name="fuzz")
        for section in _sections()[:2]:
            section.rtx = section.rtx or {98: 97}
            source = InboundSource(leg, section)  # type: ignore[arg-type]
            source.tap(lambda info: None)
            _SOURCES.append(source)
    if len(data) < 13:
        return
    selector, packet = data[0], data[1:]
    source = _SOURCES[selector % len(_SOURCES)]
    source._on_packet(packet, bool(selector & 0x80), 1.0)
    payload = packet[12:]
    rtp.keyframe_start("VP8", payload)
    rtp.keyframe_start("H264", payload)
    rtp.vp8_keyframe_size(payload)
    depacketizer = rtp.Vp8Depacketizer()
    depacketizer.push(int.from_bytes(packet[2:4], "big"), int.from_bytes(packet[4:8], "big"), bool(packet[1] & 0x80),
                      payload)
    try:
        aiortc.rtp.RtpPacket.parse(packet)
    except ValueError:
        pass


def fuzz_rtcp(data: bytes) -> None:
    try:
        packets = aiortc.rtp.RtcpPacket.parse(data)
    except ValueError:
        return
    for packet in packets:
        ssrc = getattr(packet, "media_ssrc", 0) or getattr(packet, "ssrc", 0)
        _to_feedback(packet, ssrc)
        for report in getattr(packet, "reports", ()):
            _to_feedback(packet, report.ssrc)


def fuzz_stun(data: bytes) -> None:
    try:
        aioice.stun.parse_message(data)  # hardened by media.aiortc_hooks (imported above)
    except ValueError:
        return


TARGETS = {"sdp": fuzz_sdp, "rtp": fuzz_rtp, "rtcp": fuzz_rtcp, "stun": fuzz_stun}


def main() -> None:
    # the target travels in the environment too: libFuzzer's -merge re-runs this script in child
    # processes with the remaining arguments only
    if len(sys.argv) > 1 and sys.argv[1] in TARGETS:
        os.environ["SEGUE_FUZZ_TARGET"] = sys.argv.pop(1)
    name = os.environ.get("SEGUE_FUZZ_TARGET", "")
    if name not in TARGETS:
        sys.exit(f"usage: {sys.argv[0]} {{{'|'.join(TARGETS)}}} [libFuzzer flags] [corpus dirs]")
    atheris.Setup(sys.argv, TARGETS[name])
    atheris.Fuzz()


if __name__ == "__main__":
    main()
