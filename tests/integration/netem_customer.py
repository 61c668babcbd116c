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
- ``{"audio_since": t}`` / ``{"video_since": t}`` (``time.monotonic()``, one clock in every
  namespace) -> ``{"first": arrival of the first frame at or after t, or null, "frames": n}``;
- ``{"rtp": true}`` -> the RTP packets this peer's stack counted (sent, received, lost by kind);
- ``{"quit": true}``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from aiortc import MediaStreamTrack, RTCSessionDescription, VideoStreamTrack  # noqa: E402
from aiortc.mediastreams import MediaStreamError  # noqa: E402

from media.probe import AudioMeter, ToneTrack  # noqa: E402
from media.ice import new_peer  # noqa: E402
from netem_kit import json_lines  # noqa: E402  (this folder is sys.path[0] when run as a script)


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


async def rtp_counts(pc: Any) -> dict[str, int]:
    """What this peer's RTP stack counted (aiortc ``getStats``): packets sent and received per
    kind, and the received ones' loss as the receiver computes it (expected - received; video
    retransmissions count as received, so video loss is what NACK did not repair)."""
    out: dict[str, int] = {}
    for s in (await pc.getStats()).values():
        if s.type == "outbound-rtp":
            out[f"{s.kind}_sent"] = out.get(f"{s.kind}_sent", 0) + s.packetsSent
        elif s.type == "inbound-rtp":
            out[f"{s.kind}_received"] = out.get(f"{s.kind}_received", 0) + s.packetsReceived
            out[f"{s.kind}_lost"] = out.get(f"{s.kind}_lost", 0) + s.packetsLost
    return out


async def main() -> None:
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

    reader, say = await json_lines()

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
        elif "audio_since" in cmd or "video_since" in cmd:
            since = float(cmd.get("audio_since", cmd.get("video_since")))
            times = ([t for m in meters[:1] for t, _, _ in m.frames] if "audio_since" in cmd
                     else (clocks[0].times if clocks else []))
            after = [t for t in times if t >= since]
            say({"first": after[0] if after else None, "frames": len(after)})
        elif cmd.get("rtp"):
            say(await rtp_counts(pc))
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
