"""Guards for what the forwarder relies on inside aiortc/aioice (media/aiortc_hooks.py).

These fail loudly when an aiortc or aioice upgrade moves an internal: pin ``aiortc>=1.16,<1.17``
until they pass again on the new version.
"""

from __future__ import annotations

import asyncio
import inspect

import aioice.ice
import pylibsrtp
from aiortc import RTCRtpReceiver, RTCRtpSender
from media_testkit import MediaLab, ToneTrack, until

from media import aiortc_hooks, loopback_only, new_peer, set_loopback_only


def test_every_relied_upon_internal_is_present() -> None:
    aiortc_hooks.check_compatibility()  # raises AiortcIncompatible with the full list otherwise
    names = {name for _, name, _ in aiortc_hooks.RELIED_UPON}
    # the ones the hot path cannot live without
    assert {"data_received", "datagram_received", "get_host_addresses", "_handle_rtcp_packet", "_send_rtcp"} <= names


def test_signatures_we_call_or_replace() -> None:
    assert list(inspect.signature(aioice.ice.Connection.data_received).parameters) == ["self", "data", "component"]
    assert list(inspect.signature(aioice.ice.StunProtocol.datagram_received).parameters) == ["self", "data", "addr"]
    assert list(inspect.signature(RTCRtpSender._handle_rtcp_packet).parameters) == ["self", "packet"]
    assert list(inspect.signature(RTCRtpSender._send_rtcp).parameters) == ["self", "packets"]
    assert list(inspect.signature(RTCRtpReceiver._handle_rtcp_packet).parameters) == ["self", "packet"]
    assert inspect.iscoroutinefunction(RTCRtpSender._handle_rtcp_packet)
    assert inspect.iscoroutinefunction(RTCRtpSender._send_rtcp)
    assert inspect.iscoroutinefunction(RTCRtpReceiver._handle_rtcp_packet)
    assert not inspect.iscoroutinefunction(aioice.ice.Connection.data_received)
    # asyncio internals the receive pump uses on aioice's transports
    loop = asyncio.new_event_loop()
    try:
        assert callable(getattr(loop, "_add_reader", None)) and callable(getattr(loop, "_remove_reader", None))
    finally:
        loop.close()
    for name in ("protect", "unprotect", "protect_rtcp"):
        assert callable(getattr(pylibsrtp.Session, name))


def test_check_compatibility_reports_a_missing_internal(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delattr(RTCRtpSender, "_send_rtcp")
    try:
        aiortc_hooks.check_compatibility()
    except aiortc_hooks.AiortcIncompatible as exc:
        assert "_send_rtcp is missing" in str(exc)
        assert "aiortc>=1.16,<1.17" in str(exc)
    else:
        raise AssertionError("a missing internal must be reported")


async def test_loopback_only_gathers_127_0_0_1() -> None:
    set_loopback_only(False)
    with loopback_only():
        pc = new_peer()
        pc.addTransceiver("audio")
        await pc.setLocalDescription(await pc.createOffer())
        candidates = [line for line in pc.localDescription.sdp.splitlines() if line.startswith("a=candidate:")]
        await pc.close()
    assert candidates and all(" 127.0.0.1 " in line for line in candidates)
    assert not aiortc_hooks.loopback_only_enabled()  # the context manager restored aioice


async def test_live_objects_and_the_stock_receive_path_stays_empty(lab: MediaLab) -> None:
    a = await lab.join("A", send=ToneTrack(800.0))
    b = await lab.join("B", receive=("audio",))
    server_receiver_calls = []
    for leg in (a.leg, b.leg):
        for transceiver in leg.pc.getTransceivers():
            dtls = transceiver.receiver.transport
            aiortc_hooks.check_connected_instances(dtls, transceiver.sender, transceiver.receiver)
            aiortc_hooks.observe_received_rtp(transceiver.receiver, lambda *p: server_receiver_calls.append(p))
    b.leg.sink("audio").attach(a.leg.source("audio"))
    await until(lambda: len(b.frames["audio"]) >= 100, "B decodes 2 s of audio")
    source = a.leg.source("audio")
    assert source.stats.packets >= 100
    # every packet went through the forwarder's own socket pump, none through aiortc's receiver:
    # no jitter buffer, no decoder, no remote-track queue that nobody reads
    assert lab.forwarder._pump is not None and lab.forwarder._pump.datagrams >= source.stats.packets
    assert server_receiver_calls == []
    for transceiver in a.leg.pc.getTransceivers():
        assert aiortc_hooks.stock_receiver_backlog(transceiver.receiver) == 0
    # aiortc's per-transceiver RTCP loops were stopped once running (the forwarder reports)
    await until(lambda: not a.leg._stock_rtcp_pending, "stock RTCP loops stopped")
    sender = a.leg.pc.getTransceivers()[0].sender
    assert sender._RTCRtpSender__rtcp_task.done()

    # RTCP is terminated per leg: A's sender gets our receiver reports, B's receiver our sender
    # reports (with real counts), and B's receiver reports reach our sink, not A
    async def remote_stats(obj, kind):  # type: ignore[no-untyped-def]
        return [s for s in (await obj.getStats()).values() if s.type == kind]

    reports: dict[str, list] = {}

    async def poll() -> bool:
        reports["rr"] = await remote_stats(a.pc.getTransceivers()[0].sender, "remote-inbound-rtp")
        reports["sr"] = await remote_stats(b.pc.getTransceivers()[0].receiver, "remote-outbound-rtp")
        # the first reports may predate the 2 s of audio (each leg reports at a random phase)
        return bool(
            reports["rr"] and reports["rr"][0].packetsReceived > 50
            and reports["sr"] and reports["sr"][0].packetsSent > 50
            and b.leg.sink("audio").stats.remote_reports
        )

    for _ in range(300):
        if await poll():
            break
        await asyncio.sleep(0.05)
    assert reports["rr"] and reports["rr"][0].packetsReceived > 50
    assert reports["sr"] and reports["sr"][0].packetsSent > 50
    assert b.leg.sink("audio").stats.remote_reports >= 1
    # A's sender reports reached the source: B's sender reports are A's clock, translated
    assert source._timing_reference(0.0) is not None  # type: ignore[attr-defined]


def test_srtp_transform_matches_pylibsrtp_and_refuses_what_libsrtp_refuses() -> None:
    """The forwarder calls libsrtp through pylibsrtp's cffi binding (``Session._srtp``): the bytes
    must equal pylibsrtp's own, and a tampered, replayed or oversized packet must give None."""
    import os
    import struct

    key = os.urandom(30)

    def session(kind: int) -> pylibsrtp.Session:
        return pylibsrtp.Session(policy=pylibsrtp.Policy(key=key, ssrc_type=kind))

    stock_tx = session(pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
    protect = aiortc_hooks.srtp_transform(session(pylibsrtp.Policy.SSRC_ANY_OUTBOUND), "protect")
    unprotect = aiortc_hooks.srtp_transform(session(pylibsrtp.Policy.SSRC_ANY_INBOUND), "unprotect")
    packets = [struct.pack("!BBHII", 0x80, 111, seq, seq * 960, 0x1234) + os.urandom(120) for seq in range(1, 50)]
    for packet in packets:
        protected = protect(packet)
        assert protected == stock_tx.protect(packet)
        assert unprotect(protected) == packet  # type: ignore[arg-type]
    assert unprotect(protected) is None  # replayed
    tampered = bytearray(protect(packets[0][:2] + struct.pack("!H", 60) + packets[0][4:]))  # type: ignore[arg-type]
    tampered[20] ^= 0xFF
    assert unprotect(bytes(tampered)) is None  # authentication fails
    assert protect(b"\x80" * 1600) is None  # longer than any datagram
