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

Ordering: the SDP and candidates of one conversation are applied under one lock, so a
candidate sent right after an offer is never applied before it (python-socketio runs a
client's handlers as concurrent tasks).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

import socketio
from aiohttp import web

from media import Call, CallLeg, CallRecorder, Forwarder, LegError

from .errors import ProtocolError, conflict, forbidden, invalid, not_found
from .store import MutationFailed, Store, encode_event, decode_event

log = logging.getLogger(__name__)

NAMESPACES = ("/customer", "/agent")
MEDIA = ("voice", "video", "screen")


@dataclass(frozen=True)
class Participant:
    kind: str  # "customer" | "agent"
    id: str
    name: str = ""

    def author(self) -> dict[str, str]:
        return {"kind": self.kind, "id": self.id, "name": self.name}


@dataclass
class CallRecord:
    """Signalling state of a conversation's call (the media side is ``call``)."""

    conversation_id: str
    state: str = "requested"  # requested -> active -> ended
    requested_by: Participant | None = None
    media_request: dict[str, Any] | None = None  # pending escalation {media, by}
    call: Call | None = None
    requested_at: float = field(default_factory=time.time)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    transfer: dict[str, Any] | None = None  # {mode, to_agent}
    page_url: str | None = None


def turn_credentials(secret: str, user: str, ttl_s: int, now: float | None = None) -> tuple[str, str]:
    """TURN REST credentials: username ``"<expiry>:<user>"``, password
    ``base64(HMAC-SHA1(secret, username))`` (coturn's ``use-auth-secret``)."""
    expiry = int((now if now is not None else time.time()) + ttl_s)
    username = f"{expiry}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def _obj(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise invalid("payload", "must be an object")
    return payload


def _cid(payload: dict[str, Any]) -> str:
    cid = payload.get("conversation_id")
    if not isinstance(cid, str) or not 1 <= len(cid) <= 128:
        raise invalid("conversation_id", "required: a conversation id")
    return cid


def _only(payload: dict[str, Any], allowed: set[str]) -> None:
    for key in payload:
        if key not in allowed:
            raise invalid(key, "unknown field")


class CallService:
    """Every call of this node, and the ``call.*`` handlers of both namespaces."""

    def __init__(self, app: web.Application) -> None:
        from server import NODE

        self.app = app
        self.node = app[NODE]
        self.sio: socketio.AsyncServer = self.node.sio
        self.config = self.node.config
        self.store = Store(self.node.redis, self.config.redis.key_prefix)
        self.forwarder: Forwarder | None = None
        self.records: dict[str, CallRecord] = {}
        self._who: dict[tuple[str, str], Participant] = {}
        self._owners: dict[tuple[str, str], tuple[str, str]] = {}  # (cid, role) -> (ns, sid)
        self._tasks: set[asyncio.Task[Any]] = set()

    # wiring -----------------------------------------------------------------------------------

    def install(self) -> None:
        handlers: dict[str, Callable[..., Awaitable[dict[str, Any]]]] = {
            "call.config": self.on_config,
            "call.request": self.on_request,
            "call.accept": self.on_accept,
            "call.decline": self.on_decline,
            "call.offer": self.on_offer,
            "call.candidate": self.on_candidate,
            "call.mute": self.on_mute,
            "call.hold": self.on_hold,
            "call.hangup": self.on_hangup,
            "call.state": self.on_state,
        }
        for ns in NAMESPACES:
            for event, handler in handlers.items():
                self.sio.on(event, self._wrap(ns, event, handler), namespace=ns)
        self.app.router.add_get("/api/v1/recordings/{name}", self.download_recording)
        self.app.on_startup.append(self._start)
        self.node.closers.append(self.close)

    async def _start(self, _app: web.Application) -> None:
        if self.forwarder is None:
            self.forwarder = Forwarder()

    async def close(self) -> None:
        records = list(self.records.values())
        self.records.clear()  # shutting down: nothing more is logged (Redis closes next)
        for record in records:
            record.state = "ended"
            if record.call is not None:
                await record.call.end("shutdown")
        for task in list(self._tasks):
            task.cancel()
        if self.forwarder is not None:
            await self.forwarder.close()

    def _wrap(self, ns: str, event: str, handler: Callable[..., Awaitable[dict[str, Any]]]) -> Callable[..., Any]:
        async def run(sid: str, payload: Any = None) -> dict[str, Any]:
            try:
                who = await self.identify(ns, sid)
                body = _obj(payload if payload is not None else {})
                result = await handler(ns, sid, who, body)
                return {"ok": True, **result}
            except ProtocolError as exc:
                return {"ok": False, "error": exc.as_dict()}
            except LegError as exc:
                return {"ok": False, "error": {"code": "invalid", "message": str(exc), "field": "sdp"}}
            except Exception:  # noqa: BLE001
                log.exception("%s %s failed", ns, event)
                return {"ok": False, "error": {"code": "internal", "message": f"{event} failed on the server"}}

        return run

    # who is who -------------------------------------------------------------------------------

    def bind(self, namespace: str, sid: str, participant: Participant) -> None:
        self._who[(namespace, sid)] = participant

    def unbind(self, namespace: str, sid: str) -> None:
        self._who.pop((namespace, sid), None)

    async def join(self, namespace: str, sid: str, conversation_id: str) -> None:
        """Put the socket in the conversation's call room (to receive ``call.*`` pushes)."""
        await self.sio.enter_room(sid, self.room(conversation_id), namespace=namespace)

    @staticmethod
    def room(cid: str) -> str:
        return f"conv:{cid}"

    async def identify(self, ns: str, sid: str) -> Participant:
        who = self._who.get((ns, sid))
        if who is not None:
            return who
        try:
            session = await self.sio.get_session(sid, namespace=ns)
        except KeyError:
            session = {}
        kind = "customer" if ns == "/customer" else "agent"
        if kind == "customer":
            pid = session.get("customer_id") or (session.get("customer") or {}).get("id")
            name = session.get("name") or (session.get("customer") or {}).get("name") or ""
        else:
            agent = session.get("agent") or {}
            pid = agent.get("id") or session.get("agent_id")
            name = agent.get("name") or ""
        if not pid:
            raise ProtocolError("unauthorized", "this connection is not signed in (no customer or agent session)")
        return Participant(kind, str(pid), str(name))

    async def _authorize(self, who: Participant, cid: str) -> dict[str, str]:
        conv = await self.store.conversation(cid)
        if not conv:
            raise not_found(f"conversation {cid}")
        if conv.get("state") == "closed":
            raise conflict("the conversation is closed")
        if who.kind == "customer":
            if conv.get("customer") != who.id:
                raise forbidden("not your conversation")
        else:
            active = await self.store.active(cid)
            if who.id not in active and who.id not in (conv.get("agent"), conv.get("transfer_agent")):
                raise forbidden("you are not working on this conversation")
        return conv

    async def _enter(self, ns: str, sid: str, who: Participant, payload: dict[str, Any]) -> tuple[str, dict[str, str]]:
        cid = _cid(payload)
        conv = await self._authorize(who, cid)
        await self.join(ns, sid, cid)
        return cid, conv

    # log and push -----------------------------------------------------------------------------

    async def log_event(self, cid: str, type_: str, data: dict[str, Any], author: dict[str, str] | None = None) -> dict[str, Any] | None:
        """Append to the conversation's log (acknowledged = stored) and push it as ``event``."""
        author = author or {"kind": "system", "id": "system", "name": ""}
        try:
            outcome = await self.store.mutate(cid, {"events": [encode_event(type_, author, "all", data)]})
        except MutationFailed as exc:
            log.warning("call event %s not logged for %s: %s", type_, cid, exc.code)
            return None
        if not outcome.ids:
            return None
        event = decode_event(cid, outcome.ids[0], {"t": type_, "a": _json(author), "v": "all", "d": _json(data)})
        await self.push(cid, "event", event)
        return event

    async def push(self, cid: str, event: str, payload: dict[str, Any], skip_sid: str | None = None) -> None:
        for ns in NAMESPACES:
            await self.sio.emit(event, payload, room=self.room(cid), namespace=ns, skip_sid=skip_sid)

    async def push_state(self, cid: str) -> None:
        record = self.records.get(cid)
        await self.push(cid, "call.state", self._state(cid, record))

    def _state(self, cid: str, record: CallRecord | None) -> dict[str, Any]:
        if record is None:
            return {"conversation_id": cid, "state": "none"}
        out: dict[str, Any] = {
            "conversation_id": cid,
            "state": record.state,
            "requested_by": record.requested_by.author() if record.requested_by else None,
            "media_request": record.media_request,
            "transfer": record.transfer,
        }
        if record.call is not None:
            out["call"] = record.call.summary()
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

    async def on_config(self, ns: str, sid: str, who: Participant, payload: dict[str, Any]) -> dict[str, Any]:
        _only(payload, {"conversation_id"})  # optional, ignored
        return {"ice_servers": self.ice_servers(who.id), "reconnect_grace_s": self.config.media.reconnect_grace_s}

    async def on_state(self, ns: str, sid: str, who: Participant, payload: dict[str, Any]) -> dict[str, Any]:
        _only(payload, {"conversation_id"})
        cid, _ = await self._enter(ns, sid, who, payload)
        return {"call": self._state(cid, self.records.get(cid))}

    async def on_request(self, ns: str, sid: str, who: Participant, payload: dict[str, Any]) -> dict[str, Any]:
        """Ask for a call (media "voice") or, during a call, for video / screen share."""
        _only(payload, {"conversation_id", "media", "page_url"})
        cid, conv = await self._enter(ns, sid, who, payload)
        media = payload.get("media", "voice")
        if media not in MEDIA:
            raise invalid("media", "one of voice, video, screen")
        page_url = payload.get("page_url")
        if page_url is not None and (not isinstance(page_url, str) or len(page_url) > 2048):
            raise invalid("page_url", "a URL of at most 2048 characters")
        record = self.records.get(cid)
        if media == "voice":
            if record is not None and record.state in ("requested", "active"):
                raise conflict(f"a call is already {record.state} in this conversation")
            record = self.records[cid] = CallRecord(cid, requested_by=who, page_url=page_url)
            data: dict[str, Any] = {"by": who.author(), "media": "voice", "channel": "voice"}
            if page_url:
                data["page_url"] = page_url
            if who.kind == "customer" and not conv.get("agent"):
                # call-from-web before anyone is assigned: the call waits for the agent who accepts
                data["waiting_for_agent"] = True
        else:
            if record is None or record.state != "active":
                raise conflict("start a voice call first")
            record.media_request = {"media": media, "by": who.author()}
            data = {"by": who.author(), "media": media, "channel": media}
        event = await self.log_event(cid, "call.requested", data, who.author())
        await self.push(cid, "call.requested", {"conversation_id": cid, "media": media, "by": who.author()}, skip_sid=sid)
        return {"call": self._state(cid, record), "event": event}

    async def on_accept(self, ns: str, sid: str, who: Participant, payload: dict[str, Any]) -> dict[str, Any]:
        _only(payload, {"conversation_id"})
        cid, conv = await self._enter(ns, sid, who, payload)
        record = self.records.get(cid)
        if record is None or record.state == "ended":
            raise conflict("no call was requested")
        if record.state == "requested":
            if record.requested_by and record.requested_by.kind == who.kind:
                raise conflict("the other side accepts a call you requested")
            async with record.lock:
                if record.call is None:
                    record.call = self._new_call(cid, conv)
                record.state = "active"
            media = "voice"
            if record.call.recorder is not None:
                await self.log_event(cid, "call.recording", {"name": record.call.recorder.path.name,
                                                              "path": str(record.call.recorder.path),
                                                              "url": f"/api/v1/recordings/{record.call.recorder.path.name}"})
        elif record.media_request is not None:
            media = record.media_request["media"]
            if record.media_request["by"]["kind"] == who.kind:
                raise conflict("the other side accepts a request you made")
            record.media_request = None
        else:
            raise conflict("nothing to accept")
        event = await self.log_event(cid, "call.accepted", {"by": who.author(), "media": media, "channel": media}, who.author())
        await self.push(cid, "call.accepted", {"conversation_id": cid, "media": media, "by": who.author()})
        await self.push_state(cid)
        return {"call": self._state(cid, record), "event": event, "ice_servers": self.ice_servers(who.id)}

    async def on_decline(self, ns: str, sid: str, who: Participant, payload: dict[str, Any]) -> dict[str, Any]:
        _only(payload, {"conversation_id", "reason"})
        cid, _ = await self._enter(ns, sid, who, payload)
        reason = payload.get("reason", "")
        if not isinstance(reason, str) or len(reason) > 200:
            raise invalid("reason", "text of at most 200 characters")
        record = self.records.get(cid)
        if record is None or record.state == "ended":
            raise conflict("no call was requested")
        if record.state == "requested":
            media = "voice"
            record.state = "ended"
            self.records.pop(cid, None)
        elif record.media_request is not None:
            media = record.media_request["media"]
            record.media_request = None
        else:
            raise conflict("nothing to decline")
        data = {"by": who.author(), "media": media, "channel": media}
        if reason:
            data["reason"] = reason
        event = await self.log_event(cid, "call.declined", data, who.author())
        await self.push(cid, "call.declined", {"conversation_id": cid, "media": media, "by": who.author()})
        return {"event": event}

    async def on_offer(self, ns: str, sid: str, who: Participant, payload: dict[str, Any]) -> dict[str, Any]:
        """The browser's offer (first, renegotiation, or a new connection after a reload)."""
        _only(payload, {"conversation_id", "sdp"})
        cid, conv = await self._enter(ns, sid, who, payload)
        sdp = payload.get("sdp")
        if not isinstance(sdp, str):
            raise invalid("sdp", "the offer's SDP text")
        record = self.records.get(cid)
        if record is None or record.state != "active" or record.call is None or not record.call.active:
            raise conflict("no active call in this conversation: call.request / call.accept first")
        call = record.call
        async with record.lock:
            role = self._role_of(who, conv, record)
            leg = call.leg(role)
            owner = self._owners.get((cid, role))
            if leg is not None and not leg.failed and owner == (ns, sid) and leg.participant == who.id:
                answer = await leg.answer(sdp)  # renegotiation of the same connection
                return {"sdp": answer, "renegotiated": True}
            assert self.forwarder is not None
            new = CallLeg(self.forwarder, role=role, participant=who.id, ice_servers=self._server_ice())
            try:
                answer = await new.answer(sdp)
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
            await self.log_event(cid, "call.transferred", {"from_agent": previous_agent, "to_agent": who.id, "mode": "cold"})
        await self.push_state(cid)
        return {"sdp": answer, "renegotiated": False}

    def _role_of(self, who: Participant, conv: dict[str, str], record: CallRecord) -> str:
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

    async def on_candidate(self, ns: str, sid: str, who: Participant, payload: dict[str, Any]) -> dict[str, Any]:
        _only(payload, {"conversation_id", "candidate"})
        cid = _cid(payload)
        record = self.records.get(cid)
        if record is None or record.call is None:
            raise conflict("no active call in this conversation")
        candidate = payload.get("candidate")
        if candidate is not None and not isinstance(candidate, dict):
            raise invalid("candidate", "an RTCIceCandidateInit object or null (end of candidates)")
        async with record.lock:
            leg = self._leg_of(cid, ns, sid, record)
            if leg is None:
                raise conflict("send call.offer before candidates")
            await leg.add_candidate(candidate)
        return {}

    def _leg_of(self, cid: str, ns: str, sid: str, record: CallRecord) -> CallLeg | None:
        assert record.call is not None
        for role, leg in record.call.legs.items():
            if self._owners.get((cid, role)) == (ns, sid):
                return leg
        return None

    async def on_mute(self, ns: str, sid: str, who: Participant, payload: dict[str, Any]) -> dict[str, Any]:
        _only(payload, {"conversation_id", "muted"})
        cid, _ = await self._enter(ns, sid, who, payload)
        muted = payload.get("muted")
        if not isinstance(muted, bool):
            raise invalid("muted", "true or false")
        record = self._active(cid)
        leg = self._leg_of(cid, ns, sid, record)
        role = next((r for r, l in record.call.legs.items() if l is leg), None) if leg else None  # type: ignore[union-attr]
        if role is None:
            role = "customer" if who.kind == "customer" else "agent"
        record.call.mute(role, muted)  # type: ignore[union-attr]
        await self.push_state(cid)
        return {"call": self._state(cid, record)}

    async def on_hold(self, ns: str, sid: str, who: Participant, payload: dict[str, Any]) -> dict[str, Any]:
        _only(payload, {"conversation_id", "held"})
        cid, _ = await self._enter(ns, sid, who, payload)
        if who.kind != "agent":
            raise forbidden("only the agent puts a call on hold")
        held = payload.get("held")
        if not isinstance(held, bool):
            raise invalid("held", "true or false")
        record = self._active(cid)
        assert record.call is not None
        changed = record.call.held != held
        record.call.hold(held)
        event = None
        if changed:
            event = await self.log_event(cid, "call.held", {"held": held, "by": who.author()}, who.author())
        await self.push_state(cid)
        return {"call": self._state(cid, record), "event": event}

    async def on_hangup(self, ns: str, sid: str, who: Participant, payload: dict[str, Any]) -> dict[str, Any]:
        _only(payload, {"conversation_id"})
        cid, _ = await self._enter(ns, sid, who, payload)
        record = self.records.get(cid)
        if record is None or record.state == "ended":
            raise conflict("no call in this conversation")
        event = await self.end(cid, "hangup", who)
        return {"event": event}

    def _active(self, cid: str) -> CallRecord:
        record = self.records.get(cid)
        if record is None or record.state != "active" or record.call is None:
            raise conflict("no active call in this conversation")
        return record

    # the call's own events --------------------------------------------------------------------

    def _new_call(self, cid: str, conv: dict[str, str]) -> Call:
        assert self.forwarder is not None
        recorder = None
        queue = next((q for q in self.config.routing.queues if q.name == conv.get("queue")), None)
        if queue is not None and queue.record_calls:
            name = f"{cid}-{int(time.time())}.webm"
            recorder = CallRecorder(self.recordings_dir() / name)
        return Call(cid, self.forwarder, grace_s=self.config.media.reconnect_grace_s,
                    on_event=self._on_call_event, recorder=recorder)

    def recordings_dir(self) -> Path:
        configured = self.config.media.recordings_dir
        return Path(configured).expanduser().resolve() if configured else self.config.data_path / "recordings"

    async def download_recording(self, request: web.Request) -> web.StreamResponse:
        """``GET /api/v1/recordings/{name}`` with ``Authorization: Bearer <agent token>``."""
        name = request.match_info["name"]
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else ""
        try:
            from . import SIGNALING

            await self.app[SIGNALING].agent_from_token(token)
        except Exception:  # noqa: BLE001 - any failure is "not signed in"
            return web.json_response({"error": {"code": "unauthorized", "message": "send Authorization: Bearer <agent token>"}}, status=401)
        if "/" in name or name.startswith(".") or not name.endswith(".webm"):
            return web.json_response({"error": {"code": "invalid", "message": "not a recording name", "field": "name"}}, status=400)
        path = self.recordings_dir() / name
        if not path.is_file():
            return web.json_response({"error": {"code": "not_found", "message": f"recording {name} does not exist"}}, status=404)
        return web.FileResponse(path, headers={"Content-Type": "audio/webm"})

    def _on_call_event(self, call: Call, kind: str, data: dict[str, Any]) -> None:
        cid = call.conversation_id
        if kind == "media" and data["slot"] in ("video", "screen"):
            participant = call.leg(data["role"]).participant if call.leg(data["role"]) else None
            type_ = f"call.{data['slot']}_{'on' if data['on'] else 'off'}"
            self._spawn(self.log_event(cid, type_, {"role": data["role"], "participant": participant, "channel": data["slot"]}))
        elif kind == "leg.lost":
            self._spawn(self.log_event(cid, "call.leg_lost", {"role": data["role"], "participant": data["participant"], "grace_s": data["grace_s"]}))
        elif kind == "leg.attached" and data.get("reattached") and data["role"] == "customer":
            self._spawn(self.log_event(cid, "call.reconnected", {"role": data["role"], "participant": data["participant"]}))
        elif kind == "ended":
            record = self.records.get(cid)
            if record is not None and record.state != "ended":
                # ended by the call itself (grace period over): log and tell everyone
                record.state = "ended"
                self.records.pop(cid, None)
                self._spawn(self._announce_end(cid, data["reason"], data["durations"], None))
            return
        self._spawn(self.push_state(cid))

    async def end(self, cid: str, reason: str, by: Participant | None = None) -> dict[str, Any] | None:
        record = self.records.pop(cid, None)
        if record is None:
            return None
        record.state = "ended"
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
        data: dict[str, Any] = {"reason": reason, "durations": durations, "channel": "chat"}
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
            await self.log_event(cid, "call.transferred", {"from_agent": from_agent, "to_agent": to_agent or transfer.get("to_agent"), "mode": "warm"})
        elif transfer.get("mode") == "cold":
            await self.log_event(cid, "call.transferred", {"from_agent": transfer.get("from_agent"), "to_agent": to_agent or transfer.get("to_agent"), "mode": "cold"})
        record.transfer = None
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


def _json(value: Any) -> str:
    import json

    return json.dumps(value, separators=(",", ":"))


CALLS: web.AppKey[CallService] = web.AppKey("segue_calls", CallService)


def register(app: web.Application) -> CallService:
    """Install the ``call.*`` handlers on both namespaces (once per app) and return the service."""
    if CALLS in app:
        return app[CALLS]
    service = CallService(app)
    service.install()
    app[CALLS] = service
    return service

