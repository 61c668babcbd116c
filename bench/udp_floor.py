"""The floor under the forwarder: what bare UDP echo servers cost on this machine, one run.

    python -m bench.udp_floor --calls 50 --seconds 8

Why: the forwarder's CPU per call-second (``bench.media_relay``) includes what no Python
forwarder can avoid here: one wake-up of the event loop per few packets and one ``recvfrom`` +
one ``sendto`` per packet, plus SRTP. This benchmark measures exactly that, with nothing else:
the same traffic shape as an audio call on ``bench.media_relay`` (two legs per call, 50 packets/s
each, 120-byte Opus-sized SRTP packets, random phase), echoed by a server process pinned to one
core (the client process on another), in three variants, each in a fresh server process:

- ``udp_echo``: asyncio ``add_reader`` per socket, ``recvfrom`` + ``sendto`` (no SRTP, no RTP
  work) — the cost of the system calls and the event loop alone;
- ``srtp_echo``: + pylibsrtp ``unprotect`` and ``protect`` per packet (what a forwarder must do:
  every leg has its own keys);
- ``srtp_echo_direct``: the same with :func:`media.aiortc_hooks.srtp_transform` (libsrtp through
  pylibsrtp's cffi binding, as the forwarder does);
- ``shared_port_batched``: what an SFU-style design would cost at best: every leg on ONE port
  (sessions by source address), drained 1 ms after each wake-up, SRTP as above. The forwarder
  cannot do this today (aioice gives every connection its own sockets).

Prints one JSON line: ``server_cpu_ms_per_call_s`` per variant and the ratio of each to the
issue's aim (2.5). Compare with ``bench.media_relay``'s ``forwarder.server_cpu_ms_per_call_s``
from a run right before or after (same machine state); see docs/media-forwarder.md.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import multiprocessing as mp
import os
import random
import socket
import struct
import time
from typing import Any

from bench.cpus import pin_cpu, two_cpus

PACKETS_PER_S = 50  # Opus at 20 ms
PAYLOAD = 100  # + 12 header + 10 auth tag: an Opus voice packet's size
VARIANTS = ("udp_echo", "srtp_echo", "srtp_echo_direct", "shared_port_batched")
BATCH_S = 0.001  # shared_port_batched: wait this long after a wake-up, then drain
AIM_MS_PER_CALL_S = 2.5


def _key(port: int) -> bytes:
    return hashlib.sha256(str(port).encode()).digest()[:30]


def _session(key: bytes, outbound: bool) -> Any:
    from pylibsrtp import Policy, Session

    kind = Policy.SSRC_ANY_OUTBOUND if outbound else Policy.SSRC_ANY_INBOUND
    return Session(policy=Policy(key=key, ssrc_type=kind))


def _server(conn: Any, variant: str, legs: int, cpu: int | None) -> None:
    pin_cpu(cpu)
    from media import aiortc_hooks

    socks = []
    for _ in range(1 if variant == "shared_port_batched" else legs):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        socks.append(sock)
    conn.send([s.getsockname()[1] for s in socks] * (legs if variant == "shared_port_batched" else 1))
    echoed = [0]

    def reader(sock: socket.socket) -> Any:
        recvfrom, sendto = sock.recvfrom, sock.sendto
        rx = _session(_key(sock.getsockname()[1]), outbound=False)
        tx = _session(os.urandom(30), outbound=True)
        if variant == "srtp_echo_direct":
            unprotect, protect = aiortc_hooks.srtp_transform(rx, "unprotect"), aiortc_hooks.srtp_transform(tx, "protect")
        else:
            unprotect, protect = rx.unprotect, tx.protect
        srtp = variant != "udp_echo"

        def drain() -> None:
            while True:
                try:
                    data, addr = recvfrom(2048)
                except BlockingIOError:
                    return
                if srtp:
                    plain = unprotect(data)
                    if plain is None:
                        continue
                    data = protect(plain)
                sendto(data, addr)
                echoed[0] += 1

        return drain

    def shared(sock: socket.socket) -> Any:
        """Every leg on one port (SFU style): sessions by source address, one wake-up drains
        whatever arrived in the last BATCH_S for all legs."""
        recvfrom, sendto = sock.recvfrom, sock.sendto
        loop = asyncio.get_running_loop()
        key = _key(sock.getsockname()[1])
        legs: dict[Any, tuple[Any, Any]] = {}

        def drain() -> None:
            while True:
                try:
                    data, addr = recvfrom(2048)
                except BlockingIOError:
                    break
                leg = legs.get(addr)
                if leg is None:
                    leg = legs[addr] = (
                        aiortc_hooks.srtp_transform(_session(key, outbound=False), "unprotect"),
                        aiortc_hooks.srtp_transform(_session(os.urandom(30), outbound=True), "protect"),
                    )
                plain = leg[0](data)
                if plain is not None:
                    sendto(leg[1](plain), addr)
                    echoed[0] += 1
            loop.add_reader(sock.fileno(), woken)

        def woken() -> None:
            loop.remove_reader(sock.fileno())
            loop.call_later(BATCH_S, drain)

        return woken

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sock in socks:
            loop.add_reader(sock.fileno(), shared(sock) if variant == "shared_port_batched" else reader(sock))
        await loop.run_in_executor(None, conn.recv)  # "start"
        start, before = time.process_time(), echoed[0]
        await loop.run_in_executor(None, conn.recv)  # "stop"
        conn.send((time.process_time() - start, echoed[0] - before))

    asyncio.run(main())


def _client(ports: list[int], seconds: float, cpu: int | None, ready: Any) -> None:
    pin_cpu(cpu)

    async def leg(port: int) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        loop.add_reader(sock.fileno(), lambda: sock.recv(2048))
        tx = _session(_key(port), outbound=True)
        ssrc = random.getrandbits(32)
        await asyncio.sleep(random.random() / PACKETS_PER_S)
        t0, n = time.monotonic(), 0
        while time.monotonic() - t0 < seconds:
            n += 1
            packet = struct.pack("!BBHII", 0x80, 111, n & 0xFFFF, n * 960, ssrc) + b"\x55" * PAYLOAD
            sock.sendto(tx.protect(packet), ("127.0.0.1", port))
            await asyncio.sleep(max(0.0, t0 + n / PACKETS_PER_S - time.monotonic()))
        loop.remove_reader(sock.fileno())
        sock.close()

    async def main() -> None:
        ready.wait()
        await asyncio.gather(*(leg(port) for port in ports))

    asyncio.run(main())


def run(variant: str, calls: int, seconds: float, cpus: tuple[int | None, int | None]) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=_server, args=(child, variant, 2 * calls, cpus[0]), daemon=True)
    server.start()
    ports = parent.recv()
    ready = ctx.Event()
    warmup = 1.0
    client = ctx.Process(target=_client, args=(ports, seconds + warmup + 0.5, cpus[1], ready), daemon=True)
    client.start()
    ready.set()
    time.sleep(warmup)
    parent.send("start")
    time.sleep(seconds)
    parent.send("stop")
    cpu, echoed = parent.recv()
    client.join(timeout=seconds + 10)
    server.terminate()
    return {
        "server_cpu_ms_per_call_s": round(1000 * cpu / (calls * seconds), 3),
        "echoed_per_s": round(echoed / seconds),  # should be 2 x calls x 50
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    cpus = two_cpus()
    out: dict[str, Any] = {"calls": args.calls, "seconds": args.seconds, "packets_per_s_in": 2 * args.calls * PACKETS_PER_S}
    for variant in VARIANTS:
        out[variant] = run(variant, args.calls, args.seconds, cpus)
        out[variant]["x_aim"] = round(out[variant]["server_cpu_ms_per_call_s"] / AIM_MS_PER_CALL_S, 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
