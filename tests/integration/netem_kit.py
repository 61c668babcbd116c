"""A shaped network path between a network namespace (the customer's) and the host, for the
bad-network tests (issue 11).

Why a user-space netem: the test machine's kernel (Firecracker) has no ``sch_netem`` and no
``modprobe``, so ``tc qdisc add ... netem`` fails with "Specified qdisc kind is unknown". Applying
loss inside the customer's process would make the customer a modified peer on a clean path. Here
the impairment sits on the path instead, where netem would:

    customer's namespace                     test machine (root namespace)
    aiortc peer -> tun sgcN 10.231.x.2 ==fd==> pump ==fd==> tun sghN 10.231.x.1 -> node's UDP ports
                <-                        <==    (loss, delay, jitter, outage)  <==

Two TUN devices (``IFF_TUN | IFF_NO_PI``) are opened by a pump process in the root namespace;
one is then moved into the customer's namespace (its file descriptor stays valid), the two are
addressed as a point-to-point pair and the namespace's default route goes through it. The pump
copies IP packets between the two descriptors, each direction with its own seeded random loss
(independent, like ``netem loss P%``), delay ± jitter drawn uniformly (netem's default with no
distribution table) and an outage switch (drop everything for N s). Packets are released in
order of their delivery time, so jitter reorders them, as netem does by default
(``reorder=False`` keeps arrival order instead, like netem with a FIFO child).

When the kernel has ``sch_netem`` the same interface runs ``tc netem`` on both ends of a veth pair
instead (:class:`VethNetem`); :func:`customer_link` picks.

Run as a script it is the pump (``pump HOST_IF NS_IF SEED``: commands as JSON lines on stdin) or
the probe the link test runs inside the namespace (``probe HOST_IP PORT COUNT INTERVAL``).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import heapq
import json
import os
import random
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
HERE = Path(__file__).resolve()


def sh(*args: str) -> str:
    """Run a command; its stderr in the error when it fails (the tests need root)."""
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def open_tun(name: str) -> int:
    """Create TUN device ``name`` (layer 3, no packet-info header); it lives while the fd is open."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    except OSError:
        os.close(fd)
        raise
    return fd


def netem_in_kernel(ns: str) -> bool:
    """Whether this kernel has ``sch_netem`` (probed on the namespace's own loopback)."""
    probe = subprocess.run(["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "lo", "root", "netem",
                            "delay", "1ms"], capture_output=True, text=True)
    subprocess.run(["ip", "netns", "exec", ns, "tc", "qdisc", "del", "dev", "lo", "root"], capture_output=True)
    return probe.returncode == 0


# --- the pump (runs in its own process: the test process's event loop also runs the node) -------


@dataclass
class Impairment:
    """What one direction does to packets: ``netem loss {loss*100}% delay {delay_ms}ms {jitter_ms}ms``."""

    loss: float = 0.0
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    reorder: bool = True


@dataclass
class DirectionCounters:
    """What one direction of the pump saw; ``delivered`` counts packets written to the far TUN."""

    packets: int = 0
    octets: int = 0
    lost: int = 0  # dropped by the random loss
    outage: int = 0  # dropped while the outage switch was on
    delivered: int = 0
    reordered: int = 0  # delivered after a packet that arrived later
    write_errors: int = 0
    by_protocol: dict[str, int] = field(default_factory=dict)  # packets seen: udp, tcp, icmp, ipv6, ...
    lost_udp: int = 0
    delays_ms: list[float] = field(default_factory=list, repr=False)  # arrival -> written
    late_ms: list[float] = field(default_factory=list, repr=False)  # written this long after its drawn time


def protocol_name(packet: bytes) -> str:
    if not packet or packet[0] >> 4 != 4:
        return f"ipv{packet[0] >> 4}" if packet else "empty"
    return {1: "icmp", 6: "tcp", 17: "udp"}.get(packet[9], str(packet[9])) if len(packet) > 9 else "short"


class Direction:
    """One way through the pump: read a TUN, impair, write the other TUN at the due time."""

    def __init__(self, src: int, dst: int, seed: int) -> None:
        self.src, self.dst = src, dst
        self.rnd = random.Random(seed)
        self.impairment = Impairment()
        self.counters = DirectionCounters()
        self.outage_until = 0.0
        self._queue: list[tuple[float, int, bytes, float]] = []  # (due, arrival order, packet, arrival)
        self._arrivals = 0
        self._last_delivered = -1
        self._last_due = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(src, self._readable)

    def _readable(self) -> None:
        now = time.monotonic()
        while True:
            try:
                packet = os.read(self.src, 65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.loop.remove_reader(self.src)
                return
            self._arrive(packet, now)

    def _arrive(self, packet: bytes, now: float) -> None:
        c, imp = self.counters, self.impairment
        c.packets += 1
        c.octets += len(packet)
        protocol = protocol_name(packet)
        c.by_protocol[protocol] = c.by_protocol.get(protocol, 0) + 1
        if now < self.outage_until:
            c.outage += 1
            return
        if imp.loss and self.rnd.random() < imp.loss:
            c.lost += 1
            c.lost_udp += protocol == "udp"
            return
        delay = imp.delay_ms
        if imp.jitter_ms:
            delay += self.rnd.uniform(-imp.jitter_ms, imp.jitter_ms)
        due = now + max(delay, 0.0) / 1000
        if not imp.reorder:
            due = max(due, self._last_due)
        self._last_due = due
        self._arrivals += 1
        if due <= now and not self._queue:
            self._write(packet, self._arrivals, now, now, now)
            return
        heapq.heappush(self._queue, (due, self._arrivals, packet, now))
        self._arm()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_at(self._queue[0][0], self._release) if self._queue else None

    def _release(self) -> None:
        self._timer = None
        now = time.monotonic()
        while self._queue and self._queue[0][0] <= now + 0.0005:
            due, order, packet, arrived = heapq.heappop(self._queue)
            self._write(packet, order, arrived, due, now)
        self._arm()

    def _write(self, packet: bytes, order: int, arrived: float, due: float, now: float) -> None:
        c = self.counters
        try:
            os.write(self.dst, packet)
        except OSError:
            c.write_errors += 1
            return
        c.delivered += 1
        if order < self._last_delivered:
            c.reordered += 1
        self._last_delivered = max(self._last_delivered, order)
        if len(c.delays_ms) < 100_000:
            c.delays_ms.append((now - arrived) * 1000)
            c.late_ms.append(max(now - due, 0.0) * 1000)

    def report(self) -> dict[str, Any]:
        out = asdict(self.counters)
        delays, late = sorted(out.pop("delays_ms")), sorted(out.pop("late_ms"))
        if delays:
            out["delay_ms"] = {"min": round(delays[0], 1), "p50": round(delays[len(delays) // 2], 1),
                               "max": round(delays[-1], 1)}
            # the pump's own lateness (a busy machine): kernel netem would not add it
            out["late_ms"] = {"p50": round(late[len(late) // 2], 1), "p99": round(late[int(len(late) * 0.99)], 1),
                              "max": round(late[-1], 1)}
        out["queued"] = len(self._queue)
        return out


async def json_lines() -> tuple[asyncio.StreamReader, Callable[[Any], None]]:
    """This process's stdin as an asyncio reader, and ``say(obj)``: one JSON line on stdout (the
    command protocol of the pump and of netem_customer.py)."""
    reader = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def say(obj: Any) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    return reader, say


async def pump(host_if: str, ns_if: str, seed: int) -> None:
    """Commands (JSON lines on stdin), each answered with one JSON line:
    ``{"set": {"loss", "delay_ms", "jitter_ms", "reorder"}}`` (both directions),
    ``{"outage": seconds}`` (drop everything both ways from now on, for that long),
    ``{"counters": true}``, ``{"reset": true}`` (counters to zero), ``{"quit": true}``."""
    try:
        # kernel netem runs in softirq context; on a busy machine a normal-priority pump would add
        # its own scheduling delay to the one it was asked for. Real-time priority 1 (the pump uses
        # a few % of a core; the kernel's RT throttling leaves the rest to others in any case)
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    except OSError:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, -10)
    host_fd, ns_fd = open_tun(host_if), open_tun(ns_if)
    up = Direction(ns_fd, host_fd, seed)  # customer -> host
    down = Direction(host_fd, ns_fd, seed + 1)  # host -> customer
    reader, say = await json_lines()
    say({"ready": True})
    while line := await reader.readline():
        cmd = json.loads(line)
        if "set" in cmd:
            for d in (up, down):
                d.impairment = Impairment(**cmd["set"])
            say({"set": cmd["set"]})
        elif "outage" in cmd:
            until = time.monotonic() + float(cmd["outage"])
            up.outage_until = down.outage_until = until
            say({"outage": cmd["outage"]})
        elif cmd.get("counters"):
            say({"up": up.report(), "down": down.report()})
        elif cmd.get("reset"):
            up.counters, down.counters = DirectionCounters(), DirectionCounters()
            say({"reset": True})
        elif cmd.get("quit"):
            break
    os.close(host_fd)
    os.close(ns_fd)


# --- the probe: numbered datagrams both ways, to measure what the link does ------------------------


PROBE = struct.Struct("!Id")  # sequence number, time.monotonic() at sending (one clock for all namespaces)


class ProbeReceiver(asyncio.DatagramProtocol):
    """Counts numbered datagrams: received, one-way delays, reordering."""

    def __init__(self) -> None:
        self.seqs: list[int] = []
        self.delays_ms: list[float] = []
        self.peer: Any = None
        self.last = 0.0

    def datagram_received(self, data: bytes, addr: Any) -> None:
        seq, sent = PROBE.unpack_from(data)
        self.last = time.monotonic()
        self.peer = addr
        self.seqs.append(seq)
        self.delays_ms.append((self.last - sent) * 1000)

    def figures(self, count: int) -> dict[str, Any]:
        delays = sorted(self.delays_ms)
        reordered = sum(1 for a, b in zip(self.seqs, self.seqs[1:]) if b < a)
        out: dict[str, Any] = {"sent": count, "received": len(set(self.seqs)),
                               "loss_pct": round(100 * (1 - len(set(self.seqs)) / count), 2), "reordered": reordered}
        if delays:
            out["delay_ms"] = {"min": round(delays[0], 1), "p50": round(delays[len(delays) // 2], 1),
                               "max": round(delays[-1], 1)}
        return out


async def send_numbered(transport: asyncio.DatagramTransport, addr: Any, count: int, interval: float) -> None:
    start = time.monotonic()
    for seq in range(count):
        transport.sendto(PROBE.pack(seq, time.monotonic()) + bytes(100), addr)
        await asyncio.sleep(max(0.0, start + (seq + 1) * interval - time.monotonic()))


async def probe(host_ip: str, port: int, count: int, interval: float) -> None:
    """Inside the namespace: send ``count`` datagrams to ``host_ip:port`` (from the port the other
    side then sends its own to), receive theirs, print what arrived here."""
    loop = asyncio.get_running_loop()
    transport, receiver = await loop.create_datagram_endpoint(ProbeReceiver, local_addr=("0.0.0.0", 0))
    await send_numbered(transport, (host_ip, port), count, interval)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (not receiver.last or time.monotonic() - receiver.last < 1.0):
        await asyncio.sleep(0.1)
    print(json.dumps(receiver.figures(count)), flush=True)
    transport.close()


# --- what the tests use ----------------------------------------------------------------------------


class CustomerLink:
    """The customer's namespace and its shaped path to the host; see the module docstring.

    ``shape()`` applies to both directions, ``outage(s)`` drops everything for ``s`` seconds,
    ``counters()`` says what crossed (``None`` for tc netem: the kernel keeps those)."""

    shaper = ""

    def __init__(self) -> None:
        pid = os.getpid()
        n = pid % 200 + 20
        self.ns = f"segue-netem-{pid}"
        self.host_if, self.ns_if = f"sgh{pid % 100000}", f"sgc{pid % 100000}"
        self.host_ip, self.ns_ip = f"10.231.{n}.1", f"10.231.{n}.2"

    def _make_namespace(self) -> None:
        self._remove()
        sh("ip", "netns", "add", self.ns)
        sh("ip", "netns", "exec", self.ns, "ip", "link", "set", "lo", "up")
        # only IPv4 crosses the link: no router solicitations or DAD packets among the counted ones
        sh("ip", "netns", "exec", self.ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
        sh("ip", "netns", "exec", self.ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")

    def _address(self) -> None:
        """Point-to-point addresses on both ends, the namespace's default route through its end,
        reverse-path filtering off on both ends (replies come back on the interface they left by,
        but a loose setting elsewhere must not drop them either)."""
        sh("sysctl", "-qw", f"net.ipv6.conf.{self.host_if}.disable_ipv6=1")
        sh("sysctl", "-qw", f"net.ipv4.conf.{self.host_if}.rp_filter=0")
        sh("ip", "addr", "add", self.host_ip, "peer", f"{self.ns_ip}/32", "dev", self.host_if)
        sh("ip", "link", "set", self.host_if, "up")
        inside = ("ip", "netns", "exec", self.ns)
        sh(*inside, "sysctl", "-qw", f"net.ipv4.conf.{self.ns_if}.rp_filter=0")
        sh(*inside, "ip", "addr", "add", self.ns_ip, "peer", f"{self.host_ip}/32", "dev", self.ns_if)
        sh(*inside, "ip", "link", "set", self.ns_if, "up")
        sh(*inside, "ip", "route", "add", "default", "via", self.host_ip, "dev", self.ns_if)

    async def up(self) -> None:
        raise NotImplementedError

    async def shape(self, loss: float = 0.0, delay_ms: int = 0, jitter_ms: int = 0) -> None:
        raise NotImplementedError

    async def outage(self, seconds: float) -> None:
        raise NotImplementedError

    async def counters(self) -> dict[str, Any] | None:
        return None

    async def reset_counters(self) -> None:
        return None

    def _remove(self) -> None:
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)

    async def down(self) -> None:
        self._remove()


class TunNetem(CustomerLink):
    """Two TUN devices and a pump process between them (this machine: no ``sch_netem``)."""

    shaper = "user-space netem: TUN pair and a pump process (kernel has no sch_netem)"

    def __init__(self, seed: int = 7) -> None:
        super().__init__()
        self.seed = seed
        self.proc: asyncio.subprocess.Process | None = None

    async def _ask(self, cmd: dict[str, Any]) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        await self.proc.stdin.drain()
        line = await asyncio.wait_for(self.proc.stdout.readline(), 10)
        if not line:
            raise RuntimeError("the netem pump ended; run it by hand to see why: "
                               f"{sys.executable} {HERE} pump {self.host_if} {self.ns_if} {self.seed}")
        return json.loads(line)

    async def up(self) -> None:
        self._make_namespace()
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, str(HERE), "pump", self.host_if, self.ns_if, str(self.seed),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        line = await asyncio.wait_for(self.proc.stdout.readline(), 10)  # type: ignore[union-attr]
        if not line:
            raise RuntimeError("the netem pump could not open its TUN devices (needs root and /dev/net/tun)")
        sh("ip", "link", "set", self.ns_if, "netns", self.ns)  # the pump's fd stays valid
        self._address()

    async def shape(self, loss: float = 0.0, delay_ms: int = 0, jitter_ms: int = 0) -> None:
        await self._ask({"set": {"loss": loss, "delay_ms": delay_ms, "jitter_ms": jitter_ms}})

    async def outage(self, seconds: float) -> None:
        await self._ask({"outage": seconds})

    async def counters(self) -> dict[str, Any] | None:
        return await self._ask({"counters": True})

    async def reset_counters(self) -> None:
        await self._ask({"reset": True})

    async def down(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(Exception):
                await self._ask({"quit": True})
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()
        self._remove()


class VethNetem(CustomerLink):
    """A veth pair with ``tc netem`` on both ends (kernels with ``sch_netem``)."""

    shaper = "tc netem on both ends of a veth pair"
    _shape: list[str] = []

    async def up(self) -> None:
        self._make_namespace()
        sh("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        sh("ip", "link", "set", self.ns_if, "netns", self.ns)
        self._address()

    def _tc(self, *spec: str) -> None:
        for prefix, dev in (((), self.host_if), (("ip", "netns", "exec", self.ns), self.ns_if)):
            subprocess.run([*prefix, "tc", "qdisc", "del", "dev", dev, "root"], capture_output=True)
            if spec:
                sh(*prefix, "tc", "qdisc", "add", "dev", dev, "root", "netem", *spec)

    async def shape(self, loss: float = 0.0, delay_ms: int = 0, jitter_ms: int = 0) -> None:
        spec: list[str] = []
        if delay_ms or jitter_ms:
            spec += ["delay", f"{delay_ms}ms", f"{jitter_ms}ms"]
        if loss:
            spec += ["loss", f"{100 * loss:g}%"]
        self._shape = spec
        self._tc(*spec)

    async def outage(self, seconds: float) -> None:
        self._tc("loss", "100%")
        spec = list(self._shape)
        asyncio.get_running_loop().call_later(seconds, lambda: self._tc(*spec))


async def customer_link(seed: int = 7) -> CustomerLink:
    """The customer's namespace and path, up: ``tc netem`` when the kernel has it, else the TUN pump."""
    if os.geteuid() != 0:
        raise RuntimeError("the bad-network tests need root (ip netns, TUN devices or tc netem)")
    scratch = CustomerLink()
    scratch._make_namespace()
    in_kernel = netem_in_kernel(scratch.ns) and os.environ.get("SEGUE_NETEM") != "tun"
    scratch._remove()
    link: CustomerLink = VethNetem() if in_kernel else TunNetem(seed)
    try:
        await link.up()
    except BaseException:
        await link.down()
        raise
    return link


async def probe_link(link: CustomerLink, count: int = 2000, interval: float = 0.002) -> dict[str, Any]:
    """Numbered datagrams both ways at once across ``link``: what each side received."""
    loop = asyncio.get_running_loop()
    transport, receiver = await loop.create_datagram_endpoint(ProbeReceiver, local_addr=(link.host_ip, 0))
    port = transport.get_extra_info("sockname")[1]
    child = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", link.ns, sys.executable, str(HERE), "probe", link.host_ip, str(port), str(count),
        str(interval), stdout=asyncio.subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while receiver.peer is None and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert receiver.peer is not None, "no probe datagram crossed the link from the namespace"
        await send_numbered(transport, receiver.peer, count, interval)
        out, _ = await asyncio.wait_for(child.communicate(), 30)
    finally:
        transport.close()
        with contextlib.suppress(ProcessLookupError):
            child.kill()
    return {"up": receiver.figures(count), "down": json.loads(out)}


if __name__ == "__main__":
    if sys.argv[1] == "pump":
        asyncio.run(pump(sys.argv[2], sys.argv[3], int(sys.argv[4])))
    elif sys.argv[1] == "probe":
        asyncio.run(probe(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])))
    else:
        raise SystemExit(f"usage: {sys.argv[0]} pump HOST_IF NS_IF SEED | probe HOST_IP PORT COUNT INTERVAL")
