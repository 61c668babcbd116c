"""A video sink attached before its leg is connected starts the far end on a keyframe.

What the escalation benchmark showed ("failed to decode VP8 frame" after a cold transfer): the
call attaches the new agent's camera sink to the customer's camera as soon as the agent's offer
is answered, before that connection is up. The forwarder asked the customer for a keyframe at
once, the keyframe came back and the sink "started" on it, but nothing can be sent on a leg
that is not connected yet, so the keyframe was dropped and the new agent's decoder got delta
frames first. The sink must keep waiting until it can actually send the keyframe's first packet,
and ask for a keyframe again as soon as its leg is connected.

Real peers on 127.0.0.1; the far end decodes VP8 with aiortc's stock receiver.
"""

from __future__ import annotations

import asyncio
import logging

from aiortc import RTCSessionDescription
from media_testkit import ColorTrack, MediaLab, until

from media import LegState, SinkState, new_peer
from media.rtp import vp8_keyframe_start

RED = (200, 30, 30)


async def test_sink_attached_before_connect_starts_on_a_keyframe(lab: MediaLab, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.WARNING, logger="aiortc.rtcrtpreceiver")
    a = await lab.join("A", send=ColorTrack(RED))
    source = a.leg.source("video")
    await until(lambda: source.stats.packets > 30, "A sends video (its first keyframe is long gone)")

    # B: negotiated on the server side, attached, but its client has not got the answer yet
    client = new_peer()
    receiver = client.addTransceiver("video", direction="recvonly").receiver
    first_payloads: list[bytes] = []
    original = receiver._handle_rtp_packet

    async def handle_rtp_packet(packet, arrival_time_ms):  # type: ignore[no-untyped-def]
        if len(first_payloads) < 3:
            first_payloads.append(bytes(packet.payload))
        await original(packet, arrival_time_ms=arrival_time_ms)

    receiver._handle_rtp_packet = handle_rtp_packet  # type: ignore[method-assign]
    decoded: list[object] = []
    tasks: list[asyncio.Task[None]] = []

    @client.on("track")
    def on_track(track):  # type: ignore[no-untyped-def]
        async def consume() -> None:
            while True:
                try:
                    decoded.append(await track.recv())
                except Exception:  # noqa: BLE001 - track ended
                    return

        tasks.append(asyncio.ensure_future(consume()))

    try:
        server_pc = new_peer()
        lab._server_pcs.append(server_pc)
        leg = lab.forwarder.add_leg(server_pc, "B")
        await client.setLocalDescription(await client.createOffer())
        await server_pc.setRemoteDescription(client.localDescription)
        leg.prepare()
        await server_pc.setLocalDescription(await server_pc.createAnswer())
        sink = leg.sink("video")
        sink.attach(source)  # what Call.wire() does right after answering

        # A answers the attach with a keyframe while B cannot receive anything yet
        keyframes: list[float] = []
        untap = source.tap(lambda info: keyframes.append(info.arrival) if vp8_keyframe_start(info.payload) else None)
        await until(lambda: bool(keyframes), "A sent a keyframe for B's sink")
        untap()
        assert leg.state is LegState.NEW
        assert sink.state is SinkState.WAITING_KEYFRAME  # still waiting: that keyframe could not go out

        await client.setRemoteDescription(RTCSessionDescription(server_pc.localDescription.sdp, "answer"))
        await until(lambda: leg.state is LegState.CONNECTED and client.connectionState == "connected", "B connected")
        await until(lambda: len(decoded) >= 10, "B decodes A's video")
        assert sink.state is SinkState.FORWARDING
        assert first_payloads and vp8_keyframe_start(first_payloads[0])  # the stream starts on a keyframe
        failures = [r for r in caplog.records if "failed to decode" in r.getMessage()]
        assert failures == []
    finally:
        for task in tasks:
            task.cancel()
        await client.close()
