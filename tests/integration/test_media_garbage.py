"""Garbage on a live call's media ports (issue 11): real aiortc peers in a voice call through a real
node; an attacker on another UDP port sends the server's ports random bytes, truncated RTP and
RTCP, RTCP with bad lengths and padding, RTP carrying the customer's SSRC, STUN binding requests
with wrong credentials and a DTLS ClientHello — from an address ICE never validated.

The call carries on (the agent keeps hearing the customer, both connections stay up) and nothing
the attacker sent is forwarded: every packet the server forwards from the customer's microphone
is one the customer's peer sent (SRTP authenticates it), which the test tells apart by size.
"""

from __future__ import annotations

import asyncio
import os
import random
import struct
from typing import Any

from aioice import stun
from OpenSSL import SSL

from hostile_kit import Healthy, report
from segue_clients import World
from test_call_signaling import CUSTOMER, call_room, in_voice_call

MARK = 777  # payload length of the attacker's RTP: the customer's Opus packets are far smaller


def rtp(ssrc: int, seq: int, payload: bytes, pt: int = 111, ext: bytes = b"", pad: int = 0) -> bytes:
    b0 = 0x80 | (0x10 if ext else 0) | (0x20 if pad else 0)
    body = payload + (bytes(pad - 1) + bytes([pad]) if pad else b"")
    return bytes([b0, pt]) + struct.pack("!HII", seq, seq * 960, ssrc) + ext + body


def rtcp(ptype: int, count: int, body: bytes, length_words: int | None = None, padding: bool = False) -> bytes:
    words = (len(body) + 4) // 4 - 1 if length_words is None else length_words
    return bytes([0x80 | (0x20 if padding else 0) | count, ptype]) + struct.pack("!H", words & 0xFFFF) + body


def client_hello() -> bytes:
    conn = SSL.Connection(SSL.Context(SSL.DTLS_METHOD), None)
    conn.set_connect_state()
    try:
        conn.do_handshake()
    except SSL.WantReadError:
        pass
    return conn.bio_read(65536)


def garbage(ssrc: int, server_ufrag: str, rnd: random.Random) -> dict[str, list[bytes]]:
    def stun_request(username: str, key: bytes) -> bytes:
        m = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
        m.attributes["USERNAME"] = username
        m.attributes["PRIORITY"] = 1853817087
        m.attributes["ICE-CONTROLLING"] = rnd.getrandbits(64)
        m.attributes["USE-CANDIDATE"] = None
        m.add_message_integrity(key)
        m.add_fingerprint()
        return bytes(m)

    full = rtp(ssrc, 40000, bytes(MARK))
    return {
        "random_bytes": [os.urandom(rnd.randint(1, 1400)) for _ in range(300)],
        "truncated_rtp": [full[: rnd.randint(1, 11)] for _ in range(50)]
        + [rtp(ssrc, 40001 + i, b"", ext=b"\xbe\xde\x00\x09\x10") for i in range(50)],
        "rtp_with_the_customers_ssrc": [rtp(ssrc, 41000 + i, os.urandom(MARK)) for i in range(100)]
        + [rtp(ssrc, 42000 + i, os.urandom(MARK - 7), pad=7) for i in range(50)],
        "truncated_rtcp": [rtcp(200, 1, os.urandom(40))[: rnd.randint(2, 20)] for _ in range(50)],
        "rtcp_bad_length_and_padding": [rtcp(rnd.choice([200, 201, 205, 206]), rnd.randint(0, 31), os.urandom(24),
                                             length_words=rnd.choice([0, 1, 200, 0xFFFF]), padding=rnd.random() < 0.5)
                                        for _ in range(100)],
        "stun_wrong_credentials": [stun_request(f"{server_ufrag}:attacker", os.urandom(22)) for _ in range(30)]
        + [stun_request("nobody:attacker", b"x" * 22) for _ in range(20)],
        "dtls_client_hello": [client_hello() for _ in range(20)],
    }


class Attacker(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.replies = 0

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.replies += 1


async def test_garbage_on_the_media_ports_changes_nothing(segue: Any) -> None:
    world = World(segue)
    async with call_room(segue, "c_udp1") as room, Healthy(world) as healthy:
        customer, agent, service = room["customer"], room["agent"], room["service"]
        cpeer, apeer, _, agent_ears = await in_voice_call(customer, agent)
        leg = service.records["c_udp1"].call.leg("customer")
        source = leg.source("audio")
        assert source is not None and source.ssrc is not None
        forwarded: list[int] = []
        untap = source.tap(lambda info: forwarded.append(len(info.payload)))
        conn = leg.pc.getTransceivers()[0].receiver.transport.transport._connection
        ports = sorted({p.transport.get_extra_info("sockname")[:2] for p in conn._protocols})
        assert ports
        loop = asyncio.get_running_loop()
        transport, attacker = await loop.create_datagram_endpoint(Attacker, local_addr=(ports[0][0], 0))
        kinds = garbage(source.ssrc, conn.local_username, random.Random(11))
        heard_before = len(agent_ears.frames)
        healthy.reset()  # its figures cover the garbage, not the call's set-up
        sent: dict[str, int] = {}
        try:
            for kind, datagrams in kinds.items():
                for data in datagrams:
                    for addr in ports:
                        transport.sendto(data, addr)
                        sent[kind] = sent.get(kind, 0) + 1
                    await asyncio.sleep(0)
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)  # let the server work through the last of it
            # the call carries on: the agent keeps hearing the customer, both legs stay connected
            n = len(agent_ears.frames)
            await agent_ears.wait_until(lambda: len(agent_ears.frames) > n + 50)
            assert agent_ears.hears(CUSTOMER)
            assert leg.pc.connectionState == "connected" and cpeer.pc.connectionState == "connected"
            assert apeer.pc.connectionState == "connected"
            # nothing of the attacker's was forwarded: every forwarded payload is the customer's
            assert forwarded and MARK not in forwarded and MARK - 7 not in forwarded, sorted(set(forwarded))[-5:]
            assert max(forwarded) < 600, max(forwarded)
        finally:
            untap()
            transport.close()
    await world.close()
    healthy.check()
    report("udp_garbage_on_media_ports", sum(sent.values()), by_kind=sent, ports=len(ports),
           frames_heard_during=len(agent_ears.frames) - heard_before, forwarded_from_attacker=0,
           stun_answers_to_attacker=attacker.replies, internal=0, crashes=0, **healthy.figures())
