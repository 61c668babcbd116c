"""Browser stand-ins for tests and benchmarks: aiortc peers that offer like ``web/sdk/call.js``.

Why here and not in tests/: the call tests and ``bench/escalation.py`` drive the same
"browser" (offerer, max-bundle, transceivers in call.js's order: microphone, camera, screen) and
measure what it hears: :class:`AudioMeter` finds the dominant frequency of every received frame,
so a test can tell the hold tone (425 Hz) from agent A (e.g. 660 Hz) from agent B (880 Hz).
"""

from __future__ import annotations

import asyncio
import fractions
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import av
import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.mediastreams import MediaStreamError

from .ice import new_peer, peer_configuration

RATE = 48000
FRAME = 960  # 20 ms


class ToneTrack(MediaStreamTrack):
    """A microphone that sings one sine frequency (real time, 20 ms frames)."""

    kind = "audio"

    def __init__(self, frequency: float, level: float = 0.3) -> None:
        super().__init__()
        self.frequency = frequency
        self.level = level
        self._start: float | None = None
        self._pts = 0

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            self._pts += FRAME
            delay = self._start + self._pts / RATE - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        t = (np.arange(FRAME) + self._pts) / RATE
        samples = (self.level * 32767 * np.sin(2 * np.pi * self.frequency * t)).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, RATE)
        return frame


class AudioMeter:
    """Consumes a remote audio track; records (arrival, dominant frequency, rms) per frame."""

    def __init__(self, track: MediaStreamTrack) -> None:
        self.track = track
        self.frames: list[tuple[float, float, float]] = []
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            try:
                frame = await self.track.recv()
            except (MediaStreamError, asyncio.CancelledError):
                return
            data = frame.to_ndarray().astype(np.float64)
            channels = len(frame.layout.channels)
            mono = data.reshape(-1, channels).mean(axis=1) if data.ndim == 2 and channels > 1 else data.ravel()
            rms = float(np.sqrt(np.mean(mono**2))) if mono.size else 0.0
            freq = 0.0
            if rms > 300 and mono.size >= 256:
                spectrum = np.abs(np.fft.rfft(mono * np.hanning(mono.size)))
                freq = float(np.argmax(spectrum[1:]) + 1) * frame.sample_rate / mono.size
            self.frames.append((time.monotonic(), freq, rms))
            for check, fut in list(self._waiters):
                if not fut.done() and check():
                    fut.set_result(None)

    def hears(self, frequency: float, last: int = 5, tolerance: float = 60.0) -> bool:
        """The last ``last`` frames all carry ``frequency`` (within ``tolerance`` Hz)."""
        recent = self.frames[-last:]
        return len(recent) == last and all(abs(f - frequency) <= tolerance for _, f, _ in recent)

    def first_time_hearing(
        self, frequency: float, after: float = 0.0, tolerance: float = 60.0, run: int = 1
    ) -> float | None:
        """Arrival of the first frame (after ``after``) that starts ``run`` consecutive frames of
        ``frequency``. ``run > 1`` skips one-frame transients, e.g. the click of a switch whose
        spectrum peaks near another voice's frequency."""
        streak: list[float] = []
        for t, f, _ in self.frames:
            if t < after:
                continue
            if abs(f - frequency) <= tolerance:
                streak.append(t)
                if len(streak) >= run:
                    return streak[0]
            else:
                streak = []
        return None

    async def wait_until(self, check: Callable[[], bool], timeout: float = 15.0) -> None:
        if check():
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (check, fut)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(fut, timeout)
        finally:
            self._waiters.remove(entry)

    async def wait_hearing(self, frequency: float, timeout: float = 15.0) -> None:
        try:
            await self.wait_until(lambda: self.hears(frequency), timeout)
        except asyncio.TimeoutError:
            heard = [round(f) for _, f, _ in self.frames[-10:]]
            raise AssertionError(f"never heard {frequency} Hz within {timeout}s; last frames: {heard}") from None

    def max_gap(self, start: float, end: float) -> float:
        """Longest interval without a received frame in [start, end] (seconds)."""
        times = [start] + [t for t, _, _ in self.frames if start <= t <= end] + [end]
        return max(b - a for a, b in zip(times, times[1:]))

    def stop(self) -> None:
        self.task.cancel()


class VideoCounter:
    """Consumes a remote video track and counts decoded frames."""

    def __init__(self, track: MediaStreamTrack) -> None:
        self.track = track
        self.count = 0
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            try:
                await self.track.recv()
            except (MediaStreamError, asyncio.CancelledError):
                return
            self.count += 1


Answerer = Callable[[str], Awaitable[str]]


class ClientPeer:
    """A browser stand-in: microphone tone, camera and screen transceivers (recvonly until
    turned on), always the offerer. ``answerer(offer_sdp) -> answer_sdp`` is the server side
    (``CallLeg.answer`` directly, or a Socket.IO round trip)."""

    def __init__(
        self, frequency: float, ice_servers: Sequence[RTCIceServer | dict[str, Any]] = (), relay_only: bool = False
    ) -> None:
        if relay_only:
            config = peer_configuration(ice_servers)
            config.iceTransportPolicy = RTCIceTransportPolicy.RELAY
            self.pc = RTCPeerConnection(config)
        else:
            self.pc = new_peer(ice_servers)
        self.mic = ToneTrack(frequency)
        self.audio_tx = self.pc.addTransceiver(self.mic, direction="sendrecv")
        self.camera_tx = self.pc.addTransceiver("video", direction="recvonly")
        self.screen_tx = self.pc.addTransceiver("video", direction="recvonly")
        self.meter: AudioMeter | None = None
        self.videos: list[VideoCounter] = []
        self._meter_ready = asyncio.Event()
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            if self.meter is None:
                self.meter = AudioMeter(track)
                self._meter_ready.set()
            else:
                AudioMeter(track)  # consume it anyway (unbounded queues otherwise)
        else:
            self.videos.append(VideoCounter(track))

    async def negotiate(self, answerer: Answerer) -> None:
        offer = await self.pc.createOffer()
        await self.pc.setLocalDescription(offer)
        answer = await answerer(self.pc.localDescription.sdp)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))

    @classmethod
    async def unanswered_offer(cls, frequency: float = 440.0) -> str:
        """A real offer of a fresh peer (audio, camera, screen share: shaped like web/sdk/call.js's),
        never answered: the seed that SDP tests mutate. The peer is closed again."""
        peer = cls(frequency)
        try:
            await peer.pc.setLocalDescription(await peer.pc.createOffer())
            return peer.pc.localDescription.sdp
        finally:
            await peer.close()

    async def audio(self) -> AudioMeter:
        await asyncio.wait_for(self._meter_ready.wait(), 10)
        assert self.meter is not None
        return self.meter

    async def wait_connected(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while self.pc.connectionState != "connected":
            if time.monotonic() > deadline:
                raise AssertionError(f"client peer never connected (state {self.pc.connectionState})")
            await asyncio.sleep(0.05)

    def start_video(self, screen: bool = False) -> None:
        """Turn the camera (or screen share) on; renegotiate afterwards."""
        tx = self.screen_tx if screen else self.camera_tx
        tx.sender.replaceTrack(VideoStreamTrack())
        tx.direction = "sendrecv"

    def stop_video(self, screen: bool = False) -> None:
        tx = self.screen_tx if screen else self.camera_tx
        track = tx.sender.track
        tx.direction = "recvonly"
        tx.sender.replaceTrack(None)
        if track is not None:
            track.stop()

    def video_frames(self) -> int:
        return sum(v.count for v in self.videos)

    async def close(self) -> None:
        if self.meter is not None:
            self.meter.stop()
        for v in self.videos:
            v.task.cancel()
        self.mic.stop()
        await self.pc.close()
