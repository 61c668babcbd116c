"""Media under a bad network (issue 11): the customer's peer runs, unmodified, in its own network
namespace; every packet between it and the host crosses a shaped path (tests/integration/netem_kit.py:
``tc netem`` on a veth pair when the kernel has ``sch_netem``, else a user-space netem pumping IP
packets between two TUN devices, as on this test machine). The agent's peer and the node run on the
host. Signalling for the customer goes over the test's own Socket.IO connection (only media crosses
the shaped path). Needs root (``ip netns``, TUN devices or ``tc``), as the test machine has.

- the path itself: numbered datagrams both ways lose what the setting says and are delayed and
  reordered by the jitter;
- 5% loss and 50 ms delay with 50 ms jitter each way (``netem loss 5% delay 50ms 50ms``), with a
  2.5 s blackout in the middle: audio and video keep flowing through the forwarder both ways, NACKs
  are answered from the sinks' history or passed to the source, keyframe requests (PLI) reach the
  source and a keyframe brings the picture back after the blackout;
- a 10 s outage (shorter than ``media.reconnect_grace_s`` and than ICE consent's 30 s): the call
  comes back by itself, no new offer.

The figures (frames decoded, freeze time, NACK and PLI counts, keyframes, loss measured at the
receivers, recovery time) are printed as ``NETEM`` lines (run with ``-s``); assertions are on what
happened, never on how fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any


from media.probe import AudioMeter, ClientPeer
from media.rtp import keyframe_start
from netem_kit import CustomerLink, customer_link, probe_link
from segue_clients import assigned_conversation
from signaling.calls import CALLS, Participant
from test_call_signaling import AGENT_A, CUSTOMER, Side, eventually

HERE = Path(__file__).resolve().parent


class RemoteCustomer:
    """The customer's media peer, in the namespace (tests/integration/netem_customer.py)."""

    def __init__(self, ns: str) -> None:
        self.ns = ns
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", self.ns, sys.executable, str(HERE / "netem_customer.py"),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)

    async def ask(self, cmd: dict[str, Any], timeout: float = 40) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        await self.proc.stdin.drain()
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        assert line, "the customer's peer process ended"
        return json.loads(line)

    async def offer(self, side: Side, video: bool) -> dict[str, Any]:
        offer = await self.ask({"offer": True, "video": video})
        reply = await side.ok("call.offer", sdp=offer["offer"])
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"answer": reply["sdp"]}) + "\n").encode())
        await self.proc.stdin.drain()
        return reply

    async def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(Exception):
            await self.ask({"quit": True}, timeout=5)
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        await self.proc.wait()


async def agent_video_peer(agent: Side) -> tuple[ClientPeer, AudioMeter]:
    """The agent's aiortc peer, camera on, negotiated over the agent's Socket.IO connection."""
    apeer = ClientPeer(AGENT_A)
    agent.peer = apeer
    apeer.start_video()

    async def answer(sdp: str) -> str:
        return (await agent.ok("call.offer", sdp=sdp))["sdp"]

    await apeer.negotiate(answer)
    await apeer.wait_connected(30)
    return apeer, await apeer.audio()


@contextlib.asynccontextmanager
async def video_call(segue: Any, cid: str) -> AsyncIterator[dict[str, Any]]:
    """A video call: the customer's media in a namespace behind ``link``, the agent's here."""
    link = await customer_link()
    service = segue.app[CALLS]
    url = segue.url.rstrip("/")
    customer = Side(url, "/customer", service, Participant("customer", "v_1", "Ada"), cid)
    agent = Side(url, "/agent", service, Participant("agent", "a_1", "Alan"), cid)
    remote = RemoteCustomer(link.ns)
    try:
        await assigned_conversation(segue, cid)
        await customer.connect()
        await agent.connect()
        await agent.ok("call.state")
        await customer.ok("call.request", media="video")
        await eventually(lambda: agent.got("call.requested"))
        await agent.ok("call.accept")
        await remote.start()
        await remote.offer(customer, video=True)
        assert (await remote.ask({"wait_connected": True}))["connected"]
        apeer, ears = await agent_video_peer(agent)
        await ears.wait_hearing(CUSTOMER, timeout=20)
        await eventually(lambda: apeer.video_frames() > 10, timeout=30)
        yield {"link": link, "remote": remote, "customer": customer, "agent": agent, "apeer": apeer, "ears": ears,
               "call": service.records[cid].call}
    finally:
        await remote.stop()
        await customer.close()
        await agent.close()
        await link.down()


class FrameSampler:
    """Samples a frame counter every 20 ms: frames in a window and the longest time it stood still."""

    def __init__(self, count: Any) -> None:
        self.count = count
        self.samples: list[tuple[float, int]] = []
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            self.samples.append((time.monotonic(), self.count()))
            await asyncio.sleep(0.02)

    def figures(self, start: float, end: float) -> dict[str, Any]:
        window = [(t, c) for t, c in self.samples if start <= t <= end]
        if len(window) < 2:
            return {"frames": 0}
        frames = window[-1][1] - window[0][1]
        still, longest, since = 0.0, 0.0, window[0][0]
        for (t0, c0), (t1, c1) in zip(window, window[1:]):
            if c1 != c0:
                gap = t1 - since
                longest = max(longest, gap)
                if gap > 0.2:
                    still += gap
                since = t1
        return {"frames": frames, "fps": round(frames / (end - start), 1), "freeze_ms": round(1000 * still),
                "max_gap_ms": round(1000 * longest)}

    def stop(self) -> None:
        self.task.cancel()


def stats(call: Any) -> dict[str, int]:
    """The forwarder's counters for every stream of the call (``from_*``: sources, ``to_*``: sinks)."""
    out: dict[str, int] = {}
    for role in ("customer", "agent"):
        leg = call.leg(role)
        for slot in ("audio", "video"):
            for what, stream in (("from", leg.source(slot)), ("to", leg.sink(slot))):
                if stream is None:
                    continue
                s = stream.stats
                key = f"{what}_{role}_{slot}"
                out[f"{key}_packets"] = s.packets
                out[f"{key}_nacks_forwarded"] = s.nacks_forwarded
                out[f"{key}_retransmitted"] = s.retransmitted
                out[f"{key}_keyframe_requests"] = s.keyframe_requests
                out[f"{key}_gaps_closed"] = s.gaps_closed
                if what == "from":
                    # RTX (retransmissions the sender made on NACK) counts in ``packets``, not in the
                    # reception statistics of the receiver reports
                    out[f"{key}_rtx"] = s.packets - getattr(stream, "_received", s.packets)
    return out


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


class KeyframeLog:
    """When each keyframe a video source sent reached the forwarder (distinct RTP timestamps)."""

    def __init__(self, source: Any) -> None:
        self.times: list[float] = []
        self._stamps: set[int] = set()
        self._source = source
        self.untap = source.tap(self._on_packet)

    def _on_packet(self, info: Any) -> None:
        codec = self._source.codecs.get(info.payload_type)
        if codec is not None and info.timestamp not in self._stamps and keyframe_start(codec.name, info.payload):
            self._stamps.add(info.timestamp)
            self.times.append(info.arrival)

    def between(self, start: float, end: float) -> list[float]:
        return [t for t in self.times if start <= t <= end]


def audio_loss(sent: int, received: int) -> float:
    return round(100 * (1 - received / sent), 2) if sent else 0.0


async def test_the_shaped_path_loses_delays_and_reorders_as_set() -> None:
    """The path itself: what crosses it, and loss measured at the receivers against the setting."""
    link: CustomerLink = await customer_link()
    try:
        clean = await probe_link(link, count=300)
        before = await link.counters()
        await link.shape(loss=0.05, delay_ms=50, jitter_ms=50)
        shaped = await probe_link(link, count=2000)
        counters = await link.counters()
    finally:
        await link.down()
    print("NETEM " + json.dumps({"case": "the path: 2,000 numbered datagrams each way, 2 ms apart",
                                 "shaper": link.shaper, "setting": "loss 5%, delay 50 ms, jitter 50 ms",
                                 "clean": clean, "shaped": shaped, "pump": counters}), flush=True)
    for way in ("up", "down"):
        assert clean[way]["received"] == clean[way]["sent"], clean
        assert 3.0 <= shaped[way]["loss_pct"] <= 7.0, shaped  # 5% of 2,000: 100 ± 10 (binomial)
        assert shaped[way]["reordered"] > 0, shaped  # jitter wider than the spacing reorders
    if counters is not None and before is not None:  # the TUN pump: what it saw is what the probes saw
        for way in ("up", "down"):
            c = counters[way]
            udp = c["by_protocol"].get("udp", 0) - before[way]["by_protocol"].get("udp", 0)
            assert udp == 2000, counters
            assert c["lost_udp"] - before[way]["lost_udp"] == 2000 - shaped[way]["received"], (counters, shaped)


async def test_loss_and_jitter_video_keeps_flowing_nack_and_pli_repair_it(segue: Any) -> None:
    async with video_call(segue, "c_netem1") as room:
        link, remote, apeer, ears, call = room["link"], room["remote"], room["apeer"], room["ears"], room["call"]
        sampler = FrameSampler(apeer.video_frames)
        keyframes = {role: KeyframeLog(call.leg(role).source("video")) for role in ("customer", "agent")}
        try:
            await link.shape(loss=0.05, delay_ms=50, jitter_ms=50)
            await link.reset_counters()
            before, rtp_before = stats(call), await remote.ask({"rtp": True})
            start = time.monotonic()
            await remote.ask({"measure_start": True})
            await asyncio.sleep(8)
            steady, rtp_steady = stats(call), await remote.ask({"rtp": True})
            steady_end = time.monotonic()
            pump_steady = await link.counters()
            # a 2.5 s blackout: more video packets missing at once than retransmissions can bring
            # back, so the forwarder asks the sender for a keyframe (PLI) and the picture recovers
            await link.outage(2.5)
            await asyncio.sleep(2.5)
            recovered_at = time.monotonic()
            await asyncio.sleep(6.5)
            customer_side = await remote.ask({"measure_stop": True})
            end = time.monotonic()
            changed = delta(stats(call), before)
            pump = await link.counters()
        finally:
            sampler.stop()
            for log in keyframes.values():
                log.untap()
            await link.shape()
        steady_changed = delta(steady, before)
        rtp = {k: v - rtp_before.get(k, 0) for k, v in rtp_steady.items()}
        # audio is never retransmitted: its loss at each receiver is what the path dropped
        loss = {"customer_to_node_audio_pct": audio_loss(rtp["audio_sent"],
                                                         steady_changed.get("from_customer_audio_packets", 0)),
                "node_to_customer_audio_pct": audio_loss(rtp["audio_received"] + rtp["audio_lost"],
                                                         rtp["audio_received"]),
                "customer_video_unrepaired_pct": audio_loss(rtp["video_received"] + rtp["video_lost"],
                                                            rtp["video_received"])}
        agent_side = sampler.figures(start, end)
        agent_steady = sampler.figures(start, steady_end)
        after_blackout = sampler.figures(recovered_at, end)
        key_after = {role: [round(1000 * (t - recovered_at)) for t in log.between(recovered_at, end)][:3]
                     for role, log in keyframes.items()}
        print("NETEM " + json.dumps({"case": "5% loss, 50 ms delay with 50 ms jitter, 2.5 s blackout",
                                     "shaper": link.shaper, "load_avg_1m": round(os.getloadavg()[0], 2),
                                     "seconds": round(end - start, 1),
                                     "steady_seconds": round(steady_end - start, 1),
                                     "loss_at_receivers_steady": loss,
                                     "customer_receives": customer_side, "agent_receives_video": agent_side,
                                     "agent_video_steady": agent_steady, "agent_video_after_blackout": after_blackout,
                                     "keyframes_ms_after_blackout": key_after,
                                     "agent_audio_frames": len([f for f in ears.frames if start <= f[0] <= end]),
                                     "forwarder_steady": steady_changed, "forwarder": changed,
                                     "path_steady": pump_steady, "path": pump}), flush=True)
        if pump is not None:  # the media really crossed the shaped path, and the blackout cut it
            assert pump["up"]["delivered"] > 0 and pump["down"]["delivered"] > 0, pump
            assert pump["up"]["lost"] > 0 and pump["up"]["outage"] > 0 and pump["down"]["outage"] > 0, pump
        # the loss was on the media's path: each receiver missed some audio, but not most of it
        assert 0 < loss["customer_to_node_audio_pct"] < 15 and 0 < loss["node_to_customer_audio_pct"] < 15, loss
        # audio and video crossed the lossy path both ways through the forwarder
        assert customer_side["audio_frames"] > 0 and customer_side["video"]["frames"] > 0, customer_side
        assert agent_side["frames"] > 0 and after_blackout["frames"] > 0, (agent_side, after_blackout)
        assert ears.hears(CUSTOMER, last=3)
        # NACK, both ways: the customer's losses served from the sink's history; the agent's (lost
        # between the customer and the node) asked of the customer, who retransmitted (RTX)
        assert steady_changed.get("to_customer_video_retransmitted", 0) > 0, steady_changed
        assert steady_changed.get("to_agent_video_nacks_forwarded", 0) > 0, steady_changed
        assert changed.get("from_customer_video_rtx", 0) > 0, changed
        # PLI: keyframes asked of the customer's camera after the blackout, and one came
        assert changed.get("from_customer_video_keyframe_requests", 0) > 0, changed
        assert key_after["customer"], keyframes["customer"].times
        # and the agent's sink closed the hole toward the agent, resuming at that keyframe
        assert changed.get("to_agent_video_gaps_closed", 0) > 0, changed
        assert customer_side["state"] == "connected" and apeer.pc.connectionState == "connected"


async def test_a_ten_second_outage_heals_by_itself(segue: Any) -> None:
    assert segue.config.media.reconnect_grace_s > 10
    async with video_call(segue, "c_netem2") as room:
        link, remote, apeer, ears, call = room["link"], room["remote"], room["apeer"], room["ears"], room["call"]
        negotiations = call.leg("customer").negotiations
        keyframes = {role: KeyframeLog(call.leg(role).source("video")) for role in ("customer", "agent")}
        requests = stats(call)
        sampler = FrameSampler(apeer.video_frames)
        await link.reset_counters()
        await link.outage(10)
        cut = time.monotonic()
        await asyncio.sleep(10)
        back = time.monotonic()
        n = len(ears.frames)
        await ears.wait_until(lambda: len(ears.frames) > n + 10 and ears.hears(CUSTOMER, last=5), timeout=30)
        agent_hears_after = ears.first_time_hearing(CUSTOMER, after=back) or time.monotonic()
        heard = await remote.ask({"audio_since": back})
        customer_side = await remote.ask({"measure": 3})
        frames_before = apeer.video_frames()
        await eventually(lambda: apeer.video_frames() > frames_before + 5, timeout=20)
        agent_video_after = time.monotonic() - back
        sampler.stop()
        at_back = max((c for t, c in sampler.samples if t <= back), default=0)
        agent_video_first = next((t for t, c in sampler.samples if t > back and c > at_back), None)

        async def customer_sees_video() -> bool:
            return (await remote.ask({"video_since": back}))["first"] is not None

        await eventually(customer_sees_video, timeout=20)  # and video, both ways
        customer_video = await remote.ask({"video_since": back})
        pump = await link.counters()
        for log in keyframes.values():
            log.untap()
        key_after = {role: [round(1000 * (t - back)) for t in log.times if t >= cut][:6]
                     for role, log in keyframes.items()}
        changed = delta(stats(call), requests)
        print("NETEM " + json.dumps({"case": "10 s outage", "shaper": link.shaper,
                                     "load_avg_1m": round(os.getloadavg()[0], 2), "outage_s": round(back - cut, 1),
                                     "agent_hears_customer_again_after_ms": round(1000 * (agent_hears_after - back)),
                                     "customer_hears_agent_again_after_ms":
                                         round(1000 * (heard["first"] - back)) if heard["first"] else None,
                                     "agent_video_frames_again_within_ms": round(1000 * agent_video_after),
                                     "agent_video_again_after_ms":
                                         round(1000 * (agent_video_first - back)) if agent_video_first else None,
                                     "customer_video_again_after_ms":
                                         round(1000 * (customer_video["first"] - back)) if customer_video["first"] else None,
                                     "customer_receives_next_3s": customer_side,
                                     "keyframes_ms_after_outage": key_after,
                                     "forwarder": {k: v for k, v in changed.items() if "video" in k},
                                     "renegotiated": call.leg("customer").negotiations - negotiations,
                                     "path": pump}), flush=True)
        if pump is not None:
            assert pump["up"]["outage"] > 0 and pump["down"]["outage"] > 0, pump
        assert heard["first"] is not None and customer_side["audio_frames"] > 0, (heard, customer_side)
        assert customer_side["state"] == "connected" and apeer.pc.connectionState == "connected"
        assert call.leg("customer").negotiations == negotiations  # it came back by itself
        assert changed.get("to_agent_video_gaps_closed", 0) > 0, changed  # the agent resumed at a keyframe
