"""Every place where Segue reaches below aiortc's (and aioice's) public API, in one module.

Why this exists: aiortc has no public API for "give me the RTP packets of this transport" or
"let me send already-encoded RTP under this sender's SSRC". The forwarder needs both, so this
module touches a small, listed set of internals. Nothing else in Segue may import private aiortc
or aioice names; ``tests/media/test_media_aiortc_hooks.py`` checks every item of
:data:`RELIED_UPON` so an aiortc upgrade fails loudly there instead of silently dropping media.

Pin: ``aiortc>=1.16,<1.17`` and ``aioice>=0.13,<0.14`` (aiortc 1.16 itself accepts any aioice
below 1.0). Checked against aiortc 1.16.0, aioice 0.13.0, pylibsrtp 1.0.0, CPython 3.11 asyncio.

What is relied upon (:data:`RELIED_UPON` and :data:`RELIED_UPON_INSTANCE` are the exact checks):

- Receive: ``RTCDtlsTransport.transport`` (public) -> ``RTCIceTransport._connection`` (the
  ``aioice.Connection``). aioice's ``StunProtocol.datagram_received`` hands every non-STUN
  datagram to ``Connection.data_received(data, component)``; an instance attribute of that name
  replaces it. There we decrypt SRTP with ``RTCDtlsTransport._rx_srtp`` (a ``pylibsrtp.Session``)
  and hand RTP to the forwarder; DTLS and SRTCP go on to aiortc unchanged. Because RTP never
  reaches aiortc's queue, its receivers' jitter buffers and decoders stay empty (no unbounded
  queue even when nobody reads the remote track).
- Once connected, :class:`DatagramPump` reads the selected pair's socket itself
  (``aioice.Connection._nominated[1].protocol.transport._sock``, taken out of asyncio's selector
  with ``loop._remove_reader`` and given back with ``loop._add_reader(fd, transport._read_ready)``)
  and passes non-SRTP datagrams to ``StunProtocol.datagram_received`` as asyncio would.
- Send: ``RTCDtlsTransport._tx_srtp`` encrypts, and the selected pair's socket
  (``.remote_addr``) carries the datagram: the path aiortc's ``_send_rtp`` takes, minus its
  coroutine hops.
- Feedback: ``RTCRtpSender._ssrc``; aiortc's RTP router calls ``sender._handle_rtcp_packet(pkt)``
  for RTCP addressed to that SSRC (NACK, PLI, FIR, REMB, RR) and its RTCP loop calls
  ``sender._send_rtcp(packets)``; both are replaced per instance. The per-sender and
  per-receiver RTCP loops (``__rtcp_task``, ``__rtcp_started``) are cancelled once running.
  ``RTCRtpReceiver._handle_rtcp_packet`` is wrapped to observe sender reports. The aiortc RTCP
  packet classes are read only here (``aiortc.rtp``) and turned into :class:`media.rtp.Feedback`.
- ICE: ``aioice.ice.get_host_addresses`` is replaced to gather 127.0.0.1 only (loopback mode for
  tests and benchmarks).
- ICE port range (:func:`restrict_host_ports`, per peer): ``RTCIceGatherer._connection``'s
  ``get_component_candidates`` is replaced on that connection only, binding host sockets in the
  range and rebuilding what aioice would (``StunProtocol``, ``Candidate``,
  ``candidate_foundation/priority``, ``server_reflexive_candidate``, ``_protocols``,
  ``stun_server``); the stock method still gathers the TURN relay.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import select
import struct
import time
from collections.abc import Callable
from typing import Any

import aioice
import aioice.stun
import aioice.ice
import aiortc
import pylibsrtp
import pylibsrtp._binding
from aiortc import RTCDtlsTransport, RTCRtpReceiver, RTCRtpSender
from aiortc import rtp as aiortc_rtp

from .rtp import Feedback, FeedbackKind

logger = logging.getLogger(__name__)

AIORTC_RANGE = (">=1.16", "<1.17")

#: (object, attribute, expected parameters or None) — what the guard tests check. A class whose
#: instance attribute is only set in __init__ is checked on a live peer by the tests.
RELIED_UPON: list[tuple[Any, str, tuple[str, ...] | None]] = [
    (aioice.ice.Connection, "data_received", ("self", "data", "component")),
    (aioice.ice.StunProtocol, "datagram_received", ("self", "data", "addr")),
    (aioice.ice, "get_host_addresses", ("use_ipv4", "use_ipv6")),
    (aioice.ice.CandidatePair, "remote_addr", None),
    (RTCRtpSender, "_handle_rtcp_packet", ("self", "packet")),
    (RTCRtpSender, "_send_rtcp", ("self", "packets")),
    (RTCRtpSender, "_run_rtcp", ("self",)),
    (RTCRtpReceiver, "_handle_rtcp_packet", ("self", "packet")),
    (RTCRtpReceiver, "_handle_rtp_packet", ("self", "packet", "arrival_time_ms")),
    (RTCDtlsTransport, "_send_rtp", ("self", "data")),
    (pylibsrtp.Session, "protect", ("self", "packet")),
    (pylibsrtp.Session, "unprotect", ("self", "packet")),
    (pylibsrtp.Session, "protect_rtcp", ("self", "packet")),
    (pylibsrtp._binding, "ffi", None),
    (pylibsrtp._binding.lib, "srtp_protect", None),
    (pylibsrtp._binding.lib, "srtp_unprotect", None),
    (aiortc_rtp, "RtcpRtpfbPacket", None),
    (aiortc_rtp, "RtcpPsfbPacket", None),
    (aiortc_rtp, "RtcpRrPacket", None),
    (aiortc_rtp, "RtcpSrPacket", None),
    (aiortc_rtp, "RtcpByePacket", None),
    (aiortc_rtp, "unpack_remb_fci", ("data",)),
    # port range (restrict_host_ports): the method replaced per connection, what it rebuilds
    (aioice.ice.Connection, "get_component_candidates", ("self", "component", "addresses", "timeout")),
    (aioice.ice.StunProtocol, "__init__", ("self", "receiver")),
    (aioice.ice, "server_reflexive_candidate", ("protocol", "stun_server")),
    (aioice.ice, "candidate_foundation", ("candidate_type", "candidate_transport", "base_address")),
    (aioice.ice, "candidate_priority", ("candidate_component", "candidate_type", "local_pref")),
    (aioice.turn, "UDP_SOCKET_BUFFER_SIZE", None),
    (aioice, "Candidate", None),
]

#: Instance attributes (set in __init__ or at connection time) checked on a connected peer.
RELIED_UPON_INSTANCE = {
    "RTCIceTransport": ("_connection",),
    "RTCDtlsTransport": ("_rx_srtp", "_tx_srtp", "transport", "state"),
    "pylibsrtp.Session": ("_srtp",),
    "aioice.Connection": ("_nominated", "data_received", "_protocols"),
    "asyncio datagram transport": ("_sock", "_read_ready", "max_size", "is_closing"),
    "asyncio loop": ("_add_reader", "_remove_reader"),
    "RTCRtpSender": ("_ssrc", "_RTCRtpSender__rtcp_task", "_RTCRtpSender__rtcp_started"),
    "RTCRtpReceiver": ("_RTCRtpReceiver__rtcp_task", "_RTCRtpReceiver__rtcp_started"),
    "RTCIceGatherer": ("_connection",),  # restrict_host_ports (checked by its tests)
    "aioice.Connection (gathering)": ("stun_server", "_protocols", "get_component_candidates"),
}


class AiortcIncompatible(RuntimeError):
    """The installed aiortc/aioice no longer has what the forwarder relies on."""


def check_compatibility() -> None:
    """Raise :class:`AiortcIncompatible` listing every missing or changed internal."""
    problems = []
    for owner, name, params in RELIED_UPON:
        target = getattr(owner, name, None)
        label = f"{getattr(owner, '__name__', owner)}.{name}"
        if target is None:
            problems.append(f"{label} is missing")
            continue
        if params is not None:
            try:
                got = tuple(inspect.signature(target).parameters)
            except (TypeError, ValueError):
                problems.append(f"{label} has no inspectable signature")
                continue
            if got != params:
                problems.append(f"{label}{got} != expected {params}")
    if problems:
        raise AiortcIncompatible(
            f"aiortc {aiortc.__version__} / aioice {aioice.__version__} changed internals the "
            f"forwarder relies on (pin aiortc{','.join(AIORTC_RANGE)}): " + "; ".join(problems)
        )


def check_connected_instances(
    dtls: RTCDtlsTransport, sender: RTCRtpSender | None = None, receiver: RTCRtpReceiver | None = None
) -> None:
    """Check the instance attributes the hooks use on a connected transport (and its sender and
    receiver, once aiortc started them); raise :class:`AiortcIncompatible` listing what is missing."""
    problems = []

    def need(label: str, obj: Any) -> None:
        for name in RELIED_UPON_INSTANCE[label]:
            if not hasattr(obj, name):
                problems.append(f"{label}.{name}")

    ice = dtls.transport
    need("RTCIceTransport", ice)
    need("RTCDtlsTransport", dtls)
    conn = getattr(ice, "_connection", None)
    need("aioice.Connection", conn)
    need("asyncio loop", asyncio.get_running_loop())
    if dtls.state == "connected":
        if not isinstance(getattr(dtls, "_rx_srtp", None), pylibsrtp.Session):
            problems.append("RTCDtlsTransport._rx_srtp is not a pylibsrtp.Session")
        if not isinstance(getattr(dtls, "_tx_srtp", None), pylibsrtp.Session):
            problems.append("RTCDtlsTransport._tx_srtp is not a pylibsrtp.Session")
        need("pylibsrtp.Session", dtls._tx_srtp)
        pair = getattr(conn, "_nominated", {}).get(1)
        if pair is None or not hasattr(pair, "remote_addr") or not hasattr(pair.protocol, "transport"):
            problems.append("aioice.Connection._nominated[1] (.protocol.transport, .remote_addr)")
        else:
            need("asyncio datagram transport", pair.protocol.transport)
    if sender is not None:
        need("RTCRtpSender", sender)
        if not isinstance(getattr(sender, "_ssrc", None), int):
            problems.append("RTCRtpSender._ssrc is not an int")
    if receiver is not None:
        need("RTCRtpReceiver", receiver)
    if problems:
        raise AiortcIncompatible("missing on live objects: " + ", ".join(problems))


# --- receive -------------------------------------------------------------------------------------


def intercept_rtp(dtls: RTCDtlsTransport, on_rtp: Callable[[bytes], None]) -> Callable[[], None]:
    """Route this transport's decrypted inbound RTP to ``on_rtp`` instead of aiortc's receivers.

    Runs synchronously in aioice's ``datagram_received``: no queue, no task wake-up. SRTCP and
    DTLS datagrams continue to aiortc. Returns a function that restores the stock path.
    """
    conn = dtls.transport._connection
    original = conn.data_received  # bound method (or an earlier hook: we chain)
    data_received = _rtp_splitter(dtls, on_rtp, original)
    conn.data_received = data_received
    shrink_receive_buffers(conn)

    def undo() -> None:
        if conn.__dict__.get("data_received") is data_received:
            conn.data_received = original

    return undo


#: asyncio reads each datagram into a fresh 256 KiB buffer (``max_size``); at that size the
#: allocation goes through mmap/munmap, which more than doubles the cost of a received packet.
#: WebRTC datagrams stay below the path MTU, so 16 KiB is plenty.
MAX_DATAGRAM = 16384


def shrink_receive_buffers(conn: Any) -> None:
    """Set ``max_size`` on the asyncio datagram transports of an aioice connection."""
    for protocol in getattr(conn, "_protocols", ()):
        transport = getattr(protocol, "transport", None)
        if transport is not None and getattr(transport, "max_size", 0) > MAX_DATAGRAM:
            transport.max_size = MAX_DATAGRAM


PUMP_AVAILABLE = hasattr(select, "epoll")


class DatagramPump:
    """Reads the UDP sockets of connected legs itself: one epoll for all legs, drained per wake-up.

    Why: per received packet, asyncio's datagram transport allocates a 256 KiB buffer and aioice
    first tries to parse the datagram as STUN; with one wake-up per packet that path costs several
    times the forwarding work. Here a connected leg's socket (the selected ICE pair's) is taken
    out of asyncio's selector (``loop._remove_reader``) and put in one epoll set watched through
    the public ``loop.add_reader``. SRTP goes straight to the forwarder; every other datagram
    (STUN consent, DTLS, SRTCP) is handed to aioice's ``datagram_received`` as before.

    ``batch_interval`` > 0 trades latency for CPU: after a wake-up the pump waits that long
    before looking again, so a busy server handles several packets per wake-up (0 = no wait).
    """

    DRAIN_MAX = 64  # passes over the ready sockets per wake-up (one datagram each per pass)

    def __init__(self, batch_interval: float = 0.0) -> None:
        self.batch_interval = batch_interval
        self._epoll = select.epoll()
        self._entries: dict[int, tuple[Callable[..., Any], Callable[[bytes, Any], None], Any]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._armed = False
        self._timer: asyncio.TimerHandle | None = None
        self.wakeups = 0
        self.datagrams = 0

    def adopt(self, dtls: RTCDtlsTransport, on_rtp: Callable[[bytes], None]) -> Callable[[], None] | None:
        """Take over the socket of this transport's selected pair; returns a release function,
        or None when the transport has no selected pair yet (call again once connected)."""
        conn = dtls.transport._connection
        pair = conn._nominated.get(1)
        if pair is None:
            return None
        protocol = pair.protocol
        transport = getattr(protocol, "transport", None)
        sock = getattr(transport, "_sock", None)
        if sock is None or transport.is_closing():
            return None
        fd = sock.fileno()
        loop = asyncio.get_running_loop()
        self._loop = loop
        current = self._entries.get(fd)
        if current is not None:
            if current[2] is protocol:
                return None  # already ours
            # a stale entry: that socket closed and the number was reused
            self._entries.pop(fd)
            try:
                self._epoll.unregister(fd)
            except (OSError, ValueError):
                pass
        loop._remove_reader(fd)  # type: ignore[attr-defined]
        entry = (sock.recvfrom, _rtp_splitter(dtls, on_rtp, protocol.datagram_received), protocol)
        self._entries[fd] = entry
        self._epoll.register(fd, select.EPOLLIN)
        self._arm()

        def release() -> None:
            if self._entries.get(fd) is not entry:
                return  # released already, or the number now belongs to another socket
            del self._entries[fd]
            try:
                self._epoll.unregister(fd)
            except (OSError, ValueError):
                pass
            if not transport.is_closing():
                loop._add_reader(fd, transport._read_ready)  # type: ignore[attr-defined]

        return release

    def close(self) -> None:
        if self._loop is not None and self._armed:
            self._loop.remove_reader(self._epoll.fileno())
        if self._timer is not None:
            self._timer.cancel()
        self._armed = False
        self._epoll.close()

    def _arm(self) -> None:
        if not self._armed and self._timer is None and self._loop is not None:
            self._loop.add_reader(self._epoll.fileno(), self._on_ready)
            self._armed = True

    def _on_ready(self) -> None:
        self.wakeups += 1
        if self.batch_interval > 0:
            self._loop.remove_reader(self._epoll.fileno())  # type: ignore[union-attr]
            self._armed = False
            self._drain()
            self._timer = self._loop.call_later(self.batch_interval, self._tick)  # type: ignore[union-attr]
        else:
            self._drain()

    def _tick(self) -> None:
        self._timer = None
        if self._drain():
            self._timer = self._loop.call_later(self.batch_interval, self._tick)  # type: ignore[union-attr]
        else:
            self._arm()

    def _drain(self) -> int:
        # One datagram per ready socket per pass, then ask epoll again (level-triggered): a
        # socket with one datagram waiting, the usual case, costs one recvfrom, not a second one
        # failing with EAGAIN (a system call and a Python exception per packet).
        count = 0
        entries = self._entries
        poll = self._epoll.poll
        for _ in range(self.DRAIN_MAX):
            ready = poll(0)
            if not ready:
                break
            for fd, _ in ready:
                entry = entries.get(fd)
                if entry is None:
                    continue
                recvfrom, handle, protocol = entry
                try:
                    data, addr = recvfrom(MAX_DATAGRAM)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as exc:
                    protocol.error_received(exc)
                    continue
                count += 1
                try:
                    handle(data, addr)
                except Exception:
                    logger.exception("datagram handler failed")
        self.datagrams += count
        return count


def _rtp_splitter(
    dtls: RTCDtlsTransport, on_rtp: Callable[[bytes], None], otherwise: Callable[[bytes, Any], None]
) -> Callable[[bytes, Any], None]:
    """A datagram receiver: SRTP is decrypted and goes to ``on_rtp`` (dropped if libsrtp refuses
    it); STUN, DTLS and SRTCP go to ``otherwise(data, x)`` — aioice's ``data_received(data,
    component)`` or ``StunProtocol.datagram_received(data, addr)``, both called as before."""
    session: pylibsrtp.Session | None = None
    unprotect: Callable[[bytes], bytes | None] | None = None

    def receive(data: bytes, x: Any) -> None:
        nonlocal session, unprotect
        # RTP, not RTCP (RFC 5761: RTCP packet types 192-223 in the second byte)
        if len(data) > 11 and 127 < data[0] < 192 and not (191 < data[1] < 224):
            srtp = dtls._rx_srtp
            if srtp is not None:
                if srtp is not session:
                    session, unprotect = srtp, srtp_transform(srtp, "unprotect")
                plain = unprotect(data)  # type: ignore[misc]
                if plain is not None:
                    on_rtp(plain)
                return
        otherwise(data, x)

    return receive


# --- SRTP ----------------------------------------------------------------------------------------

_SRTP_LIMIT = 1500  # longest packet accepted (pylibsrtp's own limit)
_SRTP_TRAILER = 144  # SRTP_MAX_TRAILER_LEN: room protect() may append


def srtp_transform(session: pylibsrtp.Session, direction: str) -> Callable[[bytes], bytes | None]:
    """``protect`` or ``unprotect`` of one session, calling libsrtp straight through pylibsrtp's
    cffi binding: returns the transformed packet, or ``None`` when libsrtp refuses it (replay,
    bad authentication, too long).

    Why: pylibsrtp's ``Session.protect``/``unprotect`` allocate an ``int *`` and slice through a
    Python-level buffer per call and raise on every refused packet; this keeps one buffer per
    transform and returns ``None``: about 40 % less CPU per call than pylibsrtp's methods in
    isolation, about 13 % less for the whole forwarder (``bench.media_relay``, A/B in one
    session). Relies on ``Session._srtp`` (the ``srtp_t *``) and ``pylibsrtp._binding`` (checked
    by :data:`RELIED_UPON` and the guard tests). The returned function keeps ``session`` alive
    (its ``srtp_t`` is freed with it).
    """
    ffi, lib = pylibsrtp._binding.ffi, pylibsrtp._binding.lib
    func = {"protect": lib.srtp_protect, "unprotect": lib.srtp_unprotect}[direction]
    ctx = session._srtp[0]
    cdata = ffi.new("char[]", _SRTP_LIMIT + _SRTP_TRAILER)
    length = ffi.new("int *")
    buffer = ffi.buffer(cdata)
    memmove = ffi.memmove
    limit = _SRTP_LIMIT

    def transform(data: bytes) -> bytes | None:
        n = len(data)
        if n > limit:
            return None
        memmove(cdata, data, n)
        length[0] = n
        if func(ctx, cdata, length):
            return None
        return buffer[0 : length[0]]

    transform.session = session  # type: ignore[attr-defined]  # ctx lives as long as the session
    return transform


# --- send ----------------------------------------------------------------------------------------


class SrtpWriter:
    """Encrypt and send RTP/RTCP on a connected DTLS transport, synchronously.

    Why: aiortc's ``_send_rtp`` is a coroutine chain (three awaits per packet); the forwarder
    runs inside ``datagram_received`` and sends at once. Until the transport is connected every
    send returns ``None`` (dropped).
    """

    __slots__ = ("_dtls", "_tx", "_protect", "_sendto", "_addr", "closed")

    def __init__(self, dtls: RTCDtlsTransport) -> None:
        self._dtls = dtls
        self._tx: pylibsrtp.Session | None = None
        self._protect: Callable[[bytes], bytes | None] | None = None
        self._sendto: Callable[[bytes, Any], None] | None = None
        self._addr: Any = None
        self.closed = False

    def _open(self) -> bool:
        if self.closed or self._dtls.state != "connected":
            return False
        tx = self._dtls._tx_srtp
        pair = self._dtls.transport._connection._nominated.get(1)
        if tx is None or pair is None:
            return False
        transport = pair.protocol.transport
        self._addr = pair.remote_addr
        sock = getattr(transport, "_sock", None)
        self._sendto = sock.sendto if sock is not None else transport.sendto
        self._protect = srtp_transform(tx, "protect")
        self._tx = tx
        return True

    def send_rtp(self, packet: bytes) -> bytes | None:
        """Protect and send; returns the SRTP bytes (kept for retransmission) or None."""
        protect = self._protect
        if protect is None or self._tx is None:
            if not self._open():
                return None
            protect = self._protect
        data = protect(packet)  # type: ignore[misc]
        if data is None:
            return None
        try:
            self._sendto(data, self._addr)  # type: ignore[misc]
        except OSError:  # socket buffer full or transient ICMP error: UDP drops, so do we
            return None
        return data

    def send_raw(self, data: bytes) -> None:
        """Send already-protected bytes again (retransmission from history)."""
        if self._tx is not None:
            try:
                self._sendto(data, self._addr)  # type: ignore[misc]
            except OSError:
                pass

    def send_rtcp(self, packet: bytes) -> bool:
        if self._tx is None and not self._open():
            return False
        try:
            self._sendto(self._tx.protect_rtcp(packet), self._addr)  # type: ignore[union-attr,misc]
        except OSError:
            return False
        return True

    def close(self) -> None:
        self.closed = True
        self._tx = None
        self._protect = None


# --- senders and receivers -----------------------------------------------------------------------


def sender_ssrc(sender: RTCRtpSender) -> int:
    """The SSRC aiortc announced for this sender (and routes its RTCP feedback by)."""
    return int(sender._ssrc)


def _to_feedback(packet: Any, ssrc: int) -> list[Feedback]:
    out: list[Feedback] = []
    if isinstance(packet, aiortc_rtp.RtcpRtpfbPacket):
        if packet.fmt == aiortc_rtp.RTCP_RTPFB_NACK:
            # aiortc reports PID + bit offset without wrapping at 2^16
            out.append(Feedback(FeedbackKind.NACK, lost=tuple(seq & 0xFFFF for seq in packet.lost)))
    elif isinstance(packet, aiortc_rtp.RtcpPsfbPacket):
        if packet.fmt == aiortc_rtp.RTCP_PSFB_PLI:
            out.append(Feedback(FeedbackKind.PLI))
        elif packet.fmt == aiortc_rtp.RTCP_PSFB_FIR:
            out.append(Feedback(FeedbackKind.FIR))
        elif packet.fmt == aiortc_rtp.RTCP_PSFB_APP:
            try:
                bitrate, ssrcs = aiortc_rtp.unpack_remb_fci(packet.fci)
            except (ValueError, struct.error):  # a truncated FCI (found by tests/fuzz)
                return out
            if ssrc in ssrcs:
                out.append(Feedback(FeedbackKind.REMB, bitrate=bitrate))
    elif isinstance(packet, (aiortc_rtp.RtcpRrPacket, aiortc_rtp.RtcpSrPacket)):
        for report in packet.reports:
            if report.ssrc == ssrc:
                out.append(
                    Feedback(
                        FeedbackKind.REPORT,
                        fraction_lost=report.fraction_lost,
                        packets_lost=report.packets_lost,
                        jitter=report.jitter,
                    )
                )
    return out


def take_over_sender(sender: RTCRtpSender, on_feedback: Callable[[Feedback], None]) -> None:
    """Make ``on_feedback`` the handler of RTCP feedback for this sender's SSRC.

    aiortc's own sender never sends RTP while the forwarder feeds it (its track is a placeholder
    that never yields), so its periodic sender report would announce zero packets: it is
    dropped here and the forwarder sends its own reports (and BYE).
    """
    ssrc = sender_ssrc(sender)

    async def handle_rtcp_packet(packet: Any) -> None:
        for feedback in _to_feedback(packet, ssrc):
            try:
                on_feedback(feedback)
            except Exception:  # pragma: no cover - defensive: never kill aiortc's RTCP loop
                logger.exception("forwarder feedback handler failed")

    async def send_rtcp(packets: list[Any]) -> None:
        # Stock reports would announce zero packets; its BYE would come when stop_stock_rtcp()
        # cancels the loop mid-call. The forwarder sends SR, RR and BYE itself.
        return None

    sender._handle_rtcp_packet = handle_rtcp_packet  # type: ignore[method-assign]
    sender._send_rtcp = send_rtcp  # type: ignore[method-assign]


def stop_stock_rtcp(sender: RTCRtpSender, receiver: RTCRtpReceiver) -> bool:
    """Cancel aiortc's per-sender and per-receiver RTCP loops once they are running.

    Why: for a forwarded stream they have nothing to report (the forwarder sends SR/RR), yet each
    wakes up about once a second; on a node with hundreds of legs those wake-ups cost more than
    the idle legs' traffic. Only loops that have started are cancelled (``stop()`` waits for the
    start event). Returns False while a loop exists that has not started yet (call again later).
    """
    settled = True
    for obj, prefix in ((sender, "_RTCRtpSender"), (receiver, "_RTCRtpReceiver")):
        task = getattr(obj, f"{prefix}__rtcp_task", None)
        started = getattr(obj, f"{prefix}__rtcp_started", None)
        if task is None or started is None or task.done():
            continue
        if started.is_set():
            task.cancel()
        else:
            settled = False
    return settled


def observe_sender_reports(receiver: RTCRtpReceiver, on_sr: Callable[[int, int, int, float], None]) -> None:
    """Call ``on_sr(ssrc, ntp_timestamp, rtp_timestamp, arrival monotonic)`` for each sender
    report the remote sends (LSR/DLSR for our receiver reports; the NTP/RTP pair keeps lip sync
    when the forwarder re-stamps the stream). aiortc's own handling continues afterwards."""
    original = receiver._handle_rtcp_packet

    async def handle_rtcp_packet(packet: Any) -> None:
        if isinstance(packet, aiortc_rtp.RtcpSrPacket):
            info = packet.sender_info
            on_sr(packet.ssrc, info.ntp_timestamp, info.rtp_timestamp, time.monotonic())
        await original(packet)

    receiver._handle_rtcp_packet = handle_rtcp_packet  # type: ignore[method-assign]


# --- ICE -----------------------------------------------------------------------------------------

_stock_get_host_addresses = aioice.ice.get_host_addresses


def set_loopback_only(enabled: bool) -> None:
    """Make aioice gather 127.0.0.1 only (True) or restore its stock address list (False)."""
    if enabled:

        def loopback_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
            return ["127.0.0.1"] if use_ipv4 else []

        aioice.ice.get_host_addresses = loopback_addresses
    else:
        aioice.ice.get_host_addresses = _stock_get_host_addresses


def loopback_only_enabled() -> bool:
    return aioice.ice.get_host_addresses is not _stock_get_host_addresses


def set_host_addresses(addresses: list[str]) -> None:
    """Gather host candidates on these addresses only (``media.host_addresses``); [] restores
    aioice's own list (every interface but loopback)."""
    if not addresses:
        aioice.ice.get_host_addresses = _stock_get_host_addresses
        return
    chosen = list(addresses)

    def configured_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = configured_addresses


# --- ICE: host candidates inside a UDP port range ------------------------------------------------


class PortRangeExhausted(OSError):
    """Every UDP port of the configured range is in use on a host address: widen the range."""


def restrict_host_ports(pc: Any, port_min: int, port_max: int, setting: str = "the UDP port range") -> None:
    """Make this peer connection bind its host candidates' UDP sockets inside
    ``port_min..port_max`` (inclusive) instead of letting the OS choose.

    Why here: aioice 0.13 has no port-range option; ``Connection.get_component_candidates``
    binds ``(address, 0)``. This replaces that method on the aioice connections of *this* peer
    only (no process-wide patch), just before ``setLocalDescription`` gathers: each host address
    gets a socket on a free port of the range (search from a random start, wrapping), then
    server-reflexive (STUN) candidates are asked for through those sockets and the TURN relay is
    left to aioice (its socket toward the TURN server is outbound and stays ephemeral). When an
    address has no free port left, gathering fails with :class:`PortRangeExhausted` naming
    ``setting`` (so ``setLocalDescription`` raises instead of answering without candidates).
    """
    if not 0 < port_min <= port_max <= 65535:
        raise ValueError(f"{setting}: need 0 < min <= max <= 65535, got {port_min}..{port_max}")
    original_set_local = pc.setLocalDescription

    async def set_local_description(*args: Any, **kwargs: Any) -> None:
        for connection in _ice_connections(pc):
            if "get_component_candidates" not in connection.__dict__:
                connection.get_component_candidates = _ranged_component_candidates(
                    connection, port_min, port_max, setting
                )
        await original_set_local(*args, **kwargs)

    pc.setLocalDescription = set_local_description


def _ice_connections(pc: Any) -> list[Any]:
    """The aioice connections of a peer: every ICE transport is reachable from a transceiver or
    the SCTP transport (with max-bundle they are all one)."""
    dtls_transports = [t.receiver.transport for t in pc.getTransceivers()]
    if pc.sctp is not None:
        dtls_transports.append(pc.sctp.transport)
    found: dict[int, Any] = {}
    for dtls in dtls_transports:
        connection = dtls.transport.iceGatherer._connection
        found[id(connection)] = connection
    return list(found.values())


def _bind_in_range(address: str, port_min: int, port_max: int, setting: str) -> Any:
    """A non-blocking UDP socket bound to ``address`` on a free port of the range."""
    import errno
    import random
    import socket

    info = socket.getaddrinfo(address, None, type=socket.SOCK_DGRAM, flags=socket.AI_NUMERICHOST)[0]
    family, sockaddr = info[0], info[4]
    count = port_max - port_min + 1
    first = random.randrange(count)
    for i in range(count):
        port = port_min + (first + i) % count
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind((sockaddr[0], port, *sockaddr[2:]))
        except OSError as exc:
            sock.close()
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                continue
            raise
        sock.setblocking(False)
        return sock
    raise PortRangeExhausted(
        errno.EADDRINUSE,
        f"no free UDP port for a new peer on {address}: all {count} ports of {port_min}..{port_max} "
        f"are in use; widen {setting}",
    )


def _ranged_component_candidates(connection: Any, port_min: int, port_max: int, setting: str) -> Any:
    import socket

    from aioice import turn as aioice_turn

    stock = connection.get_component_candidates  # bound method of the class

    async def get_component_candidates(component: int, addresses: list[str], timeout: int = 5) -> list[Any]:
        loop = asyncio.get_running_loop()
        host_protocols: list[Any] = []
        try:
            for address in addresses:
                try:
                    sock = _bind_in_range(address, port_min, port_max, setting)
                except PortRangeExhausted:
                    raise
                except OSError as exc:  # an address that went away: skip it, as aioice does
                    logger.info("could not bind to %s - %s", address, exc)
                    continue
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, aioice_turn.UDP_SOCKET_BUFFER_SIZE)
                _, protocol = await loop.create_datagram_endpoint(lambda: aioice.ice.StunProtocol(connection), sock=sock)
                host, port = protocol.transport.get_extra_info("sockname")[:2]
                protocol.local_candidate = aioice.Candidate(
                    foundation=aioice.ice.candidate_foundation("host", "udp", host),
                    component=component,
                    transport="udp",
                    priority=aioice.ice.candidate_priority(component, "host"),
                    host=host,
                    port=port,
                    type="host",
                )
                host_protocols.append(protocol)
        except BaseException:
            for protocol in host_protocols:
                protocol.transport.close()
            raise
        connection._protocols += host_protocols
        candidates = [p.local_candidate for p in host_protocols]

        # server-reflexive candidates through the ranged sockets (IPv4 only, as aioice does)
        stun_server = connection.stun_server
        reflexive: list[asyncio.Future[Any]] = []
        if stun_server:
            for protocol in host_protocols:
                if ":" not in protocol.local_candidate.host:
                    reflexive.append(
                        asyncio.ensure_future(aioice.ice.server_reflexive_candidate(protocol, stun_server))
                    )

        async def reflexive_candidates() -> list[Any]:
            if not reflexive:
                return []
            done, pending = await asyncio.wait(reflexive, timeout=timeout)
            for task in pending:
                task.cancel()
            return [task.result()[0] for task in done if task.exception() is None]

        # no host addresses: aioice does the TURN relay (and nothing else)
        relayed, srflx = await asyncio.gather(
            stock(component=component, addresses=[], timeout=timeout), reflexive_candidates()
        )
        return candidates + srflx + relayed

    return get_component_candidates


# --- diagnostics (tests, benchmarks) -------------------------------------------------------------


def observe_received_rtp(
    receiver: RTCRtpReceiver, callback: Callable[[int, int, int, bool, int], None]
) -> Callable[[], None]:
    """Call ``callback(seq, timestamp, payload_type, marker, payload_len)`` for every RTP packet
    aiortc's own receiver handles (the stock path keeps running). For tests and diagnostics on
    peers the forwarder does not own. Returns an undo function."""
    original = receiver._handle_rtp_packet

    async def handle_rtp_packet(packet: Any, arrival_time_ms: int) -> None:
        callback(packet.sequence_number, packet.timestamp, packet.payload_type, bool(packet.marker), len(packet.payload))
        await original(packet, arrival_time_ms=arrival_time_ms)

    receiver._handle_rtp_packet = handle_rtp_packet  # type: ignore[method-assign]

    def undo() -> None:
        receiver._handle_rtp_packet = original  # type: ignore[method-assign]

    return undo


def stock_receiver_backlog(receiver: RTCRtpReceiver) -> int:
    """Frames waiting in aiortc's receive path (decoder input queue + remote track queue).

    With the forwarder owning the transport this stays 0: nothing reaches aiortc's receiver.
    """
    backlog = 0
    decoder_queue = getattr(receiver, "_RTCRtpReceiver__decoder_queue", None)
    if decoder_queue is not None:
        backlog += decoder_queue.qsize()
    track = receiver.track
    queue = getattr(track, "_queue", None) if track is not None else None
    if queue is not None:
        backlog += queue.qsize()
    return backlog


# --- parsers that must only say "not this" ------------------------------------------------------
#
# aioice reads every datagram that reaches a media port, from any address, as STUN first and treats
# a ValueError as "not STUN" (DTLS, SRTP...). Its parser raises struct.error on a truncated
# attribute instead, which escapes datagram_received: a traceback per packet in the log, from
# anyone who can reach the port. aiortc's RTP/RTCP parsers have the same habit behind SRTP. Found
# by tests/fuzz (atheris); each parser is wrapped so that every malformed input is a ValueError.

_MALFORMED = (struct.error, IndexError, KeyError, TypeError, UnicodeDecodeError, OverflowError)


def harden_parsers() -> None:
    """Make aioice's STUN parser and aiortc's RTP/RTCP parsers raise only ValueError on bad input
    (idempotent; applied when this module is imported)."""
    stun = aioice.stun
    if not getattr(stun.parse_message, "_segue_hardened", False):
        original_stun = stun.parse_message

        def parse_message(data: bytes, *args: Any, **kwargs: Any) -> Any:
            try:
                return original_stun(data, *args, **kwargs)
            except _MALFORMED as exc:
                raise ValueError(f"malformed STUN message: {exc}") from None

        parse_message._segue_hardened = True  # type: ignore[attr-defined]
        stun.parse_message = parse_message
    for cls in (aiortc_rtp.RtpPacket, aiortc_rtp.RtcpPacket):
        original = cls.__dict__["parse"].__func__
        if getattr(original, "_segue_hardened", False):
            continue

        def parse(klass: Any, data: bytes, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            try:
                return _original(klass, data, *args, **kwargs)
            except _MALFORMED as exc:
                raise ValueError(f"malformed packet: {exc}") from None

        parse._segue_hardened = True  # type: ignore[attr-defined]
        cls.parse = classmethod(parse)  # type: ignore[method-assign, assignment]


harden_parsers()
