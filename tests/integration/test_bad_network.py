"""Media under a bad network (issue 11): the customer's peer runs in its own network namespace,
joined to the host by a veth pair shaped with ``tc netem``; the agent's peer and the node run on
the host. Signalling for the customer goes over the test's own Socket.IO connection (only media
crosses the shaped link). Needs root (``ip netns``, ``tc``), as the test machine has.

- 5% loss and 50 ms of jitter each way, with a 2.5 s blackout in the middle: audio and video keep
  flowing through the forwarder both ways, NACKs are answered from the sinks' history or passed to
  the source, keyframe requests (PLI) reach the source and video recovers after the blackout.
- a 10 s outage (shorter than ``media.reconnect_grace_s`` and than ICE consent's 30 s): the call
  comes back by itself, no new offer.

The figures (frames decoded, freeze time, NACK and PLI counts, recovery time) are printed as
``NETEM`` lines (run with ``-s``); assertions are on what happened, never on how fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from media.probe import ClientPeer
from segue_clients import assigned_conversation
from signaling.calls import CALLS, Participant
from test_call_signaling import AGENT_A, CUSTOMER, Side, eventually

HERE = Path(__file__).resolve().parent


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, text=True)


class Link:
    """A network namespace for the customer, a veth pair to the host, netem on both ends."""

    def __init__(self) -> None:
        n = os.getpid() % 200 + 20
        self.ns = f"segue-netem-{os.getpid()}"
        self.host_if, self.ns_if = f"sgh{os.getpid() % 100000}", f"sgc{os.getpid() % 100000}"
        self.host_ip, self.ns_ip = f"10.231.{n}.1", f"10.231.{n}.2"

    def up(self) -> None:
        self.down()
        sh("ip", "netns", "add", self.ns)
        sh("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        sh("ip", "link", "set", self.ns_if, "netns", self.ns)
        sh("ip", "addr", "add", f"{self.host_ip}/24", "dev", self.host_if)
        sh("ip", "link", "set", self.host_if, "up")
        sh("ip", "netns", "exec", self.ns, "ip", "addr", "add", f"{self.ns_ip}/24", "dev", self.ns_if)
        sh("ip", "netns", "exec", self.ns, "ip", "link", "set", self.ns_if, "up")
        sh("ip", "netns", "exec", self.ns, "ip", "link", "set", "lo", "up")

    @property
    def has_netem(self) -> bool:
        """Whether this kernel has ``sch_netem`` (this test machine's Firecracker kernel has not)."""
        if not hasattr(self, "_netem"):
            probe = subprocess.run(["tc", "qdisc", "add", "dev", self.host_if, "root", "netem", "delay", "1ms"],
                                   capture_output=True, text=True)
            subprocess.run(["tc", "qdisc", "del", "dev", self.host_if, "root"], capture_output=True)
            self._netem = probe.returncode == 0
        return self._netem

    async def shape(self, remote: "RemoteCustomer", loss: float = 0.0, delay_ms: int = 0, jitter_ms: int = 0) -> None:
        """Loss and delay ± jitter/2 on both directions: ``tc netem`` on both ends of the veth pair
        when the kernel has it, else netem in the customer's process (netem_customer.py)."""
        if self.has_netem:
            spec = []
            if delay_ms or jitter_ms:
                spec += ["delay", f"{delay_ms}ms", f"{jitter_ms // 2}ms"]
            if loss:
                spec += ["loss", f"{100 * loss:g}%"]
            for prefix in ([], ["ip", "netns", "exec", self.ns]):
                dev = self.ns_if if prefix else self.host_if
                subprocess.run([*prefix, "tc", "qdisc", "del", "dev", dev, "root"], capture_output=True)
                if spec:
                    sh(*prefix, "tc", "qdisc", "add", "dev", dev, "root", "netem", *spec)
        else:
            await remote.ask({"impair": {"loss": loss, "delay_ms": delay_ms, "jitter_ms": jitter_ms}})

    @property
    def shaper(self) -> str:
        return "tc netem on the veth pair" if self.has_netem else "netem in the customer's process (no sch_netem)"

    def down(self) -> None:
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)


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


@contextlib.asynccontextmanager
async def video_call(segue: Any, cid: str) -> AsyncIterator[dict[str, Any]]:
    """A video call: the customer's media in a namespace behind ``link``, the agent's here."""
    if os.geteuid() != 0:
        pytest.fail("the bad-network tests need root (ip netns, tc netem)")
    link = Link()
    link.up()
    service = segue.app[CALLS]
    await assigned_conversation(segue, cid)
    url = segue.url.rstrip("/")
    customer = Side(url, "/customer", service, Participant("customer", "v_1", "Ada"), cid)
    agent = Side(url, "/agent", service, Participant("agent", "a_1", "Alan"), cid)
    remote = RemoteCustomer(link.ns)
    try:
        await customer.connect()
        await agent.connect()
        await agent.ok("call.state")
        await customer.ok("call.request", media="video")
        await eventually(lambda: agent.got("call.requested"))
        await agent.ok("call.accept")
        await remote.start()
        await remote.offer(customer, video=True)
        assert (await remote.ask({"wait_connected": True}))["connected"]
        apeer = ClientPeer(AGENT_A)
        agent.peer = apeer
        apeer.start_video()

        async def answer(sdp: str) -> str:
            return (await agent.ok("call.offer", sdp=sdp))["sdp"]

        await apeer.negotiate(answer)
        await apeer.wait_connected(20)
        ears = await apeer.audio()
        await ears.wait_hearing(CUSTOMER, timeout=20)
        await eventually(lambda: apeer.video_frames() > 10, timeout=30)
        yield {"link": link, "remote": remote, "customer": customer, "agent": agent, "apeer": apeer, "ears": ears,
               "call": service.records[cid].call}
    finally:
        await remote.stop()
        await customer.close()
        await agent.close()
        link.down()


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
    return out


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


async def test_loss_and_jitter_video_keeps_flowing_nack_and_pli_repair_it(segue: Any) -> None:
    async with video_call(segue, "c_netem1") as room:
        link, remote, apeer, ears, call = room["link"], room["remote"], room["apeer"], room["ears"], room["call"]
        sampler = FrameSampler(apeer.video_frames)
        try:
            await link.shape(remote, loss=0.05, delay_ms=50, jitter_ms=50)
            before = stats(call)
            start = time.monotonic()
            await remote.ask({"measure_start": True})
            await asyncio.sleep(6)
            # a 2.2.5 s blackout: more video packets missing at once than retransmissions can bring
            # back, so the forwarder asks the sender for a keyframe (PLI) and the picture recovers
            await link.shape(remote, loss=1.0)
            await asyncio.sleep(2.5)
            await link.shape(remote, loss=0.05, delay_ms=50, jitter_ms=50)
            recovered_at = time.monotonic()
            await asyncio.sleep(6.5)
            customer_side = await remote.ask({"measure_stop": True})
            end = time.monotonic()
            changed = delta(stats(call), before)
        finally:
            sampler.stop()
            await link.shape(remote)
        agent_side = sampler.figures(start, end)
        after_blackout = sampler.figures(recovered_at, end)
        print("NETEM " + json.dumps({"case": "5% loss, 50 ms delay with 50 ms jitter, 2.5 s blackout",
                                     "shaper": link.shaper, "seconds": round(end - start, 1),
                                     "customer_receives": customer_side, "agent_receives_video": agent_side,
                                     "agent_video_after_blackout": after_blackout,
                                     "agent_audio_frames": len([f for f in ears.frames if start <= f[0] <= end]),
                                     "forwarder": changed}), flush=True)
        # audio and video crossed the lossy link both ways through the forwarder
        assert customer_side["audio_frames"] > 0 and customer_side["video"]["frames"] > 0, customer_side
        assert agent_side["frames"] > 0 and after_blackout["frames"] > 0, (agent_side, after_blackout)
        assert ears.hears(CUSTOMER, last=3)
        # NACK: lost packets asked for again (served from a sink's history, or passed to the source)
        nacks = sum(v for k, v in changed.items() if k.endswith(("_retransmitted", "_nacks_forwarded")))
        assert nacks > 0, changed
        # PLI: keyframes asked of a video source after the losses
        assert sum(v for k, v in changed.items() if k.endswith("_keyframe_requests")) > 0, changed
        assert customer_side["state"] == "connected" and apeer.pc.connectionState == "connected"


async def test_a_ten_second_outage_heals_by_itself(segue: Any) -> None:
    assert segue.config.media.reconnect_grace_s > 10
    async with video_call(segue, "c_netem2") as room:
        link, remote, apeer, ears, call = room["link"], room["remote"], room["apeer"], room["ears"], room["call"]
        negotiations = call.leg("customer").negotiations
        await link.shape(remote, loss=1.0)
        cut = time.monotonic()
        await asyncio.sleep(10)
        await link.shape(remote)
        back = time.monotonic()
        n = len(ears.frames)
        await ears.wait_until(lambda: len(ears.frames) > n + 10 and ears.hears(CUSTOMER, last=5), timeout=30)
        agent_hears_after = ears.first_time_hearing(CUSTOMER, after=back) or time.monotonic()
        customer_side = await remote.ask({"measure": 3})
        frames_before = apeer.video_frames()
        await eventually(lambda: apeer.video_frames() > frames_before + 5, timeout=20)
        print("NETEM " + json.dumps({"case": "10 s outage", "shaper": link.shaper, "outage_s": round(back - cut, 1),
                                     "agent_hears_customer_again_after_ms": round(1000 * (agent_hears_after - back)),
                                     "customer_receives_3s_later": customer_side,
                                     "renegotiated": call.leg("customer").negotiations - negotiations}), flush=True)
        assert customer_side["audio_frames"] > 0, customer_side
        assert customer_side["state"] == "connected" and apeer.pc.connectionState == "connected"
        assert call.leg("customer").negotiations == negotiations  # it came back by itself
