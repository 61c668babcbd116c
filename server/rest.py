"""The REST API under ``/api/v1`` (docs/rest.md): login, conversations, customers, queues,
agents and canned replies, for the agent console, the supervisor wallboard and integrations.

Why here: ``server`` wires HTTP to the layers below; every rule (who may read what, how an
account is stored) lives in ``signaling``, which the Socket.IO namespaces share. This module only
parses requests, authenticates the bearer token and turns results and ``ProtocolError``s into
JSON with the right status. Every error body is ``{"error": {"code", "message", "field"?}}``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import redis.asyncio as aioredis
from aiohttp import web

from signaling import (
    EVENT_ID_RE, ID_RE, MANAGE_KEYS, SIGNALING, Principal, ProtocolError, RoutingError, Signaling, scopes_for_role, summary,
    validate,
)
from signaling import fastjson, listing, outreach
from signaling import LoginThrottle, client_address, log_unexpected
from signaling import RECORDINGS
from signaling import messages as m

from . import recordings as recordings_http
from .demo import request_is_local

log = logging.getLogger(__name__)

CUSTOMER_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")

API = "/api/v1"
API_KEY_PREFIX = "sgk_"
_WHO: web.RequestKey[Principal] = web.RequestKey("segue_principal", Principal)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, code: str, message: str, field: str | None = None) -> web.Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        body["field"] = field
    return web.json_response({"error": body}, status=status)


@web.middleware
async def errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith("/api/"):
        return await handler(request)
    try:
        return await handler(request)
    except ProtocolError as exc:
        resp = web.json_response({"error": exc.as_dict()}, status=exc.http_status)
        if exc.http_status == 401:
            resp.headers["WWW-Authenticate"] = 'Bearer realm="segue"'
        if exc.retry_after_s is not None:
            resp.headers["Retry-After"] = str(exc.retry_after_s)
        return resp
    except RoutingError as exc:
        err = ProtocolError(exc.code, exc.message)
        return _error(err.http_status, err.code, err.message)
    except web.HTTPRequestEntityTooLarge as exc:
        return _error(413, "too_large", f"request body too large ({exc.text})")
    except web.HTTPMethodNotAllowed as exc:
        allowed = ", ".join(sorted(exc.allowed_methods))
        resp = _error(405, "method_not_allowed", f"{request.method} is not allowed on {request.path} (allowed: {allowed})")
        resp.headers["Allow"] = allowed  # what HTTP asks of a 405
        return resp
    except web.HTTPNotFound:
        return _error(404, "not_found", f"no API endpoint at {request.path} (see docs/rest.md)")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error(exc.status, exc.reason.lower().replace(" ", "_"), exc.text or exc.reason)
    except (aioredis.ConnectionError, aioredis.TimeoutError) as exc:
        log.warning("redis unavailable during %s %s: %s", request.method, request.path, exc)
        return _error(503, "unavailable", "storage is unavailable: retry shortly")
    except Exception as exc:  # noqa: BLE001
        log_unexpected(log, f"{request.method} {request.path[:100]}", exc)
        return _error(500, "internal", "internal error: it was logged")


def _svc(request: web.Request) -> Signaling:
    return request.app[SIGNALING]


async def _body(request: web.Request, schema: type) -> Any:
    svc = _svc(request)
    limit = max(svc.config.limits.max_event_bytes, 16384)
    raw = await request.read()
    if len(raw) > limit:
        raise ProtocolError("too_large", f"request body is {len(raw)} bytes; the limit is {limit}")
    if not raw.strip():
        payload: Any = {}
    else:
        try:
            payload = fastjson.loads_bounded(raw)
        except fastjson.JsonTooDeep as exc:
            raise ProtocolError("invalid", f"body: {exc} (Segue's payloads are a few levels deep)", "body") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise ProtocolError("bad_json", f"request body is not valid JSON: {exc}") from None
    return validate(schema, payload, svc.max_message)


async def _principal(request: web.Request) -> Principal:
    """Who sent the request: an agent (bearer token from login) or a server (bearer API key)."""
    cached = request.get(_WHO)
    if cached is not None:
        return cached
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ProtocolError("unauthorized", "send Authorization: Bearer <token> (an agent token from "
                                            "POST /api/v1/auth/login, or an API key sgk_...)")
    svc = _svc(request)
    if token.startswith(API_KEY_PREFIX):
        key = await svc.api_keys.authenticate(token)
        who = Principal("integration", key.id, key.name, scopes=frozenset(key.scopes))
    else:
        account = await svc.agent_from_token(token)
        who = Principal("agent", account.id, account.name, account=account, scopes=scopes_for_role(account.role))
    request[_WHO] = who
    return who


async def authorize(request: web.Request, scope: str) -> Principal:
    """The caller, if it holds ``scope``; else ``401`` (no or a bad token/key) or ``403 forbidden``.

    Agents' scopes follow their role (``signaling.scopes_for_role``): what they may then read or
    write is still limited by the conversation access rules. An API key holds the scopes it was
    created with and acts as a server: it reads every conversation within them."""
    who = await _principal(request)
    if scope not in who.scopes:
        if who.kind == "integration":
            raise ProtocolError("forbidden", f"this needs the scope {scope}, which API key {who.id} ({who.name}) "
                                             f"does not have: create a key with --scope {scope}")
        role = who.account.role if who.account is not None else who.kind
        raise ProtocolError("forbidden", f"this needs the scope {scope}, which the role {role} does not have")
    return who


async def _agent(request: web.Request) -> Principal:
    """An agent's token (not an API key): for the console's own endpoints (me, canned replies)."""
    who = await _principal(request)
    if who.kind != "agent":
        raise ProtocolError("forbidden", "this endpoint is for agents' tokens (from POST /api/v1/auth/login), "
                                         "not API keys")
    return who


async def _supervisor(request: web.Request) -> Principal:
    who = await _agent(request)
    if not who.is_supervisor:
        raise ProtocolError("forbidden", "this needs the supervisor role")
    return who


def _limit(request: web.Request, default: int = 100, most: int = 1000) -> int:
    raw = request.query.get("limit")
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= most:
        raise ProtocolError("invalid", f"limit must be a whole number from 1 to {most}", "limit")
    return int(raw)


# --- auth ----------------------------------------------------------------------------------------

def _client_address(request: web.Request) -> str:
    """The client's address (``auth.trusted_proxies``: X-Forwarded-For from nginx names it)."""
    return client_address(request.remote, request.headers.get("X-Forwarded-For"),
                          _svc(request).config.auth.trusted_proxies)


async def login(request: web.Request) -> web.Response:
    body = await _body(request, m.Login)
    svc = _svc(request)
    username, addr = body.username.strip().lower(), _client_address(request)
    throttle = LoginThrottle(svc.redis, svc.config.redis.key_prefix, svc.config.auth)
    await throttle.check(username, addr)  # rate_limited (429, Retry-After) before any password check
    demo = svc.config.demo
    if demo.enabled and username == demo.agent_username and not request_is_local(request):
        # the published demo login is for this machine only, even behind a proxy (server/demo.py)
        raise ProtocolError("forbidden", f"the demo account {demo.agent_username!r} signs in only from this machine"
                                         " (http://127.0.0.1:<port>/, no proxy): create an account with"
                                         " `segue agent add NAME --role admin`")
    account = await svc.directory.authenticate(username, body.password)
    if account is None:
        await throttle.failed(username, addr)
        raise ProtocolError("unauthorized", "wrong username or password")
    await throttle.succeeded(username, addr)
    return web.json_response({
        "token": svc.agent_token(account),
        "expires_in_s": svc.config.auth.agent_token_hours * 3600,
        "agent": account.public(),
    })


async def demo_login(request: web.Request) -> web.Response:
    """``GET /api/v1/auth/demo``: the demo login while the demo account is on (only ever on a
    loopback address: server/cli.py refuses otherwise), for the sign-in forms' hint."""
    demo = _svc(request).config.demo
    if not demo.enabled or not request_is_local(request):
        return web.json_response({"enabled": False})
    return web.json_response({"enabled": True, "username": demo.agent_username, "password": demo.agent_password})


async def logout(request: web.Request) -> web.Response:
    """End the caller's sessions: every token of the account so far, and its sockets on every node."""
    who = await _agent(request)
    await _svc(request).directory.revoke(who.id)
    return web.Response(status=204)


async def me(request: web.Request) -> web.Response:
    who = await _agent(request)
    assert who.account is not None
    return web.json_response({"agent": who.account.public()})


# --- conversations -------------------------------------------------------------------------------

async def list_conversations(request: web.Request) -> web.Response:
    who = await authorize(request, "conversations:read")
    query = listing.parse_query(request.query)
    return web.json_response(await listing.list_conversations(_svc(request), who, query))


async def create_conversation(request: web.Request) -> web.Response:
    who = await authorize(request, "conversations:write")
    body = await _body(request, m.ConversationCreate)
    return web.json_response(await outreach.start_outbound(_svc(request), who, body), status=201)


async def post_message(request: web.Request) -> web.Response:
    who = await authorize(request, "conversations:write")
    body = await _body(request, m.MessagePost)
    svc = _svc(request)
    cid = request.match_info["cid"]
    speaker = await outreach.speaker(svc, who, body.as_, cid)
    answer = await svc.send_message(speaker, cid, body.text, body.client_id)
    return web.json_response(answer, status=200 if answer.get("duplicate") else 201)


async def post_note(request: web.Request) -> web.Response:
    who = await authorize(request, "conversations:write")
    body = await _body(request, m.NotePost)
    return web.json_response(await _svc(request).note(who, request.match_info["cid"], body.text), status=201)


async def close_conversation(request: web.Request) -> web.Response:
    who = await authorize(request, "conversations:write")
    body = await _body(request, m.ClosePost)
    svc = _svc(request)
    cid = request.match_info["cid"]
    await svc.readable(who, cid)
    answer = await svc.close(who, cid, body.disposition, tags=body.tags)
    return web.json_response({**answer, "conversation": summary(await svc.store.conversation(cid))})


async def patch_attributes(request: web.Request) -> web.Response:
    who = await authorize(request, "conversations:write")
    body = await _body(request, m.AttributesPatch)
    svc = _svc(request)
    cid = request.match_info["cid"]
    h = await svc.readable(who, cid)
    return web.json_response(await svc.set_attributes(who, h.get("customer", ""), body.attributes, cid))


async def get_conversation(request: web.Request) -> web.Response:
    who = await authorize(request, "conversations:read")
    svc = _svc(request)
    cid = request.match_info["cid"]
    h = await svc.readable(who, cid)
    return web.json_response({"conversation": summary(h), "history": await svc.history(h.get("customer", ""), exclude=cid)})


async def get_events(request: web.Request) -> web.Response:
    who = await authorize(request, "conversations:read")
    svc = _svc(request)
    cid = request.match_info["cid"]
    after = request.query.get("after") or None
    if after is not None and not EVENT_ID_RE.match(after):
        raise ProtocolError("invalid", 'after must be an event id like "1732345678901-0"', "after")
    limit = _limit(request, 1000, 10000)
    await svc.readable(who, cid)
    events = await svc.events_for(who, cid, after, limit + 1)
    more = len(events) > limit
    return web.json_response({"events": events[:limit], "more": more})


async def download_recording(request: web.Request) -> web.StreamResponse:
    """A call recording's WebM file: for API keys with ``conversations:read`` (a CRM, a QA tool)
    and for agents who may read the recording's conversation (supervisors and admins: any)."""
    who = await authorize(request, "conversations:read")
    recordings = request.app[RECORDINGS]
    place = await recordings.find(request.match_info["rid"])
    try:
        await _svc(request).readable(who, place.conversation)
    except ProtocolError as exc:
        raise ProtocolError(exc.code, f"recording {place.rid}: {exc.message}") from None
    # from this node's disk, else streamed from the node that wrote it (server/recordings.py)
    return await recordings_http.serve(request, recordings, place)


def _customer_id(request: web.Request) -> str:
    """The path's customer id, checked before any lookup (``v_...`` visitors, ``u_...`` identities;
    text like ``v_1:convs`` would name another key)."""
    cust = request.match_info["customer"]
    if not CUSTOMER_ID_RE.match(cust):
        raise ProtocolError("not_found", f"customer {cust[:80]!r} does not exist (customer ids are letters, "
                                         "digits, '_' and '-')")
    return cust


async def _readable_customer(request: web.Request) -> tuple[Signaling, str]:
    """The path's customer, if the caller holds ``customers:read`` and may read that customer:
    ``not_found`` for an unknown customer, ``forbidden`` for one the agent was never assigned."""
    who = await authorize(request, "customers:read")
    svc = _svc(request)
    cust = _customer_id(request)
    if not await svc.can_read_customer(who, cust):
        if not await svc.store.customer(cust):
            raise ProtocolError("not_found", f"customer {cust} does not exist")
        raise ProtocolError("forbidden", f"you have not been assigned to customer {cust}")
    return svc, cust


async def get_customer(request: web.Request) -> web.Response:
    svc, cust = await _readable_customer(request)
    record = await svc.store.customer(cust)
    if not record:
        raise ProtocolError("not_found", f"customer {cust} does not exist")
    out = {"id": cust, "name": record.get("name") or "Visitor"}
    for key in ("email", "site", "external_id"):
        if record.get(key):
            out[key] = record[key]
    out["verified"] = bool(record.get("verified"))
    return web.json_response({"customer": out})


async def customer_conversations(request: web.Request) -> web.Response:
    svc, cust = await _readable_customer(request)
    return web.json_response({"conversations": await svc.history(cust)})


# --- queues and agents ---------------------------------------------------------------------------

async def list_queues(request: web.Request) -> web.Response:
    await authorize(request, "conversations:read")
    return web.json_response(await _svc(request).queues_list())


async def _agent_view(svc: Signaling, account: Any, who: Principal) -> dict[str, Any]:
    """An agent as ``who`` may see them: everyone sees load and presence; which conversations an
    agent works on is for that agent, supervisors, admins and integrations (who read them all)."""
    public = account.public()
    state = await svc.router.agent(account.id)
    connected = bool(await svc.redis.scard(svc.keys.agent_sockets(account.id)))
    public["online"] = connected
    if state is not None:
        public["routing"] = {"presence": state.presence.value, "reason": state.presence_reason, "load": state.load}
        if who.kind != "agent" or who.is_supervisor or who.id == account.id:
            public["routing"]["conversations"] = sorted(state.conversations)
    return public


async def list_agents(request: web.Request) -> web.Response:
    who = await authorize(request, "conversations:read")
    svc = _svc(request)
    return web.json_response({"agents": [await _agent_view(svc, a, who) for a in await svc.directory.list()]})


async def get_agent(request: web.Request) -> web.Response:
    who = await authorize(request, "conversations:read")
    svc = _svc(request)
    account = await svc.directory.require(request.match_info["agent"])
    return web.json_response({"agent": await _agent_view(svc, account, who)})


def _admin_only(who: Principal, role: str | None, target: Any = None) -> None:
    """Only an admin makes admins or changes an admin's account (a supervisor cannot raise anyone,
    themselves included, above their own role)."""
    if who.account is not None and who.account.is_admin:
        return
    if role == "admin":
        raise ProtocolError("forbidden", "giving the admin role needs the admin role", "role")
    if target is not None and target.is_admin and target.id != who.id:
        raise ProtocolError("forbidden", "changing an admin's account needs the admin role")


async def create_agent(request: web.Request) -> web.Response:
    who = await authorize(request, "agents:manage")
    body = await _body(request, m.AgentCreate)
    _admin_only(who, body.role)
    svc = _svc(request)
    account = await svc.directory.create(body.username, body.password, body.name, body.role, body.skills,
                                         body.capacity, body.channels)
    return web.json_response({"agent": account.public()}, status=201)


async def update_agent(request: web.Request) -> web.Response:
    who = await _principal(request)
    agent_id = request.match_info["agent"]
    body = await _body(request, m.AgentUpdate)
    svc = _svc(request)
    target = await svc.directory.require(agent_id)  # a username or an account id
    if "agents:manage" not in who.scopes:
        if target.id != who.id:
            raise ProtocolError("forbidden", "this needs the supervisor role (agents may change their own name, password and language)")
        for name in ("role", "skills", "capacity", "channels"):
            if getattr(body, name) is not None:
                raise ProtocolError("forbidden", f"changing {name} needs the supervisor role", name)
    _admin_only(who, body.role, target)
    account = await svc.directory.update(target.id, password=body.password, name=body.name, role=body.role,
                                         skills=body.skills, capacity=body.capacity, channels=body.channels,
                                         locale=body.locale)
    await svc.agent_changed(account)
    return web.json_response({"agent": account.public()})


async def delete_agent(request: web.Request) -> web.Response:
    who = await authorize(request, "agents:manage")
    svc = _svc(request)
    agent_id = request.match_info["agent"]
    target = await svc.directory.require(agent_id)
    _admin_only(who, None, target)
    await svc.directory.delete(target.id)  # its tokens and sockets end on every node
    await svc.agent_deleted(target.id)
    return web.Response(status=204)


# --- canned replies ------------------------------------------------------------------------------

async def list_canned(request: web.Request) -> web.Response:
    await _agent(request)
    return web.json_response({"replies": await _svc(request).canned.list()})


async def get_canned(request: web.Request) -> web.Response:
    await _agent(request)
    return web.json_response({"reply": await _svc(request).canned.get(request.match_info["rid"])})


async def create_canned(request: web.Request) -> web.Response:
    who = await _supervisor(request)
    body = await _body(request, m.CannedCreate)
    reply = await _svc(request).canned.create(body.title, body.text, who.id)
    return web.json_response({"reply": reply}, status=201)


async def update_canned(request: web.Request) -> web.Response:
    who = await _supervisor(request)
    body = await _body(request, m.CannedUpdate)
    reply = await _svc(request).canned.update(request.match_info["rid"], who.id, body.title, body.text)
    return web.json_response({"reply": reply})


async def delete_canned(request: web.Request) -> web.Response:
    await _supervisor(request)
    await _svc(request).canned.delete(request.match_info["rid"])
    return web.Response(status=204)


# --- API keys (admins) ---------------------------------------------------------------------------

async def create_api_key(request: web.Request) -> web.Response:
    who = await authorize(request, MANAGE_KEYS)
    body = await _body(request, m.ApiKeyCreate)
    key, token = await _svc(request).api_keys.create(body.name, list(body.scopes), who.id)
    return web.json_response({"api_key": key.public(), "key": token}, status=201)


async def list_api_keys(request: web.Request) -> web.Response:
    await authorize(request, MANAGE_KEYS)
    return web.json_response({"api_keys": [k.public() for k in await _svc(request).api_keys.list()]})


async def revoke_api_key(request: web.Request) -> web.Response:
    await authorize(request, MANAGE_KEYS)
    await _svc(request).api_keys.revoke(request.match_info["key"])
    return web.Response(status=204)


# --- the operations: one table for the router and the OpenAPI document (server/openapi.py) ----------

@dataclass(frozen=True)
class Param:
    """A query parameter of an operation (path parameters are read from the path)."""

    name: str
    schema: dict[str, Any]
    description: str = ""


@dataclass(frozen=True)
class Op:
    """One REST operation: how it is routed and how the OpenAPI document describes it.

    ``auth``: ``"scope"`` (``authorize(request, scope)``: agent token or API key), ``"agent"`` (an
    agent's token only), ``"any"`` (any valid token or key; the handler applies finer rules) or
    ``"none"``. ``answer`` names a schema in ``rest_schemas.ANSWERS`` (None: ``204`` no content)."""

    method: str
    path: str
    handler: Handler | None  # None: routed by another module (described only; see server/openapi.py)
    summary: str
    answer: str | None
    scope: str | None = None
    auth: str = "scope"
    status: int = 200
    body: type | None = None
    query: tuple[Param, ...] = ()
    tag: str = "conversations"
    description: str = ""
    operation_id: str = ""  # default: the handler's name
    media_type: str = "application/json"  # of the answer


def add_operations(router: web.UrlDispatcher, ops: list[Op]) -> None:
    for op in ops:
        if op.handler is None:
            continue
        if op.method == "GET":  # HEAD too, answered like GET without the body (RFC 9110 9.3.2)
            router.add_get(op.path, op.handler)
        else:
            router.add_route(op.method, op.path, op.handler)


_ID = {"type": "string", "pattern": ID_RE.pattern}
_LISTING = (
    Param("state", {"enum": list(listing.STATES), "default": "open"},
          "open (not closed), closed, all, or one state"),
    Param("queue", _ID, "only conversations in this queue"),
    Param("agent", _ID, "only conversations assigned (or offered, or being transferred) to this agent"),
    Param("customer", _ID, "only this customer's conversations"),
    Param("updated_since", {"type": "string", "pattern": r"^(\d{1,15}|\d{4}-\d\d-\d\d([T ].+)?)$"},
          "milliseconds since 1970, or an ISO 8601 time: only conversations changed at or after it"),
    Param("limit", {"type": "integer", "minimum": 1, "maximum": listing.MAX_LIMIT, "default": 100}),
    Param("cursor", {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,400}$"}, "next_cursor from an earlier answer"),
)
_EVENTS = (
    Param("after", {"type": "string", "pattern": EVENT_ID_RE.pattern}, "an event id: only events after it"),
    Param("limit", {"type": "integer", "minimum": 1, "maximum": 10000, "default": 1000}),
)
_C = f"{API}/conversations"

OPERATIONS: list[Op] = [
    Op("POST", f"{API}/auth/login", login, "Log in as an agent: a bearer token", "Login", auth="none",
       body=m.Login, tag="auth"),
    Op("POST", f"{API}/auth/logout", logout, "End every session of the caller's account", None, auth="agent",
       status=204, tag="auth"),
    Op("GET", f"{API}/auth/demo", demo_login, "The demo login, while the demo account is on (the sign-in forms' hint)",
       "DemoLogin", auth="none", tag="auth"),
    Op("GET", f"{API}/me", me, "The calling agent's account", "Me", auth="agent", tag="auth"),
    Op("GET", _C, list_conversations, "List conversations by last change, with filters and a cursor",
       "ConversationPage", "conversations:read", query=_LISTING,
       description="Ordered by (updated_ts, id). Poll with next_cursor (or updated_since) to see every change: "
                   "new messages, closes, ratings. Agents see only conversations they may read."),
    Op("POST", _C, create_conversation, "Start a conversation for a customer (outreach)", "ConversationStarted",
       "conversations:write", status=201, body=m.ConversationCreate),
    Op("GET", f"{_C}/{{cid}}", get_conversation, "A conversation and the customer's other conversations",
       "ConversationView", "conversations:read"),
    Op("GET", f"{_C}/{{cid}}/events", get_events, "A conversation's events", "EventPage", "conversations:read",
       query=_EVENTS),
    Op("POST", f"{_C}/{{cid}}/messages", post_message, "Send a message (as the caller, an agent or a bot)",
       "EventAnswer", "conversations:write", status=201, body=m.MessagePost,
       description="201 with the stored event; 200 with duplicate: true when client_id was already used."),
    Op("POST", f"{_C}/{{cid}}/notes", post_note, "Add an internal note (agents only see it)", "EventAnswer",
       "conversations:write", status=201, body=m.NotePost),
    Op("POST", f"{_C}/{{cid}}/close", close_conversation, "Close a conversation, with a disposition", "Closed",
       "conversations:write", body=m.ClosePost),
    Op("PATCH", f"{_C}/{{cid}}/attributes", patch_attributes, "Set (null: delete) the customer's custom attributes",
       "Attributes", "conversations:write", body=m.AttributesPatch),
    Op("GET", f"{API}/recordings/{{rid}}", download_recording, "Download a call recording (WebM audio, video if any)",
       None, "conversations:read", tag="calls", media_type="audio/webm",
       description="The id and url come from the conversation's recordings (and its call.recording event). "
                   "Agents: only recordings of conversations they may read. Any node answers (a node without "
                   "the file streams it from the node that recorded it); Range requests get 206. 503 "
                   "unavailable: the node holding the file is down (the message names it)."),
    Op("GET", f"{API}/customers/{{customer}}", get_customer, "A customer", "CustomerAnswer", "customers:read",
       tag="customers"),
    Op("GET", f"{API}/customers/{{customer}}/conversations", customer_conversations,
       "A customer's conversations, newest first", "ConversationList", "customers:read", tag="customers"),
    Op("GET", f"{API}/queues", list_queues, "Queues and their statistics", "QueueList", "conversations:read",
       tag="team"),
    Op("GET", f"{API}/agents", list_agents, "Agents, with presence and load", "AgentList", "conversations:read",
       tag="team"),
    Op("POST", f"{API}/agents", create_agent, "Create an agent account", "AgentRecord", "agents:manage",
       status=201, body=m.AgentCreate, tag="team"),
    Op("GET", f"{API}/agents/{{agent}}", get_agent, "An agent", "AgentAnswer", "conversations:read", tag="team"),
    Op("PATCH", f"{API}/agents/{{agent}}", update_agent, "Change an agent account", "AgentRecord", auth="any",
       body=m.AgentUpdate, tag="team",
       description="With agents:manage: any account (admins' accounts and the admin role: admins only). "
                   "Without: an agent may change their own name and password."),
    Op("DELETE", f"{API}/agents/{{agent}}", delete_agent, "Delete an agent account", None, "agents:manage",
       status=204, tag="team"),
    Op("GET", f"{API}/canned", list_canned, "Canned replies", "CannedList", auth="agent", tag="canned"),
    Op("POST", f"{API}/canned", create_canned, "Create a canned reply (supervisors)", "CannedAnswer", auth="agent",
       status=201, body=m.CannedCreate, tag="canned"),
    Op("GET", f"{API}/canned/{{rid}}", get_canned, "A canned reply", "CannedAnswer", auth="agent", tag="canned"),
    Op("PATCH", f"{API}/canned/{{rid}}", update_canned, "Change a canned reply (supervisors)", "CannedAnswer",
       auth="agent", body=m.CannedUpdate, tag="canned"),
    Op("DELETE", f"{API}/canned/{{rid}}", delete_canned, "Delete a canned reply (supervisors)", None, auth="agent",
       status=204, tag="canned"),
    Op("POST", f"{API}/api-keys", create_api_key, "Create an API key (admins); the key is shown once",
       "ApiKeyCreated", MANAGE_KEYS, status=201, body=m.ApiKeyCreate, tag="api-keys"),
    Op("GET", f"{API}/api-keys", list_api_keys, "API keys (admins)", "ApiKeyList", MANAGE_KEYS, tag="api-keys"),
    Op("DELETE", f"{API}/api-keys/{{key}}", revoke_api_key, "Revoke an API key (admins): it stops working at once",
       None, MANAGE_KEYS, status=204, tag="api-keys"),
]


def setup(app: web.Application) -> None:
    if SIGNALING not in app:  # pragma: no cover - signaling is part of every node
        return
    app.middlewares.append(errors_as_json)
    r = app.router
    add_operations(r, OPERATIONS)
    from .openapi import setup as setup_openapi  # /api/openapi.json, from the same table

    setup_openapi(app)
    from .webhooks_api import add_routes as add_webhook_routes  # /api/v1/webhooks (docs/webhooks.md)

    add_webhook_routes(r)
    recordings_http.add_routes(r)  # /internal/v1/recordings/{rid}: for the other nodes only
