"""Supervisor monitor / whisper / barge on a running call (``call.monitor``, ``call.monitor_stop``).

Why a module of its own: monitoring has rules of its own — who may (role ``supervisor``, no need
to work on the conversation), who is told (listening and whispering are agents-only; a barge is
announced to the customer, who hears a new voice), and a seat that exists before the supervisor's
connection does. The media side is :class:`media.call.Call` (role ``supervisor``,
:class:`media.call.MonitorMode`): switching mode rewires sinks, nobody renegotiates.

Flow: ``call.monitor {conversation_id, mode}`` takes the seat (ack ``{call, event, ice_servers}``);
the same socket then sends ``call.offer`` (audio sendrecv + audio recvonly) and candidates like any
leg; ``call.monitor`` again switches mode; ``call.monitor_stop`` or ``call.hangup`` from that
socket, its disconnect, or its connection failing, ends the monitoring. The call goes on.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from media import MonitorMode

from . import call_messages as cm
from .errors import conflict, forbidden

if TYPE_CHECKING:  # pragma: no cover
    from .calls import CallService, Participant, SupervisorSeat

log = logging.getLogger(__name__)


class Monitoring:
    """The ``call.monitor`` handlers and the supervisor's seat of each call (see module doc)."""

    def __init__(self, calls: "CallService") -> None:
        self.calls = calls

    async def on_monitor(self, ns: str, sid: str, who: "Participant", d: cm.CallMonitor) -> dict[str, Any]:
        from .calls import SupervisorSeat

        calls, cid = self.calls, d.conversation_id
        if not who.supervisor:
            raise forbidden("only supervisors monitor calls (an account with role supervisor)")
        conv = await calls.enter(ns, sid, who, cid, observe=True)
        record = calls.record(cid)
        call = record.call
        assert call is not None
        in_call = {leg.participant for role, leg in call.legs.items() if role != "supervisor"}
        if who.id in in_call or who.id in (conv.get("agent"), conv.get("transfer_agent")):
            raise conflict("you are in this call yourself: a supervisor monitors other agents' calls")
        mode = MonitorMode(d.mode)
        seat = record.supervisor
        if seat is not None and seat.who.id != who.id:
            raise conflict(f"{seat.who.name or seat.who.id} is already monitoring this call: "
                           "they stop first (call.monitor_stop)")
        before = seat.mode if seat is not None else None
        if seat is None:
            record.supervisor = SupervisorSeat(who, mode, (ns, sid))
        else:  # a mode switch, or the same supervisor from another page (its offer replaces the leg)
            seat.mode, seat.socket, seat.who = mode, (ns, sid), who
        call.monitor(mode)
        event = None
        if before is not mode:
            event = await calls.log_event(cid, "call.monitored", {"by": who.author(), "mode": mode.value},
                                          who.author(), "agents")
            await self._announce(cid, who, before, mode)
        await calls.push_state(cid)
        return {"call": calls.state(cid, record, ns), "event": event, "ice_servers": calls.ice_servers(who.id)}

    async def on_stop(self, ns: str, sid: str, who: "Participant", d: cm.CallRef) -> dict[str, Any]:
        calls, cid = self.calls, d.conversation_id
        if not who.supervisor:
            raise forbidden("only supervisors monitor calls (an account with role supervisor)")
        await calls.enter(ns, sid, who, cid, observe=True)
        event = await self.stop(cid, who, "stopped")
        return {"call": calls.state(cid, calls.records.get(cid), ns), "event": event}

    async def stop(self, cid: str, who: "Participant", reason: str) -> dict[str, Any] | None:
        """``who`` stops monitoring: their leg leaves, the call goes on."""
        record = self.calls.record(cid)
        seat = record.supervisor
        if seat is None or seat.who.id != who.id:
            raise conflict("you are not monitoring this call")
        return await self._release(cid, seat, reason)

    async def seat_gone(
        self, cid: str, seat: "SupervisorSeat", reason: str, socket: tuple[str, str] | None = None
    ) -> None:
        """The supervisor's socket (``socket``) disconnected or their connection failed. Nothing
        happens if the seat moved on meanwhile: the same supervisor back from a new page keeps it."""
        record = self.calls.records.get(cid)
        if record is None or record.supervisor is not seat or (socket is not None and seat.socket != socket):
            return
        try:
            await self._release(cid, seat, reason)
        except Exception:  # noqa: BLE001 - a background clean-up; the call must go on
            log.exception("ending the monitoring of %s failed", cid)

    async def _release(self, cid: str, seat: "SupervisorSeat", reason: str) -> dict[str, Any] | None:
        calls = self.calls
        record = calls.records[cid]
        record.supervisor = None
        calls._owners.pop((cid, "supervisor"), None)
        call = record.call
        if call is not None and call.active:
            call.detach("supervisor")
            call.monitor(MonitorMode.LISTEN)
        by = seat.who.author()
        event = await calls.log_event(cid, "call.monitor_ended", {"by": by, "reason": reason}, by, "agents")
        await self._announce(cid, seat.who, seat.mode, None)
        await calls.push_state(cid)
        return event

    async def _announce(self, cid: str, who: "Participant", before: MonitorMode | None,
                        after: MonitorMode | None) -> None:
        """The customer hears a new voice when a barge starts, and is told when it stops."""
        barge = MonitorMode.BARGE
        if after is barge and before is not barge:
            await self.calls.log_event(cid, "call.supervisor_joined", {"by": who.author()}, who.author())
        elif before is barge and after is not barge:
            await self.calls.log_event(cid, "call.supervisor_left", {"by": who.author()}, who.author())
