"""Conversations: what customers and agents may do, and who is told about it.

``Signaling`` is one per node. The Socket.IO namespaces (``namespaces.py``) and the REST API
(``server/rest.py``) call its methods with a :class:`Principal` (who is asking) and validated
payloads; it checks access, changes Redis through ``Store.mutate`` (one atomic script per
change), routes through ``Router`` and pushes the resulting events to the right Socket.IO rooms:

- ``customer:<customer id>`` (namespace ``/customer``): every socket of that customer;
- ``agent:<agent id>`` (namespace ``/agent``): every socket of that agent, on any node;
- ``watch:<conversation id>`` (``/agent``): sockets that opened a conversation they do not work on
  (a supervisor watching, an agent reading a customer's history);
- ``agents`` / ``supervisors`` (``/agent``): queue statistics.

Conversation states: ``queued -> offered -> assigned -> (transferring) -> assigned -> closed``.
docs/conversations.md describes the state machine and the access rules.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterable

import redis.asyncio as aioredis
import socketio

from .agents import Account, Canned, Directory, render
from .apikeys import ApiKeys
from . import fanout, fastjson
from .errors import ProtocolError, conflict, forbidden, invalid, not_found
from .schema import MAX_ATTRIBUTES, check_attributes
from .locks import KeyedLocks
from .limits import RateLimiter
from .routing import Offer, Router, RoutingError
from .store import MutationFailed, Outcome, Store, encode_event, ts_of
from .identity import IdentityError, verify_identity
from .sessions import SessionWatch
from .tokens import Signer, TokenError

log = logging.getLogger(__name__)

CUSTOMER_NS = "/customer"
AGENT_NS = "/agent"

LOOP_INTERVAL_S = 0.25
POSITION_EVERY_S = 1.0
STATS_EVERY_S = 1.0
HISTORY_LIMIT = 50
# the customer's context (docs/conversations.md "Context that travels with the customer")
ATTR_PREFIX = "attr:"       # a custom attribute in a conversation hash: attr:<key> -> JSON value
PAGES_KEEP = 50             # page views kept per customer (newest first)
PAGE_REPEAT_MS = 5000       # the same URL again within this window is one view (reloads, SPA re-renders)
CONTEXT_TTL_S = 30 * 86400  # attributes and pages of a visitor who never started a conversation
OPEN_SCAN = 50              # a customer's latest conversations looked at for open ones
PAGE_VIEWS_PER_MINUTE = 60  # per customer and node: more is a script, not a person browsing
TRANSFER_FIELDS = ["transfer_mode", "transfer_from", "transfer_from_name", "transfer_agent",
                   "transfer_agent_name", "transfer_queue", "transfer_accepted", "transfer_note"]


@dataclass
class Principal:
    """Who is asking: a customer (``kind="customer"``), an agent (``kind="agent"``), a server using an
    API key (``kind="integration"``, named after the key) or a bot a server speaks as (``kind="bot"``)."""

    kind: str
    id: str
    name: str
    email: str = ""
    verified: bool = False
    account: Account | None = None
    watch: bool = False  # an /agent connection with auth.watch: never online, never offered
    # REST: what this caller may do (signaling.apikeys.SCOPES; an agent's come from its role)
    scopes: frozenset[str] = frozenset()

    @property
    def is_server(self) -> bool:
        """An integration or a bot: reads every conversation (its key's scopes permitting), is never
        assigned one, and needs no assignment to write to one."""
        return self.kind in ("integration", "bot")

    @property
    def is_agent(self) -> bool:
        return self.kind == "agent"

    @property
    def is_supervisor(self) -> bool:
        return self.account is not None and self.account.is_supervisor

    def author(self) -> dict[str, str]:
        return {"kind": self.kind, "id": self.id, "name": self.name}


SYSTEM = {"kind": "system", "id": "segue", "name": "Segue"}


def _failure(exc: MutationFailed, cid: str, doing: str = "") -> ProtocolError:
    code = exc.code
    if code == "not_found":
        return not_found(f"conversation {cid}")
    if code == "forbidden":
        return forbidden(f"conversation {cid} belongs to another customer")
    if code == "not_yours":
        return forbidden(f"you are not assigned to conversation {cid}")
    if code == "closed":
        return conflict(f"conversation {cid} is closed")
    if code == "exists":
        return conflict(f"conversation {cid} already exists")
    return conflict(f"conversation {cid} is {exc.state}: cannot {doing or 'do that now'}")


def _routing_error(exc: RoutingError) -> ProtocolError:
    return ProtocolError(exc.code if exc.code in ("invalid", "not_found", "conflict") else "conflict", exc.message)


def summary(h: dict[str, str], for_agent: bool = True) -> dict[str, Any]:
    """The ``conversation`` object of docs/protocol.md from a conversation hash."""
    s: dict[str, Any] = {
        "id": h.get("id", ""),
        "state": h.get("state", ""),
        "customer": {"id": h.get("customer", ""), "name": h.get("customer_name") or "Visitor"},
        "queue": h.get("queue", ""),
        "channel": h.get("channel", "chat"),
        "channels": [c for c in (h.get("channels") or "chat").split(",") if c],
        "created_ts": int(h.get("created_ts") or 0),
        "updated_ts": int(h.get("updated_ts") or h.get("created_ts") or 0),
        "last_event_id": h.get("last_event_id", ""),
    }
    if h.get("customer_email"):
        s["customer"]["email"] = h["customer_email"]
    if h.get("customer_verified"):
        s["customer"]["verified"] = True
    if h.get("agent"):
        s["agent"] = {"id": h["agent"], "name": h.get("agent_name") or h["agent"]}
    if h.get("closed_ts"):
        s["closed_ts"] = int(h["closed_ts"])
    if h.get("disposition"):
        s["disposition"] = h["disposition"]
    if h.get("csat_score"):
        s["csat"] = {"score": int(h["csat_score"])}
        if h.get("csat_comment"):
            s["csat"]["comment"] = h["csat_comment"]
    read = {k: h[f"read_{k}"] for k in ("customer", "agent") if h.get(f"read_{k}")}
    if read:
        s["read"] = read
    if h.get("context"):
        s["context"] = json.loads(h["context"])
    if for_agent:
        s["attributes"] = attributes_of(h)
        if h.get("transfer_mode"):
            t: dict[str, Any] = {"mode": h["transfer_mode"], "accepted": bool(h.get("transfer_accepted"))}
            if h.get("transfer_from"):
                t["from_agent"] = {"id": h["transfer_from"], "name": h.get("transfer_from_name") or h["transfer_from"]}
            if h.get("transfer_agent"):
                t["to"] = {"agent": {"id": h["transfer_agent"], "name": h.get("transfer_agent_name") or h["transfer_agent"]}}
            elif h.get("transfer_queue"):
                t["to"] = {"queue": h["transfer_queue"]}
            s["transfer"] = t
        if h.get("offer_agent"):
            s["offer"] = {"agent": h["offer_agent"]}
        s.update(wrap_up(h))
    return s


def _json_list(text: str | None) -> list[Any]:
    try:
        value = json.loads(text or "[]")
    except ValueError:
        return []
    return value if isinstance(value, list) else []


def _transfers_with(h: dict[str, str], data: dict[str, Any]) -> str:
    """The hash's ``transfers`` list with one more completed transfer (who from, to whom, how, the note)."""
    entry = {**data, "ts": int(time.time() * 1000)}
    if h.get("transfer_note"):
        entry["note"] = h["transfer_note"]
    return json.dumps((_json_list(h.get("transfers")) + [entry])[-50:])


def wrap_up(h: dict[str, str], now_ms: int | None = None) -> dict[str, Any]:
    """What agents and the back office see of how a conversation went (docs/conversations.md
    "Wrap-up"): every channel used with the seconds spent on it, completed transfers, its calls
    (length, recording) and the tags given on close. Channel time: chat from creation to close;
    voice, video and screen share from the calls layer's ``ch_on:``/``ch_ms:`` fields."""
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    created = int(h.get("created_ts") or 0)
    end = int(h.get("closed_ts") or now)
    active = [c for c in (h.get("channels") or "chat").split(",") if c]
    used = [c for c in (h.get("channels_used") or ",".join(active)).split(",") if c]
    if "chat" not in used:
        used.insert(0, "chat")  # the chat runs for the whole conversation
    seconds: dict[str, float] = {}
    for ch in used:
        if ch == "chat":
            ms = max(0, end - created) if created else 0
        else:
            ms = int(h.get(f"ch_ms:{ch}") or 0)
            if h.get(f"ch_on:{ch}"):
                ms += max(0, end - int(h[f"ch_on:{ch}"]))
        seconds[ch] = round(ms / 1000, 1)
    out: dict[str, Any] = {"channels_used": used, "channel_time": seconds,
                           "transfers": _json_list(h.get("transfers")), "calls": _json_list(h.get("calls"))}
    tags = _json_list(h.get("tags"))
    if tags:
        out["tags"] = tags
    recorded = [c for c in out["calls"] if isinstance(c, dict) and isinstance(c.get("recording"), dict)]
    if recorded:
        out["recording"] = recorded[-1]["recording"]
        # for a back office (docs/rest.md "Recordings"): each with its call's start, length and channel
        # (a call taken over from a node that died goes on in a file of its own: its parts follow it)
        out["recordings"] = []
        for c in recorded:
            call = {"started_ts": c.get("started_ts", 0), "channel": c.get("media", "voice")}
            first = c["recording"]
            out["recordings"].append({**first, **call, **({"duration_s": c["duration_s"]} if "duration_s" in c else {})})
            for part in c.get("recording_parts") or []:
                if isinstance(part, dict):
                    out["recordings"].append({**part, **call, "continues": first.get("id")})
    return out


def attributes_of(h: dict[str, str]) -> dict[str, Any]:
    """A conversation's custom attributes from its hash (``attr:<key>`` fields, JSON values)."""
    return {k[len(ATTR_PREFIX):]: fastjson.loads(v) for k, v in sorted(h.items()) if k.startswith(ATTR_PREFIX)}


def _customer_id_for(site: str, external_id: str) -> str:
    digest = hashlib.sha256(f"{site}|{external_id}".encode()).hexdigest()[:24]
    return f"u_{digest}"


class Signaling:
    """Conversation service of one node (see the module doc)."""

    def __init__(self, sio: socketio.AsyncServer, redis: aioredis.Redis, config: Any, secret: bytes) -> None:
        self.sio = sio
        self.redis = redis
        self.config = config
        prefix = config.redis.key_prefix
        self.store = Store(redis, prefix)
        self.keys = self.store.keys
        self.directory = Directory(redis, prefix)
        self.canned = Canned(redis, prefix)
        self.api_keys = ApiKeys(redis, prefix)
        self.signer = Signer(secret)
        self.router = Router(redis, prefix, config.routing)
        self.queues = {q.name: q for q in config.routing.queues}
        self.max_message = config.limits.max_message_chars
        self.locks = KeyedLocks()
        # rate limits and load shedding of the Socket.IO surface (signaling/limits.py)
        self.limiter = RateLimiter(config.limits)
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False  # set by shutdown(): the routing loop ends at its next turn
        # conversations this node queued: id -> (customer id, last position sent)
        self._waiting: dict[str, tuple[str, tuple[int, float] | None]] = {}
        self._last_position_check = 0.0
        self._last_stats: list[dict[str, Any]] | None = None
        self._last_stats_push = 0.0
        self._last_stats_check = 0.0
        # set by the namespaces: agent id -> how many sockets on this node
        self.local_agents: dict[str, int] = {}
        self._fast_emit = type(sio.manager) is socketio.AsyncManager
        # page views per customer on this node: id -> (window start, count) (page_view's limit)
        self._page_views: dict[str, tuple[float, int]] = {}
        # the calls layer (signaling.calls.CallService) when present: told about transfers and closes
        self.calls: Any = None
        # told of each batch of events this node stored, as stored, before they are pushed (the
        # node's search indexes them from memory instead of reading them back: signaling/desk.py)
        self.stored_observers: list[Callable[[str, Outcome, list[dict[str, Any]]], None]] = []
        self._session_watch: SessionWatch | None = None
        # this node's membership of the cluster (signaling.cluster.Cluster), set by setup()
        self.cluster: Any = None

    async def call_hook(self, name: str, *args: Any) -> None:
        """Tell the calls layer (if installed) that something happened to a conversation."""
        if self.calls is None:
            return
        try:
            result = getattr(self.calls, name)(*args)
            if asyncio.iscoroutine(result):
                await result
        except Exception:  # noqa: BLE001 - a call problem must not undo a stored chat change
            log.exception("calls hook %s failed", name)

    # ------------------------------------------------------------------------------------------
    # pushing

    async def emit(self, event: str, data: Any, namespace: str, rooms: str | list[str],
                   skip_sid: str | None = None, local: bool = False) -> None:
        """Emit to rooms: encoded once and queued on each of this node's sockets directly
        (python-socketio's ``emit`` makes a task per recipient; signaling/fanout.py); with Redis
        fan-out, also published to the other nodes with sockets in the rooms (the manager's ``emit``).
        ``local``: only this node's sockets (what every node sends anyway, e.g. queue stats)."""
        manager = self.sio.manager
        if self._fast_emit or local:
            if namespace in manager.rooms:
                await fanout.send_local(manager, lambda: fanout.event_packet(namespace, event, data), namespace,
                                        rooms, skip_sid)
            return
        await manager.emit(event, data, namespace, room=rooms, skip_sid=skip_sid)

    async def push_event(self, event: dict[str, Any], customer: str | None, agents: Iterable[str],
                         skip_sid: str | None = None) -> None:
        cid = event["conversation_id"]
        if event["visibility"] == "all" and customer:
            await self.emit("event", event, CUSTOMER_NS, f"customer:{customer}", skip_sid)
        rooms = [f"agent:{a}" for a in agents]
        rooms.append(f"watch:{cid}")
        await self.emit("event", event, AGENT_NS, rooms, skip_sid)

    async def push_summary(self, h: dict[str, str], extra_agents: Iterable[str] = ()) -> None:
        if not h:
            return
        cid = h["id"]
        if h.get("customer"):
            await self.emit("conversation", summary(h, for_agent=False), CUSTOMER_NS, f"customer:{h['customer']}")
        agents = set(await self.store.active(cid)) | set(extra_agents)
        for name in ("offer_agent", "transfer_agent"):
            if h.get(name):
                agents.add(h[name])
        rooms = [f"agent:{a}" for a in agents] + [f"watch:{cid}"]
        await self.emit("conversation", summary(h), AGENT_NS, rooms)

    async def to_agent(self, agent_id: str, event: str, data: Any) -> None:
        await self.emit(event, data, AGENT_NS, f"agent:{agent_id}")

    def _event(self, cid: str, event_id: str, enc: list[str], type_: str, author: dict[str, str],
               visibility: str, data: dict[str, Any]) -> dict[str, Any]:
        return {"id": event_id, "conversation_id": cid, "type": type_, "ts": ts_of(event_id),
                "author": author, "visibility": visibility, "data": data}

    async def _apply(self, cid: str, spec: dict[str, Any], events: list[tuple[str, dict[str, str], str, dict[str, Any]]],
                     doing: str = "", skip_sid: str | None = None, push: bool = True,
                     extra_agents: Iterable[str] = ()) -> tuple[Outcome, list[dict[str, Any]]]:
        """Run one mutation with ``events`` appended; push the stored events to whoever may see them."""
        if events:
            spec["events"] = [encode_event(t, a, v, d) for t, a, v, d in events]
        try:
            outcome = await self.store.mutate(cid, spec)
        except MutationFailed as exc:
            raise _failure(exc, cid, doing) from None
        # webhooks: nothing to do here — the MUTATE script already put the events an endpoint wants
        # in the webhook outbox, in the same atomic step (Store.webhook_picker, signaling/webhooks.py)
        stored = [self._event(cid, eid, [], t, a, v, d) for eid, (t, a, v, d) in zip(outcome.ids, events)]
        for observe in self.stored_observers:
            try:
                observe(cid, outcome, stored)
            except Exception:  # noqa: BLE001 - the events are stored: an observer's failure must not undo that
                log.exception("an observer of stored events failed")
        if push and stored:
            agents = set(outcome.agents) | set(extra_agents)
            for extra in (outcome.transfer_agent, outcome.agent):
                if extra:
                    agents.add(extra)
            for ev in stored:
                await self.push_event(ev, outcome.customer, agents, skip_sid)
        return outcome, stored

    def wake(self) -> None:
        self._wake.set()

    # ------------------------------------------------------------------------------------------
    # identities

    def visitor_token(self, visitor_id: str) -> str:
        return self.signer.sign("v", visitor_id, self.config.auth.visitor_token_days * 86400)

    def agent_token(self, account: Account) -> str:
        return self.signer.sign("a", account.id, self.config.auth.agent_token_hours * 3600, ver=account.token_version)

    async def agent_from_token(self, token: Any) -> Account:
        try:
            claims = self.signer.verify(token, "a")
        except TokenError as exc:
            raise ProtocolError("bad_token", str(exc)) from None
        account = await self.directory.get(claims.sub)
        if account is None:
            raise ProtocolError("bad_token", f"agent account {claims.sub!r} no longer exists: log in again")
        if claims.ver != account.token_version:
            raise ProtocolError("bad_token", "this session ended (logged out, or the password or role changed): log in again")
        return account

    async def customer_session(self, visitor_token: str | None, site: str | None, identity: Any) -> tuple[Principal, str]:
        """Resolve a connecting customer: (principal, visitor token to keep)."""
        now_ms = int(time.time() * 1000)
        if visitor_token:
            try:
                visitor_id = self.signer.verify(visitor_token, "v").sub
            except TokenError as exc:
                raise ProtocolError(
                    "bad_token", f"{exc}: connect without visitor_token to start as a new visitor") from None
        else:
            visitor_id = "v_" + secrets.token_urlsafe(12).replace("-", "x").replace("_", "y")
        if site is not None or identity is not None:
            try:
                ident = verify_identity(self.config.auth.sites, site, identity, self.config.auth.identity_max_age_s)
            except IdentityError as exc:
                raise ProtocolError("bad_identity", str(exc)) from None
            cust_id = _customer_id_for(ident["site"], ident["id"])
            record = await self.store.customer(cust_id)
            fields = {"id": cust_id, "site": ident["site"], "external_id": ident["id"], "verified": "1"}
            if ident["name"]:
                fields["name"] = ident["name"]
            if ident["email"]:
                fields["email"] = ident["email"]
            if not record:
                fields["created_ts"] = str(now_ms)
            await self.store.save_customer(cust_id, fields)
            record = {**record, **fields}
            await self._merge_visitor(visitor_id, cust_id, record)
            keep = bool(await self.redis.exists(self.keys.customer_convs(cust_id)))
            if not keep:  # a signed-in user who never chatted: the record goes if they stay idle
                await self.redis.expire(self.keys.customer(cust_id), CONTEXT_TTL_S)
            if visitor_token:  # what the visitor's site set and the pages they viewed come along
                await self.store.move_customer_context(visitor_id, cust_id, MAX_ATTRIBUTES, PAGES_KEEP,
                                                       0 if keep else CONTEXT_TTL_S)
            principal = Principal("customer", cust_id, record.get("name") or "Visitor", record.get("email", ""), True)
        else:
            # An anonymous visitor is written down only when they act (start a conversation, say
            # who they are): a page view that never chats leaves no permanent key (issue 11).
            record = await self.store.customer(visitor_id) if visitor_token else {}
            principal = Principal("customer", visitor_id, record.get("name") or "Visitor", record.get("email", ""))
        return principal, self.visitor_token(visitor_id)

    async def _merge_visitor(self, visitor_id: str, cust_id: str, record: dict[str, str]) -> None:
        """A visitor who is now identified: their anonymous conversations join the identity's."""
        key = self.keys.customer_convs(visitor_id)
        items = await self.redis.zrange(key, 0, -1, withscores=True)
        if not items:
            return
        for cid, score in items:
            await self.redis.hset(self.keys.conv(cid), mapping={
                "customer": cust_id, "customer_name": record.get("name") or "Visitor",
                "customer_email": record.get("email", ""), "customer_verified": "1"})
            await self.redis.zadd(self.keys.customer_convs(cust_id), {cid: score})
            await self.store.touch(cid)
        agents = await self.redis.smembers(self.keys.customer_agents(visitor_id))
        if agents:
            await self.redis.sadd(self.keys.customer_agents(cust_id), *agents)
        await self.redis.delete(key)
        await self.redis.hset(self.keys.customer(visitor_id), "merged_into", cust_id)

    # ------------------------------------------------------------------------------------------
    # reading

    async def _conversation(self, cid: str) -> dict[str, str]:
        h = await self.store.conversation(cid)
        if not h:
            raise not_found(f"conversation {cid}")
        return h

    async def can_read(self, who: Principal, h: dict[str, str]) -> bool:
        cid, cust = h["id"], h.get("customer", "")
        if who.kind == "customer":
            return cust == who.id
        if who.is_server or who.is_supervisor or who.id in (h.get("offer_agent"), h.get("transfer_agent"), h.get("agent")):
            return True
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.sismember(self.keys.seen(cid), who.id)
            pipe.sismember(self.keys.customer_agents(cust), who.id)
            pipe.exists(self.keys.grant(who.id, cust))
            seen, cust_agent, granted = await pipe.execute()
        return bool(seen or cust_agent or granted)

    async def readable(self, who: Principal, cid: str) -> dict[str, str]:
        h = await self._conversation(cid)
        if not await self.can_read(who, h):
            if who.kind == "customer":
                raise forbidden(f"conversation {cid} belongs to another customer")
            raise forbidden(f"conversation {cid} is not assigned to you, and you have not been assigned "
                            "to this customer before (supervisors may open any conversation)")
        return h

    async def events_for(self, who: Principal, cid: str, after: str | None = None,
                         limit: int | None = None) -> list[dict[str, Any]]:
        events = await self.store.events(cid, after, count=limit)
        if who.kind == "customer":
            events = [e for e in events if e["visibility"] == "all"]
        return events

    async def history(self, customer: str, exclude: str | None = None, for_agent: bool = True) -> list[dict[str, Any]]:
        ids = [c for c in await self.store.customer_conversation_ids(customer, HISTORY_LIMIT + 1) if c != exclude]
        return [summary(h, for_agent) for h in await self.store.conversations(ids[:HISTORY_LIMIT])]

    async def can_read_customer(self, who: Principal, customer: str) -> bool:
        if who.is_server or who.is_supervisor:
            return True
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.sismember(self.keys.customer_agents(customer), who.id)
            pipe.exists(self.keys.grant(who.id, customer))
            a, b = await pipe.execute()
        return bool(a or b)

    async def open_view(self, who: Principal, cid: str, after: str | None = None) -> dict[str, Any]:
        h = await self.readable(who, cid)
        events = await self.events_for(who, cid, after)
        out: dict[str, Any] = {"conversation": summary(h, who.is_agent), "events": events}
        if who.is_agent:
            out["history"] = await self.history(h.get("customer", ""), exclude=cid)
            out["customer"] = await self.customer_view(h.get("customer", ""))
        return out

    async def customer_view(self, customer: str) -> dict[str, Any]:
        """What agents see of a customer beyond the summary: the page trail, newest first."""
        return {"id": customer, "pages": await self.store.pages(customer, PAGES_KEEP) if customer else []}

    # ------------------------------------------------------------------------------------------
    # customers

    async def start(self, who: Principal, queue: str | None, channel: str, context: dict[str, Any] | None,
                    text: str | None, name: str | None = None, email: str | None = None,
                    skip_sid: str | None = None, attributes: dict[str, Any] | None = None,
                    started_by: Principal | None = None, offer_agent: str | None = None) -> dict[str, Any]:
        """A customer's new conversation. REST outreach (``signaling.outreach``): ``started_by`` (a
        server or an agent) authors its creation and opening text; ``offer_agent`` is offered it
        first (it waits in the queue when that agent cannot take it now)."""
        opener = started_by or who
        qname = queue or self.config.routing.default_queue
        qconf = self.queues.get(qname)
        if qconf is None:
            raise invalid("queue", f"unknown queue {qname!r} (known: {', '.join(self.queues)})")
        changed: dict[str, Any] = {}
        if attributes:
            changed = await self._merge_customer_attributes(who.id, check_attributes(attributes), keep=True)
        await self.store.keep_customer_context(who.id)  # the visitor acted: their context is kept
        if not who.verified:  # the visitor's record is written now, when they first act
            await self.store.ensure_customer(who.id, {"id": who.id, "name": who.name or "Visitor"})
        carried = await self.store.customer_attributes(who.id)  # they travel into every new conversation
        if not who.verified and (name or email):
            fields = {}
            if name:
                fields["name"] = who.name = name
            if email:
                fields["email"] = who.email = email
            await self.store.save_customer(who.id, fields)
        cid = "c_" + secrets.token_hex(8)
        events: list[tuple[str, dict[str, str], str, dict[str, Any]]] = [
            ("conversation.created", opener.author(), "all", {"channel": channel, "queue": qname, "context": context or {}}),
            ("conversation.queued", SYSTEM, "all", {"queue": qname}),
        ]
        given = {k: v for k, v in (attributes or {}).items() if v is not None}
        if given:  # what the site set with this start (the rest came from earlier)
            events.append(("attributes.updated", opener.author(), "agents", {"attributes": given}))
        if text:
            events.append(("message", opener.author(), "all", {"text": text}))
        create = {
            "id": cid, "state": "queued", "customer": who.id, "customer_name": who.name or "Visitor",
            "customer_email": who.email or "", "queue": qname, "channel": channel, "channels": channel,
            "context": json.dumps(context or {}),
        }
        for key, value in carried.items():
            create[ATTR_PREFIX + key] = fastjson.dumps(value)
        if who.verified:
            create["customer_verified"] = "1"
        async with self.locks(cid):
            outcome, stored = await self._apply(cid, {"create": create}, events, skip_sid=skip_sid)
            await self.store.link_conversation(who.id, cid, ts_of(outcome.ids[0]))
            offer: Offer | None = None
            try:
                if offer_agent:
                    offer = await self.router.offer_to(cid, offer_agent, channel, queue=qname)
                if offer is None:
                    await self.router.enqueue(cid, qname, channel, [])
            except RoutingError as exc:
                raise _routing_error(exc) from None
            if offer is None:
                self._waiting[cid] = (who.id, None)
                self.wake()
            h = await self.store.conversation(cid)
        if offer is not None:
            await self._on_routed(offer)
        if changed:  # the customer's other open conversations follow
            for other in await self._open_conversations(who.id):
                if other["id"] != cid:
                    await self._apply_attributes(opener, other["id"], changed, skip_sid)
        return {"conversation": summary(h, False), "events": stored}

    async def list_for_customer(self, who: Principal) -> dict[str, Any]:
        ids = await self.store.customer_conversation_ids(who.id, 200)
        return {"conversations": [summary(h, False) for h in await self.store.conversations(ids)]}

    async def resume(self, who: Principal, cid: str, after: str | None) -> dict[str, Any]:
        view = await self.open_view(who, cid, after)
        if view["conversation"]["state"] == "queued" and cid not in self._waiting:
            self._waiting[cid] = (who.id, None)
            self.wake()
        return view

    # ------------------------------------------------------------------------------------------
    # context that travels with the customer: custom attributes and the page trail

    async def _open_conversations(self, customer: str) -> list[dict[str, str]]:
        ids = await self.store.customer_conversation_ids(customer, OPEN_SCAN)
        return [h for h in await self.store.conversations(ids) if h.get("state") != "closed"]

    async def _merge_customer_attributes(self, customer: str, attributes: dict[str, Any],
                                         keep: bool | None = None) -> dict[str, Any]:
        """Merge into the customer's stored attributes; returns the keys that changed -> new value
        (None: deleted). ``keep``: no TTL (the customer has acted); None: decide by whether they
        have conversations."""
        if keep is None:
            keep = bool(await self.redis.exists(self.keys.customer_convs(customer)))
        values = {k: ("" if v is None else fastjson.dumps(v)) for k, v in attributes.items()}
        result = await self.store.set_customer_attributes(customer, values, MAX_ATTRIBUTES, 0 if keep else CONTEXT_TTL_S)
        if result is None:
            raise invalid("attributes", f"a customer has at most {MAX_ATTRIBUTES} attributes: "
                                        "delete some (set them to null) before adding others")
        return {k: attributes[k] for k in result[0]}

    async def set_attributes(self, who: Principal, customer_id: str, attributes: dict[str, Any],
                             conversation_id: str | None = None, skip_sid: str | None = None) -> dict[str, Any]:
        """Set (null: delete) custom attributes of a customer: stored on the customer (so they
        follow them into later conversations) and on each of their open conversations (plus
        ``conversation_id``, even if closed), each change logged as ``attributes.updated``.

        Customers may set only their own; agents (and REST callers) who may read the named
        conversation, or the customer's conversations, may set them too. Returns
        ``{"attributes": <the customer's attributes after the change>}``."""
        attributes = check_attributes(attributes)
        if who.kind == "customer" and customer_id != who.id:
            raise forbidden("a customer may set only their own attributes")
        named: dict[str, str] | None = None
        if conversation_id is not None:
            named = await self.readable(who, conversation_id)
            if named.get("customer") != customer_id:
                raise invalid("conversation_id", f"conversation {conversation_id} is not customer {customer_id}'s")
        elif who.kind != "customer":
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.exists(self.keys.customer(customer_id), self.keys.customer_convs(customer_id))
                (known,) = await pipe.execute()
            if not known:
                raise not_found(f"customer {customer_id}")
            if not await self.can_read_customer(who, customer_id):
                raise forbidden(f"you have not been assigned to customer {customer_id} (supervisors may set any)")
        await self._merge_customer_attributes(customer_id, attributes)
        targets = await self._open_conversations(customer_id)
        if named is not None and all(h.get("id") != named.get("id") for h in targets):
            targets.append(named)
        for h in targets:
            await self._apply_attributes(who, h["id"], attributes, skip_sid)
        return {"attributes": await self.store.customer_attributes(customer_id)}

    async def _apply_attributes(self, who: Principal, cid: str, attributes: dict[str, Any],
                                skip_sid: str | None) -> None:
        async with self.locks(cid):
            h = await self.store.conversation(cid)
            if not h:
                return
            have = attributes_of(h)
            changed = {k: v for k, v in attributes.items()
                       if (k in have) != (v is not None) or (v is not None and fastjson.dumps(have[k]) != fastjson.dumps(v))}
            if not changed:
                return
            spec: dict[str, Any] = {
                "set": {ATTR_PREFIX + k: fastjson.dumps(v) for k, v in changed.items() if v is not None},
                "del": [ATTR_PREFIX + k for k, v in changed.items() if v is None],
            }
            await self._apply(cid, spec, [("attributes.updated", who.author(), "agents", {"attributes": changed})],
                              "set attributes", skip_sid)
            await self.push_summary(await self.store.conversation(cid))

    def _count_page_view(self, customer: str) -> None:
        """``rate_limited`` past PAGE_VIEWS_PER_MINUTE page views of one customer in a minute."""
        now = time.monotonic()
        start, n = self._page_views.get(customer, (now, 0))
        if now - start >= 60:
            start, n = now, 0
        if n >= PAGE_VIEWS_PER_MINUTE:
            wait = max(1, int(60 - (now - start)) + 1)
            raise ProtocolError("rate_limited", f"more than {PAGE_VIEWS_PER_MINUTE} page views a minute: "
                                                f"try again in {wait} s", retry_after_s=wait)
        self._page_views[customer] = (start, n + 1)
        if len(self._page_views) > 10_000:  # forget windows that are over
            self._page_views = {k: v for k, v in self._page_views.items() if now - v[0] < 60}

    async def page_view(self, who: Principal, url: str, title: str | None = None,
                        skip_sid: str | None = None) -> dict[str, Any]:
        """A customer looked at a page: kept on their trail (the latest ``PAGES_KEEP``; a repeat of
        the newest URL within ``PAGE_REPEAT_MS`` is ignored) and, while a conversation is open,
        logged in it as ``page.viewed`` (agents only)."""
        self._count_page_view(who.id)
        entry: dict[str, Any] = {"url": url, "ts": int(time.time() * 1000)}
        if title:
            entry["title"] = title
        keep = bool(await self.redis.exists(self.keys.customer_convs(who.id)))
        added = await self.store.add_page(who.id, entry, entry["ts"], PAGE_REPEAT_MS, PAGES_KEEP,
                                          0 if keep else CONTEXT_TTL_S)
        if not added:
            return {"duplicate": True}
        data = {k: v for k, v in entry.items() if k != "ts"}
        for h in await self._open_conversations(who.id) if keep else []:
            cid = h["id"]
            async with self.locks(cid):
                try:
                    await self._apply(cid, {"customer": who.id, "open": True},
                                      [("page.viewed", who.author(), "agents", data)], "log a page view", skip_sid)
                except ProtocolError:
                    continue  # closed meanwhile
        return {}

    # ------------------------------------------------------------------------------------------
    # both sides

    async def send_message(self, who: Principal, cid: str, text: str, client_id: str | None,
                           skip_sid: str | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {"text": text}
        spec: dict[str, Any] = {"open": True}
        if client_id:
            data["client_id"] = client_id
            spec["dedup"] = f"{who.kind}:{who.id}|{client_id}"
        if who.kind == "customer":
            spec["customer"] = who.id
        elif not who.is_server:  # a server (API key) or its bot writes to any open conversation
            spec["actor"] = who.id
        async with self.locks(cid):
            outcome, stored = await self._apply(cid, spec, [("message", who.author(), "all", data)],
                                                "send a message", skip_sid)
        if outcome.dup:
            event = await self.store.event(cid, outcome.dup)
            return {"event": event, "duplicate": True}
        return {"event": stored[0]}

    async def typing(self, who: Principal, cid: str, typing: bool, skip_sid: str | None = None) -> dict[str, Any]:
        spec: dict[str, Any] = {"open": True}
        if who.kind == "customer":
            spec["customer"] = who.id
        else:
            spec["actor"] = who.id
            spec["also"] = ["transfer_agent"]
        try:
            outcome = await self.store.mutate(cid, spec)
        except MutationFailed as exc:
            raise _failure(exc, cid, "type") from None
        payload = {"conversation_id": cid, "author": who.author(), "typing": typing}
        if who.kind == "agent" and outcome.customer:
            await self.emit("typing", payload, CUSTOMER_NS, f"customer:{outcome.customer}", skip_sid)
        await self.emit("typing", payload, AGENT_NS, [f"agent:{a}" for a in outcome.agents] + [f"watch:{cid}"], skip_sid)
        return {}

    async def read(self, who: Principal, cid: str, event_id: str, skip_sid: str | None = None) -> dict[str, Any]:
        if who.kind == "customer":
            spec: dict[str, Any] = {"customer": who.id, "set": {"read_customer": event_id}}
        else:
            await self.readable(who, cid)
            spec = {"set": {"read_agent": event_id}}
        async with self.locks(cid):
            try:
                outcome = await self.store.mutate(cid, spec)
            except MutationFailed as exc:
                raise _failure(exc, cid, "mark read") from None
        payload = {"conversation_id": cid, "reader": {"kind": who.kind, "id": who.id}, "event_id": event_id}
        if outcome.customer:
            await self.emit("read", payload, CUSTOMER_NS, f"customer:{outcome.customer}", skip_sid)
        await self.emit("read", payload, AGENT_NS, [f"agent:{a}" for a in outcome.agents] + [f"watch:{cid}"], skip_sid)
        return {}

    async def close(self, who: Principal, cid: str, disposition: str | None = None,
                    skip_sid: str | None = None, tags: list[str] | None = None) -> dict[str, Any]:
        """Close a conversation; agents (and REST callers) may give the wrap-up: a ``disposition``
        and ``tags`` (validated by the message schemas), kept in the hash and the close event."""
        data: dict[str, Any] = {"by": who.author()}
        spec: dict[str, Any] = {"open": True, "set": {"state": "closed"}, "stamp": "closed_ts",
                                "del": ["offer_agent", *TRANSFER_FIELDS]}
        if who.kind == "customer":
            spec["customer"] = who.id
        elif not who.is_supervisor and not who.is_server:
            spec["actor"] = who.id
        if disposition:
            data["disposition"] = disposition
            spec["set"]["disposition"] = disposition
        if tags and who.kind != "customer":
            unique = list(dict.fromkeys(tags))  # given order, each tag once
            data["tags"] = unique
            spec["set"]["tags"] = json.dumps(unique)
        async with self.locks(cid):
            before = await self._conversation(cid)
            active = await self.store.active(cid)
            spec["rem"] = sorted(active)
            extra = set(active) | {a for a in (before.get("offer_agent"), before.get("transfer_agent")) if a}
            _, stored = await self._apply(cid, spec, [("conversation.closed", who.author(), "all", data)],
                                          "close it", skip_sid, extra_agents=extra)
            revoked = await self.router.cancel(cid)
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zrem(self.keys.open_convs, cid)
                for a in active:
                    pipe.srem(self.keys.agent_convs(a), cid)
                await pipe.execute()
            self._waiting.pop(cid, None)
            if revoked is not None:
                await self.to_agent(revoked.agent_id, "offer.revoked", {"conversation_id": cid, "reason": "cancelled"})
            h = await self.store.conversation(cid)
            await self.push_summary(h, extra)
        await self.call_hook("conversation_closed", cid)
        self.wake()
        return {"event": stored[0]}

    async def rate(self, who: Principal, cid: str, score: int, comment: str | None,
                   skip_sid: str | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {"score": score}
        spec: dict[str, Any] = {"customer": who.id, "expect": {"csat_score": ""}, "set": {"csat_score": str(score)}}
        if comment:
            data["comment"] = comment
            spec["set"]["csat_comment"] = comment
        async with self.locks(cid):
            try:
                _, stored = await self._apply(cid, spec, [("conversation.rated", who.author(), "all", data)],
                                              "rate it", skip_sid)
            except ProtocolError as exc:
                if exc.code == "conflict":
                    raise conflict(f"conversation {cid} is already rated") from None
                raise
        return {"event": stored[0]}

    # ------------------------------------------------------------------------------------------
    # agents

    async def set_presence(self, who: Principal, status: str) -> dict[str, Any]:
        assert who.account is not None
        try:
            await self.router.set_presence(who.id, status)
        except RoutingError as exc:
            raise _routing_error(exc) from None
        who.account = await self.directory.update(who.id, presence=status)
        public = who.account.public(status)
        await self.to_agent(who.id, "agent", {"agent": public})
        self.wake()
        return {"agent": public}

    async def register_with_routing(self, account: Account, presence: str | None = None) -> None:
        await self.router.register_agent(account.id, account.skills, account.capacity, account.effective_channels)
        if presence is not None:
            await self.router.set_presence(account.id, presence)

    async def agent_changed(self, account: Account) -> None:
        """An account was edited (REST): routing, this node's sessions and the agent's consoles follow."""
        try:
            await self.register_with_routing(account)
        except RoutingError as exc:
            log.warning("agent %s not updated in routing: %s", account.id, exc.message)
        ns = getattr(self, "agent_ns", None)
        if ns is not None:
            ns.refresh_agent(account)
        await self.to_agent(account.id, "agent", {"agent": account.public()})

    async def sessions_ended(self, agent_id: str) -> None:
        """An account's tokens ended (published by ``Directory``): close its sockets on this node
        that hold an older token; routing stops offering to a deleted account."""
        ns = getattr(self, "agent_ns", None)
        if ns is not None:
            await ns.end_sessions(agent_id, await self.directory.get(agent_id))

    async def agent_deleted(self, agent_id: str) -> None:
        try:
            await self.router.set_presence(agent_id, "offline")
        except RoutingError:
            pass  # never connected: routing does not know them
        # this node's sockets now, told why (the other nodes hear it through Directory's publish)
        await self.sessions_ended(agent_id)

    async def accept(self, who: Principal, cid: str) -> dict[str, Any]:
        async with self.locks(cid):
            if not await self.router.accept(who.id, cid):
                raise conflict(f"the offer for conversation {cid} is not yours any more "
                               "(it expired, was taken or was cancelled)")
            h = await self.store.conversation(cid)
            me = who.account.brief() if who.account else {"id": who.id, "name": who.name}
            try:
                if h.get("state") == "transferring" and h.get("transfer_agent") == who.id:
                    # warm transfer: the first agent stays until transfer.complete
                    await self._apply(cid, {"states": ["transferring"], "expect": {"transfer_agent": who.id},
                                            "add": [who.id], "set": {"transfer_accepted": "1"}},
                                      [("transfer.accepted", who.author(), "agents", {"agent": me})], "accept")
                elif h.get("transfer_from"):
                    to: dict[str, Any] = {"agent": me}
                    if h.get("transfer_queue"):
                        to["queue"] = h["transfer_queue"]
                    data = {"from_agent": {"id": h["transfer_from"], "name": h.get("transfer_from_name") or h["transfer_from"]},
                            "to": to, "mode": h.get("transfer_mode") or "cold"}
                    await self._apply(cid, {"states": ["offered", "queued"], "add": [who.id],
                                            "set": {"state": "assigned", "agent": who.id, "agent_name": who.name,
                                                    "transfers": _transfers_with(h, data)},
                                            "del": ["offer_agent", *TRANSFER_FIELDS]},
                                      [("transfer.completed", SYSTEM, "all", data)], "accept")
                    await self.call_hook("transfer_completed", cid, who.id)
                else:
                    await self._apply(cid, {"states": ["offered", "queued"], "add": [who.id],
                                            "set": {"state": "assigned", "agent": who.id, "agent_name": who.name},
                                            "del": ["offer_agent"]},
                                      [("conversation.assigned", SYSTEM, "all", {"agent": me})], "accept")
            except ProtocolError:
                await self.router.release(who.id, cid)
                raise
            cust = h.get("customer", "")
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.sadd(self.keys.customer_agents(cust), who.id)
                pipe.sadd(self.keys.agent_convs(who.id), cid)
                await pipe.execute()
            self._waiting.pop(cid, None)
            h = await self.store.conversation(cid)
            await self.push_summary(h)
        return {"conversation": summary(h), "events": await self.store.events(cid),
                "history": await self.history(cust, exclude=cid), "customer": await self.customer_view(cust)}

    async def decline(self, who: Principal, cid: str) -> dict[str, Any]:
        async with self.locks(cid):
            if not await self.router.decline(who.id, cid):
                raise conflict(f"the offer for conversation {cid} is not yours any more "
                               "(it expired, was taken or was cancelled)")
            await self._offer_gone(cid, who.id, "declined")
        self.wake()
        return {}

    async def _offer_gone(self, cid: str, agent_id: str, reason: str) -> None:
        """An offer was declined or missed: undo the warm transfer, or put the conversation back in line."""
        h = await self.store.conversation(cid)
        if not h:
            return
        brief = {"id": agent_id, "name": await self._agent_name(agent_id)}
        if h.get("state") == "transferring" and h.get("transfer_agent") == agent_id:
            await self._apply(cid, {"states": ["transferring"], "expect": {"transfer_agent": agent_id},
                                    "set": {"state": "assigned"}, "del": TRANSFER_FIELDS},
                              [("transfer.cancelled", SYSTEM, "agents", {"reason": reason, "agent": brief})],
                              extra_agents=[agent_id])
            await self.call_hook("transfer_cancelled", cid)
        elif h.get("offer_agent") == agent_id and h.get("state") == "offered":
            await self._apply(cid, {"states": ["offered"], "expect": {"offer_agent": agent_id},
                                    "set": {"state": "queued"}, "del": ["offer_agent"]},
                              [("conversation.requeued", SYSTEM, "agents", {"agent": brief, "reason": reason})])
            self._waiting[cid] = (h.get("customer", ""), None)
        else:
            return
        await self.push_summary(await self.store.conversation(cid), [agent_id])

    # ------------------------------------------------------------------------------------------
    # a node died (signaling/cluster.py reaps it; docs/deployment.md "When a node dies")

    async def agent_lost(self, agent_id: str) -> None:
        """The agent's last socket was on a node that died: offline now, their ringing offers go
        to other agents, their assigned conversations return to the queue after
        ``cluster.reassign_after_s`` unless they reconnect first."""
        try:
            await self.router.set_presence(agent_id, "offline")
        except RoutingError:
            return  # routing never knew them
        if self.cluster is not None:
            await self.cluster.orphan(agent_id)
        state = await self.router.agent(agent_id)
        for cid in list(state.conversations) if state is not None else []:
            routed = await self.router.conversation(cid)
            offer = routed.offer if routed is not None else None
            if offer is None or offer.agent_id != agent_id:
                continue
            async with self.locks(cid):
                if await self.router.decline(agent_id, cid):
                    await self._offer_gone(cid, agent_id, "agent_offline")
        self.wake()

    async def requeue_lost_agent(self, agent_id: str) -> int:
        """The grace period of an agent lost with a dead node is over and they did not come back:
        each conversation assigned to them returns to its queue (the log, and so the whole
        history, stays with it). Returns how many."""
        if await self.redis.scard(self.keys.agent_sockets(agent_id)):
            return 0  # back on another node
        brief = {"id": agent_id, "name": await self._agent_name(agent_id)}
        moved = 0
        for cid in sorted(await self.redis.smembers(self.keys.agent_convs(agent_id))):
            async with self.locks(cid):
                h = await self.store.conversation(cid)
                if h.get("state") != "assigned" or h.get("agent") != agent_id:
                    continue
                active = await self.store.active(cid)
                queue = h.get("queue") or self.config.routing.default_queue
                try:
                    await self._apply(cid, {"states": ["assigned"], "expect": {"agent": agent_id}, "rem": sorted(active),
                                            "set": {"state": "queued", "queue": queue}, "del": ["agent", "agent_name"]},
                                      [("conversation.requeued", SYSTEM, "all", {"agent": brief, "reason": "agent_offline"})],
                                      extra_agents=active)
                except ProtocolError:
                    continue
                await self._leave(cid, active)
                await self.call_hook("transfer_started", cid, "cold", None)
                try:
                    await self.router.enqueue(cid, queue, h.get("channel") or "chat", [])
                except RoutingError as exc:
                    log.error("could not queue conversation %s of lost agent %s: %s", cid, agent_id, exc.message)
                self._waiting[cid] = (h.get("customer", ""), None)
                await self.push_summary(await self.store.conversation(cid), active)
                moved += 1
        if moved:
            log.info("agent %s did not come back: %d conversations returned to their queues", agent_id, moved)
        self.wake()
        return moved

    async def _agent_name(self, agent_id: str) -> str:
        return (await self.redis.hget(self.keys.account(agent_id), "name")) or agent_id

    async def list_for_agent(self, who: Principal) -> dict[str, Any]:
        if who.is_supervisor:
            ids = await self.redis.zrevrange(self.keys.open_convs, 0, 499)
        else:
            ids = sorted(await self.redis.smembers(self.keys.agent_convs(who.id)))
        return {"conversations": [summary(h) for h in await self.store.conversations(ids)]}

    async def note(self, who: Principal, cid: str, text: str, skip_sid: str | None = None) -> dict[str, Any]:
        await self.readable(who, cid)
        async with self.locks(cid):
            _, stored = await self._apply(cid, {}, [("note", who.author(), "agents", {"text": text})], "add a note", skip_sid)
        return {"event": stored[0]}

    def _require_active_or_supervisor(self, who: Principal, h: dict[str, str], active: set[str]) -> None:
        if who.id not in active and not who.is_supervisor:
            raise forbidden(f"you are not assigned to conversation {h['id']}")

    async def transfer(self, who: Principal, cid: str, to_agent: str | None, to_queue: str | None, mode: str,
                       note: str | None, skip_sid: str | None = None) -> dict[str, Any]:
        if bool(to_agent) == bool(to_queue):
            raise invalid("to", "name exactly one of agent or queue")
        if mode == "warm" and not to_agent:
            raise invalid("to.queue", "a warm transfer goes to a named agent (to: {agent}); transfer to a queue cold")
        if to_agent == who.id:
            raise invalid("to.agent", "you cannot transfer a conversation to yourself")
        target: Account | None = None
        if to_agent:
            target = await self.directory.get(to_agent)
            if target is None:
                raise not_found(f"agent {to_agent!r}")
        if to_queue and to_queue not in self.queues:
            raise not_found(f"queue {to_queue!r} (known: {', '.join(self.queues)})")
        async with self.locks(cid):
            h = await self._conversation(cid)
            active = await self.store.active(cid)
            self._require_active_or_supervisor(who, h, active)
            if h.get("state") != "assigned":
                raise conflict(f"conversation {cid} is {h.get('state')}: only an assigned conversation can be "
                               "transferred" + (" (a transfer is already in progress)" if h.get("state") == "transferring" else ""))
            channel = h.get("channel") or "chat"
            from_id = h.get("agent") or who.id
            from_name = h.get("agent_name") or who.name
            to_data: dict[str, Any] = {"agent": target.brief()} if target else {"queue": to_queue}
            req: dict[str, Any] = {"mode": mode, "to": to_data}
            if note:
                req["note"] = note
            events: list[tuple[str, dict[str, str], str, dict[str, Any]]] = [("transfer.requested", who.author(), "agents", req)]
            if target is not None:
                try:
                    offer = await self.router.offer_to(cid, target.id, channel, raise_on_refusal=True)
                except RoutingError as exc:
                    raise _routing_error(exc) from None
                assert offer is not None
                await self.redis.set(self.keys.grant(target.id, h.get("customer", "")), "1",
                                     ex=int(self.config.routing.offer_timeout_s) + 60)
                base = {"transfer_mode": mode, "transfer_from": from_id, "transfer_from_name": from_name,
                        "transfer_agent": target.id, "transfer_agent_name": target.name}
                if note:
                    base["transfer_note"] = note
                if mode == "warm":
                    spec = {"states": ["assigned"], "set": {**base, "state": "transferring"}}
                    try:
                        _, stored = await self._apply(cid, spec, events, "transfer it", skip_sid)
                    except ProtocolError:
                        await self.router.decline(target.id, cid)
                        raise
                else:
                    # cold: the first agent leaves now; the target holds an ordinary offer
                    base.pop("transfer_agent")
                    base.pop("transfer_agent_name")
                    spec = {"states": ["assigned"], "rem": sorted(active),
                            "set": {**base, "state": "offered", "offer_agent": target.id},
                            "del": ["agent", "agent_name"]}
                    events.append(("conversation.offered", SYSTEM, "agents", {"agent": target.brief()}))
                    try:
                        _, stored = await self._apply(cid, spec, events, "transfer it", skip_sid, extra_agents=active)
                    except ProtocolError:
                        await self.router.decline(target.id, cid)
                        raise
                    await self._leave(cid, active)
                await self.call_hook("transfer_started", cid, mode, target.id)
                await self._send_offer(offer, h.get("customer", ""), kind="transfer",
                                       from_agent={"id": from_id, "name": from_name})
            else:
                assert to_queue is not None
                spec = {"states": ["assigned"], "rem": sorted(active),
                        "set": {"state": "queued", "queue": to_queue, "transfer_mode": "cold", "transfer_from": from_id,
                                "transfer_from_name": from_name, "transfer_queue": to_queue},
                        "del": ["agent", "agent_name"]}
                if note:
                    spec["set"]["transfer_note"] = note
                events.append(("conversation.queued", SYSTEM, "all", {"queue": to_queue}))
                _, stored = await self._apply(cid, spec, events, "transfer it", skip_sid, extra_agents=active)
                await self._leave(cid, active)
                await self.call_hook("transfer_started", cid, "cold", None)
                try:
                    await self.router.enqueue(cid, to_queue, channel, [])
                except RoutingError as exc:
                    log.error("could not queue transferred conversation %s: %s", cid, exc.message)
                self._waiting[cid] = (h.get("customer", ""), None)
            await self.push_summary(await self.store.conversation(cid), active)
        self.wake()
        return {"event": stored[0]}

    async def _leave(self, cid: str, agents: Iterable[str]) -> None:
        for a in agents:
            await self.router.release(a, cid)
            await self.redis.srem(self.keys.agent_convs(a), cid)

    async def consult(self, who: Principal, cid: str, text: str, skip_sid: str | None = None) -> dict[str, Any]:
        spec = {"states": ["transferring"], "actor": who.id, "also": ["transfer_agent"]}
        if who.is_supervisor:
            spec.pop("actor")
            spec.pop("also")
        async with self.locks(cid):
            try:
                _, stored = await self._apply(cid, spec, [("consult.message", who.author(), "agents", {"text": text})],
                                              "consult (no warm transfer is in progress)", skip_sid)
            except ProtocolError as exc:
                if exc.code == "conflict" and "is closed" not in exc.message:
                    raise conflict(f"no warm transfer is in progress on conversation {cid}") from None
                raise
        return {"event": stored[0]}

    async def transfer_complete(self, who: Principal, cid: str, skip_sid: str | None = None) -> dict[str, Any]:
        async with self.locks(cid):
            h = await self._conversation(cid)
            if h.get("state") != "transferring":
                raise conflict(f"no warm transfer is in progress on conversation {cid}")
            if who.id != h.get("transfer_from") and not who.is_supervisor:
                raise forbidden(f"only {h.get('transfer_from')} (who started the transfer) can complete it")
            if not h.get("transfer_accepted"):
                raise conflict(f"{h.get('transfer_agent_name') or h.get('transfer_agent')} has not accepted the transfer yet")
            a, b = h["transfer_from"], h["transfer_agent"]
            data = {"from_agent": {"id": a, "name": h.get("transfer_from_name") or a},
                    "to": {"agent": {"id": b, "name": h.get("transfer_agent_name") or b}}, "mode": "warm"}
            _, stored = await self._apply(
                cid, {"states": ["transferring"], "expect": {"transfer_accepted": "1", "transfer_agent": b},
                      "rem": [a], "set": {"state": "assigned", "agent": b, "agent_name": h.get("transfer_agent_name") or b,
                                          "transfers": _transfers_with(h, data)},
                      "del": TRANSFER_FIELDS},
                [("transfer.completed", SYSTEM, "all", data)], "complete the transfer", skip_sid, extra_agents=[a])
            await self._leave(cid, [a])
            await self.call_hook("transfer_completed", cid, b)
            await self.push_summary(await self.store.conversation(cid), [a])
        self.wake()
        return {"event": stored[0]}

    async def transfer_cancel(self, who: Principal, cid: str, skip_sid: str | None = None) -> dict[str, Any]:
        async with self.locks(cid):
            h = await self._conversation(cid)
            if h.get("state") != "transferring":
                raise conflict(f"no warm transfer is in progress on conversation {cid}")
            if who.id not in (h.get("transfer_from"), h.get("transfer_agent")) and not who.is_supervisor:
                raise forbidden("only the two agents of the transfer (or a supervisor) can cancel it")
            b = h.get("transfer_agent", "")
            accepted = bool(h.get("transfer_accepted"))
            spec: dict[str, Any] = {"states": ["transferring"], "set": {"state": "assigned"}, "del": TRANSFER_FIELDS}
            if accepted:
                spec["rem"] = [b]
            _, stored = await self._apply(cid, spec, [("transfer.cancelled", who.author(), "agents", {"by": who.author()})],
                                          "cancel the transfer", skip_sid, extra_agents=[b])
            if accepted:
                await self._leave(cid, [b])
            else:
                if await self.router.decline(b, cid):
                    await self.to_agent(b, "offer.revoked", {"conversation_id": cid, "reason": "cancelled"})
            await self.call_hook("transfer_cancelled", cid)
            await self.push_summary(await self.store.conversation(cid), [b])
        self.wake()
        return {"event": stored[0]}

    async def canned_render(self, who: Principal, reply_id: str, cid: str) -> dict[str, Any]:
        reply = await self.canned.get(reply_id)
        h = await self.readable(who, cid)
        cname = h.get("customer_name") or "Visitor"
        aname = who.name
        values = {
            "customer": {"name": cname, "first_name": cname.split()[0] if cname.split() else cname,
                         "email": h.get("customer_email", "")},
            "agent": {"name": aname, "first_name": aname.split()[0] if aname.split() else aname, "id": who.id},
            "conversation": {"id": cid, "queue": h.get("queue", "")},
        }
        return {"text": render(reply["text"], values), "id": reply_id}

    async def queues_list(self) -> dict[str, Any]:
        return {"queues": [self._queue_dict(q) for q in await self.router.queue_stats()]}

    @staticmethod
    def _queue_dict(q: Any) -> dict[str, Any]:
        return {"name": q.name, "waiting": q.waiting, "longest_wait_s": q.longest_wait_s,
                "agents_available": q.agents_available, "answer_target_s": q.answer_target_s,
                "offered": q.offered, "answered": q.answered, "answered_in_target": q.answered_in_target,
                "avg_answer_s": q.avg_answer_s, "estimated_wait_s": q.estimated_wait_s}

    # ------------------------------------------------------------------------------------------
    # offers and the routing loop

    async def _send_offer(self, offer: Offer, customer: str, kind: str,
                          from_agent: dict[str, str] | None = None, sid: str | None = None) -> None:
        cid = offer.conversation_id
        h = await self.store.conversation(cid)
        payload: dict[str, Any] = {
            "conversation": summary(h),
            "events": await self.store.events(cid),
            "history": await self.history(customer, exclude=cid),
            "customer": await self.customer_view(customer),
            "kind": kind,
            "expires_in_s": round(offer.expires_in_s, 3),
            "queue": offer.queue,
            "channel": offer.channel,
        }
        if from_agent:
            payload["from_agent"] = from_agent
        if h.get("transfer_note"):
            payload["note"] = h["transfer_note"]
        if sid is None:
            await self.to_agent(offer.agent_id, "offer", payload)
        else:
            await self.emit("offer", payload, AGENT_NS, sid)

    async def resend_offers(self, agent_id: str, sid: str) -> int:
        """Send a (re)connected console the offers still out to its agent, with the time left.

        Why: an agent who reloads the console while an offer rings would otherwise never see it;
        it would expire unanswered and set them away for a "missed" offer. Returns how many."""
        state = await self.router.agent(agent_id)
        sent = 0
        for cid in list(state.conversations) if state is not None else []:
            routed = await self.router.conversation(cid)
            offer = routed.offer if routed is not None else None
            if offer is None or offer.agent_id != agent_id or offer.expires_in_s <= 0:
                continue
            h = await self.store.conversation(cid)
            from_agent = None
            if offer.kind == "transfer" and h.get("transfer_from"):
                from_agent = {"id": h["transfer_from"], "name": h.get("transfer_from_name") or h["transfer_from"]}
            await self._send_offer(offer, h.get("customer", ""), offer.kind, from_agent, sid=sid)
            sent += 1
        return sent

    async def _on_routed(self, offer: Offer) -> None:
        cid = offer.conversation_id
        async with self.locks(cid):
            h = await self.store.conversation(cid)
            cust = h.get("customer", "")
            name = await self._agent_name(offer.agent_id)
            try:
                await self._apply(cid, {"states": ["queued"], "set": {"state": "offered", "offer_agent": offer.agent_id}},
                                  [("conversation.offered", SYSTEM, "agents", {"agent": {"id": offer.agent_id, "name": name}})])
            except ProtocolError as exc:
                log.warning("routed conversation %s is no longer waiting (%s): withdrawing the offer", cid, exc.message)
                await self.router.decline(offer.agent_id, cid)
                if exc.code == "not_found" or h.get("state") == "closed":
                    await self.router.cancel(cid)
                return
            await self.redis.set(self.keys.grant(offer.agent_id, cust), "1",
                                 ex=int(self.config.routing.offer_timeout_s) + 60)
            self._waiting.pop(cid, None)
            from_agent = None
            kind = "new"
            if h.get("transfer_from"):
                kind = "transfer"
                from_agent = {"id": h["transfer_from"], "name": h.get("transfer_from_name") or h["transfer_from"]}
            await self._send_offer(offer, cust, kind, from_agent)
            await self.push_summary(await self.store.conversation(cid))

    async def _on_expired(self, offer: Offer) -> None:
        cid = offer.conversation_id
        await self.to_agent(offer.agent_id, "offer.revoked", {"conversation_id": cid, "reason": "timeout"})
        if offer.agent_set_away:
            account = await self.directory.get(offer.agent_id)
            if account is not None:
                account = await self.directory.update(offer.agent_id, presence="away")
                public = account.public("away")
                public["presence_reason"] = "missed"
                await self.to_agent(offer.agent_id, "agent", {"agent": public})
        async with self.locks(cid):
            await self._offer_gone(cid, offer.agent_id, "timeout")

    async def _on_overflow(self, cid: str, from_q: str, to_q: str) -> None:
        async with self.locks(cid):
            try:
                await self._apply(cid, {"states": ["queued"], "set": {"queue": to_q}},
                                  [("conversation.overflowed", SYSTEM, "agents", {"from_queue": from_q, "to_queue": to_q})])
            except ProtocolError:
                return
            await self.push_summary(await self.store.conversation(cid))

    async def routing_tick(self) -> None:
        for offer in await self.router.expire_offers():
            await self._guard(self._on_expired(offer))
        for cid, from_q, to_q in await self.router.overflow():
            await self._guard(self._on_overflow(cid, from_q, to_q))
        for offer in await self.router.route():
            await self._guard(self._on_routed(offer))
        now = time.monotonic()
        if self._waiting and now - self._last_position_check >= POSITION_EVERY_S:
            self._last_position_check = now
            await self._push_positions()
        await self._push_stats(now)

    async def _guard(self, work: Awaitable[None]) -> None:
        try:
            await work
        except Exception:  # noqa: BLE001 - one conversation's trouble must not stop routing
            log.exception("routing step failed")

    async def _push_positions(self) -> None:
        for cid, (cust, last) in list(self._waiting.items()):
            pos = await self.router.position(cid)
            if pos is None:
                h = await self.store.conversation(cid)
                if h.get("state") != "queued":
                    self._waiting.pop(cid, None)
                continue
            if pos != last:
                self._waiting[cid] = (cust, pos)
                await self.emit("queue.position", {"conversation_id": cid, "position": pos[0],
                                                   "estimated_wait_s": round(pos[1], 1)},
                                CUSTOMER_NS, f"customer:{cust}")

    async def _push_stats(self, now: float) -> None:
        # at most once a second (the script reads every available agent), and only for our agents
        if not self.local_agents or now - self._last_stats_check < STATS_EVERY_S:
            return
        self._last_stats_check = now
        stats = [self._queue_dict(q) for q in await self.router.queue_stats()]
        shape = [(q["name"], q["waiting"], q["offered"], q["agents_available"], q["answered"]) for q in stats]
        last = self._last_stats
        changed = last is None or shape != [(q["name"], q["waiting"], q["offered"], q["agents_available"], q["answered"])
                                            for q in last]
        periodic = any(q["waiting"] for q in stats) and now - self._last_stats_push >= 2.0
        if changed or periodic:
            self._last_stats = stats
            self._last_stats_push = now
            await self.emit("queues", {"queues": stats}, AGENT_NS, "agents", local=True)

    async def run_loop(self) -> None:
        backoff = LOOP_INTERVAL_S
        while not self._stopping:
            try:
                # asyncio.timeout, not wait_for: Python 3.11's wait_for can leave a cancelled task
                # hanging when its timer and the cancellation meet, which blocked shutdown
                async with asyncio.timeout(LOOP_INTERVAL_S):
                    await self._wake.wait()
            except TimeoutError:
                # a cancel that lands together with the timeout can be folded into the
                # TimeoutError on Python 3.11: honour it (and the stop flag) here
                task = asyncio.current_task()
                if self._stopping or (task is not None and task.cancelling()):
                    raise asyncio.CancelledError from None
            self._wake.clear()
            try:
                await self.routing_tick()
                backoff = LOOP_INTERVAL_S
            except asyncio.CancelledError:
                raise
            except (aioredis.ConnectionError, aioredis.TimeoutError, OSError) as exc:
                log.warning("routing loop: Redis unavailable (%s); retrying", exc)
                await asyncio.sleep(backoff)
                backoff = min(5.0, backoff * 2)
            except Exception:  # noqa: BLE001
                log.exception("routing loop failed; continuing")
                await asyncio.sleep(backoff)

    async def startup(self) -> None:
        self._session_watch = SessionWatch(self.redis, self.directory.sessions_channel, self.sessions_ended)
        await self._session_watch.start()
        await self.ensure_demo_agent()
        built = await self.store.build_updated_index()
        if built:
            log.info("indexed %d stored conversations by their last change", built)
        self._loop_task = asyncio.create_task(self.run_loop(), name="segue-routing-loop")
        self.limiter.load.start()

    async def shutdown(self) -> None:
        self._stopping = True
        await self.limiter.load.stop()
        self._wake.set()
        if self._session_watch is not None:
            await self._session_watch.stop()
        if self._loop_task is not None:
            self._loop_task.cancel()
            try:
                async with asyncio.timeout(5):
                    await asyncio.shield(self._loop_task)
            except TimeoutError:
                log.warning("the routing loop did not stop within 5 s; leaving it")
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
            self._loop_task = None

    async def ensure_demo_agent(self) -> None:
        demo = self.config.demo
        if not demo.enabled:
            # a deployment that once ran with the demo: its published login must not outlive it
            try:
                left = await self.directory.authenticate(demo.agent_username, demo.agent_password)
                if left is not None:
                    await self.directory.delete(left.id)
                    await self.agent_deleted(left.id)
                    log.warning("removed the demo agent %r left from a run with demo.enabled", demo.agent_username)
            except ProtocolError:
                pass  # another node removed it first
            return
        if await self.directory.find(demo.agent_username) is None:
            skills = sorted({s for q in self.config.routing.queues for s in q.skills})
            try:
                await self.directory.create(demo.agent_username, demo.agent_password, name="Demo Agent",
                                            role="supervisor", skills=skills, capacity={"chat": 3, "voice": 1})
                log.info("created the demo agent %r", demo.agent_username)
            except ProtocolError:
                pass  # another node created it first
