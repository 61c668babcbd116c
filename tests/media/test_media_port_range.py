"""``media.udp_port_min/max``: server peers bind their host candidates inside the range.

Real aiortc peers on 127.0.0.1 (``loopback`` fixture): a server peer created with
``new_peer(port_range=...)`` announces and uses ports inside the range, media flows through the
forwarder, the setting is per peer (other peers are untouched), and a range with no free port
left fails the answer with an error naming the setting.
"""

from __future__ import annotations

import re
import socket

import aioice.ice
import pytest
from aiortc import RTCSessionDescription
from media_testkit import ToneTrack, until

from media import Forwarder, LegState, aiortc_hooks, new_peer
from media.ice import PortRangeExhausted
from media.leg import CallLeg


def _free_block(size: int) -> tuple[int, int]:
    """A block of ``size`` consecutive UDP ports on 127.0.0.1 that are free right now."""
    for base in range(41000, 60000, 97):
        socks = []
        try:
            for port in range(base, base + size):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        return base, base + size - 1
    raise RuntimeError("no free block of UDP ports")


def _candidate_ports(sdp: str) -> list[int]:
    return [int(m.group(1)) for m in re.finditer(r"^a=candidate:\S+ 1 udp \d+ \S+ (\d+) typ host", sdp, re.M)]


async def _offer(pc) -> str:  # type: ignore[no-untyped-def]
    await pc.setLocalDescription(await pc.createOffer())
    return pc.localDescription.sdp


def test_the_internals_it_replaces_are_there() -> None:
    aiortc_hooks.check_compatibility()
    names = {name for _, name, _ in aiortc_hooks.RELIED_UPON}
    assert {"get_component_candidates", "server_reflexive_candidate", "candidate_foundation"} <= names


async def test_server_leg_binds_inside_the_range_and_media_flows() -> None:
    low, high = _free_block(8)
    forwarder = Forwarder()
    client_a, client_b = new_peer(), new_peer()
    client_a.addTrack(ToneTrack(700.0))
    client_b.addTransceiver("audio", direction="recvonly")
    received: list[tuple] = []  # type: ignore[type-arg]
    aiortc_hooks.observe_received_rtp(client_b.getTransceivers()[0].receiver, lambda *p: received.append(p))
    legs = []
    try:
        for client, role in ((client_a, "customer"), (client_b, "agent")):
            leg = CallLeg(forwarder, role=role, participant=role, port_range=(low, high))
            legs.append(leg)
            # the aioice connection's gathering is replaced on this peer only, at gathering time
            answer = await leg.answer(await _offer(client))
            await client.setRemoteDescription(RTCSessionDescription(answer, "answer"))
            ports = _candidate_ports(answer)
            assert ports and all(low <= p <= high for p in ports), (ports, low, high)
            connection = leg.pc.getTransceivers()[0].receiver.transport.transport.iceGatherer._connection
            assert "get_component_candidates" in connection.__dict__
            # the client's own peer (no range) keeps aioice's stock gathering
            client_connection = client.getTransceivers()[0].receiver.transport.transport.iceGatherer._connection
            assert "get_component_candidates" not in client_connection.__dict__
        await until(
            lambda: all(leg.fleg.state is LegState.CONNECTED for leg in legs)
            and all(c.connectionState == "connected" for c in (client_a, client_b)),
            "both legs connected through ports in the range",
        )
        # the selected pair's local socket is the ranged one
        for leg in legs:
            pair = leg.pc.getTransceivers()[0].receiver.transport.transport._connection._nominated[1]
            assert low <= pair.local_candidate.port <= high
        legs[1].sink("audio").attach(legs[0].source("audio"))
        await until(lambda: len(received) >= 50, "audio forwarded between the ranged legs")
        # a renegotiation gathers nothing new and keeps the same port
        before = _candidate_ports(legs[0].pc.localDescription.sdp)
        answer = await legs[0].answer(await _offer(client_a))
        await client_a.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        assert _candidate_ports(answer) == before
    finally:
        for leg in legs:
            await leg.close()
        await client_a.close()
        await client_b.close()
        await forwarder.close()


async def test_exhausted_range_names_the_setting_and_frees_nothing_it_did_not_take() -> None:
    low, high = _free_block(2)
    squatters = []
    for port in (low, high):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", port))
        squatters.append(s)
    forwarder = Forwarder()
    client = new_peer()
    client.addTrack(ToneTrack(700.0))
    leg = CallLeg(forwarder, role="customer", participant="v_1", port_range=(low, high))
    try:
        with pytest.raises(PortRangeExhausted) as info:
            await leg.answer(await _offer(client))
        message = str(info.value)
        assert "media.udp_port_min/max" in message and f"{low}..{high}" in message
        # freeing a port makes the next leg work
        squatters.pop().close()
        leg2 = CallLeg(forwarder, role="customer", participant="v_2", port_range=(low, high))
        client2 = new_peer()
        client2.addTrack(ToneTrack(700.0))
        try:
            answer = await leg2.answer(await _offer(client2))
            assert _candidate_ports(answer) == [high]
        finally:
            await leg2.close()
            await client2.close()
    finally:
        for s in squatters:
            s.close()
        await leg.close()
        await client.close()
        await forwarder.close()


async def test_zero_range_is_the_stock_path() -> None:
    pc = new_peer(port_range=(0, 0))
    pc.addTransceiver("audio")
    try:
        sdp = await _offer(pc)
        assert _candidate_ports(sdp)
        connection = pc.getTransceivers()[0].receiver.transport.transport.iceGatherer._connection
        assert "get_component_candidates" not in connection.__dict__
        assert type(connection).get_component_candidates is aioice.ice.Connection.get_component_candidates
    finally:
        await pc.close()


def test_bad_range_is_refused() -> None:
    with pytest.raises(ValueError, match="min <= max"):
        new_peer(port_range=(5000, 4000))


async def test_stun_reflexive_candidates_use_the_ranged_socket() -> None:
    """With a STUN server configured, the server-reflexive candidate is asked for through the
    ranged host socket (a tiny STUN responder on 127.0.0.1 answers with the source address)."""
    import asyncio

    from aioice import stun

    class Responder(asyncio.DatagramProtocol):
        def connection_made(self, transport):  # type: ignore[no-untyped-def]
            self.transport = transport

        def datagram_received(self, data, addr):  # type: ignore[no-untyped-def]
            request = stun.parse_message(data)
            response = stun.Message(
                message_method=stun.Method.BINDING,
                message_class=stun.Class.RESPONSE,
                transaction_id=request.transaction_id,
            )
            response.attributes["XOR-MAPPED-ADDRESS"] = addr
            self.transport.sendto(bytes(response), addr)

    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(Responder, local_addr=("127.0.0.1", 0))
    stun_port = transport.get_extra_info("sockname")[1]
    low, high = _free_block(4)
    pc = new_peer([{"urls": f"stun:127.0.0.1:{stun_port}"}], port_range=(low, high))
    pc.addTransceiver("audio")
    try:
        sdp = await _offer(pc)
        host = _candidate_ports(sdp)
        srflx = [int(m.group(1)) for m in re.finditer(r"^a=candidate:\S+ 1 udp \d+ \S+ (\d+) typ srflx", sdp, re.M)]
        assert host and all(low <= p <= high for p in host)
        assert srflx == host  # the responder saw the ranged socket's port
    finally:
        await pc.close()
        transport.close()


async def test_node_config_reaches_the_legs(start_segue) -> None:  # type: ignore[no-untyped-def]
    """Through a real node: ``media.udp_port_min/max`` -> CallService -> CallLeg -> the answer's
    candidates, and the customer's voice reaches the agent."""
    import aiohttp
    import socketio

    from media.ice import loopback_only
    from media.probe import ClientPeer
    from signaling.calls import CALLS, Participant
    from signaling.store import Store

    low, high = _free_block(6)
    node = await start_segue({"media.udp_port_min": low, "media.udp_port_max": high})
    url = node.url.rstrip("/")
    service = node.app[CALLS]
    cid = "c_ports"
    await Store(node.node.redis, node.config.redis.key_prefix).mutate(
        cid, {"create": {"state": "assigned", "customer": "v_1", "agent": "a_1"}, "add": ["a_1"]}
    )
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/api/v1/auth/login", json={"username": "demo", "password": "demo"}) as r:
            token = (await r.json())["token"]
    sockets, peers, answers = [], [], []

    async def join(ns: str, who: Participant, auth: dict) -> socketio.AsyncClient:  # type: ignore[type-arg]
        sio = socketio.AsyncClient(reconnection=False)
        await sio.connect(url, namespaces=[ns], transports=["websocket"], auth={"v": 1, **auth})
        service.bind(ns, sio.get_sid(ns), who)
        sockets.append(sio)
        return sio

    async def ok(sio, ns, event, **payload):  # type: ignore[no-untyped-def]
        reply = await sio.call(event, {"conversation_id": cid, **payload}, namespace=ns, timeout=20)
        assert reply["ok"], reply
        return reply

    with loopback_only():
        try:
            customer = await join("/customer", Participant("customer", "v_1"), {})
            agent = await join("/agent", Participant("agent", "a_1"), {"token": token})
            await ok(agent, "/agent", "call.state")
            await ok(customer, "/customer", "call.request", media="voice")
            await ok(agent, "/agent", "call.accept")
            for sio, ns, frequency in ((customer, "/customer", 440.0), (agent, "/agent", 660.0)):
                peer = ClientPeer(frequency)
                peers.append(peer)

                async def answer(sdp: str, sio=sio, ns=ns) -> str:  # type: ignore[no-untyped-def]
                    reply = await ok(sio, ns, "call.offer", sdp=sdp)
                    answers.append(reply["sdp"])
                    return reply["sdp"]

                await peer.negotiate(answer)
            for sdp in answers:
                ports = _candidate_ports(sdp)
                assert ports and all(low <= p <= high for p in ports), (ports, low, high)
            ears = await peers[1].audio()
            await ears.wait_hearing(440.0, timeout=20)  # the agent hears the customer
        finally:
            for peer in peers:
                await peer.close()
            for sio in sockets:
                await sio.disconnect()
