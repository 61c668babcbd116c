"""Helpers for the forwarder tests: real aiortc peers over real UDP on 127.0.0.1.

``lab`` gives a :class:`MediaLab`: ``await lab.join("A", send=ToneTrack(1000))`` creates a client
peer (stock aiortc: it encodes what it sends and decodes what it receives, like a browser would),
the server-side leg adopted by the forwarder, negotiates (client offers, server answers) and waits
until both ends are connected. Clients record decoded frames and the RTP their stock receiver saw.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import av
import numpy as np
import pytest
from aiortc import MediaStreamTrack, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from media import Forwarder, Leg, LegState, new_peer
from media.aiortc_hooks import observe_received_rtp
from media.probe import ToneTrack  # noqa: F401  (the test peers' microphone, re-exported)

SETTLE_TIMEOUT_S = 15.0  # generous: the machine is shared; nothing here asserts on time


async def until(predicate: Callable[[], bool], what: str, timeout: float = SETTLE_TIMEOUT_S) -> None:
    """Wait until ``predicate()`` holds; fail with ``what`` if it never does."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for: {what}")
        await asyncio.sleep(0.02)


class ColorTrack(MediaStreamTrack):
    """320x240 video of one colour with a moving white box, 15 fps."""

    kind = "video"

    def __init__(self, rgb: tuple[int, int, int], fps: int = 15) -> None:
        super().__init__()
        self.rgb = rgb
        self.fps = fps
        self._n = 0
        self._start: float | None = None

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        wait = self._start + self._n / self.fps - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        img = np.empty((240, 320, 3), np.uint8)
        img[:] = self.rgb
        x = (self._n * 7) % 280
        img[100:140, x : x + 40] = 255
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts = self._n * (90000 // self.fps)
        frame.time_base = fractions.Fraction(1, 90000)
        self._n += 1
        return frame


@dataclass
class Client:
    """A client peer: what it decoded and the RTP packets its stock receiver handled."""

    name: str
    pc: Any
    leg: Leg  # the server side of this client
    frames: dict[str, list[tuple[float, Any]]] = field(default_factory=dict)
    rtp: dict[str, list[tuple[int, int, int, bool, int]]] = field(default_factory=dict)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def audio(self, start: int = 0, end: int | None = None, key: str = "audio") -> np.ndarray:
        """Decoded audio frames [start:end] as one mono int16 array (left channel)."""
        frames = self.frames[key][start:end]
        if not frames:
            return np.zeros(0, np.int16)
        data = np.concatenate([f.reshape(-1) for _, f in frames])
        return data[::2] if frames[0][1].shape[-1] > 960 else data  # aiortc decodes to stereo


def dominant_frequency(samples: np.ndarray, rate: int = 48000) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * rate / len(samples))


def tone_purity(samples: np.ndarray, frequency: float, rate: int = 48000, width: float = 25.0) -> float:
    """Share of the signal's energy within +-width Hz of ``frequency``."""
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples)))) ** 2
    freqs = np.fft.rfftfreq(len(samples), 1 / rate)
    band = spectrum[(freqs > frequency - width) & (freqs < frequency + width)].sum()
    return float(band / max(spectrum.sum(), 1e-12))


def level_dbfs(samples: np.ndarray) -> float:
    rms = np.sqrt(np.mean((samples.astype(np.float64) / 32768) ** 2))
    return float(20 * np.log10(max(rms, 1e-9)))


class MediaLab:
    """Joins client peers to server legs owned by one forwarder (see module docstring)."""

    def __init__(self, forwarder: Forwarder) -> None:
        self.forwarder = forwarder
        self.clients: list[Client] = []
        self._server_pcs: list[Any] = []

    async def join(
        self,
        name: str,
        send: MediaStreamTrack | None = None,
        receive: tuple[str, ...] = (),
        codecs: dict[str, list[str]] | None = None,
    ) -> Client:
        """A client that sends ``send`` (sendrecv) and receives ``receive`` kinds (recvonly).
        ``codecs`` limits what the client offers per kind, e.g. ``{"audio": ["PCMU"]}``."""
        pc = new_peer()
        transceivers = []
        if send is not None:
            pc.addTrack(send)
            transceivers.append(pc.getTransceivers()[-1])
        for kind in receive:
            transceivers.append(pc.addTransceiver(kind, direction="recvonly"))
        for transceiver in transceivers:
            wanted = (codecs or {}).get(transceiver.kind)
            if wanted:
                caps = RTCRtpSender.getCapabilities(transceiver.kind).codecs
                transceiver.setCodecPreferences([c for c in caps if c.mimeType.split("/")[1] in wanted])

        server_pc = new_peer()
        self._server_pcs.append(server_pc)
        leg = self.forwarder.add_leg(server_pc, name)
        client = Client(name, pc, leg)
        keys: dict[int, str] = {}
        seen: dict[str, int] = {}
        for transceiver in transceivers:
            kind = transceiver.kind
            key = kind if kind not in seen else f"{kind}#{seen[kind]}"
            seen[kind] = seen.get(kind, 0) + 1
            keys[id(transceiver.receiver)] = key
            client.frames[key] = []
            packets = client.rtp[key] = []
            observe_received_rtp(transceiver.receiver, lambda *p, packets=packets: packets.append(p))

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            receiver = next(t.receiver for t in pc.getTransceivers() if t.receiver.track is track)
            frames = client.frames[keys[id(receiver)]]

            async def consume() -> None:
                while True:
                    try:
                        frame = await track.recv()
                    except MediaStreamError:
                        return
                    if track.kind == "audio":
                        frames.append((time.monotonic(), frame.to_ndarray()))
                    else:
                        frames.append((time.monotonic(), frame.to_ndarray(format="rgb24")))

            client.tasks.append(asyncio.ensure_future(consume()))

        await pc.setLocalDescription(await pc.createOffer())
        await server_pc.setRemoteDescription(pc.localDescription)
        leg.prepare()
        await server_pc.setLocalDescription(await server_pc.createAnswer())
        await pc.setRemoteDescription(RTCSessionDescription(server_pc.localDescription.sdp, "answer"))
        await until(
            lambda: leg.state is LegState.CONNECTED and pc.connectionState == "connected",
            f"{name} connected",
        )
        self.clients.append(client)
        return client

    async def close(self) -> None:
        for client in self.clients:
            for task in client.tasks:
                task.cancel()
            await client.pc.close()
        await self.forwarder.close()
        for pc in self._server_pcs:
            await pc.close()


