"""Relay benchmark: the RTP forwarder against aiortc's stock decode/re-encode relay, one run.

    python -m bench.media_relay --calls 50 --seconds 10 [--video] [--transcode-cap K]
        [--batch-ms B] [--idle] [--server-stage receive|unprotect|no-send]

A server process (pinned to one core where the machine allows) relays N bidirectional calls
between two legs each; one client process (pinned to another core) plays both ends of every call
on loopback. Clients are cheap: pre-encoded packets on a timer (PreEncodedSource), received
packets only timestamped (a tap on the forwarder), nothing decoded.

Both server paths run in the same invocation, each in a fresh server process:

- ``forwarder``: legs adopted by :class:`media.Forwarder`, sinks attached crosswise.
- ``transcode``: stock aiortc, ``MediaRelay().subscribe(remote_track)`` added to the other leg,
  i.e. decode + re-encode per outbound leg. It saturates early, so it runs at
  ``min(N, cap)`` calls (``transcode.calls`` and ``transcode.capped`` say so); costs are per call.

Measurements (window of ``--seconds`` after a warm-up, on the shared monotonic clock):

- ``server_cpu_ms_per_call_s``: server process CPU (all threads) / (calls x seconds).
- latency: one way, client send -> client receive, so what the server adds (plus two loopback
  hops). Streams are matched by RTP timestamp: both paths keep ``out_ts - in_ts`` constant per
  stream, and the constant is found from content markers that survive transcoding (audio:
  silence->tone onsets, seen as Opus packet sizes; video: a keyframe with a new frame size
  every 0.5 s, read from the VP8 header). Each media frame sent in the window is one sample.
- ``loss_pct``: media frames sent in the window that never arrived (audio frame = packet; video
  counts frames so the transcoder's different packetisation does not matter).

Prints one JSON line. ``BENCH_PROFILE=file`` writes a cProfile of the forwarder server;
``BENCH_VERBOSE=1`` prints server pids, per-stream matching and late frames to stderr.
See docs/media-forwarder.md for measured results.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import fractions
import json
import multiprocessing as mp
import os
import random
import sys
import threading
import time
from typing import Any

from bench.cpus import pin_cpu, two_cpus

AUDIO_TRANSCODE_CAP = 3
VIDEO_TRANSCODE_CAP = 1
WARMUP_S = 2.0
DRAIN_S = 1.0
SETUP_TIMEOUT_S = 120.0

# client media: audio 400 Hz tone, 200 ms on / 200 ms off (onset every 400 ms)
TONE_HZ, TONE_ON_MS, TONE_OFF_MS, TONE_LOOP_MS = 400.0, 200, 200, 2000
# client video: 640x480 <-> 640x464 every 15 frames at 30 fps, VP8 ~1.2 Mbit/s
VIDEO_FPS, VIDEO_SEGMENT = 30, 15
VIDEO_SIZES = ((640, 480), (640, 464))


# --- helpers shared by processes -------------------------------------------------------------



def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return 0.0


class _Commands:
    """Commands from the orchestrator over a Pipe, read by a thread, awaited on the loop."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                msg = self.conn.recv()
            except (EOFError, OSError):
                msg = ("close",)
            self.loop.call_soon_threadsafe(self.queue.put_nowait, msg)
            if msg[0] == "close":
                return

    async def get(self) -> Any:
        return await self.queue.get()

    def reply(self, value: Any) -> None:
        self.conn.send(value)


# --- server process ------------------------------------------------------------------------------


def _stop_after(stage: str) -> None:
    """Cost breakdown (``--server-stage``): make the forwarder server stop after one stage."""
    from media import aiortc_hooks

    if stage in ("receive", "unprotect"):
        stock = aiortc_hooks._datagram_handler

        def handler(protocol: Any, dtls: Any, on_rtp: Any) -> Any:
            full = stock(protocol, dtls, on_rtp)

            def handle(data: bytes, addr: Any) -> None:
                if len(data) > 11 and 127 < data[0] < 192 and not (191 < data[1] < 224) and dtls._rx_srtp:
                    if stage == "unprotect":
                        dtls._rx_srtp.unprotect(data)
                    return
                full(data, addr)

            return handle

        aiortc_hooks._datagram_handler = handler
    elif stage == "no-send":

        def send_rtp(self: Any, packet: bytes) -> bytes | None:
            if self._tx is None and not self._open():
                return None
            return self._tx.protect(packet)

        aiortc_hooks.SrtpWriter.send_rtp = send_rtp


def server_main(conn: Any, mode: str, cpu: int | None, batch_ms: float = 0.0, stage: str = "full") -> None:
    pinned = pin_cpu(cpu)
    if stage != "full" and mode == "forwarder":
        _stop_after(stage)
    if os.environ.get("BENCH_VERBOSE"):
        print(f"bench: {mode} server pid {os.getpid()}", file=sys.stderr, flush=True)
    from media import set_loopback_only

    set_loopback_only(True)
    profile_to = os.environ.get("BENCH_PROFILE")
    if profile_to and mode == "forwarder":
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
        try:
            asyncio.run(_server(conn, mode, pinned, batch_ms))
        finally:
            profiler.disable()
            profiler.dump_stats(profile_to)
        return
    asyncio.run(_server(conn, mode, pinned, batch_ms))


async def _server(conn: Any, mode: str, pinned: bool, batch_ms: float) -> None:
    from aiortc import RTCSessionDescription
    from aiortc.contrib.media import MediaRelay

    from media import Forwarder, new_peer

    commands = _Commands(conn)
    forwarder = Forwarder(batch_interval=batch_ms / 1000) if mode == "forwarder" else None
    relay = MediaRelay()
    pcs: list[Any] = []
    while True:
        msg = await commands.get()
        op = msg[0]
        if op == "answer":
            answers = []
            for offer_x, offer_y in msg[1]:
                pair = []
                for offer in (offer_x, offer_y):
                    pc = new_peer()
                    pcs.append(pc)
                    leg = forwarder.add_leg(pc) if forwarder else None
                    await pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
                    pair.append((pc, leg))
                (pcx, legx), (pcy, legy) = pair
                if forwarder:
                    legx.prepare()
                    legy.prepare()
                else:
                    for a, b in ((pcx, pcy), (pcy, pcx)):
                        for transceiver in b.getTransceivers():
                            a.addTrack(relay.subscribe(transceiver.receiver.track))
                out = []
                for pc, _ in pair:
                    await pc.setLocalDescription(await pc.createAnswer())
                    out.append(pc.localDescription.sdp)
                if forwarder:
                    legx.refresh()
                    legy.refresh()
                    for kind in {s.kind for s in legx.sinks}:
                        legy.sink(kind).attach(legx.source(kind))
                        legx.sink(kind).attach(legy.source(kind))
                answers.append(tuple(out))
            commands.reply(answers)
        elif op == "cpu":
            times = os.times()
            commands.reply(
                {"cpu": time.process_time(), "user": times.user, "sys": times.system, "rss_mb": _rss_mb(), "pinned": pinned}
            )
        elif op == "close":
            if forwarder:
                await forwarder.close()
            await asyncio.gather(*(pc.close() for pc in pcs), return_exceptions=True)
            try:
                commands.reply("closed")
            except (OSError, EOFError):
                pass
            return


# --- client process ------------------------------------------------------------------------------


class _SendLog:
    """Sender side of one stream: first send time per RTP timestamp, and marker onsets."""

    def __init__(self, onset_ids: set[int] | None) -> None:
        self.sent: dict[int, float] = {}
        self.onsets: list[tuple[float, int]] = []
        self._onset_ids = onset_ids
        self._size: tuple[int, int] | None = None

    def __call__(self, info: Any) -> None:
        ts = info.timestamp
        if ts not in self.sent:
            self.sent[ts] = info.arrival
        if self._onset_ids is not None:
            if id(info.payload) in self._onset_ids:
                self.onsets.append((info.arrival, ts))
        elif info.payload[0] & 0x10:
            from media.rtp import vp8_keyframe_size

            size = vp8_keyframe_size(info.payload)
            if size is not None and size != self._size:
                self._size = size
                self.onsets.append((info.arrival, ts))


class _RecvLog:
    """Receiver side of one stream: first arrival per RTP timestamp, and marker onsets."""

    def __init__(self, video: bool) -> None:
        self.arrived: dict[int, float] = {}
        self.onsets: list[tuple[float, int]] = []
        self.packets = 0
        self._video = video
        self._quiet = 0
        self._size: tuple[int, int] | None = None

    def __call__(self, info: Any) -> None:
        self.packets += 1
        ts = info.timestamp
        if ts not in self.arrived:
            self.arrived[ts] = info.arrival
        payload = info.payload
        if self._video:
            if payload and payload[0] & 0x10:
                from media.rtp import vp8_keyframe_size

                size = vp8_keyframe_size(payload)
                if size is not None and size != self._size:
                    if self._size is not None:
                        self.onsets.append((info.arrival, ts))
                    self._size = size
        else:
            n = len(payload)
            if n <= 8:
                self._quiet += 1
            else:
                if n >= 20 and self._quiet >= 3:
                    self.onsets.append((info.arrival, ts))
                self._quiet = 0


def _stream_result(send: _SendLog, recv: _RecvLog, t0: float, t1: float) -> dict[str, Any]:
    """Match the two ends of a stream: offset by onsets, then every frame sent in [t0, t1)."""
    offsets: collections.Counter[int] = collections.Counter()
    sent_onsets = sorted(send.onsets)
    for arrival, out_ts in recv.onsets:
        before = [o for o in sent_onsets if o[0] <= arrival]
        if before:
            offsets[(out_ts - before[-1][1]) & 0xFFFFFFFF] += 1
    in_window = [(ts, t) for ts, t in send.sent.items() if t0 <= t < t1]
    if os.environ.get("BENCH_VERBOSE"):
        got = sorted(recv.arrived.items(), key=lambda kv: kv[1])
        deltas = collections.Counter((b[0] - a[0]) & 0xFFFFFFFF for a, b in zip(got, got[1:]))
        print(f"bench: stream sent {len(send.sent)} recv {len(recv.arrived)} ts deltas {deltas.most_common(5)} offsets {offsets.most_common(3)}", file=sys.stderr)
    if not offsets:
        return {"sent": len(in_window), "lost": None, "latencies": []}
    offset = offsets.most_common(1)[0][0]
    lost = 0
    latencies = []
    arrived = recv.arrived
    for ts, t in in_window:
        base = ts + offset
        # the transcoder re-derives timestamps through a time base conversion: allow +-2 ticks
        arrival = arrived.get(base & 0xFFFFFFFF)
        for skew in (1, -1, 2, -2):
            if arrival is not None:
                break
            arrival = arrived.get((base + skew) & 0xFFFFFFFF)
        if arrival is None:
            lost += 1
        else:
            latencies.append(arrival - t)
            if os.environ.get("BENCH_VERBOSE") and arrival - t > 0.005:
                print(f"bench: late {1000 * (arrival - t):.1f} ms sent at +{t - t0:.3f}", file=sys.stderr)
    return {"sent": len(in_window), "lost": lost, "latencies": latencies}


def client_main(conn: Any, calls: int, video: bool, cpu: int | None, idle: bool = False) -> None:
    pin_cpu(cpu)
    from media import set_loopback_only

    set_loopback_only(True)
    asyncio.run(_client(conn, calls, video, idle))


def _video_frames() -> tuple[Any, ...]:
    """One second of 640x480 VP8 (two segments of different height, each opening on a keyframe)."""
    import av

    from media import EncodedFrame

    frames = []
    for seg, (width, height) in enumerate(VIDEO_SIZES):
        codec = av.CodecContext.create("libvpx", "w")
        codec.width, codec.height = width, height
        codec.pix_fmt = "yuv420p"
        codec.bit_rate = 1_000_000
        codec.time_base = fractions.Fraction(1, 90000)
        codec.framerate = VIDEO_FPS
        codec.gop_size = VIDEO_SEGMENT
        codec.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
        base = bytes((x * 3) & 0xFF for x in range(width)) * 2
        for i in range(VIDEO_SEGMENT):
            n = seg * VIDEO_SEGMENT + i
            frame = av.VideoFrame(width, height, "yuv420p")
            rows = [base[(n * 8 + y // 3) % width :][:width] for y in range(height)]
            frame.planes[0].update(b"".join(row[: frame.planes[0].line_size].ljust(frame.planes[0].line_size, b"\0") for row in rows))
            for p, value in ((1, 90 + 40 * seg), (2, 160 - 30 * seg)):
                plane = frame.planes[p]
                plane.update(bytes([value]) * (plane.line_size * (height // 2)))
            frame.pts = n * (90000 // VIDEO_FPS)
            frame.time_base = fractions.Fraction(1, 90000)
            for packet in codec.encode(frame):
                frames.append(EncodedFrame(bytes(packet), 90000 // VIDEO_FPS, bool(packet.is_keyframe)))
        for packet in codec.encode(None):
            frames.append(EncodedFrame(bytes(packet), 90000 // VIDEO_FPS, bool(packet.is_keyframe)))
    return tuple(frames)


async def _client(conn: Any, calls: int, video: bool, idle: bool) -> None:
    from aiortc import RTCSessionDescription

    from media import Forwarder, LegState, PreEncodedSource, new_peer
    from media.preencoded import OPUS, VP8, encode_opus_tone

    kind = "video" if video else "audio"
    if video:
        frames = _video_frames()
        codec, onset_ids = VP8, None
    else:
        frames = encode_opus_tone(TONE_HZ, -12.0, TONE_ON_MS, TONE_OFF_MS, TONE_LOOP_MS)
        codec = OPUS
        period = (TONE_ON_MS + TONE_OFF_MS) // 20
        onset_ids = {id(frames[i].data) for i in range(0, len(frames), period)}

    commands = _Commands(conn)
    forwarder = Forwarder()
    legs: list[Any] = []
    streams: list[tuple[_SendLog, _RecvLog]] = []
    loop = asyncio.get_running_loop()
    start_cpu = None
    while True:
        msg = await commands.get()
        op = msg[0]
        if op == "offers":
            offers = []
            for _ in range(calls):
                pair = []
                for _ in range(2):
                    pc = new_peer()
                    pc.addTransceiver(kind, direction="sendrecv")
                    leg = forwarder.add_leg(pc)
                    leg.prepare()
                    await pc.setLocalDescription(await pc.createOffer())
                    legs.append(leg)
                    pair.append(pc.localDescription.sdp)
                offers.append(tuple(pair))
            commands.reply(offers)
        elif op == "answers":
            for leg, sdp in zip(legs, [s for pair in msg[1] for s in pair]):
                await leg.pc.setRemoteDescription(RTCSessionDescription(sdp, "answer"))
                leg.refresh()
            deadline = time.monotonic() + SETUP_TIMEOUT_S
            while any(leg.state is not LegState.CONNECTED for leg in legs) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            connected = sum(leg.state is LegState.CONNECTED for leg in legs)
            for i in range(0, 0 if idle else len(legs), 2):
                x, y = legs[i], legs[i + 1]
                for a, b in ((x, y), (y, x)):
                    source = PreEncodedSource(kind, codec, frames)
                    send = _SendLog(onset_ids)
                    recv = _RecvLog(video)
                    b.source(kind).tap(recv)
                    streams.append((send, recv))

                    def start(source: Any = source, send: _SendLog = send, sink: Any = a.sink(kind)) -> None:
                        source.tap(send)
                        sink.attach(source)

                    # random phase: real calls are not aligned on one 20 ms tick
                    loop.call_later(random.uniform(0, 0.03), start)
            start_cpu = time.process_time()
            commands.reply({"connected": connected, "legs": len(legs)})
        elif op == "stats":
            t0, t1 = msg[1], msg[2]
            cpu = time.process_time() - (start_cpu or 0)
            results = [_stream_result(s, r, t0, t1) for s, r in streams]
            latencies = sorted(x for r in results for x in r["latencies"])
            sent = sum(r["sent"] for r in results)
            lost = sum(r["lost"] for r in results if r["lost"] is not None)
            unmatched = sum(1 for r in results if r["lost"] is None)
            commands.reply(
                {
                    "sent": sent,
                    "lost": lost,
                    "unmatched_streams": unmatched,
                    "latencies": latencies,
                    "client_cpu_s": cpu,
                }
            )
        elif op == "close":
            await forwarder.close()
            try:
                commands.reply("closed")
            except (OSError, EOFError):
                pass
            return


# --- orchestrator ------------------------------------------------------------------------------


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    k = min(len(values) - 1, max(0, int(round(q * (len(values) - 1)))))
    return values[k]


def _ask(conn: Any, msg: Any, timeout: float) -> Any:
    conn.send(msg)
    if not conn.poll(timeout):
        raise TimeoutError(f"no reply to {msg[0]!r} within {timeout:.0f} s")
    return conn.recv()


def run_mode(
    mode: str,
    calls: int,
    seconds: float,
    video: bool,
    cpus: tuple[int | None, int | None],
    batch_ms: float = 0.0,
    stage: str = "full",
    idle: bool = False,
) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    server_conn, server_end = ctx.Pipe()
    client_conn, client_end = ctx.Pipe()
    server = ctx.Process(target=server_main, args=(server_end, mode, cpus[0], batch_ms, stage), daemon=True)
    client = ctx.Process(target=client_main, args=(client_end, calls, video, cpus[1], idle), daemon=True)
    server.start()
    client.start()
    try:
        offers = _ask(client_conn, ("offers",), SETUP_TIMEOUT_S)
        answers = _ask(server_conn, ("answer", offers), SETUP_TIMEOUT_S)
        ready = _ask(client_conn, ("answers", answers), SETUP_TIMEOUT_S + 10)
        time.sleep(WARMUP_S)
        before = _ask(server_conn, ("cpu",), 30)
        t0 = time.monotonic()
        time.sleep(seconds)
        after = _ask(server_conn, ("cpu",), 30)
        t1 = time.monotonic()
        time.sleep(DRAIN_S)
        stats = _ask(client_conn, ("stats", t0, t1), 60)
    finally:
        for conn in (client_conn, server_conn):
            try:
                _ask(conn, ("close",), 30)
            except (TimeoutError, OSError, EOFError):
                pass
        for proc in (client, server):
            proc.join(10)
            if proc.is_alive():
                proc.terminate()
    window = t1 - t0
    cpu_s = after["cpu"] - before["cpu"]
    latencies = stats["latencies"]
    sent = stats["sent"]
    return {
        "calls": calls,
        "connected_legs": f"{ready['connected']}/{ready['legs']}",
        "server_cpu_ms_per_call_s": round(cpu_s * 1000 / (calls * window), 3),
        "server_cpu_pct_of_core": round(100 * cpu_s / window, 1),
        "server_sys_share_pct": round(100 * (after["sys"] - before["sys"]) / cpu_s, 1) if cpu_s > 0 else None,
        "loss_pct": round(100 * stats["lost"] / sent, 3) if sent else None,
        "latency_ms_p50": round(_percentile(latencies, 0.5) * 1000, 2) if latencies else None,
        "latency_ms_p99": round(_percentile(latencies, 0.99) * 1000, 2) if latencies else None,
        "latency_samples": len(latencies),
        "unmatched_streams": stats["unmatched_streams"],
        "server_rss_mb": round(after["rss_mb"], 1),
        "server_rss_growth_mb": round(after["rss_mb"] - before["rss_mb"], 2),
        "server_pinned": after["pinned"],
        "client_cpu_pct_of_core": round(100 * stats["client_cpu_s"] / (window + WARMUP_S + DRAIN_S), 1),
    }



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.media_relay", description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=50, help="bidirectional calls through the forwarder")
    parser.add_argument("--seconds", type=float, default=10.0, help="measurement window per path")
    parser.add_argument("--video", action="store_true", help="640x480 VP8 ~30 fps video instead of Opus audio")
    parser.add_argument(
        "--transcode-cap",
        type=int,
        default=None,
        help=f"max calls for the stock transcoding path (default {AUDIO_TRANSCODE_CAP} audio, {VIDEO_TRANSCODE_CAP} video)",
    )
    parser.add_argument(
        "--batch-ms",
        type=float,
        default=0.0,
        help="forwarder receive batching (Forwarder(batch_interval=...)): CPU for latency; default 0",
    )
    parser.add_argument(
        "--server-stage",
        choices=("full", "receive", "unprotect", "no-send"),
        default="full",
        help="cost breakdown: the forwarder server stops after this stage (skips the transcode run)",
    )
    parser.add_argument("--idle", action="store_true", help="connect the calls but send nothing (per-call idle cost)")
    args = parser.parse_args(argv)
    cap = args.transcode_cap or (VIDEO_TRANSCODE_CAP if args.video else AUDIO_TRANSCODE_CAP)
    cpus = two_cpus()
    forwarder = run_mode(
        "forwarder", args.calls, args.seconds, args.video, cpus, args.batch_ms, args.server_stage, args.idle
    )
    transcode: dict[str, Any] | None = None
    ratio = None
    if args.idle:
        forwarder["idle"] = True
    if args.server_stage == "full" and not args.idle:
        transcode_calls = min(args.calls, cap)
        transcode = run_mode("transcode", transcode_calls, args.seconds, args.video, cpus)
        transcode["capped"] = transcode_calls < args.calls
        if forwarder["server_cpu_ms_per_call_s"] > 0:
            ratio = round(transcode["server_cpu_ms_per_call_s"] / forwarder["server_cpu_ms_per_call_s"], 1)
    else:
        forwarder["server_stage"] = args.server_stage
    result = {
        "calls": args.calls,
        "media": "video VP8 640x480 30fps" if args.video else "audio Opus 20ms",
        "seconds": args.seconds,
        "forwarder": forwarder,
        "transcode": transcode,
        "cpu_ratio": ratio,
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
