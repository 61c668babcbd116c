"""The customer's browser stand-in for the bad-network tests, run inside a network namespace.

    ip netns exec NS python tests/integration/netem_customer.py

Only media runs here (an aiortc peer offering like call.js: microphone tone, camera); the test
process does the Socket.IO signalling for it over its own connection. Commands and answers are
JSON lines on stdin/stdout:

- ``{"offer": true, "video": bool}`` -> ``{"offer": sdp}``, then ``{"answer": sdp}`` is read back;
- ``{"wait_connected": true}`` -> ``{"connected": bool}``;
- ``{"measure": seconds}`` (or ``{"measure_start": true}`` ... ``{"measure_stop": true}``, which
  leaves the process free to take other commands meanwhile) -> what arrived in that window: audio frames and the dominant
  frequency of the last ones, decoded video frames, freeze time (the sum of gaps between decoded
  frames longer than max(3 x the mean interval, mean + 150 ms), as WebRTC's freeze statistics
  count them), the longest gap;
- ``{"impair": {"loss": 0.05, "delay_ms": 50, "jitter_ms": 50}}`` -> ``{"impaired": true}``: netem
  in user space, for kernels without ``sch_netem`` (this machine's): every datagram this peer
  sends or receives is dropped with probability ``loss``, else delayed by ``delay_ms`` ±
  ``jitter_ms``/2 (uniformly, so packets reorder as under netem's jitter); ``{}`` stops it;
- ``{"quit": true}``.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import aioice.ice  # noqa: E402
from aiortc import MediaStreamTrack, RTCSessionDescription, VideoStreamTrack  # noqa: E402
from aiortc.mediastreams import MediaStreamError  # noqa: E402

from media.probe import AudioMeter, ToneTrack  # noqa: E402
from media.ice import new_peer  # noqa: E402


class FrameClock:
    """Consumes a remote video track; keeps the arrival time of every decoded frame."""

    def __init__(self, track: MediaStreamTrack) -> None:
        self.times: list[float] = []
        self.task = asyncio.get_running_loop().create_task(self._run(track))

    async def _run(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                await track.recv()
            except (MediaStreamError, asyncio.CancelledError):
                return
            self.times.append(time.monotonic())


def freeze_figures(times: list[float], start: float, end: float) -> dict[str, Any]:
    window = [t for t in times if start <= t <= end]
    if len(window) < 2:
        return {"frames": len(window), "freeze_ms": round((end - start) * 1000), "max_gap_ms": round((end - start) * 1000)}
    gaps = [b - a for a, b in zip(window, window[1:])]
    mean = sum(gaps) / len(gaps)
    threshold = max(3 * mean, mean + 0.150)
    return {"frames": len(window), "fps": round(len(window) / (end - start), 1),
            "freeze_ms": round(1000 * sum(g for g in gaps if g > threshold)),
            "max_gap_ms": round(1000 * max(gaps))}


class Impairment:
    """Loss, delay and jitter on every UDP datagram of this process's ICE sockets (both ways)."""

    def __init__(self) -> None:
        self.loss = 0.0
        self.delay = 0.0
        self.jitter = 0.0
        self.rnd = random.Random(7)
        self.dropped = self.passed = 0

    def set(self, loss: float = 0.0, delay_ms: float = 0.0, jitter_ms: float = 0.0) -> None:
        self.loss, self.delay, self.jitter = loss, delay_ms / 1000, jitter_ms / 1000

    def apply(self, deliver: Any, *args: Any) -> None:
        if not (self.loss or self.delay or self.jitter):
            deliver(*args)
            return
        if self.rnd.random() < self.loss:
            self.dropped += 1
            return
        self.passed += 1
        wait = max(0.0, self.delay + self.rnd.uniform(-self.jitter / 2, self.jitter / 2))
        asyncio.get_running_loop().call_later(wait, deliver, *args)

    def install(self) -> None:
        """Wrap aioice's datagram protocol: what it receives and what its transport sends."""
        impairment = self
        received = aioice.ice.StunProtocol.datagram_received
        made = aioice.ice.StunProtocol.connection_made

        def datagram_received(protocol: Any, data: bytes, addr: Any) -> None:
            impairment.apply(received, protocol, data, addr)

        def connection_made(protocol: Any, transport: Any) -> None:
            made(protocol, transport)
            sendto = transport.sendto

            def impaired_sendto(data: bytes, addr: Any = None) -> None:
                impairment.apply(lambda d, a: None if transport.is_closing() else sendto(d, a), data, addr)

            transport.sendto = impaired_sendto

        aioice.ice.StunProtocol.datagram_received = datagram_received
        aioice.ice.StunProtocol.connection_made = connection_made


async def main() -> None:
    impairment = Impairment()
    impairment.install()
    pc = new_peer([])
    mic = ToneTrack(440.0)
    pc.addTransceiver(mic, direction="sendrecv")
    camera = pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("video", direction="recvonly")  # screen share slot
    meters: list[AudioMeter] = []
    clocks: list[FrameClock] = []
    window_start = time.monotonic()

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            meters.append(AudioMeter(track))
        else:
            clocks.append(FrameClock(track))

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def say(obj: Any) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    while True:
        line = await reader.readline()
        if not line:
            break
        cmd = json.loads(line)
        if cmd.get("offer"):
            if cmd.get("video") and camera.sender.track is None:
                camera.sender.replaceTrack(VideoStreamTrack())
                camera.direction = "sendrecv"
            await pc.setLocalDescription(await pc.createOffer())
            say({"offer": pc.localDescription.sdp})
            answer = json.loads(await reader.readline())["answer"]
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        elif cmd.get("wait_connected"):
            deadline = time.monotonic() + 20
            while pc.connectionState != "connected" and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            say({"connected": pc.connectionState == "connected"})
        elif cmd.get("measure_start"):
            window_start = time.monotonic()
            say({"started": True})
        elif "measure" in cmd or cmd.get("measure_stop"):
            if "measure" in cmd:
                start = time.monotonic()
                await asyncio.sleep(float(cmd["measure"]))
            else:
                start = window_start
            end = time.monotonic()
            audio = [f for m in meters[:1] for f in m.frames if start <= f[0] <= end]
            video = freeze_figures(clocks[0].times if clocks else [], start, end)
            say({"audio_frames": len(audio), "audio_hz": [round(f) for _, f, _ in audio[-5:]],
                 "audio_max_gap_ms": round(1000 * meters[0].max_gap(start, end)) if meters else None,
                 "video": video, "state": pc.connectionState})
        elif "impair" in cmd:
            impairment.set(**cmd["impair"])
            say({"impaired": True, "dropped": impairment.dropped, "passed": impairment.passed})
        elif cmd.get("quit"):
            break
    for m in meters:
        m.stop()
    for c in clocks:
        c.task.cancel()
    mic.stop()
    await pc.close()


if __name__ == "__main__":
    asyncio.run(main())
