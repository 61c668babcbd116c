"""``call.*`` events: the signalling of voice, video and screen share inside a conversation.

Why here: the namespaces (``/customer``, ``/agent``) own who a socket is and which conversations
it may touch; ``media`` owns peers and packets. This module is the seam: it turns ``call.*``
requests into :class:`media.call.Call` / :class:`media.leg.CallLeg` operations, writes every
call event into the conversation's log (through :class:`signaling.store.Store`) and pushes
``call.*`` events to the other participants. See docs/calls.md and docs/protocol.md "Calls".

Hooking it up (the namespaces' side)::

    calls = signaling.calls.register(app)          # idempotent; returns the CallService
    calls.bind(namespace, sid, Participant("customer", customer_id, name))   # on connect
    calls.unbind(namespace, sid)                                             # on disconnect
    await calls.join(namespace, sid, conversation_id)  # when a socket starts/resumes/accepts/opens
    await calls.transfer_started(cid, mode, to_agent)   # from the ``transfer`` handler
    await calls.transfer_completed(cid, to_agent)       # cold: target accepted; warm: complete
    await calls.transfer_cancelled(cid)
    await calls.conversation_closed(cid)

The handlers ride on the namespaces' own dispatch (``SegueNamespace.register``): every
``call.*`` event is size-checked (``too_large``; ``call.offer`` may carry an SDP of up to
``media.leg.MAX_SDP_CHARS``), validated against its schema in ``call_messages.py`` (``invalid``
naming the field) and answered ``{ok, ...}`` like any chat event. Supervisor monitoring
(``call.monitor`` / ``call.monitor_stop``, /agent only) lives in ``call_monitor.py``.

Ordering: the SDP and candidates of one conversation are applied under one lock, so a
candidate sent right after an offer is never applied before it (python-socketio runs a
client's handlers as concurrent tasks).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import contextvars
import json
import enum
import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass, field, replace
from typing import Any, Awaitable, Callable, Iterator

import socketio
from aiohttp import web

from media import (Call, CallLeg, CallRecorder, Forwarder, LegError, MonitorMode, PortRangeExhausted, SdpRefused,
                   announce, check_offer, set_host_addresses)

from . import call_messages as cm
from .errors import ProtocolError, conflict, forbidden, invalid, not_found
from .recordings import RECORDINGS
from .store import MutationFailed, Store, encode_event, decode_event

# True while this node handles a call.* event forwarded from the node the socket is on
# (signaling.cluster): that node keeps the socket's rooms, this one holds the call.
_FORWARDED: contextvars.ContextVar[bool] = contextvars.ContextVar("segue_call_forwarded", default=False)
# events answered by any node (nothing of a call is read)
LOCAL_EVENTS = frozenset({"call.config"})


class Forward(Exception):
    """The call lives on another node: send the event there."""

    def __init__(self, node: str) -> None:
        super().__init__(node)
        self.node = node

log = logging.getLogger(__name__)


CUSTOMER_NS, AGENT_NS = "/customer", "/agent"
NAMESPACES = (CUSTOMER_NS, AGENT_NS)

#: (namespace, sid): one socket
Socket = tuple[str, str]
#: ``handler(namespace, sid, participant, validated payload) -> ack result``
CallHandler = Callable[[str, str, "Participant", Any], Awaitable[dict[str, Any]]]


class CallPhase(enum.Enum):
    """A conversation's call as signalling sees it: asked for, running, over."""

    REQUESTED = "requested"
    ACTIVE = "active"
    ENDED = "ended"


@dataclass(frozen=True)
class Participant:
    """Who sent a ``call.*`` event (bound per socket by the namespaces on connect)."""

    kind: str  # "customer" | "agent"
    id: str
    name: str = ""
    supervisor: bool = False  # an agent account with role supervisor (may monitor any call)

    def author(self) -> dict[str, str]:
        return {"kind": self.kind, "id": self.id, "name": self.name}


@dataclass
class SupervisorSeat:
    """The supervisor monitoring a call. Why a seat and not just a leg: ``call.monitor`` comes
    before the supervisor's connection exists (and may switch mode at any time); the seat says
    whose socket's ``call.offer`` becomes the ``supervisor`` leg and what that leg does."""

    who: Participant
    mode: MonitorMode
    socket: Socket


@dataclass
class CallRecord:
    """Signalling state of a conversation's call (the media side is ``call``)."""

    conversation_id: str
    state: CallPhase = CallPhase.REQUESTED
    requested_by: Participant | None = None
    media_request: dict[str, Any] | None = None  # pending escalation {media, by}
    call: Call | None = None
    requested_at: float = field(default_factory=time.time)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    transfer: dict[str, Any] | None = None  # {mode, to_agent}
    page_url: str | None = None
    supervisor: SupervisorSeat | None = None
    video: bool = False  # started as a video call (call.request media "video"): both sides start their camera
    load_agent: str | None = None  # the agent whose routing capacity this call holds (router.call_started)
    media_on: set[tuple[str, str]] = field(default_factory=set)  # (role, slot) sending video / screen now
    started_ms: int = 0  # when it became active (ms), for the conversation's list of calls


@dataclass(frozen=True)
class CallEvent:
    """One ``call.*`` event: its schema, its handler and where it exists."""

    name: str
    schema: type
    handler: CallHandler
    namespaces: tuple[str, ...] = NAMESPACES
    max_bytes: int | None = None  # above limits.max_event_bytes (call.offer's SDP)


def turn_credentials(secret: str, user: str, ttl_s: int, now: float | None = None) -> tuple[str, str]:
    """TURN REST credentials: username ``"<expiry>:<user>"``, password
    ``base64(HMAC-SHA1(secret, username))`` (coturn's ``use-auth-secret``)."""
    expiry = int((now if now is not None else time.time()) + ttl_s)
    username = f"{expiry}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


class CallService:
    """Every call of this node, and the ``call.*`` handlers of both namespaces.

    Why one service per node: a call's legs are aiortc peers of this process, so the records of
    its calls (and which socket owns which leg) live here; the conversation's log and access
    rules stay in Redis and the namespaces."""

    def __init__(self, app: web.Application) -> None:
        from . import HOST

        from .call_monitor import Monitoring

        self.app = app
        self.node = app[HOST]  # the hosting node (sio, redis, config, closers)
        self.sio: socketio.AsyncServer = self.node.sio
        self.config = self.node.config
        self.store = Store(self.node.redis, self.config.redis.key_prefix)
        self.forwarder: Forwarder | None = None
        self.records: dict[str, CallRecord] = {}
        self._who: dict[Socket, Participant] = {}
        self._owners: dict[tuple[str, str], Socket] = {}  # (cid, role) -> socket that offered it
        self._tasks: set[asyncio.Task[Any]] = set()
        self.monitoring = Monitoring(self)
        # calls that ended and are being announced: their record, for the conversation's summary
        self._ending: dict[str, CallRecord] = {}
        self._handling = 0  # call events being answered here (busy)
        # several nodes (signaling.cluster): set by install(); sockets of this node whose call.*
        # events went to another node -> those nodes (told when the socket goes)
        self.cluster: Any = None
        self._remote_sockets: dict[Socket, set[str]] = {}
        self._events: dict[str, CallEvent] = {}
        self.recordings = app[RECORDINGS]  # where recordings go and which node holds each

    # wiring -----------------------------------------------------------------------------------

    def events(self) -> list[CallEvent]:
        """Every ``call.*`` event with its schema (docs/protocol.md "Calls")."""
        agent_only = (AGENT_NS,)
        return [
            CallEvent("call.config", cm.CallConfig, self.on_config),
            CallEvent("call.state", cm.CallRef, self.on_state),
            CallEvent("call.request", cm.CallRequest, self.on_request),
            CallEvent("call.accept", cm.CallRef, self.on_accept),
            CallEvent("call.decline", cm.CallDecline, self.on_decline),
            CallEvent("call.offer", cm.CallOffer, self.on_offer, max_bytes=cm.OFFER_MAX_BYTES),
            CallEvent("call.candidate", cm.CallCandidate, self.on_candidate),
            CallEvent("call.mute", cm.CallMute, self.on_mute),
            CallEvent("call.hold", cm.CallHold, self.on_hold),
            CallEvent("call.hangup", cm.CallRef, self.on_hangup),
            CallEvent("call.monitor", cm.CallMonitor, self.monitoring.on_monitor, agent_only),
            CallEvent("call.monitor_stop", cm.CallRef, self.monitoring.on_stop, agent_only),
        ]

    def install(self) -> None:
        """Register the ``call.*`` events on the namespaces' dispatch (size limit, schema,
        errors in the ack); the REST API serves the recordings (signaling/recordings.py names them)."""
        from . import SIGNALING

        signaling = self.app[SIGNALING]
        namespaces = [signaling.customer_ns, signaling.agent_ns]  # type: ignore[attr-defined]
        for event in self.events():
            self._events[event.name] = event
            for namespace in namespaces:
                if namespace.namespace in event.namespaces:
                    namespace.register(event.name, event.schema,
                                       self._route(namespace.namespace, event.handler, event.name), event.max_bytes)
        self.cluster = getattr(signaling, "cluster", None)
        if self.cluster is not None:
            self.cluster.handle("call", self._forwarded)
            self.cluster.handle("call.socket_gone", self._forwarded_socket_gone)
            self.cluster.on_calls_orphaned = self.adopt
        self.app.on_startup.append(self._start)
        self.node.closers.append(self.close)

    def _route(self, ns: str, handler: CallHandler, name: str = "") -> Callable[[Any, Any, str], Awaitable[dict[str, Any]]]:
        """The namespace's handler signature ``(principal, payload, sid)`` -> ours; an event for a
        call that lives on another node is forwarded there (signaling.cluster)."""

        async def run(principal: Any, payload: Any, sid: str) -> dict[str, Any]:
            who = self._who.get((ns, sid))
            if who is None:
                who = Participant(principal.kind, principal.id, principal.name, supervisor=bool(principal.is_supervisor))
            elif who.id == principal.id and who.name != principal.name:
                # the session's principal is current (a customer names themselves in the pre-chat
                # form after connecting): call events carry that name, not "Visitor"
                who = self._who[(ns, sid)] = replace(who, name=principal.name)
            if self.cluster is not None and name not in LOCAL_EVENTS:
                target = await self._target(name, payload.conversation_id)
                if target is not None:
                    return await self._forward(target, ns, sid, who, name, payload)
            try:
                return await handler(ns, sid, who, payload)
            except Forward as exc:  # another node claimed the call first
                return await self._forward(exc.node, ns, sid, who, name, payload)
            except LegError as exc:  # handlers name the field; this is the fallback
                raise ProtocolError("invalid", str(exc)) from None

        async def answering(principal: Any, payload: Any, sid: str) -> dict[str, Any]:
            with self._answering():
                return await run(principal, payload, sid)

        return answering

    @contextlib.contextmanager
    def _answering(self) -> Iterator[None]:
        self._handling += 1
        try:
            yield
        finally:
            self._handling -= 1

    @property
    def busy(self) -> bool:
        """Calls run here, or a call event is still being answered. A draining node stops only
        once this is False (server/ops.py ``drain``): the hangup that ends the last call takes the
        call out of ``records`` first, then closes its legs, logs and pushes ``call.ended``; a node
        that stopped on an empty ``records`` closed the socket before the hangup's answer was sent
        (the client waited for it in vain). The answer is queued on the socket in the same turn of
        the event loop as the handler returns, so it goes out before the socket closes."""
        return bool(self.records) or self._handling > 0

    # several nodes: where a call lives (docs/deployment.md "Calls across nodes") ---------------

    def _call_key(self, cid: str) -> str:
        return f"{self.config.redis.key_prefix}call:{cid}"

    async def _target(self, name: str, cid: str) -> str | None:
        """The node that must handle ``name`` for conversation ``cid``; None: this one."""
        me = self.cluster.node_id
        owner = await self.node.redis.hget(self._call_key(cid), "node")
        if owner and owner != me:
            return owner
        if owner is None and name == "call.request" and self.cluster.draining:
            # a draining node starts no call: the first node that takes work does
            live = await self.cluster.live_nodes()
            for node, taking in sorted(live.items()):
                if taking and node != me:
                    return node
        return None

    async def _forward(self, node: str, ns: str, sid: str, who: Participant, name: str, payload: Any) -> dict[str, Any]:
        """Run the event on ``node`` (where the call's legs are). This node keeps the socket: it
        joins the call's room here first, so the pushes the other node makes reach it."""
        from .cluster import NodeUnavailable
        from .schema import to_plain

        cid = payload.conversation_id
        await self.join(ns, sid, cid)
        self._remote_sockets.setdefault((ns, sid), set()).add(node)
        body = {"ns": ns, "sid": sid, "event": name, "payload": to_plain(payload),
                "who": {"kind": who.kind, "id": who.id, "name": who.name, "supervisor": who.supervisor}}
        try:
            reply = await self.cluster.request(node, "call", body)
        except NodeUnavailable:
            raise ProtocolError("unavailable", "the server that holds this call is not answering; if it stopped, "
                                               "another one takes the call over within seconds: retry shortly") from None
        if not isinstance(reply, dict) or not reply.get("ok"):
            error = (reply or {}).get("error") or {}
            raise ProtocolError(error.get("code") or "internal", error.get("message") or "the call's server failed",
                                error.get("field"))
        return reply.get("result") or {}

    async def _forwarded(self, body: dict[str, Any]) -> dict[str, Any]:
        """A ``call.*`` event another node forwarded: the call's legs are here."""
        from .schema import validate

        event = self._events.get(body.get("event", ""))
        if event is None:
            return {"ok": False, "error": {"code": "unknown_event", "message": f"unknown event {body.get('event')!r}"}}
        token = _FORWARDED.set(True)
        try:
            payload = validate(event.schema, body.get("payload"), self.config.limits.max_message_chars)
            who = Participant(**body["who"])
            with self._answering():
                result = await event.handler(body["ns"], body["sid"], who, payload)
            return {"ok": True, "result": result}
        except Forward:
            return {"ok": False, "error": {"code": "unavailable", "message": "the call is moving between servers: retry"}}
        except ProtocolError as exc:
            return {"ok": False, "error": exc.as_dict()}
        except LegError as exc:
            return {"ok": False, "error": {"code": "invalid", "message": str(exc)}}
        finally:
            _FORWARDED.reset(token)

    async def _forwarded_socket_gone(self, body: dict[str, Any]) -> None:
        self._socket_gone(body.get("ns", ""), body.get("sid", ""))

    async def _claim(self, cid: str) -> None:
        """Make this node the call's home in Redis; ``Forward`` when another node has it."""
        if self.cluster is None:
            return
        me = self.cluster.node_id
        owner = await self.node.redis.eval(_CLAIM, 2, self._call_key(cid), self.cluster.keys.calls(me), me, cid)
        if owner != me:
            raise Forward(owner)

    async def _persist(self, record: CallRecord) -> None:
        """What another node needs to take the call over if this one dies."""
        if self.cluster is None:
            return
        fields = {"state": record.state.value, "video": "1" if record.video else "0",
                  "requested_by": json.dumps(record.requested_by.__dict__) if record.requested_by else "",
                  "page_url": record.page_url or "", "started_ms": str(record.started_ms),
                  "load_agent": record.load_agent or ""}
        try:
            await self.node.redis.hset(self._call_key(record.conversation_id), mapping=fields)
        except Exception:  # noqa: BLE001 - bookkeeping must not break the call
            log.exception("call %s not recorded for take-over", record.conversation_id)

    def _release(self, cid: str) -> None:
        """The call is over: it no longer lives anywhere."""
        if self.cluster is None:
            return
        me = self.cluster.node_id
        self._spawn(self.node.redis.eval(_RELEASE, 2, self._call_key(cid), self.cluster.keys.calls(me), me, cid))

    async def adopt(self, dead: str, cids: list[str]) -> int:
        """Calls anchored on ``dead`` (a node that died): re-created here with no legs yet. Both
        sides are told at once (``call.migrated``) and offer a new connection, which attaches like
        a reloaded page's; a side that does not within ``media.reconnect_grace_s`` ends the call."""
        me = self.cluster.node_id
        taken = 0
        for cid in cids:
            raw = await self.node.redis.eval(_ADOPT, 3, self._call_key(cid), self.cluster.keys.calls(me),
                                             self.cluster.keys.calls(dead), dead, me, cid)
            if not raw:
                continue
            h = dict(zip(raw[::2], raw[1::2]))
            conv = await self.store.conversation(cid)
            if not conv or conv.get("state") == "closed" or h.get("state") not in ("requested", "active"):
                self._release(cid)
                continue
            by = json.loads(h["requested_by"]) if h.get("requested_by") else None
            record = CallRecord(cid, state=CallPhase(h["state"]), requested_by=Participant(**by) if by else None,
                                video=h.get("video") == "1", page_url=h.get("page_url") or None,
                                load_agent=h.get("load_agent") or None, started_ms=int(h.get("started_ms") or 0))
            if record.state is CallPhase.ACTIVE:
                record.call = self._new_call(cid, conv)
                record.call.expect(["customer", "agent"] if conv.get("agent") else ["customer"])
            self.records[cid] = record
            taken += 1
            if record.state is CallPhase.ACTIVE:
                await self.log_event(cid, "call.migrated", {"reason": "node_lost"})
                # the recording goes on in a new file here (the dead node's disk keeps the start)
                calls = _calls_of(conv)
                began = next((c for c in calls if c.get("started_ts") == record.started_ms), {})
                first = (began.get("recording") or {}).get("id")
                part = await self._recording_began(cid, record.call, first)
                if part is not None and began:  # the call's entry lists it: the conversation's recordings show both
                    began.setdefault("recording_parts", []).append(part)
                    await self._set_channels(cid, extra={"calls": _json(calls[-20:])})
            await self.push(cid, "call.migrated", {"conversation_id": cid, "reason": "node_lost"})
            await self.push_state(cid)
        return taken

    async def _start(self, _app: web.Application) -> None:
        if self.config.media.host_addresses:  # this node's legs gather on these addresses only
            set_host_addresses(self.config.media.host_addresses)
        if self.forwarder is None:
            self.forwarder = Forwarder(batch_interval=self.config.media.receive_batch_ms / 1000)
            # encode the shared hold tone now (~100 ms of CPU), not inside the first call's wiring
            self.forwarder.hold_tone()

    async def close(self) -> None:
        records = list(self.records.values())
        self.records.clear()  # shutting down: nothing more is logged (Redis closes next)
        for record in records:
            record.state = CallPhase.ENDED
            if record.call is not None:
                await record.call.end("shutdown")
        for task in list(self._tasks):
            task.cancel()
        if self.forwarder is not None:
            await self.forwarder.close()

    # who is who -------------------------------------------------------------------------------

    def bind(self, namespace: str, sid: str, participant: Participant) -> None:
        self._who[(namespace, sid)] = participant

    def unbind(self, namespace: str, sid: str) -> None:
        self._who.pop((namespace, sid), None)
        for node in self._remote_sockets.pop((namespace, sid), ()):
            if self.cluster is not None:  # the node holding the call forgets the socket too
                self._spawn(self.cluster.tell(node, "call.socket_gone", {"ns": namespace, "sid": sid}))
        self._socket_gone(namespace, sid)

    def _socket_gone(self, namespace: str, sid: str) -> None:
        for cid, record in list(self.records.items()):
            seat = record.supervisor
            if seat is not None and seat.socket == (namespace, sid):
                # the supervisor's page went away: their monitoring ends (the call goes on)
                self._spawn(self.monitoring.seat_gone(cid, seat, "disconnected", socket=(namespace, sid)))

    async def join(self, namespace: str, sid: str, conversation_id: str) -> None:
        """Put the socket in the conversation's call room (to receive ``call.*`` pushes)."""
        if _FORWARDED.get():
            return  # the socket is on the node that forwarded the event: it joined the room there
        await self.sio.enter_room(sid, self.room(conversation_id), namespace=namespace)

    @staticmethod
    def room(cid: str) -> str:
        return f"conv:{cid}"

    def call_sockets(self) -> set[Socket]:
        """Sockets of this node that hold a leg of a call here (a draining node keeps them)."""
        return set(self._owners.values())

    def seated(self, cid: str, ns: str, sid: str) -> bool:
        """True when this socket holds the supervisor seat of the conversation's call."""
        record = self.records.get(cid)
        return record is not None and record.supervisor is not None and record.supervisor.socket == (ns, sid)

    async def _authorize(self, who: Participant, cid: str, observe: bool = False) -> dict[str, str]:
        """The conversation, if ``who`` may act on its call. ``observe``: supervisors may too
        (looking at the state, monitoring) without working on the conversation."""
        conv = await self.store.conversation(cid)
        if not conv:
            raise not_found(f"conversation {cid}")
        if conv.get("state") == "closed":
            raise conflict("the conversation is closed")
        if who.kind == "customer":
            if conv.get("customer") != who.id:
                raise forbidden("not your conversation")
        elif not (observe and who.supervisor):
            active = await self.store.active(cid)
            if who.id not in active and who.id not in (conv.get("agent"), conv.get("transfer_agent")):
                raise forbidden("you are not working on this conversation")
        return conv

    async def enter(self, ns: str, sid: str, who: Participant, cid: str, observe: bool = False) -> dict[str, str]:
        """Authorize ``who`` on the conversation (the supervisor's own socket always observes)
        and put the socket in its call room."""
        conv = await self._authorize(who, cid, observe or self.seated(cid, ns, sid))
        await self.join(ns, sid, cid)
        return conv

    def record(self, cid: str, active: bool = True) -> CallRecord:
        """The conversation's call, or ``conflict`` saying what to do first. ``active``: it must
        be running (accepted, with media), not just requested."""
        record = self.records.get(cid)
        if record is None or record.state is CallPhase.ENDED:
            raise conflict(f"no call in conversation {cid}: start one with call.request")
        if active and (record.state is not CallPhase.ACTIVE or record.call is None or not record.call.active):
            raise conflict(f"no active call in conversation {cid} yet: the other side accepts it first (call.accept)")
        return record

    # log and push -----------------------------------------------------------------------------

    async def log_event(self, cid: str, type_: str, data: dict[str, Any], author: dict[str, str] | None = None,
                        visibility: str = "all") -> dict[str, Any] | None:
        """Append to the conversation's log (acknowledged = stored) and push it as ``event``
        (``visibility="agents"``: to the /agent sockets only)."""
        author = author or {"kind": "system", "id": "system", "name": ""}
        try:
            outcome = await self.store.mutate(cid, {"events": [encode_event(type_, author, visibility, data)]})
        except MutationFailed as exc:
            log.warning("call event %s not logged for %s: %s", type_, cid, exc.code)
            return None
        if not outcome.ids:
            return None
        event = decode_event(cid, outcome.ids[0], {"t": type_, "a": _json(author), "v": visibility, "d": _json(data)})
        namespaces = NAMESPACES if visibility == "all" else (AGENT_NS,)
        for ns in namespaces:
            await self.sio.emit("event", event, room=self.room(cid), namespace=ns)
        return event

    async def push(self, cid: str, event: str, payload: dict[str, Any], skip_sid: str | None = None) -> None:
        for ns in NAMESPACES:
            await self.sio.emit(event, payload, room=self.room(cid), namespace=ns, skip_sid=skip_sid)

    async def push_state(self, cid: str) -> None:
        """``call.state`` to everyone in the call room (the customer's view without a
        listening or whispering supervisor)."""
        record = self.records.get(cid)
        await self.sio.emit("call.state", self.state(cid, record, CUSTOMER_NS), room=self.room(cid), namespace=CUSTOMER_NS)
        await self.sio.emit("call.state", self.state(cid, record, AGENT_NS), room=self.room(cid), namespace=AGENT_NS)

    def state(self, cid: str, record: CallRecord | None, ns: str = AGENT_NS) -> dict[str, Any]:
        """The ``call.state`` object as ``ns`` may see it."""
        if record is None:
            return {"conversation_id": cid, "state": "none"}
        seat = record.supervisor
        shown = seat is not None and (ns == AGENT_NS or seat.mode is MonitorMode.BARGE)
        out: dict[str, Any] = {
            "conversation_id": cid,
            "state": record.state.value,
            "requested_by": record.requested_by.author() if record.requested_by else None,
            "media_request": record.media_request,
            "transfer": record.transfer,
            "supervisor": None,
        }
        if record.video:
            out["video"] = True
        if shown:
            assert seat is not None
            leg = record.call.leg("supervisor") if record.call is not None else None
            out["supervisor"] = {"id": seat.who.id, "name": seat.who.name, "mode": seat.mode.value,
                                 "connection": leg.connection_state if leg is not None else "new"}
        if record.call is not None:
            summary = record.call.summary()
            if ns == CUSTOMER_NS:  # a supervisor is none of the customer's business until they barge in
                summary["legs"].pop("supervisor", None)
                summary["muted"] = [r for r in summary["muted"] if r != "supervisor"]
            out["call"] = summary
        return out

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ICE --------------------------------------------------------------------------------------

    def ice_servers(self, user: str) -> list[dict[str, Any]]:
        """What a browser should use: media.ice_servers plus TURN with fresh REST credentials."""
        servers: list[dict[str, Any]] = []
        for s in self.config.media.ice_servers:
            entry: dict[str, Any] = {"urls": list(s.urls)}
            if s.username:
                entry["username"] = s.username
                entry["credential"] = s.credential
            servers.append(entry)
        turn = self.config.media.turn
        if turn.secret and turn.urls:
            username, credential = turn_credentials(turn.secret, user, turn.ttl_s)
            servers.append({"urls": list(turn.urls), "username": username, "credential": credential})
        return servers

    def _server_ice(self) -> list[dict[str, Any]]:
        return [
            {"urls": list(s.urls), "username": s.username or None, "credential": s.credential or None}
            for s in self.config.media.ice_servers
        ]

    # handlers ---------------------------------------------------------------------------------

    async def on_config(self, ns: str, sid: str, who: Participant, d: cm.CallConfig) -> dict[str, Any]:
        return {"ice_servers": self.ice_servers(who.id), "reconnect_grace_s": self.config.media.reconnect_grace_s}

    async def on_state(self, ns: str, sid: str, who: Participant, d: cm.CallRef) -> dict[str, Any]:
        cid = d.conversation_id
        await self.enter(ns, sid, who, cid, observe=True)
        return {"call": self.state(cid, self.records.get(cid), ns)}

    async def on_request(self, ns: str, sid: str, who: Participant, d: cm.CallRequest) -> dict[str, Any]:
        """Ask for a call (media "voice"; "video" when no call runs: a call with cameras on) or,
        during a call, for video / screen share."""
        cid, media, page_url = d.conversation_id, d.media, d.page_url
        conv = await self.enter(ns, sid, who, cid)
        current = self.records.get(cid)
        idle = current is None or current.state is CallPhase.ENDED
        if media == "voice" or (media == "video" and idle):
            if not idle:
                assert current is not None
                raise conflict(f"a call is already {current.state.value} in this conversation")
            await self._claim(cid)  # this node is the call's home (Forward: another node was first)
            record = self.records[cid] = CallRecord(cid, requested_by=who, page_url=page_url, video=media == "video")
            await self._persist(record)
            data: dict[str, Any] = {"by": who.author(), "media": media, "channel": media}
            if page_url:
                data["page_url"] = page_url
            if who.kind == "customer" and not conv.get("agent"):
                # call-from-web before anyone is assigned: the call waits for the agent who accepts
                data["waiting_for_agent"] = True
        else:
            record = self.record(cid)
            record.media_request = {"media": media, "by": who.author()}
            data = {"by": who.author(), "media": media, "channel": media}
        event = await self.log_event(cid, "call.requested", data, who.author())
        await self.push(cid, "call.requested", {"conversation_id": cid, "media": media, "by": who.author()}, skip_sid=sid)
        return {"call": self.state(cid, record, ns), "event": event}

    async def on_accept(self, ns: str, sid: str, who: Participant, d: cm.CallRef) -> dict[str, Any]:
        cid = d.conversation_id
        conv = await self.enter(ns, sid, who, cid)
        record = self.record(cid, active=False)
        started = record.state is CallPhase.REQUESTED  # this accept starts the call (webhook call.started)
        if started:
            if record.requested_by and record.requested_by.kind == who.kind:
                raise conflict("the other side accepts a call you requested")
            async with record.lock:
                if record.call is None:
                    record.call = self._new_call(cid, conv)
                record.state = CallPhase.ACTIVE
            media = "video" if record.video else "voice"
            recording = await self._recording_began(cid, record.call)
            await self._call_began(record, conv, media, recording)
            await self._persist(record)
        elif record.media_request is not None:
            media = record.media_request["media"]
            if record.media_request["by"]["kind"] == who.kind:
                raise conflict("the other side accepts a request you made")
            record.media_request = None
        else:
            raise conflict("nothing to accept: the call is running and no video or screen share was asked for")
        accepted: dict[str, Any] = {"by": who.author(), "media": media, "channel": media}
        if started:
            accepted["started"] = True
        event = await self.log_event(cid, "call.accepted", accepted, who.author())
        await self.push(cid, "call.accepted", {"conversation_id": cid, "media": media, "by": who.author()})
        await self.push_state(cid)
        return {"call": self.state(cid, record, ns), "event": event, "ice_servers": self.ice_servers(who.id)}

    async def on_decline(self, ns: str, sid: str, who: Participant, d: cm.CallDecline) -> dict[str, Any]:
        cid, reason = d.conversation_id, d.reason or ""
        await self.enter(ns, sid, who, cid)
        record = self.record(cid, active=False)
        if record.state is CallPhase.REQUESTED:
            media = "video" if record.video else "voice"
            record.state = CallPhase.ENDED
            self.records.pop(cid, None)
            self._release(cid)
        elif record.media_request is not None:
            media = record.media_request["media"]
            record.media_request = None
        else:
            raise conflict("nothing to decline: the call is running and no video or screen share was asked for")
        data = {"by": who.author(), "media": media, "channel": media}
        if reason:
            data["reason"] = reason
        event = await self.log_event(cid, "call.declined", data, who.author())
        await self.push(cid, "call.declined", {"conversation_id": cid, "media": media, "by": who.author()})
        return {"event": event}

    async def on_offer(self, ns: str, sid: str, who: Participant, d: cm.CallOffer) -> dict[str, Any]:
        """The browser's offer (first, renegotiation, or a new connection after a reload)."""
        cid = d.conversation_id
        conv = await self.enter(ns, sid, who, cid)
        record = self.record(cid)
        call = record.call
        assert call is not None
        try:  # Segue's limits (m-lines, mids, extmap ids, fingerprint...): refused before a peer exists
            check_offer(d.sdp)
        except SdpRefused as exc:
            raise invalid("sdp", str(exc)) from None
        async with record.lock:
            role = self._role_of(ns, sid, who, record)
            leg = call.leg(role)
            owner = self._owners.get((cid, role))
            if (leg is not None and not leg.failed and owner == (ns, sid) and leg.participant == who.id
                    and leg.continues(d.sdp)):
                answer = await self._answer(leg, d.sdp)  # renegotiation of the same connection
                return {"sdp": answer, "renegotiated": True, "supervisor_audio": leg.second_audio}
            assert self.forwarder is not None
            new = CallLeg(self.forwarder, role=role, participant=who.id, ice_servers=self._server_ice(),
                          port_range=(self.config.media.udp_port_min, self.config.media.udp_port_max))
            try:
                answer = await self._answer(new, d.sdp)
            except BaseException:
                await new.close()
                raise
            previous_agent = call.leg("agent").participant if role == "agent" and call.leg("agent") else None
            if role == "consult":
                call.start_consult(new)
            else:
                call.attach(role, new)
            self._owners[(cid, role)] = (ns, sid)
        if role == "agent" and previous_agent and previous_agent != who.id:
            await self.log_event(cid, "call.transferred", await self._transferred(previous_agent, who.id, "cold"))
        await self.push_state(cid)
        return {"sdp": answer, "renegotiated": False, "supervisor_audio": new.second_audio}

    async def _answer(self, leg: CallLeg, sdp: str) -> str:
        try:
            # media.public_address: browsers reach this node's UDP ports there (several nodes, NAT)
            return announce(await leg.answer(sdp), self.config.media.public_address)
        except LegError as exc:
            raise invalid("sdp", str(exc)) from None
        except PortRangeExhausted as exc:
            raise ProtocolError("unavailable", f"the server has no free media port right now: {exc}") from None

    def _role_of(self, ns: str, sid: str, who: Participant, record: CallRecord) -> str:
        """Which leg an offer from this socket is: the supervisor's seat, the customer, the
        consulted agent of a warm transfer, or the agent."""
        if self.seated(record.conversation_id, ns, sid):
            return "supervisor"
        if who.kind == "customer":
            return "customer"
        call = record.call
        assert call is not None
        agent_leg = call.leg("agent")
        transfer = record.transfer or {}
        if (
            transfer.get("mode") == "warm"
            and transfer.get("to_agent") == who.id
            and agent_leg is not None
            and agent_leg.participant != who.id
        ):
            return "consult"
        consult = call.leg("consult")
        if consult is not None and consult.participant == who.id:
            return "consult"
        return "agent"

    async def on_candidate(self, ns: str, sid: str, who: Participant, d: cm.CallCandidate) -> dict[str, Any]:
        cid = d.conversation_id
        record = self.record(cid)
        c = d.candidate
        candidate = None if c is None else {"candidate": c.candidate, "sdpMid": c.sdpMid, "sdpMLineIndex": c.sdpMLineIndex}
        async with record.lock:
            leg = self._leg_of(cid, ns, sid, record)
            if leg is None:
                raise conflict("send call.offer before candidates")
            try:
                await leg.add_candidate(candidate)
            except LegError as exc:
                raise invalid("candidate", str(exc)) from None
        return {}

    def _leg_of(self, cid: str, ns: str, sid: str, record: CallRecord) -> CallLeg | None:
        role = self._socket_role(cid, ns, sid, record)
        return record.call.leg(role) if role is not None and record.call is not None else None

    def _socket_role(self, cid: str, ns: str, sid: str, record: CallRecord) -> str | None:
        """The role whose leg this socket offered, if any."""
        assert record.call is not None
        for role in record.call.legs:
            if self._owners.get((cid, role)) == (ns, sid):
                return role
        return None

    async def on_mute(self, ns: str, sid: str, who: Participant, d: cm.CallMute) -> dict[str, Any]:
        cid = d.conversation_id
        await self.enter(ns, sid, who, cid)
        record = self.record(cid)
        assert record.call is not None
        role = self._socket_role(cid, ns, sid, record)
        if role is None:  # muting before this socket's offer
            role = "supervisor" if self.seated(cid, ns, sid) else "customer" if who.kind == "customer" else "agent"
        record.call.mute(role, d.muted)
        await self.push_state(cid)
        return {"call": self.state(cid, record, ns)}

    async def on_hold(self, ns: str, sid: str, who: Participant, d: cm.CallHold) -> dict[str, Any]:
        cid = d.conversation_id
        if who.kind != "agent":
            raise forbidden("only the agent puts a call on hold")
        await self.enter(ns, sid, who, cid)
        if self.seated(cid, ns, sid):
            raise forbidden("a monitoring supervisor does not hold the call: the agent does")
        record = self.record(cid)
        assert record.call is not None
        changed = record.call.held != d.held
        record.call.hold(d.held)
        event = None
        if changed:
            event = await self.log_event(cid, "call.held", {"held": d.held, "by": who.author()}, who.author())
        await self.push_state(cid)
        return {"call": self.state(cid, record, ns), "event": event}

    async def on_hangup(self, ns: str, sid: str, who: Participant, d: cm.CallRef) -> dict[str, Any]:
        """Ends the call — except from the monitoring supervisor's socket: only their leg leaves."""
        cid = d.conversation_id
        await self.enter(ns, sid, who, cid)
        self.record(cid, active=False)
        if self.seated(cid, ns, sid):
            event = await self.monitoring.stop(cid, who, "hangup")
            return {"event": event}
        event = await self.end(cid, "hangup", who)
        return {"event": event}

    # the call's own events --------------------------------------------------------------------

    def _new_call(self, cid: str, conv: dict[str, str]) -> Call:
        assert self.forwarder is not None
        recorder = None
        queue = next((q for q in self.config.routing.queues if q.name == conv.get("queue")), None)
        if queue is not None and queue.record_calls:
            # unguessable: the id in the URL is the only handle, and reading it needs access to the conversation
            name = f"rec_{secrets.token_urlsafe(24)}.webm"
            recorder = CallRecorder(self.recordings.folder() / name)
        return Call(cid, self.forwarder, grace_s=self.config.media.reconnect_grace_s,
                    on_event=self._on_call_event, recorder=recorder)

    async def _recording_began(self, cid: str, call: Call, continues: str | None = None) -> dict[str, str] | None:
        """A recorded call started here (or, ``continues``: went on here after the node recording
        it died, in a new file): the file is named in Redis with this node, and ``call.recording``
        logged. Its id is the file's random name; only it and the URL leave the server (never a path)."""
        if call.recorder is None:
            return None
        rid = call.recorder.path.stem
        await self.recordings.add(rid, cid, call.recorder.path.name)
        recording = {"id": rid, "url": f"/api/v1/recordings/{rid}"}
        await self.log_event(cid, "call.recording", {**recording, "continues": continues} if continues else recording)
        return recording

    def _on_call_event(self, call: Call, kind: str, data: dict[str, Any]) -> None:
        cid = call.conversation_id
        if kind == "media" and data["slot"] in ("video", "screen"):
            participant = call.leg(data["role"]).participant if call.leg(data["role"]) else None
            type_ = f"call.{data['slot']}_{'on' if data['on'] else 'off'}"
            self._spawn(self.log_event(cid, type_, {"role": data["role"], "participant": participant, "channel": data["slot"]}))
            record = self.records.get(cid)
            if record is not None:
                slot, key = data["slot"], (data["role"], data["slot"])
                before = any(s == slot for _, s in record.media_on)
                (record.media_on.add if data["on"] else record.media_on.discard)(key)
                after = any(s == slot for _, s in record.media_on)
                if before != after:
                    self._spawn(self._set_channels(cid, on=[slot] if after else [], off=[] if after else [slot]))
        elif kind == "leg.lost":
            self._spawn(self.log_event(cid, "call.leg_lost", {"role": data["role"], "participant": data["participant"], "grace_s": data["grace_s"]}))
        elif kind == "leg.attached" and data.get("reattached") and data["role"] == "customer":
            self._spawn(self.log_event(cid, "call.reconnected", {"role": data["role"], "participant": data["participant"]}))
        elif kind == "supervisor.lost":
            record = self.records.get(cid)
            seat = record.supervisor if record is not None else None
            if seat is not None and seat.who.id == data["participant"]:
                self._spawn(self.monitoring.seat_gone(cid, seat, "connection_lost"))
            return
        elif kind == "ended":
            record = self.records.get(cid)
            if record is not None and record.state is not CallPhase.ENDED:
                # ended by the call itself (grace period over): log and tell everyone
                record.state = CallPhase.ENDED
                self.records.pop(cid, None)
                self._release(cid)
                self._ending[cid] = record
                self._spawn(self._announce_end(cid, data["reason"], data["durations"], None))
            return
        self._spawn(self.push_state(cid))

    async def end(self, cid: str, reason: str, by: Participant | None = None) -> dict[str, Any] | None:
        record = self.records.pop(cid, None)
        if record is None:
            return None
        self._release(cid)
        self._ending[cid] = record
        record.state = CallPhase.ENDED
        record.supervisor = None
        durations: dict[str, float] = {}
        if record.call is not None:
            await record.call.end(reason)
            durations = record.call.durations()
        for key in [k for k in self._owners if k[0] == cid]:
            del self._owners[key]
        return await self._announce_end(cid, reason, durations, by)

    async def _announce_end(self, cid: str, reason: str, durations: dict[str, float], by: Participant | None) -> dict[str, Any] | None:
        for key in [k for k in self._owners if k[0] == cid]:
            del self._owners[key]
        record = self._ending.pop(cid, None)
        video = bool(record is not None and record.video) or bool(durations.get("video"))
        data: dict[str, Any] = {"reason": reason, "durations": durations, "channel": "video" if video else "voice"}
        if record is not None:
            await self._call_over(record, durations)
        if by is not None:
            data["by"] = by.author()
        event = await self.log_event(cid, "call.ended", data, by.author() if by else None)
        await self.push(cid, "call.ended", {"conversation_id": cid, "reason": reason, "durations": durations})
        return event

    # transfer hooks (called by the namespaces' transfer handlers) -----------------------------

    async def transfer_started(self, cid: str, mode: str, to_agent: str | None) -> None:
        """Cold: the first agent's leg leaves now (the customer hears the hold tone).
        Warm: the target agent's leg will join as ``consult`` when it offers."""
        record = self.records.get(cid)
        if record is None or record.call is None or not record.call.active:
            return
        record.transfer = {"mode": mode, "to_agent": to_agent}
        if mode == "cold":
            agent = record.call.leg("agent")
            record.call.detach("agent")
            self._owners.pop((cid, "agent"), None)
            record.transfer["from_agent"] = agent.participant if agent else None
        await self.push_state(cid)

    async def transfer_completed(self, cid: str, to_agent: str | None = None) -> None:
        record = self.records.get(cid)
        if record is None or record.call is None or not record.call.active:
            return
        transfer = record.transfer or {}
        call = record.call
        if call.leg("consult") is not None:
            from_agent = call.leg("agent").participant if call.leg("agent") else None
            call.complete_transfer()
            owner = self._owners.pop((cid, "consult"), None)
            if owner is not None:
                self._owners[(cid, "agent")] = owner
            await self.log_event(cid, "call.transferred",
                                 await self._transferred(from_agent, to_agent or transfer.get("to_agent"), "warm"))
        elif transfer.get("mode") == "cold":
            await self.log_event(cid, "call.transferred",
                                 await self._transferred(transfer.get("from_agent"), to_agent or transfer.get("to_agent"), "cold"))
        record.transfer = None
        await self._move_load(record, to_agent)
        await self.push_state(cid)

    async def transfer_cancelled(self, cid: str) -> None:
        record = self.records.get(cid)
        if record is None or record.call is None or not record.call.active:
            return
        if record.call.leg("consult") is not None:
            record.call.cancel_consult()
            self._owners.pop((cid, "consult"), None)
        record.transfer = None
        await self.push_state(cid)

    async def conversation_closed(self, cid: str) -> None:
        if cid in self.records:
            await self.end(cid, "conversation_closed")

    # what the conversation's summary and routing know of its calls ----------------------------

    @property
    def _signaling(self) -> Any:
        from . import SIGNALING

        return self.app[SIGNALING]

    async def _agent_brief(self, agent_id: str | None) -> dict[str, str] | None:
        """``{id, name}`` of an agent (customers see the name, never the login id)."""
        if not agent_id:
            return None
        name = await self.node.redis.hget(self.store.keys.account(agent_id), "name")
        return {"id": agent_id, "name": name or agent_id}

    async def _transferred(self, from_agent: str | None, to_agent: str | None, mode: str) -> dict[str, Any]:
        """``call.transferred`` data: the agents' ids (as before) and their display names (what the
        customer is shown: never a login id)."""
        data: dict[str, Any] = {"from_agent": from_agent, "to_agent": to_agent, "mode": mode}
        for key, agent in (("from_agent_name", from_agent), ("to_agent_name", to_agent)):
            brief = await self._agent_brief(agent)
            if brief is not None:
                data[key] = brief["name"]
        return data

    async def _set_channels(self, cid: str, on: tuple[str, ...] | list[str] = (),
                            off: tuple[str, ...] | list[str] = (), extra: dict[str, str] | None = None) -> None:
        """Channels in use now (the hash's ``channels``) and time on each (``ch_on:<ch>`` since when,
        ``ch_ms:<ch>`` accumulated): read by ``summary()``. The call's node is the only writer of
        its channels, so a read-then-write here does not race."""
        try:
            conv = await self.store.conversation(cid)
            if not conv:
                return
            now = int(time.time() * 1000)
            active = [c for c in (conv.get("channels") or "chat").split(",") if c]
            used = [c for c in (conv.get("channels_used") or ",".join(active)).split(",") if c]
            sets: dict[str, str] = dict(extra or {})
            dels: list[str] = []
            for ch in on:
                if ch not in active:
                    active.append(ch)
                if not conv.get(f"ch_on:{ch}"):  # (a call from the web starts with its channel listed)
                    sets[f"ch_on:{ch}"] = str(now)
                if ch not in used:
                    used.append(ch)
            for ch in off:
                if ch in active:
                    active.remove(ch)
                if conv.get(f"ch_on:{ch}"):
                    since = int(conv[f"ch_on:{ch}"])
                    sets[f"ch_ms:{ch}"] = str(int(conv.get(f"ch_ms:{ch}") or 0) + max(0, now - since))
                    dels.append(f"ch_on:{ch}")
            sets["channels"] = ",".join(active or ["chat"])
            sets["channels_used"] = ",".join(used)
            await self.store.mutate(cid, {"set": sets, "del": dels})
            await self._signaling.push_summary(await self.store.conversation(cid))
        except MutationFailed:
            return
        except Exception:  # noqa: BLE001 - bookkeeping must never break the call itself
            log.exception("channels of %s not updated", cid)

    async def _call_began(self, record: CallRecord, conv: dict[str, str], media: str,
                          recording: dict[str, str] | None) -> None:
        """The call is active: voice (and video) join the conversation's channels, the call is
        listed on the conversation, and it holds a slot of the agent's capacity for its lane."""
        cid = record.conversation_id
        record.started_ms = int(time.time() * 1000)
        calls = _calls_of(conv)
        entry: dict[str, Any] = {"started_ts": record.started_ms, "media": media}
        if recording:
            entry["recording"] = recording
        calls.append(entry)
        await self._set_channels(cid, on=["voice"], extra={"calls": _json(calls[-20:])})
        agent = conv.get("agent")
        if agent:
            await self._hold_load(record, agent)

    async def _call_over(self, record: CallRecord, durations: dict[str, float]) -> None:
        cid = record.conversation_id
        conv = await self.store.conversation(cid)
        extra: dict[str, str] = {}
        if conv and record.started_ms:
            calls = _calls_of(conv)
            for entry in reversed(calls):
                if entry.get("started_ts") == record.started_ms:
                    entry["ended_ts"] = int(time.time() * 1000)
                    entry["duration_s"] = round(float(durations.get("call") or (entry["ended_ts"] - record.started_ms) / 1000), 1)
                    if durations.get("video"):
                        entry["media"] = "video"
                    break
            extra["calls"] = _json(calls)
        await self._set_channels(cid, off=["voice", "video", "screen"], extra=extra)
        if record.load_agent:
            agent, record.load_agent = record.load_agent, None
            try:
                await self._signaling.router.call_ended(agent, cid)
            except Exception:  # noqa: BLE001
                log.exception("routing load of %s not freed", cid)

    async def _hold_load(self, record: CallRecord, agent: str) -> None:
        try:
            await self._signaling.router.call_started(agent, record.conversation_id, "video" if record.video else "voice")
            record.load_agent = agent
        except Exception:  # noqa: BLE001 - routing bookkeeping must not break the call
            log.exception("routing load of %s not recorded", record.conversation_id)

    async def _move_load(self, record: CallRecord, to_agent: str | None) -> None:
        """A transfer completed: the call's slot moves to the agent who has the call now (the one
        who left was released by the transfer, which freed theirs)."""
        if record.load_agent and record.load_agent != to_agent:
            try:
                await self._signaling.router.call_ended(record.load_agent, record.conversation_id)
            except Exception:  # noqa: BLE001
                log.exception("routing load of %s not freed", record.conversation_id)
            record.load_agent = None
        if to_agent:
            await self._hold_load(record, to_agent)


def _calls_of(conv: dict[str, str]) -> list[dict[str, Any]]:
    import json

    try:
        calls = json.loads(conv.get("calls") or "[]")
    except ValueError:
        return []
    return calls if isinstance(calls, list) else []


def _json(value: Any) -> str:
    import json

    return json.dumps(value, separators=(",", ":"))


# KEYS: call hash, this node's calls; ARGV: node, cid. The call's home: us unless another node has it.
_CLAIM = """
if redis.call('HSETNX', KEYS[1], 'node', ARGV[1]) == 1 then
  redis.call('SADD', KEYS[2], ARGV[2])
  return ARGV[1]
end
return redis.call('HGET', KEYS[1], 'node')
"""
# KEYS: call hash, this node's calls; ARGV: node, cid. Forget the call if it is (still) ours.
_RELEASE = """
if redis.call('HGET', KEYS[1], 'node') == ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('SREM', KEYS[2], ARGV[2])
return 1
"""
# KEYS: call hash, our calls, the dead node's calls; ARGV: dead node, us, cid. Take the call over
# if the dead node still holds it; returns its fields (nothing if someone else has it).
_ADOPT = """
redis.call('SREM', KEYS[3], ARGV[3])
if redis.call('HGET', KEYS[1], 'node') ~= ARGV[1] then return false end
redis.call('HSET', KEYS[1], 'node', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
return redis.call('HGETALL', KEYS[1])
"""

CALLS: web.AppKey[CallService] = web.AppKey("segue_calls", CallService)


def register(app: web.Application) -> CallService:
    """Install the ``call.*`` handlers on both namespaces (once per app) and return the service."""
    if CALLS in app:
        return app[CALLS]
    service = CallService(app)
    service.install()
    app[CALLS] = service
    return service

