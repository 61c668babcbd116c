"""Media under a bad network with a real browser (issue 11): the customer is Chromium, running in
its own network namespace behind the shaped path of tests/integration/netem_kit.py (``tc netem``
where the kernel has ``sch_netem``, else the user-space netem between two TUN devices). Everything
the customer's page does crosses that path: the page itself, Socket.IO, ICE, DTLS and media. The
node listens on the host side of the path; the agent is an aiortc peer on the host (its signalling
over the test's Socket.IO connection), so the forwarder's counters can be read too.

Chromium counts what a browser user sees (``getStats``: frames decoded, freezes, NACKs and PLIs
sent and received, keyframes, concealed audio); the figures are printed as ``NETEM`` lines (``-s``).
Assertions are on what happened, never on how fast. Needs root, as the test machine has.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from netem_kit import customer_link
from segue_clients import assigned_conversation
from server import NODE, create_app
from signaling.calls import CALLS, Participant
from test_bad_network import FrameSampler, KeyframeLog, agent_video_peer, delta, stats
from test_call_signaling import Side, eventually

pytestmark = pytest.mark.browser

# what the customer's browser counted, summed per kind (camera and screen share are both video)
BROWSER_STATS_JS = """async () => {
  const call = window.demo && window.demo.call;
  const out = {state: call && call.pc ? call.pc.connectionState : null, pc: null, in: {}, out: {}};
  if (!call || !call.pc) return out;
  // which RTCPeerConnection (call.js replaces one that stays disconnected): counters restart with it
  if (!call.pc.netemId) call.pc.netemId = (window.netemPeers = (window.netemPeers || 0) + 1);
  out.pc = call.pc.netemId;
  const add = (into, kind, s, fields) => {
    const o = (into[kind] = into[kind] || {});
    for (const f of fields) if (typeof s[f] === "number") o[f] = (o[f] || 0) + s[f];
  };
  (await call.pc.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp") add(out.in, s.kind, s, ["packetsReceived", "packetsLost", "nackCount", "pliCount",
      "framesDecoded", "keyFramesDecoded", "freezeCount", "totalFreezesDuration", "framesDropped",
      "totalSamplesReceived", "concealedSamples"]);
    if (s.type === "outbound-rtp") add(out.out, s.kind, s, ["packetsSent", "retransmittedPacketsSent", "nackCount",
      "pliCount", "firCount", "framesEncoded", "keyFramesEncoded"]);
  });
  return out;
}"""


def browser_delta(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    """What grew between two ``BROWSER_STATS_JS`` readings (all of ``after`` if the page's
    connection was replaced in between)."""
    if after["pc"] != before["pc"]:
        before = {"in": {}, "out": {}}
    out: dict[str, Any] = {}
    for way in ("in", "out"):
        for kind, fields in after[way].items():
            for field, value in fields.items():
                d = value - before[way].get(kind, {}).get(field, 0)
                out[f"{way}_{kind}_{field}"] = round(d, 3) if isinstance(d, float) else d
    return out


def load_tests_conftest() -> Any:
    """tests/conftest.py (the ``browser`` fixture's Chromium path and flags, ``SegueServer``); a
    plain ``import conftest`` would find tests/media/conftest.py first."""
    spec = importlib.util.spec_from_file_location("segue_tests_conftest", Path(__file__).parents[1] / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


SHARED = load_tests_conftest()


@contextlib.asynccontextmanager
async def chromium_in(ns: str, origin: str) -> AsyncIterator[Any]:
    """Debian's Chromium, started inside namespace ``ns`` (Playwright drives it over a pipe);
    ``origin`` (plain http, not loopback) counts as secure, so the page may use the microphone."""
    from playwright.async_api import async_playwright

    chromium = SHARED._require_chromium()
    with tempfile.TemporaryDirectory() as folder:
        wrapper = Path(folder) / "chromium-in-netns"
        wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {ns} {chromium} "$@"\n')
        wrapper.chmod(0o755)
        async with async_playwright() as pw:
            args = [*SHARED.CHROMIUM_ARGS, f"--unsafely-treat-insecure-origin-as-secure={origin}"]
            browser = await pw.chromium.launch(executable_path=str(wrapper), headless=True, args=args)
            try:
                yield browser
            finally:
                await browser.close()


async def page_state(page: Any) -> str:
    """What the customer's page knows about its call (for a failure message)."""
    return await page.evaluate("""() => JSON.stringify({status: document.getElementById("status").textContent,
      events: window.demo.events.map(([name]) => name),
      pc: window.demo.call.pc ? [window.demo.call.pc.connectionState, window.demo.call.pc.iceConnectionState] : null})""")


@contextlib.asynccontextmanager
async def browser_video_call(aiohttp_server: Any, make_config: Any, cid: str) -> AsyncIterator[dict[str, Any]]:
    """A video call: Chromium (the customer) in its namespace behind the shaped path, the agent's
    aiortc peer on the host; the node listens on every address, the page loads from the host end
    of the path."""
    cfg = make_config()
    app = create_app(cfg, cfg.redis.url)
    server = await aiohttp_server(app, host="0.0.0.0")
    link = await customer_link()
    url = f"http://127.0.0.1:{server.port}"
    service = app[CALLS]
    agent = Side(url, "/agent", service, Participant("agent", "a_1", "Alan"), cid)
    try:
        await assigned_conversation(SHARED.SegueServer(url=url + "/", app=app, node=app[NODE]), cid)
        await agent.connect()
        await agent.ok("call.state")
        origin = f"http://{link.host_ip}:{server.port}"
        async with chromium_in(link.ns, origin) as browser:
            context = await browser.new_context()
            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(f"{origin}/sdk/call-demo.html?ns=customer&conversation={cid}")
            sid = await asyncio.wait_for(page.evaluate("() => window.demo.ready"), 30)
            service.bind("/customer", sid, Participant("customer", "v_1", "Ada"))
            await page.evaluate("() => window.demo.call.request('video')")
            await eventually(lambda: agent.got("call.requested"))
            await agent.ok("call.accept")
            apeer, ears = await agent_video_peer(agent)
            try:
                await ears.wait_until(lambda: len(ears.frames) > 25, timeout=30)
            except asyncio.TimeoutError:
                raise AssertionError(f"the agent hears nothing from Chromium; its page: {await page_state(page)}") from None
            await eventually(lambda: apeer.video_frames() > 10, timeout=30)

            async def customer_sees() -> bool:
                s = await page.evaluate(BROWSER_STATS_JS)
                return s["in"].get("video", {}).get("framesDecoded", 0) > 10

            await eventually(customer_sees, timeout=30)
            yield {"link": link, "page": page, "agent": agent, "apeer": apeer, "ears": ears,
                   "call": service.records[cid].call, "errors": errors}
    finally:
        await agent.close()
        await link.down()


async def browser_stats(page: Any) -> dict[str, Any]:
    return await page.evaluate(BROWSER_STATS_JS)


async def test_chromium_customer_under_loss_and_jitter(aiohttp_server: Any, make_config: Any) -> None:
    async with browser_video_call(aiohttp_server, make_config, "c_netem_chromium1") as room:
        link, page, apeer, ears, call = room["link"], room["page"], room["apeer"], room["ears"], room["call"]
        sampler = FrameSampler(apeer.video_frames)
        keyframes = KeyframeLog(call.leg("customer").source("video"))
        try:
            await link.shape(loss=0.05, delay_ms=50, jitter_ms=50)
            await asyncio.sleep(1)
            await link.reset_counters()
            before, b_before = stats(call), await browser_stats(page)
            start = time.monotonic()
            await asyncio.sleep(8)
            steady, b_steady = stats(call), await browser_stats(page)
            steady_end = time.monotonic()
            # a 2.5 s blackout: the forwarder asks Chromium for a keyframe (PLI)
            await link.outage(2.5)
            await asyncio.sleep(2.5)
            back = time.monotonic()
            await asyncio.sleep(6.5)
            after, b_after = stats(call), await browser_stats(page)
            end = time.monotonic()
            pump = await link.counters()
        finally:
            sampler.stop()
            keyframes.untap()
            await link.shape()
        browser_steady, browser_all = browser_delta(b_steady, b_before), browser_delta(b_after, b_before)
        agent_steady, agent_after = sampler.figures(start, steady_end), sampler.figures(back, end)
        print("NETEM " + json.dumps({
            "case": "Chromium customer: 5% loss, 50 ms delay with 50 ms jitter, then a 2.5 s blackout",
            "shaper": link.shaper, "load_avg_1m": round(os.getloadavg()[0], 2),
            "steady_seconds": round(steady_end - start, 1), "seconds": round(end - start, 1),
            "customer_browser_steady": browser_steady, "customer_browser": browser_all,
            "agent_video_steady": agent_steady, "agent_video_after_blackout": agent_after,
            "customer_keyframes_ms_after_blackout": [round(1000 * (t - back)) for t in keyframes.between(back, end)][:3],
            "forwarder_steady": delta(steady, before), "forwarder": delta(after, before), "path": pump}), flush=True)
        if pump is not None:
            assert pump["up"]["lost"] > 0 and pump["down"]["lost"] > 0 and pump["up"]["outage"] > 0, pump
        # audio and video reached the customer's browser and the agent through the forwarder
        assert browser_all.get("in_video_framesDecoded", 0) > 0 and browser_all.get("in_audio_packetsReceived", 0) > 0
        # the agent's stock aiortc receiver decodes again after the blackout: the forwarder closed
        # the hole Chromium could no longer retransmit and resumed at its keyframe
        # (docs/media-forwarder.md, "Under bad networks")
        assert agent_steady["frames"] > 0 and agent_after["frames"] > 0, (agent_steady, agent_after)
        assert delta(after, before).get("to_agent_video_gaps_closed", 0) > 0
        # NACK both ways: Chromium asked for lost video (served from the sink's history), and the
        # agent's NACKs for what was lost on the way up reached Chromium, which retransmitted
        assert browser_steady.get("in_video_nackCount", 0) > 0, browser_steady
        assert delta(steady, before).get("to_customer_video_retransmitted", 0) > 0
        assert browser_all.get("out_video_nackCount", 0) > 0 and browser_all.get("out_video_retransmittedPacketsSent", 0) > 0
        # (PLI: Chromium sends little video while it gets no feedback, so after 2.5 s NACK often
        # repairs the whole gap and nobody needs a keyframe; the 10 s outage below asserts PLI)
        assert room["errors"] == []


async def test_chromium_customer_ten_second_outage_heals_by_itself(aiohttp_server: Any, make_config: Any) -> None:
    async with browser_video_call(aiohttp_server, make_config, "c_netem_chromium2") as room:
        link, page, apeer, ears, call = room["link"], room["page"], room["apeer"], room["ears"], room["call"]
        leg = call.leg("customer")
        negotiations = leg.negotiations
        before, b_before = stats(call), await browser_stats(page)
        await link.reset_counters()
        await link.outage(10)
        cut = time.monotonic()
        await asyncio.sleep(10)
        back = time.monotonic()
        at_back, agent_frames_at_back = await browser_stats(page), apeer.video_frames()
        firsts: dict[str, float] = {}
        deadline = back + 40
        while len(firsts) < 4 and time.monotonic() < deadline:
            grown = browser_delta(await browser_stats(page), at_back)
            now = time.monotonic()
            for name, key in (("customer_audio", "in_audio_packetsReceived"), ("customer_video", "in_video_framesDecoded")):
                if name not in firsts and grown.get(key, 0) > 0:
                    firsts[name] = now
            heard = [t for t, _, _ in ears.frames if t > back]
            if "agent_audio" not in firsts and heard:
                firsts["agent_audio"] = heard[0]
            if "agent_video" not in firsts and apeer.video_frames() > agent_frames_at_back:
                firsts["agent_video"] = now
            await asyncio.sleep(0.05)
        b_after = await browser_stats(page)
        pump = await link.counters()
        browser = browser_delta(b_after, b_before)
        replaced = call.leg("customer") is not leg
        # a new leg's counters start at zero: take them whole
        changed = delta(stats(call), {k: v for k, v in before.items() if not (replaced and "_customer_" in k)})
        print("NETEM " + json.dumps({
            "case": "Chromium customer: 10 s outage", "shaper": link.shaper, "load_avg_1m": round(os.getloadavg()[0], 2),
            "outage_s": round(back - cut, 1),
            "back_after_ms": {k: round(1000 * (t - back)) for k, t in sorted(firsts.items())},
            "connection_replaced_by_the_sdk": replaced, "customer_browser": browser, "forwarder": changed,
            "customer_connection": b_after["state"], "path": pump}), flush=True)
        if pump is not None:
            assert pump["up"]["outage"] > 0 and pump["down"]["outage"] > 0, pump
        # the call came back by itself (the same connection, or the SDK's replacement for one that
        # stayed disconnected: call.js STALL_REPLACE_MS): audio and video both ways
        assert set(firsts) == {"customer_audio", "customer_video", "agent_audio", "agent_video"}, firsts
        assert b_after["state"] == "connected" and apeer.pc.connectionState == "connected"
        assert replaced or leg.negotiations == negotiations
        # a keyframe from Chromium brought the agent's picture back: asked for by PLI (the same
        # connection: more of its video missing at once than NACK repairs), or a new connection's first
        assert browser.get("out_video_keyFramesEncoded", 0) > 0, browser
        if not replaced:
            assert changed.get("from_customer_video_keyframe_requests", 0) > 0 and browser.get("out_video_pliCount", 0) > 0
        assert room["errors"] == []
