"""The Socket.IO namespaces ``/customer`` and ``/agent`` (docs/protocol.md).

Each namespace is one class whose ``trigger_event`` does for every incoming event what the
protocol promises: look the event up (``unknown_event``), measure it (``too_large``), validate
it against its schema (``invalid``, naming the field), run the handler with the connection's
principal, and answer ``{ok: true, ...}`` / ``{ok: false, error}`` in the ack — or, when the
client asked for no ack, an ``error`` event. Nothing a client sends closes its connection.

Other layers add events with :meth:`SegueNamespace.register` (the calls issue adds ``call.*``).
"""

from __future__ import annotations

import contextvars
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import redis.asyncio as aioredis
import socketio
from socketio import packet as sio_packet

from . import fastjson
from . import messages as m
from .errors import ProtocolError, log_unexpected
from .limits import environ_address
from .origins import OriginPolicy, Surface, environ_own_origins
from .routing import RoutingError
from .schema import validate
from .service import AGENT_NS, CUSTOMER_NS, Principal, Signaling

log = logging.getLogger(__name__)

Handler = Callable[[Principal, Any, str], Awaitable[dict[str, Any] | None]]

# Event names python-socketio uses itself; a client that sends one gets an error, nothing else.
RESERVED_EVENTS = frozenset({"connect", "disconnect"})

# True while handling an event whose sender asked for an ack (set by the hook in ``install``).
_ACK_REQUESTED: contextvars.ContextVar[bool] = contextvars.ContextVar("segue_ack_requested", default=True)


def install_ack_hook(sio: socketio.AsyncServer) -> None:
    """Let handlers know whether the client wants an ack (python-socketio does not pass it on).

    Wraps the server's per-event task entry point; if a future python-socketio renames it we
    fall back to "ack requested", i.e. errors go in the ack only. The same entry point sees
    only events a client sent, so it is also where client-sent ``connect``/``disconnect`` are
    refused (``RESERVED_EVENTS``): python-socketio would hand them to the namespace's handlers.
    """
    original = getattr(sio, "_handle_event_internal", None)
    if original is None or getattr(original, "_segue_hooked", False):
        return

    async def handle(server: Any, sid: str, eio_sid: str, data: Any, namespace: str, id: Any) -> Any:
        _ACK_REQUESTED.set(id is not None)
        if data and isinstance(data[0], str) and data[0] in RESERVED_EVENTS:
            # A client-sent event named like python-socketio's own: passed on, it would reach the
            # namespace as a connect (a second session) or a disconnect (the session torn down).
            # Only here, on the client's event packet, can the two be told apart.
            handler = server.namespace_handlers.get(namespace)
            if not isinstance(handler, SegueNamespace):
                return None
            r = await handler.dispatch(data[0], (sid, *data[1:]))
        elif id is None:
            return await original(server, sid, eio_sid, data, namespace, id)
        else:
            # what python-socketio does, with the ACK encoded straight to JSON (our results are
            # never binary; anything else goes the library's way). A Segue namespace is called
            # straight (its trigger_event only passes a non-reserved event on to dispatch).
            handler = server.namespace_handlers.get(namespace)
            if isinstance(handler, SegueNamespace) and data and isinstance(data[0], str):
                r = await handler.dispatch(data[0], (sid, *data[1:]))
            else:
                r = await server._trigger_event(data[0], namespace, sid, *data[1:])
        if id is None:
            return None
        if r == server.not_handled:
            return None
        args = [] if r is None else list(r) if isinstance(r, tuple) else [r]
        try:
            text = fastjson.dumps(args)
        except (TypeError, ValueError):
            await server._send_packet(eio_sid, server.packet_class(sio_packet.ACK, namespace=namespace, id=id, data=args))
            return None
        prefix = "" if namespace in (None, "/") else f"{namespace},"
        await server.eio.send(eio_sid, f"3{prefix}{id}{text}")
        return None

    handle._segue_hooked = True  # type: ignore[attr-defined]
    sio._handle_event_internal = handle  # type: ignore[method-assign]


@dataclass(frozen=True)
class Route:
    schema: type
    handler: Handler
    max_bytes: int | None = None  # None: limits.max_event_bytes


class SegueNamespace(socketio.AsyncNamespace):
    """Dispatch, size limit, validation and error answers shared by both namespaces."""

    surface: Surface = Surface.AGENT  # whose origins may connect (cors.*_origins)

    def __init__(self, namespace: str, service: Signaling) -> None:
        super().__init__(namespace)
        self.service = service
        self.origins = OriginPolicy.from_config(service.config)
        self.routes: dict[str, Route] = {}
        self.sessions: dict[str, Principal] = {}
        self.max_bytes = service.config.limits.max_event_bytes
        self.max_message = service.config.limits.max_message_chars
        # rate limits and load shedding (signaling/limits.py): one limiter per node, both namespaces
        self.limiter = service.limiter
        self.trusted_proxies = tuple(service.config.auth.trusted_proxies)
        self.addresses: dict[str, str] = {}  # sid -> client address (per-address limits)
        self.events_handled = 0  # for /metrics (server/ops.py)

    def register(self, event: str, schema: type, handler: Handler, max_bytes: int | None = None) -> None:
        """Add (or replace) an event: ``handler(principal, validated_payload, sid) -> result dict``.

        ``max_bytes`` raises the size limit for this event above ``limits.max_event_bytes`` (never
        lowers it): ``call.offer`` carries an SDP of up to ``media.leg.MAX_SDP_CHARS``."""
        limit = max(max_bytes, self.max_bytes) if max_bytes is not None else None
        self.routes[event] = Route(schema, handler, limit)

    async def trigger_event(self, event: str, *args: Any) -> Any:
        if event == "connect" and args and args[0] in self.sessions:
            # only python-socketio's own connect may open a session; a second one for the same
            # socket is a client-sent event named "connect": refused like any unknown event
            return await self.dispatch(event, args)
        if event == "connect":
            sid, environ = args[0], args[1]
            auth = args[2] if len(args) > 2 else None
            self._check_origin(environ)
            self._check_connect_rate(sid, environ)
            try:
                return await self._connect(sid, environ, auth)
            except socketio.exceptions.ConnectionRefusedError:
                raise
            except Exception as exc:  # noqa: BLE001 - a refusal the client can read, never silence
                log_unexpected(log, f"connect on {self.namespace}", exc)
                raise self._refuse("internal", "the server could not open this session: it was logged; "
                                               "retry or report it") from None
        if event == "disconnect":
            self.limiter.forget(args[0])
            self.addresses.pop(args[0], None)
            await self._disconnect(args[0])
            return None
        return await self.dispatch(event, args)

    async def dispatch(self, event: str, args: tuple[Any, ...]) -> Any:
        sid = args[0]
        self.events_handled += 1
        try:
            # rate limits and load shedding: already applied, before decoding (limits.install_gate)
            if isinstance(event, fastjson.TooDeep) or any(map(fastjson.is_too_deep, args[1:])):  # the decoder's mark
                raise ProtocolError("invalid", f"payload: nested more than {fastjson.MAX_DEPTH} levels deep "
                                               "(Segue's payloads are a few levels deep)", "payload")
            bad = fastjson.unreadable(args[1:])
            if bad is not None:  # e.g. a number of thousands of digits
                raise ProtocolError("invalid", f"payload: not valid JSON for Segue: {bad.reason}", "payload")
            if not isinstance(event, str):  # a packet's first item may be any JSON (a list is unhashable)
                raise ProtocolError("unknown_event", f"an event name is text, got {fastjson.dumps(event)[:60]} "
                                                     "(see docs/protocol.md for the events)")
            if event in RESERVED_EVENTS:  # only a client's own packet comes here (install_ack_hook)
                raise ProtocolError("unknown_event", f"{event} is reserved: Socket.IO sends it itself when a "
                                                     "connection opens or closes; a client may not send it "
                                                     "(see docs/protocol.md for the events)")
            route = self.routes.get(event)
            if route is None:
                raise ProtocolError("unknown_event", f"unknown event {str(event)[:100]!r} on {self.namespace} "
                                                     "(see docs/protocol.md for the events)")
            if len(args) > 2:
                raise ProtocolError("invalid", "send one payload object per event (got several arguments)", "payload")
            payload = args[1] if len(args) > 1 else None
            limit = route.max_bytes or self.max_bytes
            size = _size(payload, limit)
            if size > limit:
                where = "limits.max_event_bytes" if limit == self.max_bytes else f"the limit of {event}"
                raise ProtocolError("too_large", f"event is {size} bytes; the limit is {limit} ({where})")
            who = self.sessions.get(sid)
            if who is None:
                raise ProtocolError("unauthorized", "this connection has no session: reconnect")
            data = validate(route.schema, payload, self.max_message)
            result = await route.handler(who, data, sid)
            out = {"ok": True}
            if result:
                out.update(result)
            return out
        except ProtocolError as exc:
            return await self._error(sid, event, exc)
        except RoutingError as exc:
            return await self._error(sid, event, ProtocolError(exc.code, exc.message))
        except (aioredis.ConnectionError, aioredis.TimeoutError, ConnectionError, TimeoutError) as exc:
            log.warning("redis unavailable during %s: %s", event, exc)
            return await self._error(sid, event, ProtocolError("unavailable", "storage is unavailable: retry shortly"))
        except Exception as exc:  # noqa: BLE001 - the connection and the server stay up
            log_unexpected(log, f"{str(event)[:100]} on {self.namespace}", exc)
            return await self._error(sid, event, ProtocolError("internal", "internal error: it was logged; retry or report it"))

    async def _error(self, sid: str, event: str, exc: ProtocolError) -> Any:
        if _ACK_REQUESTED.get():
            return {"ok": False, "error": exc.as_dict()}
        payload = exc.as_dict()
        payload["event"] = str(event)[:100]
        await self.emit("error", payload, to=sid)
        return None

    def _refuse(self, code: str, message: str) -> socketio.exceptions.ConnectionRefusedError:
        # socket.io clients see err.message = message and err.data = {code, message}
        return socketio.exceptions.ConnectionRefusedError(message, {"code": code, "message": message})

    def _check_origin(self, environ: Any) -> None:
        """Refuse a page whose origin may not use this namespace (cors.customer_origins / agent_origins).

        The Engine.IO handshake lets through every origin either list allows (server.cors), so the
        per-namespace decision is made here, where the namespace is known."""
        environ = environ if isinstance(environ, dict) else {}
        refused = self.origins.check(self.surface, environ.get("HTTP_ORIGIN"),
                                     environ_own_origins(environ, self.origins.public_url), self.namespace)
        if refused is not None:
            log.info("refused a connection to %s: %s", self.namespace, refused.message)
            raise self._refuse(refused.code, refused.message)

    def _check_connect_rate(self, sid: str, environ: Any) -> None:
        """Note the client's address and refuse a connection past ``limits.connects_*``."""
        address = environ_address(environ, self.trusted_proxies)
        refusal = self.limiter.connect(address)
        if refusal is not None:
            message = f"{refusal.what}: try again in {refusal.retry_after_ms} ms"
            raise socketio.exceptions.ConnectionRefusedError(
                message, {"code": "rate_limited", "message": message, "retry_after_ms": refusal.retry_after_ms})
        self.addresses[sid] = address

    def _check_auth(self, schema: type, auth: Any) -> Any:
        if fastjson.is_too_deep(auth):
            raise self._refuse("invalid", f"auth is nested more than {fastjson.MAX_DEPTH} levels deep: "
                                          "send an object like {v: 1, ...} (see docs/protocol.md)")
        bad = fastjson.unreadable(auth)
        if bad is not None:
            raise self._refuse("invalid", f"auth is not valid JSON for Segue: {bad.reason}")
        if not isinstance(auth, dict):
            raise self._refuse("invalid", "auth must be an object like {v: 1, ...} (see docs/protocol.md)")
        if auth.get("v") not in (None, 1) or isinstance(auth.get("v"), bool):
            raise self._refuse("unsupported_version", f"protocol version {auth.get('v')!r} is not supported: "
                                                      "this server speaks v 1")
        try:
            return validate(schema, auth, self.max_message, "")
        except ProtocolError as exc:
            raise self._refuse(exc.code, f"auth.{exc.message}") from None

    async def _connect(self, sid: str, environ: Any, auth: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    async def _disconnect(self, sid: str) -> None:
        self.sessions.pop(sid, None)
        self._unbind(sid)

    def _bind(self, sid: str, who: Principal) -> None:
        calls = self.service.calls
        if calls is not None:
            from .calls import Participant

            calls.bind(self.namespace, sid, Participant(who.kind, who.id, who.name, supervisor=who.is_supervisor))

    def _unbind(self, sid: str) -> None:
        if self.service.calls is not None:
            self.service.calls.unbind(self.namespace, sid)

    async def join_call_room(self, sid: str, cid: str) -> None:
        """Let the calls layer push ``call.*`` of this conversation to this socket."""
        if self.service.calls is not None:
            try:
                await self.service.calls.join(self.namespace, sid, cid)
            except Exception:  # noqa: BLE001
                log.exception("joining the call room of %s failed", cid)


def _bound(obj: Any, budget: int) -> int:
    """An upper bound of ``obj``'s JSON size in bytes (a character is at most 6 bytes, \\u00XX),
    computed only until it passes ``budget``."""
    if isinstance(obj, str):
        return 6 * len(obj) + 2
    if isinstance(obj, dict):
        total = 2
        for k, v in obj.items():
            total += _bound(k, budget) + _bound(v, budget - total) + 2
            if total > budget:
                break
        return total
    if isinstance(obj, list):
        total = 2
        for v in obj:
            total += _bound(v, budget - total) + 1
            if total > budget:
                break
        return total
    return 24  # numbers, true/false/null


def _size(payload: Any, limit: int) -> int:
    """The payload's JSON size in bytes, exact when it might be over ``limit``."""
    if payload is None or _bound(payload, limit) <= limit:
        return 0
    try:
        text = fastjson.dumps(payload)
    except (TypeError, ValueError):
        return 0
    return len(text) if text.isascii() else len(text.encode())


class CustomerNamespace(SegueNamespace):
    surface = Surface.CUSTOMER

    def __init__(self, service: Signaling) -> None:
        super().__init__(CUSTOMER_NS, service)
        s = service
        self.register("conversation.start", m.ConversationStart, self._start)
        self.register("conversation.resume", m.ConversationResume, self._resume)
        self.register("conversations.list", m.Empty, lambda who, d, sid: s.list_for_customer(who))
        self.register("message.send", m.MessageSend,
                      lambda who, d, sid: s.send_message(who, d.conversation_id, d.text, d.client_id, sid))
        self.register("typing", m.Typing, lambda who, d, sid: s.typing(who, d.conversation_id, d.typing, sid))
        self.register("read", m.Read, lambda who, d, sid: s.read(who, d.conversation_id, d.event_id, sid))
        self.register("conversation.rate", m.Rate,
                      lambda who, d, sid: s.rate(who, d.conversation_id, d.score, d.comment, sid))
        self.register("conversation.close", m.ConversationRef, lambda who, d, sid: s.close(who, d.conversation_id, None, sid))
        # context that travels with the customer (custom attributes, the page trail)
        self.register("attributes.set", m.AttributesSet,
                      lambda who, d, sid: s.set_attributes(who, who.id, d.attributes, d.conversation_id, sid))
        self.register("page.view", m.PageView, lambda who, d, sid: s.page_view(who, d.url, d.title, sid))

    async def _start(self, who: Principal, d: m.ConversationStart, sid: str) -> dict[str, Any]:
        refusal = self.limiter.conversation(sid, self.addresses.get(sid, "unknown"))
        if refusal is not None:
            raise ProtocolError("rate_limited", f"{refusal.what}: try again in {refusal.retry_after_ms} ms",
                                retry_after_ms=refusal.retry_after_ms)
        result = await self.service.start(who, d.queue, d.channel, _plain(d.context), d.text, d.name, d.email, sid,
                                          attributes=d.attributes)
        await self.join_call_room(sid, result["conversation"]["id"])
        return result

    async def _resume(self, who: Principal, d: m.ConversationResume, sid: str) -> dict[str, Any]:
        result = await self.service.resume(who, d.conversation_id, d.after)
        await self.join_call_room(sid, d.conversation_id)
        return result

    async def _connect(self, sid: str, environ: Any, auth: Any) -> Any:
        data = self._check_auth(m.CustomerAuth, auth)
        try:
            who, token = await self.service.customer_session(data.visitor_token, data.site, data.identity)
        except ProtocolError as exc:
            raise self._refuse(exc.code, exc.message) from None
        except (aioredis.ConnectionError, aioredis.TimeoutError, OSError):
            raise self._refuse("unavailable", "storage is unavailable: retry shortly") from None
        self.sessions[sid] = who
        self._bind(sid, who)
        await self.enter_room(sid, f"customer:{who.id}")
        session = {"customer_id": who.id, "visitor_token": token, "name": who.name, "verified": who.verified}
        if who.email:
            session["email"] = who.email
        # after the handler returns, so the client sees CONNECT before this
        self.server.start_background_task(self.emit, "session", session, to=sid)
        return True


class AgentNamespace(SegueNamespace):
    def __init__(self, service: Signaling) -> None:
        super().__init__(AGENT_NS, service)
        self.token_versions: dict[str, int] = {}  # sid -> token_version of the token it connected with
        s = service
        self.register("presence.set", m.PresenceSet,
                      _not_watching("set presence", lambda who, d, sid: s.set_presence(who, d.status)))
        self.register("offer.accept", m.ConversationRef,
                      _not_watching("accept offers", lambda who, d, sid: self._accept(who, d.conversation_id, sid)))
        self.register("offer.decline", m.ConversationRef,
                      _not_watching("decline offers", lambda who, d, sid: s.decline(who, d.conversation_id)))
        self.register("conversation.open", m.ConversationOpen, lambda who, d, sid: self._open(who, d, sid))
        self.register("conversations.list", m.Empty, lambda who, d, sid: s.list_for_agent(who))
        self.register("message.send", m.MessageSend,
                      lambda who, d, sid: s.send_message(who, d.conversation_id, d.text, d.client_id, sid))
        self.register("note.add", m.NoteAdd, lambda who, d, sid: s.note(who, d.conversation_id, d.text, sid))
        self.register("typing", m.Typing, lambda who, d, sid: s.typing(who, d.conversation_id, d.typing, sid))
        self.register("read", m.Read, lambda who, d, sid: s.read(who, d.conversation_id, d.event_id, sid))
        self.register("transfer", m.Transfer, lambda who, d, sid: s.transfer(
            who, d.conversation_id, d.to.agent, d.to.queue, d.mode, d.note, sid))
        self.register("consult.message", m.ConsultMessage,
                      lambda who, d, sid: s.consult(who, d.conversation_id, d.text, sid))
        self.register("transfer.complete", m.ConversationRef,
                      lambda who, d, sid: s.transfer_complete(who, d.conversation_id, sid))
        self.register("transfer.cancel", m.ConversationRef,
                      lambda who, d, sid: s.transfer_cancel(who, d.conversation_id, sid))
        self.register("conversation.close", m.AgentClose,
                      lambda who, d, sid: s.close(who, d.conversation_id, d.disposition, sid, tags=d.tags))
        self.register("canned.list", m.Empty, self._canned_list)
        self.register("canned.render", m.CannedRender, lambda who, d, sid: s.canned_render(who, d.id, d.conversation_id))
        self.register("queues.list", m.Empty, lambda who, d, sid: s.queues_list())

    async def _canned_list(self, who: Principal, d: Any, sid: str) -> dict[str, Any]:
        replies = await self.service.canned.list()
        return {"replies": [{"id": r["id"], "title": r["title"], "text": r["text"]} for r in replies]}

    async def _accept(self, who: Principal, cid: str, sid: str) -> dict[str, Any]:
        result = await self.service.accept(who, cid)
        await self.join_call_room(sid, cid)
        return result

    async def _open(self, who: Principal, d: m.ConversationOpen, sid: str) -> dict[str, Any]:
        view = await self.service.open_view(who, d.conversation_id, d.after)
        # live events from now on, even for a conversation this agent does not work on
        await self.enter_room(sid, f"watch:{d.conversation_id}")
        await self.join_call_room(sid, d.conversation_id)
        return view

    async def _connect(self, sid: str, environ: Any, auth: Any) -> Any:
        data = self._check_auth(m.AgentAuth, auth)
        service = self.service
        try:
            account = await service.agent_from_token(data.token)
            if not data.watch:
                # a console: the agent is online with the presence they last chose
                await service.register_with_routing(account, account.presence)
                # presence counts connections, each once by its sid: a connect handler run twice
                # for one socket cannot make a ghost "online" agent
                # (recorded per node too: if this node dies, survivors drop them; signaling.cluster)
                await service.cluster.add_agent_socket(account.id, sid)
        except ProtocolError as exc:
            raise self._refuse(exc.code, exc.message) from None
        except RoutingError as exc:
            raise self._refuse("invalid", f"agent account {exc.message}") from None
        except (aioredis.ConnectionError, aioredis.TimeoutError, OSError):
            raise self._refuse("unavailable", "storage is unavailable: retry shortly") from None
        who = Principal("agent", account.id, account.name, account=account, watch=data.watch)
        self.sessions[sid] = who
        self.token_versions[sid] = account.token_version  # what its token carries (end_sessions)
        self._bind(sid, who)
        # local_agents: whom this node pushes queue statistics to (watchers included)
        service.local_agents[account.id] = service.local_agents.get(account.id, 0) + 1
        if not data.watch:  # offers, `agent` updates and assigned conversations go to this room
            await self.enter_room(sid, f"agent:{account.id}")
        await self.enter_room(sid, "agents")
        if account.is_supervisor:
            await self.enter_room(sid, "supervisors")
        service.wake()
        session: dict[str, Any] = {"agent": account.public()}
        if data.watch:
            session["watch"] = True
        self.server.start_background_task(self._greet, sid, session, None if data.watch else account.id)
        return True

    async def _greet(self, sid: str, session: dict[str, Any], agent_id: str | None) -> None:
        """``session`` first, then the offers still ringing for this agent (a reloaded console)."""
        await self.emit("session", session, to=sid)
        try:  # a logout or password change while this socket was connecting: end it now
            account_id = session["agent"]["id"]
            await self.end_sessions(account_id, await self.service.directory.get(account_id))
        except (aioredis.ConnectionError, aioredis.TimeoutError, OSError):
            pass  # checked again on every later change of the account
        if sid not in self.sessions:
            return
        if agent_id is not None:
            try:
                await self.service.resend_offers(agent_id, sid)
            except (aioredis.ConnectionError, aioredis.TimeoutError, OSError):
                log.warning("could not re-send pending offers to %s: storage unavailable", agent_id)

    async def _disconnect(self, sid: str) -> None:
        who = self.sessions.pop(sid, None)
        self.token_versions.pop(sid, None)
        self._unbind(sid)
        if who is None:
            return
        service = self.service
        left = service.local_agents.get(who.id, 0) - 1
        if left <= 0:
            service.local_agents.pop(who.id, None)
        else:
            service.local_agents[who.id] = left
        if who.watch:
            return  # a watch-only connection never counted as online
        try:
            remaining = await service.cluster.remove_agent_socket(who.id, sid)
            if remaining <= 0:
                # the chosen presence stays in the account (restored on reconnect); routing stops offering
                await service.router.set_presence(who.id, "offline")
        except (aioredis.ConnectionError, aioredis.TimeoutError, OSError) as exc:
            # usually the node shutting down; routing sees them offline when the count is next read
            log.info("could not record agent %s going offline: %s", who.id, exc)
        except Exception:  # noqa: BLE001
            log.warning("could not record agent %s going offline", who.id, exc_info=True)

    async def end_sessions(self, agent_id: str, account: Any) -> None:
        """Close this node's sockets of ``agent_id`` whose token no longer holds (``account`` is the
        stored account now, None when deleted). The client is told why first (``session.ended``)."""
        for sid, version in list(self.token_versions.items()):
            who = self.sessions.get(sid)
            if who is None or who.id != agent_id:
                continue
            if account is not None and account.token_version == version:
                continue
            reason = "deleted" if account is None else "revoked"
            await self.emit("session.ended", {"reason": reason, "message": "this session ended (logged out, the "
                            "password or role changed, or the account was deleted): log in again"}, to=sid)
            await self.server.disconnect(sid, namespace=self.namespace)

    def refresh_agent(self, account: Any) -> None:
        for sid, who in self.sessions.items():
            if who.id == account.id:
                who.account = account
                who.name = account.name
                self._bind(sid, who)  # the calls layer follows (e.g. a new supervisor role)


def _not_watching(doing: str, handler: Handler) -> Handler:
    """Refuse ``handler`` on a watch-only connection (a wallboard is never offered conversations)."""

    async def run(who: Principal, data: Any, sid: str) -> dict[str, Any] | None:
        if who.watch:
            raise ProtocolError("forbidden", f"this connection is watch-only (auth.watch: true): {doing} "
                                             "from the agent console's connection")
        return await handler(who, data, sid)

    return run


def _plain(obj: Any) -> Any:
    from .schema import to_plain

    return to_plain(obj) if obj is not None else None
