"""call.* over Socket.IO against a real node (real Redis, real aiortc peers on loopback UDP).

The conversation is created straight in the store and the sockets are bound to their
participants with ``CallService.bind`` — what the /customer and /agent namespaces do on connect.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import socketio

from media.ice import loopback_only
from media.probe import ClientPeer
from signaling import SIGNALING
from signaling.calls import CALLS, CallService, Participant, turn_credentials
from segue_clients import assigned_conversation

CUSTOMER, AGENT_A, AGENT_B, HOLD = 440.0, 660.0, 880.0, 425.0


async def eventually(check: Any, timeout: float = 20.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if await check() if asyncio.iscoroutinefunction(check) else check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def agent_token(url: str) -> str:
    """The demo agent's token (the /agent namespace needs a signed-in account; the test then binds
    each socket to the participant it plays)."""
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/api/v1/auth/login", json={"username": "demo", "password": "demo"}) as r:
            assert r.status == 200, await r.text()
            return (await r.json())["token"]


class Side:
    """One browser: a Socket.IO client on its namespace plus (later) a client peer."""

    def __init__(self, url: str, ns: str, service: CallService, who: Participant, cid: str) -> None:
        self.url, self.ns, self.service, self.who, self.cid = url, ns, service, who, cid
        self.sio = socketio.AsyncClient(reconnection=False)
        self.pushed: list[tuple[str, Any]] = []
        self.peer: ClientPeer | None = None
        for name in ("call.requested", "call.accepted", "call.declined", "call.state", "call.ended", "event", "error"):
            self.sio.on(name, self._recorder(name), namespace=ns)

    def _recorder(self, name: str) -> Any:
        async def record(data: Any) -> None:
            self.pushed.append((name, data))

        return record

    async def connect(self) -> None:
        auth: dict[str, Any] = {"v": 1}
        if self.ns == "/agent":
            auth["token"] = await agent_token(self.url)
        await self.sio.connect(self.url, namespaces=[self.ns], transports=["websocket"], auth=auth)
        self.service.bind(self.ns, self.sio.get_sid(self.ns), self.who)

    async def call(self, event: str, **payload: Any) -> dict[str, Any]:
        payload.setdefault("conversation_id", self.cid)
        return await self.sio.call(event, payload, namespace=self.ns, timeout=20)

    async def ok(self, event: str, **payload: Any) -> dict[str, Any]:
        reply = await self.call(event, **payload)
        assert reply["ok"], reply
        return reply

    async def offer(self, frequency: float) -> ClientPeer:
        self.peer = ClientPeer(frequency)

        async def answer(sdp: str) -> str:
            return (await self.ok("call.offer", sdp=sdp))["sdp"]

        await self.peer.negotiate(answer)
        await self.peer.wait_connected()
        return self.peer

    async def renegotiate(self) -> dict[str, Any]:
        assert self.peer is not None
        replies: list[dict[str, Any]] = []

        async def answer(sdp: str) -> str:
            reply = await self.ok("call.offer", sdp=sdp)
            replies.append(reply)
            return reply["sdp"]

        await self.peer.negotiate(answer)
        return replies[0]

    def got(self, name: str) -> list[Any]:
        return [d for n, d in self.pushed if n == name]

    async def close(self) -> None:
        if self.peer is not None:
            await self.peer.close()
        if self.sio.connected:
            await self.sio.disconnect()


@contextlib.asynccontextmanager
async def call_room(segue: Any, cid: str) -> AsyncIterator[dict[str, Any]]:
    """Conversation ``cid`` assigned to agent a_1 ("Alan"), with customer v_1 ("Ada") and the
    agent connected on Socket.IO (no peers yet), in loopback mode. Every side in ``sides`` (add
    yours) is closed on the way out."""
    with loopback_only():
        service = segue.app[CALLS]
        store = await assigned_conversation(segue, cid)
        url = segue.url.rstrip("/")
        customer = Side(url, "/customer", service, Participant("customer", "v_1", "Ada"), cid)
        agent = Side(url, "/agent", service, Participant("agent", "a_1", "Alan"), cid)
        sides: list[Side] = [customer, agent]
        try:
            await customer.connect()
            await agent.connect()
            yield {"service": service, "store": store, "cid": cid, "customer": customer, "agent": agent,
                   "sides": sides, "url": url}
        finally:
            for side in sides:
                await side.close()


@pytest.fixture
async def world(segue: Any) -> AsyncIterator[dict[str, Any]]:
    async with call_room(segue, "c_call1") as room:
        yield room


async def start_voice(customer: Side, agent: Side) -> None:
    await agent.ok("call.state")  # the agent's socket watches the conversation
    reply = await customer.ok("call.request", media="voice", page_url="https://shop.example/checkout")
    assert reply["call"]["state"] == "requested"
    await eventually(lambda: agent.got("call.requested"))
    accepted = await agent.ok("call.accept")
    assert accepted["call"]["state"] == "active"
    assert isinstance(accepted["ice_servers"], list)  # [] unless TURN or ICE servers are configured


async def in_voice_call(customer: Side, agent: Side) -> tuple[ClientPeer, ClientPeer, Any, Any]:
    """Voice call requested and accepted, both peers connected and each hearing the other's tone:
    (customer peer, agent peer, what the customer hears, what the agent hears)."""
    await start_voice(customer, agent)
    cpeer = await customer.offer(CUSTOMER)
    apeer = await agent.offer(AGENT_A)
    customer_ears, agent_ears = await cpeer.audio(), await apeer.audio()
    await customer_ears.wait_hearing(AGENT_A)
    await agent_ears.wait_hearing(CUSTOMER)
    return cpeer, apeer, customer_ears, agent_ears


async def test_voice_call_over_socketio_then_video_then_hangup(world: dict[str, Any]) -> None:
    customer, agent, store, cid = world["customer"], world["agent"], world["store"], world["cid"]
    cpeer, apeer, _, ears = await in_voice_call(customer, agent)

    # escalate to video: the agent asks, the customer accepts, the customer's camera goes on
    await agent.ok("call.request", media="video")
    await eventually(lambda: any(d["media"] == "video" for d in customer.got("call.requested")))
    await customer.ok("call.accept")
    cpeer.start_video()
    reply = await customer.renegotiate()
    assert reply["renegotiated"] is True
    await eventually(lambda: apeer.video_frames() > 5)
    n = len(ears.frames)
    await ears.wait_until(lambda: len(ears.frames) > n + 25)
    assert ears.hears(CUSTOMER)

    cpeer.stop_video()
    await customer.renegotiate()
    ended = await agent.ok("call.hangup")
    assert ended["event"]["type"] == "call.ended"
    assert ended["event"]["data"]["durations"]["video"] > 0
    await eventually(lambda: customer.got("call.ended"))

    async def logged() -> bool:
        types = [e["type"] for e in await store.events(cid)]
        return "call.video_off" in types

    await eventually(logged)
    types = [e["type"] for e in await store.events(cid)]
    for expected in ("call.requested", "call.accepted", "call.video_on", "call.video_off", "call.ended"):
        assert expected in types, types
    requested = next(e for e in await store.events(cid) if e["type"] == "call.requested")
    assert requested["data"]["page_url"] == "https://shop.example/checkout"
    # chat carries on after the call
    assert (await store.conversation(cid))["state"] == "assigned"


async def test_decline_and_bad_input(world: dict[str, Any]) -> None:
    customer, agent = world["customer"], world["agent"]
    bad = await customer.call("call.offer", sdp="v=0")
    assert bad["ok"] is False and bad["error"]["code"] == "conflict"
    bad = await customer.call("call.request", media="hologram")
    assert bad["error"]["code"] == "invalid" and bad["error"]["field"] == "media"
    assert "voice, video, screen" in bad["error"]["message"]
    bad = await customer.call("call.request", conversation_id="c_other")
    assert bad["error"]["code"] == "not_found"
    bad = await customer.call("call.request", colour="red")
    assert bad["error"]["code"] == "invalid" and bad["error"]["field"] == "colour"

    await customer.ok("call.request")
    again = await customer.call("call.accept")
    assert again["error"]["code"] == "conflict"
    declined = await agent.ok("call.decline", reason="busy")
    assert declined["event"]["type"] == "call.declined"
    state = await agent.ok("call.state")
    assert state["call"]["state"] == "none"


async def test_hold_and_cold_transfer_keep_the_customer_connected(world: dict[str, Any]) -> None:
    customer, agent, store, cid, service = (world[k] for k in ("customer", "agent", "store", "cid", "service"))
    await start_voice(customer, agent)
    cpeer = await customer.offer(CUSTOMER)
    await agent.offer(AGENT_A)
    ears = await cpeer.audio()
    await ears.wait_hearing(AGENT_A)

    held = await agent.ok("call.hold", held=True)
    assert held["event"]["type"] == "call.held"
    await ears.wait_hearing(HOLD)
    not_allowed = await customer.call("call.hold", held=False)
    assert not_allowed["error"]["code"] == "forbidden"
    await agent.ok("call.hold", held=False)
    await ears.wait_hearing(AGENT_A)

    # cold transfer to a_2 (what the /agent namespace's transfer handlers call)
    await store.mutate(cid, {"add": ["a_2"]})
    await service.transfer_started(cid, "cold", "a_2")
    await ears.wait_hearing(HOLD)
    agent_b = Side(world["url"], "/agent", service, Participant("agent", "a_2", "Bea"), cid)
    world["sides"].append(agent_b)
    await agent_b.connect()
    await service.transfer_completed(cid, "a_2")
    bpeer = await agent_b.offer(AGENT_B)
    await ears.wait_hearing(AGENT_B)
    await (await bpeer.audio()).wait_hearing(CUSTOMER)
    assert cpeer.pc.connectionState == "connected"
    assert service.records[cid].call.leg("customer").negotiations == 1

    types = [e["type"] for e in await store.events(cid)]
    assert "call.transferred" in types


async def test_warm_transfer_consult_then_complete(world: dict[str, Any]) -> None:
    customer, agent, store, cid, service = (world[k] for k in ("customer", "agent", "store", "cid", "service"))
    await start_voice(customer, agent)
    cpeer = await customer.offer(CUSTOMER)
    apeer = await agent.offer(AGENT_A)
    ears = await cpeer.audio()
    await ears.wait_hearing(AGENT_A)

    await store.mutate(cid, {"add": ["a_2"]})
    await service.transfer_started(cid, "warm", "a_2")
    agent_b = Side(world["url"], "/agent", service, Participant("agent", "a_2", "Bea"), cid)
    world["sides"].append(agent_b)
    await agent_b.connect()
    bpeer = await agent_b.offer(AGENT_B)
    await ears.wait_hearing(HOLD)
    await (await apeer.audio()).wait_hearing(AGENT_B)
    await (await bpeer.audio()).wait_hearing(AGENT_A)

    await service.transfer_completed(cid, "a_2")
    await ears.wait_hearing(AGENT_B)
    await (await bpeer.audio()).wait_hearing(CUSTOMER)
    assert cpeer.pc.connectionState == "connected"
    event = next(e for e in await store.events(cid) if e["type"] == "call.transferred")
    assert event["data"] == {"from_agent": "a_1", "to_agent": "a_2", "mode": "warm",
                             "from_agent_name": "a_1", "to_agent_name": "a_2"}  # no accounts here: names fall back to ids


async def test_reload_reattaches_with_a_new_socket_and_connection(world: dict[str, Any]) -> None:
    customer, agent, store, cid, service = (world[k] for k in ("customer", "agent", "store", "cid", "service"))
    await start_voice(customer, agent)
    await customer.offer(CUSTOMER)
    apeer = await agent.offer(AGENT_A)
    ears = await apeer.audio()
    await ears.wait_hearing(CUSTOMER)

    await customer.close()  # page reload: socket and peer connection gone
    await eventually(lambda: service.records[cid].call.summary()["waiting_for"] == ["customer"])
    again = Side(world["url"], "/customer", service, Participant("customer", "v_1", "Ada"), cid)
    world["sides"].append(again)
    await again.connect()
    state = await again.ok("call.state")
    assert state["call"]["state"] == "active"
    rpeer = await again.offer(550.0)
    await ears.wait_hearing(550.0)
    await (await rpeer.audio()).wait_hearing(AGENT_A)
    types = [e["type"] for e in await store.events(cid)]
    assert "call.leg_lost" in types and "call.reconnected" in types


async def test_call_ends_after_grace_and_chat_goes_on(start_segue: Any) -> None:
    segue = await start_segue({"media.reconnect_grace_s": 0.5})
    async with call_room(segue, "c_grace") as room:
        customer, agent, store, cid, service = (room[k] for k in ("customer", "agent", "store", "cid", "service"))
        await start_voice(customer, agent)
        await customer.offer(CUSTOMER)
        await agent.offer(AGENT_A)
        await customer.peer.close()  # type: ignore[union-attr]
        await eventually(lambda: agent.got("call.ended"))
        assert agent.got("call.ended")[0]["reason"] == "timeout"

        async def ended_logged() -> bool:
            return any(e["type"] == "call.ended" for e in await store.events(cid))

        await eventually(ended_logged)
        assert cid not in service.records
        assert (await store.conversation(cid))["state"] == "assigned"


async def test_turn_rest_credentials(start_segue: Any) -> None:
    segue = await start_segue({"media.turn.secret": "s3cret", "media.turn.urls": ["turn:127.0.0.1:3478?transport=udp"]})
    username, credential = turn_credentials("s3cret", "v_1", 3600, now=1_700_000_000)
    assert username == "1700003600:v_1"
    import base64, hashlib, hmac

    assert credential == base64.b64encode(hmac.new(b"s3cret", username.encode(), hashlib.sha1).digest()).decode()
    servers = segue.app[CALLS].ice_servers("v_1")
    assert servers[-1]["urls"] == ["turn:127.0.0.1:3478?transport=udp"]
    assert servers[-1]["username"].endswith(":v_1")


async def test_recording_per_queue_logged_and_downloadable(start_segue: Any, tmp_path: Any, monkeypatch: Any) -> None:
    import av

    # idle video tracks get invisible blank keyframes (see media/recorder.py): sooner here
    monkeypatch.setattr("media.recorder.KEEPALIVE_S", 0.5)
    segue = await start_segue({
        "routing.queues": [{"name": "general", "record_calls": True}],
        "media.recordings_dir": str(tmp_path / "rec"),
    })
    async with call_room(segue, "c_rec") as room:
        customer, agent, store, cid, url = (room[k] for k in ("customer", "agent", "store", "cid", "url"))
        cpeer, apeer, _, ears = await in_voice_call(customer, agent)
        n = len(ears.frames)
        await ears.wait_until(lambda: len(ears.frames) > n + 25)
        # the customer's camera goes on during the call: recorded too (the agent sends none)
        await agent.ok("call.request", media="video")
        await eventually(lambda: any(d["media"] == "video" for d in customer.got("call.requested")))
        await customer.ok("call.accept")
        cpeer.start_video()
        await customer.renegotiate()
        await eventually(lambda: apeer.video_frames() > 30, timeout=30)
        await agent.ok("call.hangup")
    event = next(e for e in await store.events(cid) if e["type"] == "call.recording")
    # an unguessable id and its URL; no server path leaves the server (issue #13)
    assert set(event["data"]) == {"id", "url"} and str(tmp_path) not in str(event)
    rid = event["data"]["id"]
    assert rid.startswith("rec_") and len(rid) == 36 and cid not in rid
    assert [p.name for p in (tmp_path / "rec").iterdir()] == [f"{rid}.webm"]
    directory = segue.app[SIGNALING].directory
    await directory.create("a_1", "pw-secret", "Alan")  # the assigned agent
    await directory.create("otto", "pw-secret", "Otto")  # never touched this conversation
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/api/v1/recordings/{rid}") as r:
            assert r.status == 401
        for user, status in (("demo", 200), ("a_1", 200), ("otto", 403)):
            password = "demo" if user == "demo" else "pw-secret"
            async with http.post(f"{url}/api/v1/auth/login", json={"username": user, "password": password}) as r:
                token = (await r.json())["token"]
            async with http.get(f"{url}/api/v1/recordings/{rid}", headers={"Authorization": f"Bearer {token}"}) as r:
                assert r.status == status, (user, await r.text())
                if status == 200:
                    body = await r.read()
                else:
                    assert (await r.json())["error"]["code"] == "forbidden"
        for guess in ("rec_" + "A" * 32, f"{cid}-1700000000.webm", "../secret"):
            async with http.get(f"{url}/api/v1/recordings/{guess}", headers={"Authorization": f"Bearer {token}"}) as r:
                assert r.status == 404 and (await r.json())["error"]["code"] == "not_found"
    (tmp_path / "dl.webm").write_bytes(body)

    def check(path: str) -> None:
        """Read the downloaded file with av (in a thread: decoding must not stall the loop)."""
        with av.open(path) as container:
            titles = [s.metadata.get("title") for s in container.streams]
            assert titles == ["customer", "agent", "customer_video", "agent_video"], titles
            assert len(container.streams.audio) == 2 and len(container.streams.video) == 2
            assert [s.codec_context.name for s in container.streams.video] == ["vp8", "vp8"]
            packets: dict[str, list[Any]] = {title: [] for title in titles}
            for packet in container.demux():
                if packet.size:
                    packets[titles[packet.stream.index]].append(packet)
        counts = {k: len(v) for k, v in packets.items()}
        assert counts["customer"] > 25 and counts["agent"] > 25, counts
        # the camera's frames; the recorder's keep-alive blanks are invisible (VP8 show_frame=0)
        camera = [p for p in packets["customer_video"] if bytes(p)[0] & 0x10]
        assert len(camera) > 10, counts
        assert packets["customer_video"][0].is_keyframe and camera[0].is_keyframe
        assert packets["agent_video"] and not any(bytes(p)[0] & 0x10 for p in packets["agent_video"]), counts
        decoder = av.CodecContext.create("vp8", "r")
        frames = [f for p in packets["customer_video"] for f in decoder.decode(p)]
        frames += decoder.decode(None)
        assert len(frames) == len(camera), (len(frames), len(camera))
        assert {(f.width, f.height) for f in frames} == {(640, 480)}  # what aiortc's VideoStreamTrack sends

    await asyncio.to_thread(check, str(tmp_path / "dl.webm"))


async def test_bad_call_events_get_clear_errors_and_the_call_goes_on(world: dict[str, Any]) -> None:
    """call.* rides on the namespaces' dispatch: size limit, schema and unknown events answer like
    chat events do, and neither the socket nor the running call notices."""
    from media.leg import MAX_SDP_CHARS

    customer, agent, service, cid = world["customer"], world["agent"], world["service"], world["cid"]
    cpeer, apeer, ears, agent_ears = await in_voice_call(customer, agent)

    huge = "v=0\r\n" + "a=x-pad:" + "p" * 200_000 + "\r\n"
    long_sdp = "v=0\r\n" + "a=x-pad:" + "p" * MAX_SDP_CHARS + "\r\n"
    good = {"candidate": "candidate:1 1 udp 2122260223 192.0.2.1 50000 typ host", "sdpMid": "0", "sdpMLineIndex": 0}
    cases: list[tuple[Side, str, dict[str, Any], str, str | None]] = [
        (customer, "call.offer", {"sdp": huge}, "too_large", None),
        (customer, "call.offer", {"sdp": long_sdp}, "invalid", "sdp"),
        (customer, "call.offer", {"sdp": 42}, "invalid", "sdp"),
        (customer, "call.offer", {}, "invalid", "sdp"),
        (customer, "call.offer", {"sdp": "hello"}, "invalid", "sdp"),
        (customer, "call.candidate", {"candidate": good["candidate"]}, "invalid", "candidate"),
        (customer, "call.candidate", {"candidate": {"candidate": 5}}, "invalid", "candidate.candidate"),
        (customer, "call.candidate", {"candidate": {**good, "sdpMLineIndex": "0"}}, "invalid", "candidate.sdpMLineIndex"),
        (customer, "call.candidate", {"candidate": {**good, "port": 1}}, "invalid", "candidate.port"),
        (customer, "call.candidate", {"candidate": {"candidate": "candidate:garbage"}}, "invalid", "candidate"),
        (customer, "call.request", {"media": "hologram"}, "invalid", "media"),
        (customer, "call.request", {"media": True}, "invalid", "media"),
        (agent, "call.mute", {"muted": "yes"}, "invalid", "muted"),
        (agent, "call.hold", {}, "invalid", "held"),
        (agent, "call.hangup", {"conversation_id": "c 1"}, "invalid", "conversation_id"),
        (customer, "call.teleport", {}, "unknown_event", None),
        (customer, "call.monitor", {"mode": "listen"}, "unknown_event", None),  # an /agent event
    ]
    for side, event, payload, code, field in cases:
        reply = await side.call(event, **payload)
        assert reply["ok"] is False, (event, payload, reply)
        assert reply["error"]["code"] == code, (event, payload, reply)
        assert reply["error"].get("field") == field, (event, payload, reply)
        assert reply["error"]["message"], reply
    too_large = await customer.call("call.offer", sdp=huge)
    assert "bytes" in too_large["error"]["message"]

    # without an ack the error comes as an `error` push naming the event
    await customer.sio.emit("call.offer", {"conversation_id": cid, "sdp": huge}, namespace="/customer")
    await eventually(lambda: customer.got("error"))
    pushed = customer.got("error")[0]
    assert (pushed["code"], pushed["event"]) == ("too_large", "call.offer"), pushed

    # the same sockets and the same call keep working: audio flows, renegotiation and
    # candidates are accepted, nothing was re-negotiated by the bad input
    assert customer.sio.connected and agent.sio.connected
    leg = service.records[cid].call.leg("customer")
    assert leg.negotiations == 1
    n = len(ears.frames)
    await ears.wait_until(lambda: len(ears.frames) > n + 25)
    assert ears.hears(AGENT_A) and agent_ears.hears(CUSTOMER)
    assert (await agent.renegotiate())["renegotiated"] is True
    await customer.ok("call.candidate", candidate=good)
    await customer.ok("call.candidate", candidate=None)
    n = len(agent_ears.frames)
    await agent_ears.wait_until(lambda: len(agent_ears.frames) > n + 25)
    assert agent_ears.hears(CUSTOMER)
    assert cpeer.pc.connectionState == "connected"


async def test_call_events_carry_the_name_the_customer_gave_after_connecting(segue: Any) -> None:
    """A customer connects as "Visitor" and names themselves when starting the conversation: the
    call events an agent reads must say "Ada", not "Visitor"."""
    from segue_clients import World

    world = World(segue)
    try:
        customer = await world.customer()
        cid = (await customer.ok("conversation.start", {"text": "hi", "name": "Ada"}))["conversation"]["id"]
        agent = await world.agent(await world.add_agent("alice"))
        await agent.next("offer", lambda o: o["conversation"]["id"] == cid)
        await agent.ok("offer.accept", {"conversation_id": cid})
        await customer.ok("call.request", {"conversation_id": cid, "media": "voice"})
        logged = await agent.next("event", lambda e: e["conversation_id"] == cid and e["type"] == "call.requested")
        assert logged["author"]["name"] == "Ada" and logged["data"]["by"]["name"] == "Ada", logged
    finally:
        await world.close()


async def test_a_new_connection_on_the_same_socket_replaces_the_old_one(world: dict[str, Any]) -> None:
    """What the SDK does when its connection stalls (`disconnected` for a few seconds; aiortc
    has no ICE restart): a brand-new peer connection offered on the same socket. The server must
    take it as a new leg for the running call, not as a renegotiation of the old connection."""
    customer, agent, service, cid = (world[k] for k in ("customer", "agent", "service", "cid"))
    await start_voice(customer, agent)
    old = await customer.offer(CUSTOMER)
    apeer = await agent.offer(AGENT_A)
    ears = await apeer.audio()
    await ears.wait_hearing(CUSTOMER)
    first_leg = service.records[cid].call.leg("customer")

    fresh = ClientPeer(550.0)  # the old connection is still up: the server has not seen it fail

    async def answer(sdp: str) -> str:
        reply = await customer.ok("call.offer", sdp=sdp)
        assert reply["renegotiated"] is False, reply
        return reply["sdp"]

    try:
        await fresh.negotiate(answer)
        await fresh.wait_connected()
        await ears.wait_hearing(550.0)
        await (await fresh.audio()).wait_hearing(AGENT_A)
        assert service.records[cid].call.leg("customer") is not first_leg
    finally:
        await fresh.close()
        await old.close()
