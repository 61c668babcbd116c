"""Hostile input against a real node: deep JSON and SDP outside Segue's limits (issue 11).

Each bad input gets ``invalid`` naming what is wrong, the socket stays connected, and an ordinary
customer chatting on the same node all along gets every message acknowledged (``Healthy``). The
time each refusal took and the healthy client's slowest round trip are printed as ``HOSTILE``
lines (run with ``-s``), not asserted: the machine is shared.
"""

from __future__ import annotations

import re
import time
from typing import Any, AsyncIterator

import pytest

from hostile_kit import Healthy, report
from media.ice import loopback_only
from media.probe import ClientPeer
from raw_socketio import RawSocket, nested
from segue_clients import World, http
from signaling.calls import CALLS
from test_call_signaling import CUSTOMER, call_room, in_voice_call


@pytest.fixture
async def world(start_segue: Any) -> AsyncIterator[World]:
    w = World(await start_segue())
    yield w
    await w.close()


DEPTHS = (33, 990, 1024, 1025, 2_000, 50_000)


async def test_deep_json_is_refused_with_invalid_and_the_socket_stays(world: World) -> None:
    raw = await RawSocket(world.url).open()
    try:
        cid = (await raw.call("conversation.start", {"text": "hello"}))[0]["conversation"]["id"]
        took = []
        async with Healthy(world) as healthy:
            for depth in DEPTHS:
                # as the whole payload, and deep inside a field the handler would read
                for text in (nested(depth), '{"conversation_id": "%s", "text": %s}' % (cid, nested(depth, '"x"'))):
                    reply, seconds = await raw.call_text("message.send", text)
                    assert reply["ok"] is False, (depth, reply)
                    assert reply["error"]["code"] == "invalid", (depth, reply)
                    assert reply["error"]["field"] == "payload", (depth, reply)
                    assert "levels deep" in reply["error"]["message"]
                    took.append(seconds)
            # an unknown event name with a deep payload: the depth is what is wrong
            reply, _ = await raw.call_text("no.such.event", nested(5_000))
            assert reply["error"]["code"] == "invalid"
        healthy.check()
        # the same socket goes on: nothing was stored from the refused events
        ok, _ = await raw.call("message.send", {"conversation_id": cid, "text": "still here"})
        assert ok["ok"] is True, ok
        events = (await raw.call("conversation.resume", {"conversation_id": cid}))[0]["events"]
        assert [e["data"]["text"] for e in events if e["type"] == "message"] == ["hello", "still here"]
        assert raw.connected
        report("deep_json_socketio", 2 * len(DEPTHS) + 1, internal=0, crashes=0,
               slowest_refusal_ms=round(1000 * max(took), 1), **healthy.figures())
    finally:
        await raw.close()


async def test_event_names_that_are_not_text(world: World) -> None:
    raw = await RawSocket(world.url).open()
    try:
        for name in ([1], {"a": 1}, 5, None, True, ["message.send"]):
            reply, _ = await raw.call(name, {})  # type: ignore[arg-type]
            assert reply["ok"] is False and reply["error"]["code"] == "unknown_event", (name, reply)
        ok, _ = await raw.call("conversations.list", {})
        assert ok["ok"] and raw.connected
        report("event_names_not_text", 6, internal=0, crashes=0)
    finally:
        await raw.close()


async def test_deep_json_in_the_handshake_and_rest_bodies(world: World) -> None:
    refused = RawSocket(world.url)
    try:
        await refused.open(auth_text=nested(3_000, "{}"))
        assert refused.refusal is not None
        assert refused.refusal["data"]["code"] == "invalid", refused.refusal
        assert "levels deep" in refused.refusal["message"]
    finally:
        await refused.close()
    sup = await world.add_agent("root", role="supervisor")
    for depth in (40, 990, 2_000, 8_000):
        body = '{"username": "x", "password": %s}' % nested(depth, '"p"')
        status, reply = await http("POST", f"{world.url}/api/v1/auth/login", data=body,
                                   headers={"Content-Type": "application/json"})
        assert status == 400, (depth, status, reply)
        assert reply["error"]["code"] == "invalid" and reply["error"]["field"] == "body", reply
        status, reply = await http("POST", f"{world.url}/api/v1/agents", token=sup, data=nested(depth),
                                   headers={"Content-Type": "application/json"})
        assert (status, reply["error"]["code"]) == (400, "invalid"), reply
    # shallow JSON is still read as before
    status, _ = await http("POST", f"{world.url}/api/v1/auth/login", json_body={"username": "root", "password": "nope"})
    assert status == 401
    report("deep_json_handshake_and_rest", 9, internal=0, crashes=0)


# --- SDP ---------------------------------------------------------------------------------------


def _sections(sdp: str) -> tuple[str, list[str]]:
    head, *rest = re.split(r"(?=^m=)", sdp, flags=re.M)
    return head, rest


def bad_offers(offer: str) -> list[tuple[str, str, str]]:
    """(kind, SDP, what the refusal names) for each way an offer can be outside Segue's limits."""
    head, _ = _sections(offer)
    no_fp = re.sub(r"^a=fingerprint:.*\r?\n", "", offer, flags=re.M)
    compact_audio = "".join(
        f"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:{i}\r\na=rtpmap:111 opus/48000/2\r\n"
        for i in range(100))
    compact = head.replace("a=group:BUNDLE 0 1 2", "a=group:BUNDLE " + " ".join(map(str, range(100)))) + compact_audio
    many_candidates = offer.replace(
        "a=end-of-candidates", "".join(f"a=candidate:{i} 1 udp 2130706431 192.0.2.{i % 250 + 1} {40000 + i} typ host\r\n"
                                       for i in range(80)) + "a=end-of-candidates", 1)
    return [
        ("bundle_unknown_mid", offer.replace("a=group:BUNDLE 0 1 2", "a=group:BUNDLE 0 1 2 7"), "a=group:BUNDLE"),
        ("bundle_duplicate_mid", offer.replace("a=group:BUNDLE 0 1 2", "a=group:BUNDLE 0 1 1 2"), "a=group:BUNDLE"),
        ("duplicate_mid", offer.replace("a=mid:1", "a=mid:0"), "a=mid"),
        ("long_mid", offer.replace("a=mid:2", "a=mid:" + "m" * 40).replace("BUNDLE 0 1 2", "BUNDLE 0 1 " + "m" * 40),
         "a=mid"),
        ("missing_mid", offer.replace("a=mid:2\r\n", ""), "a=mid"),
        ("extmap_id_300", offer.replace("a=extmap:1 ", "a=extmap:300 ", 1), "a=extmap"),
        ("extmap_id_0", offer.replace("a=extmap:1 ", "a=extmap:0 ", 1), "a=extmap"),
        ("extmap_id_twice", offer.replace("a=extmap:2 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
                                                    "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level"), "a=extmap"),
        ("hundred_audio_m_lines", compact, "m="),
        ("payload_type_300", offer.replace("UDP/TLS/RTP/SAVPF 96 9 0 8", "UDP/TLS/RTP/SAVPF 300 9 0 8"), "m="),
        ("m_line_garbage", offer.replace("m=audio ", "m=audio x", 1), "m="),
        ("m_kind_unknown", offer.replace("m=audio ", "m=hologram ", 1), "m="),
        ("candidates_80", many_candidates, "a=candidate"),
        ("candidate_garbage", offer.replace("typ host", "typ", 1), "a=candidate"),
        ("ssrc_too_big", re.sub(r"a=ssrc:\d+ ", "a=ssrc:99999999999 ", offer, count=1), "a=ssrc"),
        ("no_fingerprint", no_fp, "a=fingerprint"),
        ("fingerprint_garbage", re.sub(r"a=fingerprint:sha-256 \S+", "a=fingerprint:sha-256 zz", offer), "a=fingerprint"),
        ("fingerprint_short", re.sub(r"a=fingerprint:sha-256 (\S+)", lambda m: "a=fingerprint:sha-256 " + m.group(1)[:59],
                                     offer), "a=fingerprint"),
        ("fingerprint_md5", re.sub(r"a=fingerprint:sha-256 ", "a=fingerprint:md5 ", offer), "a=fingerprint"),
        ("fingerprint_one_field", re.sub(r"a=fingerprint:sha-256 \S+", "a=fingerprint:sha-256", offer), "a=fingerprint"),
        ("no_ice_pwd", re.sub(r"^a=ice-pwd:.*\r?\n", "", offer, flags=re.M), "a=ice-pwd"),
        ("setup_garbage", offer.replace("a=setup:actpass", "a=setup:sideways"), "a=setup"),
        ("no_m_lines", head, "m="),
    ]


async def test_sdp_outside_segues_limits_is_refused_and_the_call_goes_on(segue: Any) -> None:
    with loopback_only():
        offer = await ClientPeer.unanswered_offer(CUSTOMER)
    world = World(segue)
    async with call_room(segue, "c_sdp1") as room, Healthy(world) as healthy:
        customer, agent = room["customer"], room["agent"]
        cpeer, _, _, agent_ears = await in_voice_call(customer, agent)
        service = segue.app[CALLS]
        leg = service.records["c_sdp1"].call.leg("customer")
        legs_before = len(service.forwarder.legs)
        took: dict[str, float] = {}
        healthy.reset()  # its figures cover the bad offers, not the call's set-up
        for kind, sdp, names in bad_offers(offer):
            start = time.perf_counter()
            reply = await customer.call("call.offer", sdp=sdp)
            took[kind] = time.perf_counter() - start
            assert reply["ok"] is False, (kind, reply)
            assert reply["error"]["code"] == "invalid", (kind, reply)
            assert reply["error"]["field"] == "sdp", (kind, reply)
            assert names in reply["error"]["message"], (kind, reply["error"]["message"])
        # nothing was negotiated by the bad offers, the call and both sockets carry on
        assert leg.negotiations == 1 and service.records["c_sdp1"].call.leg("customer") is leg
        assert len(service.forwarder.legs) == legs_before  # no peer (no UDP port) was made for them
        assert customer.sio.connected and agent.sio.connected
        n = len(agent_ears.frames)
        await agent_ears.wait_until(lambda: len(agent_ears.frames) > n + 25)
        assert agent_ears.hears(CUSTOMER)
        assert cpeer.pc.connectionState == "connected"
    await world.close()
    healthy.check()
    slowest = max(took, key=took.get)
    report("sdp_outside_limits", len(took), internal=0, crashes=0, kinds=sorted(took),
           slowest_refusal_ms=round(1000 * took[slowest], 1), slowest_kind=slowest, **healthy.figures())
