"""One participant's server-side connection for a call: an aiortc peer that only ever answers.

Why a layer over the forwarder's :class:`media.forwarder.Leg`: the forwarder knows RTP (sources
and sinks per m-section); a call needs *roles* of media — the microphone, the camera, the screen
share — and the signalling rules around one peer connection: offers come from the browser only
(aiortc cannot re-offer without remapping payload types), SDP and candidates of one leg are
applied strictly in order, and a connection that fails is replaced by a new leg, never restarted
(aiortc has no ICE restart).

Media slots: the first audio m-section of the browser's offer is the microphone (``audio``), the
first video m-section the camera (``video``), the second video m-section the screen share
(``screen``). ``web/sdk/call.js`` creates its transceivers in that order. A slot is *sending*
when the participant sends on it (the browser's direction is sendrecv/sendonly).

The second audio m-section (``audio2``, optional, recvonly in the browser: call.js adds it after
the three above, so the m-lines read audio, video, video, audio) carries a second voice *toward*
the participant without mixing: a whispering or barging supervisor for the customer and the agent,
the agent's voice for a monitoring supervisor (whose offer is audio sendrecv + audio recvonly).
It is an extra slot (:data:`EXTRA_SLOTS`): not part of :meth:`CallLeg.sending` or of a call's
media clock, and an offer without it still works (that leg then simply cannot hear a supervisor).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from aiortc import RTCIceServer, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp

from . import _sdp
from .forwarder import Forwarder, LegState, RtpSink, RtpSource
from .ice import new_peer
from .sdp_limits import MAX_SDP_CHARS as _LIMIT, SdpRefused, check_offer

log = logging.getLogger(__name__)

#: the participant's own media: microphone, camera, screen share (what ``sending()`` reports)
SLOTS = ("audio", "video", "screen")
#: optional extra m-sections: ``audio2`` = the second audio m-section (a second voice to hear)
EXTRA_SLOTS = ("audio2",)
ALL_SLOTS = SLOTS + EXTRA_SLOTS
MAX_SDP_CHARS = _LIMIT  # media.sdp_limits holds every limit of an offer


#: what aiortc raises on an offer it does not expect (after media.sdp_limits let it through):
#: the offer is refused, the server is fine
_AIORTC_REFUSALS = (ValueError, KeyError, IndexError, AssertionError, TypeError, OverflowError, RuntimeError,
                    AttributeError)


class LegError(ValueError):
    """Bad signalling input for a leg (unparseable SDP, a candidate before the offer, ...)."""


def _slot_of(kind: str, ordinal: int) -> str | None:
    if kind == "audio":
        return ("audio", "audio2")[ordinal] if ordinal < 2 else None
    if kind == "video":
        return ("video", "screen")[ordinal] if ordinal < 2 else None
    return None


class CallLeg:
    """A participant's aiortc peer connection, adopted by the forwarder, answering offers.

    Use: ``leg = CallLeg(forwarder, role="customer", participant="v_1")``;
    ``answer_sdp = await leg.answer(offer_sdp)``; ``await leg.add_candidate(c)``; a
    :class:`media.call.Call` then wires :meth:`source` and :meth:`sink` of its legs.
    ``on_change`` callbacks run after every completed negotiation and connection-state change.
    """

    def __init__(
        self,
        forwarder: Forwarder,
        *,
        role: str,
        participant: str,
        ice_servers: Sequence[RTCIceServer | dict[str, Any]] = (),
        port_range: tuple[int, int] | None = None,
        name: str | None = None,
    ) -> None:
        self.role = role
        self.participant = participant
        self.pc = new_peer(ice_servers, port_range=port_range)  # (min, max) UDP ports; None/(0, 0): any
        self.fleg = forwarder.add_leg(self.pc, name or f"{role}:{participant}")
        self.name = self.fleg.name
        self.negotiations = 0
        self._lock = asyncio.Lock()
        self._closed = False
        self._listeners: list[Callable[["CallLeg"], None]] = []
        self.pc.on("connectionstatechange", self._on_connection_state)

    # state ----------------------------------------------------------------------------------

    @property
    def connection_state(self) -> str:
        return self.pc.connectionState

    @property
    def closed(self) -> bool:
        return self._closed or self.fleg.state is LegState.CLOSED

    @property
    def failed(self) -> bool:
        return self.closed or self.pc.connectionState in ("failed", "closed")

    def on_change(self, callback: Callable[["CallLeg"], None]) -> None:
        self._listeners.append(callback)

    def _notify(self) -> None:
        for callback in list(self._listeners):
            try:
                callback(self)
            except Exception:  # noqa: BLE001 - one listener must not break the others
                log.exception("leg %s: change listener failed", self.name)

    def _on_connection_state(self) -> None:
        log.debug("leg %s: connection %s", self.name, self.pc.connectionState)
        self._notify()

    # signalling -----------------------------------------------------------------------------

    async def answer(self, offer_sdp: str) -> str:
        """Apply the browser's offer (first or renegotiation) and return the answer SDP.

        aiortc gathers its candidates before ``setLocalDescription`` returns, so the answer
        carries them all (no trickle from the server). Offers of one leg are applied in order.
        """
        if not isinstance(offer_sdp, str) or not offer_sdp.startswith("v=0"):
            raise LegError("offer is not SDP (expected text starting with 'v=0')")
        if len(offer_sdp) > MAX_SDP_CHARS:
            raise LegError(f"offer SDP longer than {MAX_SDP_CHARS} characters")
        try:
            check_offer(offer_sdp)  # Segue's limits, before aiortc's trusting parser sees it
        except SdpRefused as exc:
            raise LegError(f"offer refused: {exc}") from None
        async with self._lock:
            if self.closed:
                raise LegError("this leg is closed: start a new connection")
            try:
                await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            except _AIORTC_REFUSALS as exc:
                # aiortc's parser asserts and indexes on what it does not expect
                raise LegError(f"offer refused: {exc or type(exc).__name__}") from None
            self.fleg.prepare()
            try:
                answer = await self.pc.createAnswer()
                await self.pc.setLocalDescription(answer)
            except _AIORTC_REFUSALS as exc:  # an offer it parsed but cannot answer
                raise LegError(f"offer cannot be answered: {exc or type(exc).__name__}") from None
            self.fleg.refresh()
            self.negotiations += 1
            sdp = self.pc.localDescription.sdp
        self._notify()
        return sdp

    def continues(self, offer_sdp: str) -> bool:
        """Whether ``offer_sdp`` renegotiates this leg's connection (same ICE credentials and
        DTLS fingerprint). False for a new browser connection on the same socket (what the SDK
        sends when its connection stalls: aiortc cannot restart ICE) or a browser ICE restart;
        such an offer needs a new leg."""
        remote = self.pc.remoteDescription
        if remote is None:
            return True  # nothing negotiated yet: the first offer is this leg's
        return _sdp.transport_identity(remote.sdp) == _sdp.transport_identity(offer_sdp)

    async def add_candidate(self, candidate: dict[str, Any] | None) -> None:
        """A trickled browser candidate ``{candidate, sdpMid?, sdpMLineIndex?}``; None or an
        empty ``candidate`` string means end-of-candidates."""
        async with self._lock:
            if self.closed:
                return
            if self.pc.remoteDescription is None:
                raise LegError("candidate before offer: send call.offer first")
            text = (candidate or {}).get("candidate") or ""
            if not text:
                await self.pc.addIceCandidate(None)
                return
            if text.startswith("candidate:"):
                text = text[len("candidate:") :]
            try:
                parsed = candidate_from_sdp(text)
            except (ValueError, IndexError, AssertionError) as exc:  # aiortc asserts on too few fields
                raise LegError(f"candidate not understood ({exc or 'too few fields'}): expected "
                               "'candidate:<foundation> <component> <protocol> <priority> <ip> <port> typ <type>'") from None
            parsed.sdpMid = candidate.get("sdpMid")
            parsed.sdpMLineIndex = candidate.get("sdpMLineIndex")
            if parsed.sdpMid is None and parsed.sdpMLineIndex is None:
                parsed.sdpMLineIndex = 0
            if parsed.component != 1 or parsed.protocol.lower() != "udp":
                return  # aiortc is rtcp-mux and UDP only; ignore what it cannot use
            if parsed.ip.endswith(".local"):
                return  # unresolvable mDNS names cost a second each in aioice
            await self.pc.addIceCandidate(parsed)

    # media slots ------------------------------------------------------------------------------

    def _slots(self) -> dict[str, str]:
        """mid -> slot name, by the order of m-sections in the negotiated SDP."""
        counts = {"audio": 0, "video": 0}
        slots: dict[str, str] = {}
        for transceiver in self.pc.getTransceivers():
            if transceiver.kind not in counts or transceiver.mid is None:
                continue
            slot = _slot_of(transceiver.kind, counts[transceiver.kind])
            counts[transceiver.kind] += 1
            if slot is not None:
                slots[transceiver.mid] = slot
        return slots

    def _in_slot(self, slot: str, streams: Callable[[], list[Any]]) -> Any:
        """The stream of ``streams()`` on ``slot``'s m-section, or None (closed, or not negotiated)."""
        if self.closed:
            return None
        mid = next((mid for mid, name in self._slots().items() if name == slot), None)
        if mid is None:
            return None
        return next((s for s in streams() if getattr(s, "mid", None) == mid), None)

    def source(self, slot: str) -> RtpSource | None:
        """What the participant sends on ``slot`` (audio/video/screen/audio2), or None."""
        return self._in_slot(slot, lambda: self.fleg.sources)

    def sink(self, slot: str) -> RtpSink | None:
        """The outbound stream toward the participant on ``slot``, or None."""
        return self._in_slot(slot, lambda: self.fleg.sinks)

    def sending(self) -> dict[str, bool]:
        """Which slots the participant currently sends: ``{audio, video, screen}``."""
        return {slot: self.source(slot) is not None for slot in SLOTS}

    @property
    def second_audio(self) -> bool:
        """True when the offer had a second audio m-section, so a second voice can reach the
        participant (``audio2``)."""
        return self.sink("audio2") is not None

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self.fleg.close()
        finally:
            self._notify()
            self._listeners.clear()

    def __repr__(self) -> str:
        return f"<CallLeg {self.name} {self.pc.connectionState}>"
