"""Supervisor monitor / whisper / barge, through Socket.IO, with real aiortc peers on loopback UDP.

Three "browsers" (Python aiortc peers) each sing one frequency: customer 440 Hz, agent 660 Hz,
supervisor 1000 Hz (agent B 880 Hz). Customer and agent peers have call.js's four transceivers
(audio, camera, screen, second audio recvonly); the supervisor's has two audio m-sections
(sendrecv + recvonly). What each receiving transceiver gets is checked with packets that arrive
(its RTP receiver's packet count) and the frequency decoded from them, never with function calls.

The supervisor is a real account with role supervisor, connected watch-only (the wallboard), so
the namespaces bind it themselves; customer and agent are bound like in test_call_signaling.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiortc import MediaStreamTrack, RTCSessionDescription

from media.ice import new_peer
from media.probe import AudioMeter, ToneTrack, VideoCounter
from signaling import SIGNALING
from signaling.calls import Participant
from segue_clients import http

from .test_call_signaling import AGENT_A, AGENT_B, CUSTOMER, HOLD, Side, call_room, eventually, start_voice

SUPERVISOR = 1000.0


class Peer:
    """A browser stand-in with named transceivers and what each one receives.

    ``layout``: ``"full"`` = call.js's customer/agent connection (audio sendrecv, camera and screen
    recvonly, second audio recvonly); ``"legacy"`` = without the second audio (an older SDK);
    ``"supervisor"`` = audio sendrecv + audio recvonly."""

    def __init__(self, frequency: float, layout: str = "full") -> None:
        self.pc = new_peer()
        self.mic = ToneTrack(frequency)
        self.tx = {"audio": self.pc.addTransceiver(self.mic, direction="sendrecv")}
        if layout in ("full", "legacy"):
            self.tx["video"] = self.pc.addTransceiver("video", direction="recvonly")
            self.tx["screen"] = self.pc.addTransceiver("video", direction="recvonly")
        if layout in ("full", "supervisor"):
            self.tx["audio2"] = self.pc.addTransceiver("audio", direction="recvonly")
        self.meters: dict[str, AudioMeter] = {}
        self._consumers: list[Any] = []
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        name = next((n for n, tx in self.tx.items() if tx.receiver.track is track), None)
        if track.kind == "audio":
            meter = AudioMeter(track)
            self._consumers.append(meter)
            if name is not None:
                self.meters[name] = meter
        else:
            self._consumers.append(VideoCounter(track))  # consumed: aiortc's queues are unbounded

    async def join(self, side: Side) -> dict[str, Any]:
        """Offer through ``side``'s socket (``call.offer``), wait for the connection; the ack."""
        offer = await self.pc.createOffer()
        await self.pc.setLocalDescription(offer)
        ack = await side.ok("call.offer", sdp=self.pc.localDescription.sdp)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=ack["sdp"], type="answer"))
        deadline = time.monotonic() + 15
        while self.pc.connectionState != "connected":
            assert time.monotonic() < deadline, f"peer never connected ({self.pc.connectionState})"
            await asyncio.sleep(0.05)
        return ack

    async def ears(self, name: str = "audio") -> AudioMeter:
        await eventually(lambda: name in self.meters, 10)
        return self.meters[name]

    async def packets(self, name: str) -> int:
        """RTP packets that arrived on this transceiver so far."""
        report = await self.tx[name].receiver.getStats()
        return sum(s.packetsReceived for s in report.values() if s.type == "inbound-rtp")

    async def close(self) -> None:
        for consumer in self._consumers:
            consumer.task.cancel()
        self.mic.stop()
        await self.pc.close()


async def more_frames(meter: AudioMeter, n: int = 50) -> None:
    """Let ``n`` more frames arrive on ``meter`` (a clock made of packets, not of seconds)."""
    start = len(meter.frames)
    try:
        await meter.wait_until(lambda: len(meter.frames) >= start + n, timeout=20)
    except asyncio.TimeoutError:
        raise AssertionError(f"this track stopped receiving: {len(meter.frames) - start} of {n} frames came") from None


async def hears(peer: Peer, name: str, frequency: float) -> None:
    meter = await peer.ears(name)
    await meter.wait_hearing(frequency)


async def silent(peer: Peer, name: str, clock: AudioMeter) -> None:
    """Nothing arrives on ``peer``'s ``name`` while ``clock`` receives 50 frames (after 50 frames
    for anything in flight to land)."""
    await more_frames(clock)
    before = await peer.packets(name)
    await more_frames(clock)
    assert await peer.packets(name) == before, f"{name} is still receiving packets"


class Supervisor(Side):
    """A real supervisor account on a watch-only /agent connection (the wallboard)."""

    def __init__(self, url: str, service: Any, token: str, cid: str) -> None:
        super().__init__(url, "/agent", service, Participant("agent", "unbound"), cid)
        self.token = token

    async def connect(self) -> None:
        await self.sio.connect(self.url, namespaces=[self.ns], transports=["websocket"],
                               auth={"v": 1, "token": self.token, "watch": True})


async def login(url: str, username: str) -> str:
    status, body = await http("POST", f"{url}/api/v1/auth/login", json_body={"username": username, "password": "pw-secret"})
    assert status == 200, body
    return body["token"]


@pytest.fixture
async def room(segue: Any) -> AsyncIterator[dict[str, Any]]:
    """A conversation with a voice call between customer v_1 and agent a_1 (both peers
    connected), and a supervisor "sue" on a watch-only socket; peers and sockets closed after."""
    directory = segue.app[SIGNALING].directory
    await directory.create("sue", "pw-secret", "Sue Pervisor", "supervisor", [], {"chat": 1})
    await directory.create("al", "pw-secret", "Al Agent", "agent", [], {"chat": 1})
    async with call_room(segue, "c_sup1") as room:
        customer, agent, url, cid = room["customer"], room["agent"], room["url"], room["cid"]
        sup = Supervisor(url, room["service"], await login(url, "sue"), cid)
        room["sides"].append(sup)
        await sup.connect()
        await start_voice(customer, agent)
        cpeer, apeer = Peer(CUSTOMER), Peer(AGENT_A)
        peers: list[Peer] = [cpeer, apeer]
        try:
            assert (await cpeer.join(customer))["supervisor_audio"] is True
            assert (await apeer.join(agent))["supervisor_audio"] is True
            await hears(cpeer, "audio", AGENT_A)
            await hears(apeer, "audio", CUSTOMER)
            yield {**room, "sup": sup, "cpeer": cpeer, "apeer": apeer, "peers": peers}
        finally:
            for peer in peers:
                await peer.close()


async def test_listen_whisper_barge_then_stop(room: dict[str, Any]) -> None:
    customer, agent, sup, cpeer, apeer, store, cid, service = (
        room[k] for k in ("customer", "agent", "sup", "cpeer", "apeer", "store", "cid", "service"))

    # listen: the supervisor hears the customer on audio#0 and the agent on audio#1; nobody hears them
    ack = await sup.ok("call.monitor", mode="listen")
    assert ack["event"]["type"] == "call.monitored" and ack["event"]["visibility"] == "agents"
    assert ack["event"]["data"] == {"by": {"kind": "agent", "id": "sue", "name": "Sue Pervisor"}, "mode": "listen"}
    assert ack["call"]["supervisor"]["mode"] == "listen" and isinstance(ack["ice_servers"], list)
    speer = Peer(SUPERVISOR, "supervisor")
    room["peers"].append(speer)
    await speer.join(sup)
    await hears(speer, "audio", CUSTOMER)
    await hears(speer, "audio2", AGENT_A)
    assert await speer.packets("audio") > 0 and await speer.packets("audio2") > 0
    await silent(apeer, "audio2", await speer.ears("audio2"))
    assert await cpeer.packets("audio2") == 0
    assert (await cpeer.ears()).hears(AGENT_A) and (await apeer.ears()).hears(CUSTOMER)
    # the agent's console shows "Supervisor listening"; the customer's state does not
    await eventually(lambda: any((s.get("supervisor") or {}).get("mode") == "listen" for s in agent.got("call.state")))
    state = (await agent.ok("call.state"))["call"]
    assert state["supervisor"] == {"id": "sue", "name": "Sue Pervisor", "mode": "listen", "connection": "connected"}
    assert "supervisor" in state["call"]["legs"]
    customer_view = (await customer.ok("call.state"))["call"]
    assert customer_view["supervisor"] is None and "supervisor" not in customer_view["call"]["legs"]

    # whisper: the agent hears the supervisor on its second audio m-section, the customer does not
    ack = await sup.ok("call.monitor", mode="whisper")
    assert ack["event"]["data"]["mode"] == "whisper"
    await hears(apeer, "audio2", SUPERVISOR)
    await silent(cpeer, "audio2", await apeer.ears("audio2"))
    assert await cpeer.packets("audio2") == 0
    assert (await apeer.ears()).hears(CUSTOMER) and (await cpeer.ears()).hears(AGENT_A)
    assert service.records[cid].call.leg("supervisor").negotiations == 1  # a mode switch: no renegotiation

    # until the barge, the customer's call.state never mentions a supervisor
    before_barge = customer.got("call.state")
    assert before_barge and all(s.get("supervisor") is None for s in before_barge)
    assert all("supervisor" not in s.get("call", {}).get("legs", {}) for s in before_barge)

    # barge: the customer hears the supervisor too, and is told
    await sup.ok("call.monitor", mode="barge")
    await hears(cpeer, "audio2", SUPERVISOR)
    await hears(apeer, "audio2", SUPERVISOR)
    assert (await cpeer.ears()).hears(AGENT_A)
    await eventually(lambda: any(e["type"] == "call.supervisor_joined" for e in customer.got("event")))
    await eventually(lambda: any((s.get("supervisor") or {}).get("mode") == "barge" for s in customer.got("call.state")))

    # hold during a barge: the customer hears the hold tone and not the supervisor; the
    # supervisor still hears the agent
    await agent.ok("call.hold", held=True)
    await hears(cpeer, "audio", HOLD)
    await silent(cpeer, "audio2", await cpeer.ears())
    clock = await speer.ears("audio2")
    await more_frames(clock)
    assert clock.hears(AGENT_A)
    await agent.ok("call.hold", held=False)
    await hears(cpeer, "audio", AGENT_A)
    await hears(cpeer, "audio2", SUPERVISOR)

    # stop: the supervisor's leg leaves, the call goes on
    stopped = await sup.ok("call.monitor_stop")
    assert stopped["event"]["type"] == "call.monitor_ended" and stopped["call"]["supervisor"] is None
    assert service.records[cid].call.leg("supervisor") is None
    await silent(cpeer, "audio2", await cpeer.ears())
    await silent(apeer, "audio2", await apeer.ears())
    ears, agent_ears = await cpeer.ears(), await apeer.ears()
    await more_frames(ears)
    await more_frames(agent_ears)
    assert ears.hears(AGENT_A) and agent_ears.hears(CUSTOMER)
    assert cpeer.pc.connectionState == "connected" and apeer.pc.connectionState == "connected"
    assert service.records[cid].call.leg("customer").negotiations == 1

    # the log: monitoring is agents-only; the barge is visible to the customer
    events = await store.events(cid)
    kinds = {e["type"]: e["visibility"] for e in events}
    assert kinds["call.monitored"] == "agents" and kinds["call.monitor_ended"] == "agents"
    assert kinds["call.supervisor_joined"] == "all" and kinds["call.supervisor_left"] == "all"
    seen_by_customer = {e["type"] for e in customer.got("event")}
    assert "call.supervisor_joined" in seen_by_customer and "call.monitored" not in seen_by_customer
    assert "call.monitor_ended" not in seen_by_customer


async def test_only_supervisors_monitor(room: dict[str, Any]) -> None:
    url, cid, service, customer = room["url"], room["cid"], room["service"], room["customer"]
    al = Supervisor(url, service, await login(url, "al"), cid)  # an agent account, not a supervisor
    room["sides"].append(al)
    await al.connect()
    reply = await al.call("call.monitor", mode="listen")
    assert reply["error"]["code"] == "forbidden", reply
    reply = await al.call("call.monitor_stop")
    assert reply["error"]["code"] == "forbidden", reply
    assert (await room["sup"].call("call.monitor", mode="shout"))["error"]["field"] == "mode"
    assert (await room["sup"].call("call.monitor_stop"))["error"]["code"] == "conflict"  # not monitoring
    assert (await customer.call("call.monitor", mode="listen"))["error"]["code"] == "unknown_event"
    assert (await room["sup"].call("call.monitor", conversation_id="c_nope"))["error"]["code"] == "not_found"
    assert service.records[cid].supervisor is None


async def test_supervisor_follows_the_agent_through_a_cold_transfer(room: dict[str, Any]) -> None:
    customer, sup, cpeer, store, cid, service, url = (
        room[k] for k in ("customer", "sup", "cpeer", "store", "cid", "service", "url"))
    await sup.ok("call.monitor", mode="whisper")
    speer = Peer(SUPERVISOR, "supervisor")
    room["peers"].append(speer)
    await speer.join(sup)
    await hears(room["apeer"], "audio2", SUPERVISOR)

    # cold transfer to a_2 (what the /agent namespace's transfer handlers call)
    await store.mutate(cid, {"add": ["a_2"]})
    await service.transfer_started(cid, "cold", "a_2")
    await hears(cpeer, "audio", HOLD)
    agent_b = Side(url, "/agent", service, Participant("agent", "a_2", "Bea"), cid)
    room["sides"].append(agent_b)
    await agent_b.connect()
    await service.transfer_completed(cid, "a_2")
    bpeer = Peer(AGENT_B)
    room["peers"].append(bpeer)
    await bpeer.join(agent_b)
    await hears(cpeer, "audio", AGENT_B)
    await hears(bpeer, "audio2", SUPERVISOR)   # the whisper reaches the new agent
    await hears(speer, "audio2", AGENT_B)      # the supervisor hears the new agent
    await hears(speer, "audio", CUSTOMER)
    assert service.records[cid].supervisor.mode.value == "whisper"

    # call.hangup from the supervisor's socket: only the supervisor leaves
    ended = await sup.ok("call.hangup")
    assert ended["event"]["type"] == "call.monitor_ended"
    assert service.records[cid].call.active and service.records[cid].call.leg("supervisor") is None
    ears = await cpeer.ears()
    await more_frames(ears)
    assert ears.hears(AGENT_B)
    await silent(bpeer, "audio2", await bpeer.ears())
    assert not customer.got("call.ended")


async def test_a_connection_without_the_second_audio_still_works(segue: Any) -> None:
    """An offer without the fourth transceiver (an older SDK): the call works, the state says the
    supervisor cannot be heard there, and whispering does not disturb the call."""
    await segue.app[SIGNALING].directory.create("sue", "pw-secret", "Sue", "supervisor", [], {"chat": 1})
    async with call_room(segue, "c_sup2") as room:
        customer, agent, url, cid = room["customer"], room["agent"], room["url"], room["cid"]
        sup = Supervisor(url, room["service"], await login(url, "sue"), cid)
        room["sides"].append(sup)
        peers = [Peer(CUSTOMER, "legacy"), Peer(AGENT_A, "legacy"), Peer(SUPERVISOR, "supervisor")]
        try:
            await sup.connect()
            await start_voice(customer, agent)
            cpeer, apeer, speer = peers
            assert (await cpeer.join(customer))["supervisor_audio"] is False
            assert (await apeer.join(agent))["supervisor_audio"] is False
            state = (await agent.ok("call.state"))["call"]["call"]
            assert state["legs"]["agent"]["supervisor_audio"] is False
            await sup.ok("call.monitor", mode="whisper")
            await speer.join(sup)
            await hears(speer, "audio", CUSTOMER)
            await hears(speer, "audio2", AGENT_A)
            ears, agent_ears = await cpeer.ears(), await apeer.ears()
            await more_frames(agent_ears)
            assert agent_ears.hears(CUSTOMER) and ears.hears(AGENT_A)
            assert state["media"] == {"audio": True, "video": False, "screen": False}
        finally:
            for peer in peers:
                await peer.close()


async def test_the_supervisor_page_going_away_ends_only_the_monitoring(room: dict[str, Any]) -> None:
    sup, cpeer, store, cid, service, agent = (room[k] for k in ("sup", "cpeer", "store", "cid", "service", "agent"))
    await sup.ok("call.monitor", mode="barge")
    speer = Peer(SUPERVISOR, "supervisor")
    room["peers"].append(speer)
    await speer.join(sup)
    await hears(cpeer, "audio2", SUPERVISOR)
    await sup.sio.disconnect()  # the wallboard tab closed

    async def ended() -> bool:
        return any(e["type"] == "call.monitor_ended" for e in await store.events(cid))

    await eventually(ended)
    event = next(e for e in await store.events(cid) if e["type"] == "call.monitor_ended")
    assert event["data"]["reason"] == "disconnected"
    assert service.records[cid].supervisor is None and service.records[cid].call.leg("supervisor") is None
    await silent(cpeer, "audio2", await cpeer.ears())
    assert (await cpeer.ears()).hears(AGENT_A)
    # the agent's console is told: its latest call.state has no supervisor any more
    await eventually(lambda: agent.got("call.state")[-1].get("supervisor") is None)
    assert agent.got("call.state")[-1]["state"] == "active"
