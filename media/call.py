"""A call: the legs of one conversation joined through the forwarder.

Why an object of its own: which leg hears whom changes often during a conversation — hold, mute,
a warm transfer's consultation, a cold transfer's gap, a reloaded page's new leg — and every
one of those is only a different *wiring* of sinks to sources. :meth:`Call.wire` recomputes the
whole wiring from the call's state after every change, so there is no sequence of operations
that can leave a stale attachment behind. No packet is decoded or encoded here: sinks forward
encoded RTP (``media.forwarder``), the hold tone is pre-encoded and shared.

Roles: ``customer``, ``agent``, during a warm transfer ``consult`` (the receiving agent), and
``supervisor`` (a supervisor monitoring the call). Wiring rules (slot = audio / video / screen;
``audio2`` = a leg's optional second audio m-section, see :mod:`media.leg`):

- customer hears the agent; hears the hold tone when held or when no agent leg is up;
  sees the agent's camera/screen unless held.
- agent hears/sees the customer unless held; during a consultation (warm transfer) the agent
  and the consulted agent hear each other and the customer holds.
- supervisor (:class:`MonitorMode`): hears the customer on ``audio`` (not while held, like the
  agent) and the agent on ``audio2`` (always, hold included), sees the customer's camera/screen
  unless held. ``listen``: nobody hears the supervisor. ``whisper``: the agent hears the
  supervisor on the agent's ``audio2``. ``barge``: the customer too, on the customer's ``audio2``,
  except while the customer hears the hold tone. The supervisor follows whoever is the agent
  (transfers included). A supervisor's lost leg just leaves (no grace, the call goes on).
- a muted role's media is not forwarded (the far end hears silence).

A leg that fails (network loss, page reload) leaves its role empty; the call waits
``grace_s`` for a new leg of that role (:meth:`attach`) and otherwise ends with reason
``timeout``. The customer's leg is never renegotiated by anything that happens on the agent side.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .forwarder import CodecMismatch, Forwarder, RtpSink, RtpSource
from .leg import SLOTS, CallLeg
from .recorder import CallRecorder

log = logging.getLogger(__name__)

#: the roles of the conversation's own call (what the media clock and ``media`` events follow)
MAIN_ROLES = ("customer", "agent", "consult")
ROLES = MAIN_ROLES + ("supervisor",)

#: ``on_event(call, type, data)``: what happened, for the conversation's log. Types:
#: ``media`` {role, slot, on}, ``leg.lost`` {role}, ``leg.attached`` {role, reattached},
#: ``held`` {held}, ``muted`` {role, muted}, ``ended`` {reason, durations},
#: ``supervisor.lost`` {participant} (the supervisor's connection failed: its leg left),
#: ``monitor`` {mode}.
EventCallback = Callable[["Call", str, dict[str, Any]], None]


class CallState(enum.Enum):
    ACTIVE = "active"
    ENDED = "ended"


class MonitorMode(enum.Enum):
    """What a supervisor's leg does: ``listen`` (hears both sides), ``whisper`` (the agent also
    hears the supervisor), ``barge`` (the customer too)."""

    LISTEN = "listen"
    WHISPER = "whisper"
    BARGE = "barge"


@dataclass
class MediaClock:
    """Seconds each slot was on during the call (any participant sending it)."""

    on_since: dict[str, float] = field(default_factory=dict)
    total: dict[str, float] = field(default_factory=lambda: {s: 0.0 for s in SLOTS})

    def set(self, slot: str, on: bool, now: float) -> None:
        if on and slot not in self.on_since:
            self.on_since[slot] = now
        elif not on and slot in self.on_since:
            self.total[slot] += now - self.on_since.pop(slot)

    def snapshot(self, now: float) -> dict[str, float]:
        out = dict(self.total)
        for slot, since in self.on_since.items():
            out[slot] += now - since
        return {k: round(v, 3) for k, v in out.items()}


class Call:
    """The legs of one conversation and how they are joined (see the module doc)."""

    def __init__(
        self,
        conversation_id: str,
        forwarder: Forwarder,
        *,
        grace_s: float = 30.0,
        on_event: EventCallback | None = None,
        recorder: "CallRecorder | None" = None,
    ) -> None:
        self.conversation_id = conversation_id
        self.forwarder = forwarder
        self.grace_s = grace_s
        self.state = CallState.ACTIVE
        self.held = False
        self.muted: set[str] = set()
        self.legs: dict[str, CallLeg] = {}
        self.monitor_mode = MonitorMode.LISTEN
        self.started_at = time.time()
        self._t0 = time.monotonic()
        self.ended_at: float | None = None
        self.end_reason: str | None = None
        self._on_event = on_event
        self.recorder = recorder
        self._sending: dict[tuple[str, str], bool] = {}
        self._clock = MediaClock()
        self._grace: dict[str, asyncio.TimerHandle] = {}
        self._closing: set[CallLeg] = set()
        self._ended = asyncio.get_running_loop().create_future()

    # queries ----------------------------------------------------------------------------------

    @property
    def active(self) -> bool:
        return self.state is CallState.ACTIVE

    def leg(self, role: str) -> CallLeg | None:
        return self.legs.get(role)

    def summary(self) -> dict[str, Any]:
        """What clients see in ``call.state``."""
        media = {slot: any(self._sending.get((r, slot), False) for r in self.legs) for slot in SLOTS}
        return {
            "conversation_id": self.conversation_id,
            "state": self.state.value,
            "held": self.held,
            "muted": sorted(self.muted),
            "media": media,
            "legs": {
                role: {"participant": leg.participant, "connection": leg.connection_state, "sending": leg.sending(),
                       "supervisor_audio": leg.second_audio}
                for role, leg in self.legs.items()
            },
            "waiting_for": sorted(self._grace),
            "started_ts": int(self.started_at * 1000),
        }

    def durations(self) -> dict[str, float]:
        now = time.monotonic()
        end = now if self.ended_at is None else self._t0 + (self.ended_at - self.started_at)
        out = self._clock.snapshot(end)
        out["call"] = round(end - self._t0, 3)
        return out

    async def wait_ended(self) -> str:
        return await asyncio.shield(self._ended)

    # changes ----------------------------------------------------------------------------------

    def attach(self, role: str, leg: CallLeg) -> None:
        """Put ``leg`` in ``role`` (first join, a reloaded page's new leg, a transfer's new agent).
        A previous leg of that role is closed."""
        self._check_active()
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r} (one of {', '.join(ROLES)})")
        old = self.legs.get(role)
        reattached = role in self._grace or old is not None
        timer = self._grace.pop(role, None)
        if timer is not None:
            timer.cancel()
        self.legs[role] = leg
        leg.on_change(self._leg_changed)
        if old is not None and old is not leg:
            self._close_later(old)
        self._emit("leg.attached", {"role": role, "participant": leg.participant, "reattached": reattached})
        self._update_media()
        self.wire()

    def expect(self, roles: list[str]) -> None:
        """Wait ``grace_s`` for a leg in each of ``roles`` (a call taken over from a node that died
        starts with none); a role nobody attaches in time ends the call like a lost leg."""
        self._check_active()
        loop = asyncio.get_running_loop()
        for role in roles:
            if role not in self.legs and role not in self._grace:
                self._grace[role] = loop.call_later(self.grace_s, self._grace_over, role)

    def detach(self, role: str) -> CallLeg | None:
        """Take the leg out of ``role`` and close it, no grace (an agent leaving in a transfer)."""
        leg = self.legs.pop(role, None)
        timer = self._grace.pop(role, None)
        if timer is not None:
            timer.cancel()
        if leg is not None:
            self._close_later(leg)
            self._update_media()
            self.wire()
        return leg

    def hold(self, held: bool = True) -> None:
        self._check_active()
        if self.held != held:
            self.held = held
            self._emit("held", {"held": held})
        self.wire()

    def mute(self, role: str, muted: bool = True) -> None:
        self._check_active()
        if (role in self.muted) != muted:
            (self.muted.add if muted else self.muted.discard)(role)
            self._emit("muted", {"role": role, "muted": muted})
        self.wire()

    def monitor(self, mode: MonitorMode) -> None:
        """Set what the supervisor's leg does (before or after it is attached as ``supervisor``):
        a switch rewires sinks only, nobody renegotiates."""
        self._check_active()
        if self.monitor_mode is not mode:
            self.monitor_mode = mode
            self._emit("monitor", {"mode": mode.value})
        self.wire()

    def start_consult(self, leg: CallLeg) -> None:
        """Warm transfer: the receiving agent's leg joins as ``consult``; the customer holds while
        the two agents talk."""
        self.attach("consult", leg)
        self.hold(True)

    def complete_transfer(self) -> None:
        """Warm transfer done: the first agent leaves, the consulted agent becomes the agent, the
        customer is taken off hold. The customer's leg is not touched."""
        consult = self.legs.pop("consult", None)
        if consult is None:
            raise ValueError("no consultation in progress")
        old = self.legs.pop("agent", None)
        self.legs["agent"] = consult
        self._grace.pop("consult", None)
        if old is not None:
            self._close_later(old)
        self.held = False
        self._emit("held", {"held": False})
        self._update_media()
        self.wire()

    def cancel_consult(self) -> None:
        self.detach("consult")
        self.hold(False)

    async def end(self, reason: str = "hangup") -> None:
        """Close every leg; the conversation's chat is unaffected."""
        if not self.active:
            return
        now = time.monotonic()
        for (role, slot), on in list(self._sending.items()):
            if on:
                self._clock.set(slot, False, now)
        self.state = CallState.ENDED
        self.ended_at = time.time()
        self.end_reason = reason
        for timer in self._grace.values():
            timer.cancel()
        self._grace.clear()
        legs = list(self.legs.values())
        self.legs.clear()
        if self.recorder is not None:
            self.recorder.close()
        self._emit("ended", {"reason": reason, "durations": self.durations()})
        for leg in legs:
            try:
                await leg.close()
            except Exception:  # noqa: BLE001
                log.exception("closing leg %s failed", leg.name)
        if not self._ended.done():
            self._ended.set_result(reason)

    # wiring -----------------------------------------------------------------------------------

    def wire(self) -> None:
        """Attach every sink of every leg to what its participant should receive now."""
        if not self.active:
            return
        customer = self._live("customer")
        agent = self._live("agent")
        consult = self._live("consult")
        supervisor = self._live("supervisor")
        hold_tone = self.forwarder.hold_tone()
        mode = self.monitor_mode
        voice = supervisor.source("audio") if supervisor is not None and "supervisor" not in self.muted else None
        customer_holds = self.held or agent is None
        if customer is not None:
            for slot in SLOTS:
                if slot == "audio" and (self.held or agent is None):
                    src: RtpSource | None = hold_tone
                elif self.held or agent is None or "agent" in self.muted and slot == "audio":
                    src = None
                else:
                    src = agent.source(slot)
                self._connect(customer.sink(slot), src)
            barging = mode is MonitorMode.BARGE and not customer_holds
            self._connect(customer.sink("audio2"), voice if barging else None)
        if agent is not None:
            peer, peer_role = (consult, "consult") if consult is not None else (customer, "customer")
            for slot in SLOTS:
                if peer is None or (self.held and consult is None):
                    src = None
                elif peer_role in self.muted and slot == "audio":
                    src = None
                else:
                    src = peer.source(slot)
                self._connect(agent.sink(slot), src)
            talking = mode in (MonitorMode.WHISPER, MonitorMode.BARGE)
            self._connect(agent.sink("audio2"), voice if talking else None)
        if consult is not None:
            for slot in SLOTS:
                if agent is None or ("agent" in self.muted and slot == "audio"):
                    src = None
                else:
                    src = agent.source(slot)
                self._connect(consult.sink(slot), src)
            self._connect(consult.sink("audio2"), None)
        if supervisor is not None:
            hears_customer = customer is not None and not self.held and "customer" not in self.muted
            self._connect(supervisor.sink("audio"), customer.source("audio") if hears_customer else None)  # type: ignore[union-attr]
            hears_agent = agent is not None and "agent" not in self.muted
            self._connect(supervisor.sink("audio2"), agent.source("audio") if hears_agent else None)  # type: ignore[union-attr]
            for slot in ("video", "screen"):
                sees = customer is not None and not self.held
                self._connect(supervisor.sink(slot), customer.source(slot) if sees else None)  # type: ignore[union-attr]
        if self.recorder is not None:
            # what the customer says, and what the customer hears from an agent (not consultations)
            self.recorder.follow("customer", customer.source("audio") if customer and "customer" not in self.muted else None)
            self.recorder.follow("agent", agent.source("audio") if agent and not self.held and "agent" not in self.muted else None)
            # video: the camera, else the screen share (a source exists only while it is sent)
            self.recorder.follow("customer_video", (customer.source("video") or customer.source("screen")) if customer else None)
            self.recorder.follow("agent_video", (agent.source("video") or agent.source("screen")) if agent and not self.held else None)

    def _connect(self, sink: RtpSink | None, source: RtpSource | None) -> None:
        if sink is None or sink.source is source:
            return
        try:
            sink.attach(source)
        except CodecMismatch as exc:
            log.warning("call %s: %s", self.conversation_id, exc)
            sink.attach(None)
        except RuntimeError:
            pass  # the sink's leg closed meanwhile; its change handler rewires

    def _live(self, role: str) -> CallLeg | None:
        leg = self.legs.get(role)
        return None if leg is None or leg.failed else leg

    # leg events -------------------------------------------------------------------------------

    def _leg_changed(self, leg: CallLeg) -> None:
        if not self.active or leg in self._closing:
            return
        role = next((r for r, current in self.legs.items() if current is leg), None)
        if role is None:
            return
        if role == "supervisor" and leg.failed:
            # a supervisor only observes: their lost connection leaves, the call is not held for it
            self.legs.pop(role, None)
            self._close_later(leg)
            self._emit("supervisor.lost", {"participant": leg.participant})
            self.wire()
            return
        if leg.failed and role not in self._grace:
            self._emit("leg.lost", {"role": role, "participant": leg.participant, "grace_s": self.grace_s})
            loop = asyncio.get_running_loop()
            self._grace[role] = loop.call_later(self.grace_s, self._grace_over, role)
        self._update_media()
        self.wire()

    def _grace_over(self, role: str) -> None:
        self._grace.pop(role, None)
        leg = self.legs.get(role)
        if not self.active or (leg is not None and not leg.failed):
            return
        if role == "consult":
            self.legs.pop(role, None)
            self.hold(False)
            return
        asyncio.get_running_loop().create_task(self.end("timeout"))

    def _update_media(self) -> None:
        now = time.monotonic()
        current: dict[tuple[str, str], bool] = {}
        for role, leg in self.legs.items():
            if role not in MAIN_ROLES:
                continue  # a supervisor's microphone is not part of the conversation's media
            sending = leg.sending() if not leg.failed else {s: False for s in SLOTS}
            for slot, on in sending.items():
                current[(role, slot)] = on
        for key in set(self._sending) | set(current):
            before, after = self._sending.get(key, False), current.get(key, False)
            if before != after:
                self._emit("media", {"role": key[0], "slot": key[1], "on": after})
        self._sending = current
        for slot in SLOTS:
            self._clock.set(slot, any(on for (r, s), on in current.items() if s == slot), now)

    def _close_later(self, leg: CallLeg) -> None:
        self._closing.add(leg)

        async def close() -> None:
            try:
                await leg.close()
            finally:
                self._closing.discard(leg)

        asyncio.get_running_loop().create_task(close())

    def _emit(self, kind: str, data: dict[str, Any]) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(self, kind, data)
        except Exception:  # noqa: BLE001
            log.exception("call %s: event listener failed", self.conversation_id)

    def _check_active(self) -> None:
        if not self.active:
            raise RuntimeError(f"call {self.conversation_id} has ended")
