"""Webhooks: tell other servers what happened in conversations, signed per Standard Webhooks.

Why a queue in Redis and a worker per node: an endpoint that is slow, down or hangs must never
slow down chat or calls, and an event that was stored must reach every endpoint that wants it
even if the node that stored it dies. So the signalling path does one thing — the conversation's
``MUTATE`` script (``store.py``) appends the event to the outbox stream in the same atomic step
that stores it — and everything else happens in background tasks:

1. **Fan-out** (``_fanout_loop``): a consumer group reads the outbox stream (``XREADGROUP``); for
   each entry it builds the payload once (conversation summary + event) and, in one script per
   entry, creates a delivery per subscribed endpoint, schedules it, and ``XACK``\\s + ``XDEL``\\s the
   entry. Entries read by a consumer that died before acknowledging them are taken over with
   ``XAUTOCLAIM`` after ``webhooks.claim_idle_s``. Delivery ids are derived from (endpoint,
   event), so a fan-out that runs twice creates nothing twice.
2. **Delivery** (``_deliver_loop``): pending deliveries sit in a sorted set by due time. A node
   claims due ones with a lease (the score moves to "now + timeout + margin"), POSTs them with
   bounded concurrency and a per-request timeout, and then, atomically: a 2xx or the last
   attempt removes the delivery from the set (``succeeded`` / ``failed``); any other answer
   schedules the next attempt (``webhooks.retry_schedule_s`` with jitter). A node that dies
   mid-attempt leaves the lease to expire and another node retries: delivery is at least once,
   always with the same ``webhook-id`` and body, so receivers de-duplicate by that id.

Redis keys (``P`` = ``redis.key_prefix``; the ``{wh}`` hash tag keeps the engine's own scripts on
one Cluster slot):

``P{wh}:eps``              sorted set: endpoint ids by creation ms
``P{wh}:ep:<id>``          hash: the endpoint (url, events, description, enabled, secrets, times)
``P{wh}:ep:<id>:dls``      sorted set: the endpoint's recent deliveries by creation ms
``P{wh}:outbox``           stream: stored events waiting for fan-out (``c`` conversation, ``e`` event id, ``t`` type)
``P{wh}:due``              sorted set: pending deliveries by the ms of their next attempt (or lease end)
``P{wh}:dl:<id>``          hash: a delivery (endpoint, type, body, state, attempts, next_ts)
``P{wh}:dl:<id>:att``      list: its attempts as JSON, oldest first
``P{wh}:changed``          pub/sub channel: endpoints changed (nodes refresh their subscription cache)

docs/webhooks.md describes the event types, payloads, signatures and guarantees.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
import random
import secrets
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable
from urllib.parse import urlsplit

import aiohttp
import redis.asyncio as aioredis
from redis.exceptions import ResponseError
from standardwebhooks import Webhook

from . import fastjson
from .destinations import HINT as PRIVATE_HINT, PrivateDestination, PublicOnlyResolver, check_public, refusal
from .errors import ProtocolError, invalid, not_found
from .store import decode_event

log = logging.getLogger(__name__)

# The event types an endpoint can subscribe to, in the order the docs list them.
EVENT_TYPES = (
    "conversation.created", "conversation.assigned", "conversation.transferred", "conversation.closed",
    "message.created", "call.started", "call.ended", "recording.ready", "csat.submitted",
)
ALL = "*"
TEST_TYPE = "webhook.test"
# conversation log event type -> webhook event type (``call.accepted`` only when it starts a call).
# ``recording.ready`` comes from ``call.ended`` of a recorded call: ``call.recording`` is logged when
# the recording starts, and the file is complete only once the call has ended.
FROM_LOG = {
    "conversation.created": "conversation.created",
    "conversation.assigned": "conversation.assigned",
    "transfer.completed": "conversation.transferred",
    "conversation.closed": "conversation.closed",
    "message": "message.created",
    "call.accepted": "call.started",
    "call.ended": "call.ended",
    "conversation.rated": "csat.submitted",
}
SECRET_PREFIX = "whsec_"
PREVIOUS_SECRET_S = 24 * 3600  # after a rotation, the old secret also signs for this long
DEFER_MS = 1000  # a due delivery whose endpoint is at webhooks.endpoint_concurrency waits this long
RETRY_AFTER_MAX_S = 3600.0  # an endpoint's Retry-After is honoured up to this
LEASE_MARGIN_S = 30.0  # a claimed attempt is retried by another node after timeout + this
MAX_URL = 2048
RESPONSE_KEPT = 512  # characters of the endpoint's answer kept with each attempt
STATES = ("pending", "succeeded", "failed")
FANOUT_PARALLEL = 8  # outbox entries turned into deliveries at once

FANOUT = r"""
local now = ARGV[3]
for _, d in ipairs(cjson.decode(ARGV[4])) do
  local k = ARGV[5] .. d.id
  if redis.call('EXISTS', k) == 0 then
    redis.call('HSET', k, 'id', d.id, 'endpoint', d.ep, 'type', d.type, 'event_id', d.eid,
               'conversation_id', d.cid, 'body', d.body, 'state', 'pending', 'attempts', '0',
               'created_ts', now, 'updated_ts', now, 'next_ts', now, 'test', d.test)
    redis.call('ZADD', KEYS[2], now, d.id)
    redis.call('ZADD', d.idx, now, d.id)
    redis.call('ZREMRANGEBYRANK', d.idx, 0, -1 - tonumber(ARGV[6]))
  end
end
if ARGV[2] ~= '' then
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
  redis.call('XDEL', KEYS[1], ARGV[2])
end
return 1
"""

# due deliveries, at most ARGV[3], at most ARGV[5] in flight per endpoint (ARGV[4]: this node's
# count per endpoint): leased until ARGV[2]; returns [id, endpoint] pairs. Due ones of an endpoint
# at its limit move to ARGV[7] (a second on), so a backlog for a slow endpoint cannot sit at the
# head of the set and hide the other endpoints' deliveries from this scan.
CLAIM = r"""
local want = tonumber(ARGV[3])
local cap = tonumber(ARGV[5])
local busy = cjson.decode(ARGV[4])
local out = {}
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, want + 100)
for _, id in ipairs(ids) do
  if #out >= want then break end
  local ep = redis.call('HGET', ARGV[6] .. id, 'endpoint') or ''
  local n = busy[ep] or 0
  if n < cap then
    busy[ep] = n + 1
    redis.call('ZADD', KEYS[1], 'XX', ARGV[2], id)
    table.insert(out, {id, ep})
  else
    redis.call('ZADD', KEYS[1], 'XX', ARGV[7], id)
  end
end
return out
"""

FINISH = r"""
local cur = redis.call('HMGET', KEYS[1], 'state', 'attempts')
if cur[1] ~= 'pending' or cur[2] ~= ARGV[2] then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[3])
local n = tonumber(cur[2]) + 1
if ARGV[4] == 'retry' then
  redis.call('HSET', KEYS[1], 'attempts', n, 'next_ts', ARGV[5], 'updated_ts', ARGV[7])
  redis.call('ZADD', KEYS[3], ARGV[5], ARGV[1])
else
  redis.call('HSET', KEYS[1], 'attempts', n, 'state', ARGV[4], 'updated_ts', ARGV[7])
  redis.call('HDEL', KEYS[1], 'next_ts')
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[6])
  redis.call('EXPIRE', KEYS[2], ARGV[6])
end
return 1
"""

# a failed delivery again: its attempts so far stay listed; the schedule starts over from them
RETRY = r"""
local cur = redis.call('HMGET', KEYS[1], 'state', 'attempts')
if cur[1] ~= 'failed' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'pending', 'base', cur[2], 'next_ts', ARGV[2], 'updated_ts', ARGV[2])
redis.call('PERSIST', KEYS[1])
redis.call('PERSIST', KEYS[2])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
return 1
"""


def _now_ms() -> int:
    return int(time.time() * 1000)


def iso_ms(ms: int) -> str:
    """``2026-12-02T06:30:00.123Z`` (the payload's ``timestamp``)."""
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def check_url(url: str, where: str = "url") -> str:
    """An endpoint URL: absolute http(s) with a host, no credentials or fragment."""
    url = url.strip()
    if not url or len(url) > MAX_URL:
        raise invalid(where, f"give the endpoint's URL (http or https, up to {MAX_URL} characters)")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise invalid(where, f"not a valid URL ({exc}): e.g. https://example.com/hooks/segue") from None
    if parts.scheme not in ("http", "https"):
        raise invalid(where, "the URL must start with https:// (or http://), e.g. https://example.com/hooks/segue")
    if not parts.hostname:
        raise invalid(where, "the URL has no host name, e.g. https://example.com/hooks/segue")
    if parts.username or parts.password:
        raise invalid(where, "put no user name or password in the URL: verify deliveries by their signature")
    if parts.fragment:
        raise invalid(where, "a webhook URL has no #fragment")
    if port == 0:
        raise invalid(where, "port 0 is not a port to deliver to")
    return url


def check_events(events: list[str] | None, where: str = "events") -> tuple[str, ...]:
    """Event types to subscribe to; ``None``, ``[]`` or ``["*"]``: all (stored as ``()``)."""
    if not events or events == [ALL]:
        return ()
    out: list[str] = []
    for i, name in enumerate(events):
        if name == ALL:
            raise invalid(f"{where}[{i}]", '"*" (every event) cannot be combined with other event types')
        if name not in EVENT_TYPES:
            raise invalid(f"{where}[{i}]", f"unknown event type {name!r} (known: {', '.join(EVENT_TYPES)}, or \"*\")")
        if name not in out:
            out.append(name)
    return tuple(out)


@dataclass
class Endpoint:
    """A registered receiver: where to POST, which event types, and the secret that signs them."""

    id: str
    url: str
    events: tuple[str, ...]  # () = every event type
    description: str
    enabled: bool
    secret: str
    created_ts: int
    updated_ts: int
    previous_secret: str = ""
    previous_until_ts: int = 0

    def wants(self, type_: str) -> bool:
        return self.enabled and (not self.events or type_ in self.events)

    def signers(self, now_ms: int) -> list[Webhook]:
        out = [Webhook(self.secret)]
        if self.previous_secret and now_ms < self.previous_until_ts:
            out.append(Webhook(self.previous_secret))
        return out

    def public(self, with_secret: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id, "url": self.url, "events": list(self.events) or [ALL],
            "description": self.description, "enabled": self.enabled,
            "created_ts": self.created_ts, "updated_ts": self.updated_ts,
        }
        if with_secret:
            out["secret"] = self.secret
        return out

    def fields(self) -> dict[str, str]:
        return {"id": self.id, "url": self.url, "events": fastjson.dumps(list(self.events)),
                "description": self.description, "enabled": "1" if self.enabled else "0",
                "secret": self.secret, "created_ts": str(self.created_ts), "updated_ts": str(self.updated_ts),
                "previous_secret": self.previous_secret, "previous_until_ts": str(self.previous_until_ts)}

    @classmethod
    def from_fields(cls, h: dict[str, str]) -> "Endpoint":
        return cls(id=h["id"], url=h.get("url", ""), events=tuple(fastjson.loads(h.get("events") or "[]")),
                   description=h.get("description", ""), enabled=h.get("enabled") == "1",
                   secret=h.get("secret", ""), created_ts=int(h.get("created_ts") or 0),
                   updated_ts=int(h.get("updated_ts") or 0), previous_secret=h.get("previous_secret", ""),
                   previous_until_ts=int(h.get("previous_until_ts") or 0))


class WebhookKeys:
    """The engine's Redis key names (see the module doc)."""

    def __init__(self, prefix: str) -> None:
        base = f"{prefix}{{wh}}:"
        self.base = base
        self.endpoints = base + "eps"
        self.outbox = base + "outbox"
        self.due = base + "due"
        self.changed = base + "changed"
        self.delivery_prefix = base + "dl:"

    def endpoint(self, ep_id: str) -> str:
        return f"{self.base}ep:{ep_id}"

    def endpoint_deliveries(self, ep_id: str) -> str:
        return f"{self.base}ep:{ep_id}:dls"

    def delivery(self, dl_id: str) -> str:
        return self.delivery_prefix + dl_id

    def attempts(self, dl_id: str) -> str:
        return f"{self.delivery_prefix}{dl_id}:att"


@dataclass(frozen=True)
class Settings:
    """``webhooks.*`` from the config (read by attribute, so signaling needs no server import)."""

    enabled: bool = True
    retry_schedule_s: tuple[float, ...] = (5, 30, 120, 600, 3600, 10800, 21600, 43200)
    jitter: float = 0.2
    timeout_s: float = 10.0
    concurrency: int = 16
    endpoint_concurrency: int = 4
    claim_idle_s: float = 60.0
    refresh_s: float = 10.0
    keep_days: float = 7.0
    deliveries_kept: int = 1000
    allow_private_urls: bool = False  # endpoints on loopback, private and link-local addresses (signaling/destinations.py)

    @classmethod
    def of(cls, config: Any) -> "Settings":
        w = getattr(config, "webhooks", None)
        if w is None:
            return cls()
        return cls(enabled=w.enabled, retry_schedule_s=tuple(float(s) for s in w.retry_schedule_s), jitter=w.jitter,
                   timeout_s=w.timeout_s, concurrency=w.concurrency,
                   endpoint_concurrency=w.endpoint_concurrency, claim_idle_s=w.claim_idle_s,
                   refresh_s=w.refresh_s, keep_days=w.keep_days, deliveries_kept=w.deliveries_kept,
                   allow_private_urls=w.allow_private_urls)


# (conversation id, event id, recording) -> payload ``data``: the conversation summary and the
# event, or None when the conversation or event is gone (nothing to send). With ``recording``
# (the event is a ``call.ended``): the call's ``call.recording`` event instead, None if unrecorded.
Describe = Callable[[str, str, bool], Awaitable[dict[str, Any] | None]]


@dataclass
class _Subscriptions:
    endpoints: list[Endpoint] = field(default_factory=list)
    wanted: frozenset[str] = frozenset()  # webhook types some enabled endpoint wants
    loaded_at: float = 0.0


class Webhooks:
    """Endpoints, the outbox and the delivery worker of one node (see the module doc)."""

    def __init__(self, redis: aioredis.Redis, prefix: str, config: Any, describe: Describe,
                 user_agent: str = "Segue-Webhooks") -> None:
        self.redis = redis
        self.keys = WebhookKeys(prefix)
        self.settings = Settings.of(config)
        self.describe = describe
        self.user_agent = user_agent
        self.group = "fanout"
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self._fanout_script = redis.register_script(FANOUT)
        self._claim_script = redis.register_script(CLAIM)
        self._finish_script = redis.register_script(FINISH)
        self._retry_script = redis.register_script(RETRY)
        self._subs = _Subscriptions()
        self._tasks: list[asyncio.Task[None]] = []
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._inflight_endpoint: dict[str, str] = {}  # delivery id -> its endpoint, while in flight
        self._wake = asyncio.Event()
        self._stopping = False
        self._http: aiohttp.ClientSession | None = None
        self._resolver: PublicOnlyResolver | None = None

    # --- the signalling path's part ---------------------------------------------------------

    def attach(self, store: Any) -> None:
        """Make ``store``'s ``MUTATE`` script enqueue the events some endpoint wants."""
        store.outbox_key = self.keys.outbox
        store.webhook_picker = self.pick

    def pick(self, events: list[list[str]]) -> list[list[Any]]:
        """Which of a mutation's encoded events (``[type, author, visibility, data]``) to enqueue:
        ``[[1-based index, webhook type], ...]``. Runs on every stored event: a set lookup when
        nobody subscribed."""
        wanted = self._subs.wanted
        if not wanted:
            return []
        picks: list[list[Any]] = []
        for i, e in enumerate(events, 1):
            type_ = FROM_LOG.get(e[0])
            if type_ is None or (type_ not in wanted and not (type_ == "call.ended" and "recording.ready" in wanted)):
                continue
            if e[0] == "call.accepted" and not _starts_call(e[3]):
                continue
            picks.append([i, type_])
        return picks

    # --- endpoints ----------------------------------------------------------------------------

    async def endpoints(self) -> list[Endpoint]:
        ids = await self.redis.zrange(self.keys.endpoints, 0, -1)
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for ep_id in ids:
                pipe.hgetall(self.keys.endpoint(ep_id))
            rows = await pipe.execute()
        return [Endpoint.from_fields(h) for h in rows if h]

    async def get(self, ep_id: str) -> Endpoint:
        h = await self.redis.hgetall(self.keys.endpoint(ep_id)) if _plain_id(ep_id) else {}
        if not h:
            raise not_found(f"webhook endpoint {ep_id}")
        return Endpoint.from_fields(h)

    async def create(self, url: str, events: list[str] | None = None, description: str | None = None,
                     enabled: bool = True) -> Endpoint:
        now = _now_ms()
        ep = Endpoint(id="ep_" + secrets.token_hex(8), url=await self.checked_url(url), events=check_events(events),
                      description=(description or "").strip(), enabled=enabled, secret=new_secret(),
                      created_ts=now, updated_ts=now)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.keys.endpoint(ep.id), mapping=ep.fields())
            pipe.zadd(self.keys.endpoints, {ep.id: now})
            await pipe.execute()
        await self.changed()
        return ep

    async def update(self, ep_id: str, url: str | None = None, events: list[str] | None = None,
                     description: str | None = None, enabled: bool | None = None) -> Endpoint:
        ep = await self.get(ep_id)
        if url is not None:
            ep.url = await self.checked_url(url)
        if events is not None:
            ep.events = check_events(events)
        if description is not None:
            ep.description = description.strip()
        if enabled is not None:
            ep.enabled = enabled
        ep.updated_ts = _now_ms()
        await self._save(ep)
        await self.changed()
        return ep

    async def checked_url(self, url: str, where: str = "url") -> str:
        """``check_url``, then (unless ``webhooks.allow_private_urls``) the host must be, and
        resolve to, public addresses only: ``invalid`` naming ``where`` otherwise."""
        url = check_url(url, where)
        if not self.settings.allow_private_urls:
            parts = urlsplit(url)
            try:
                await check_public(parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))
            except PrivateDestination as exc:
                raise invalid(where, f"{exc}: {PRIVATE_HINT}") from None
        return url

    async def rotate_secret(self, ep_id: str) -> Endpoint:
        """A new secret; the old one also signs for ``PREVIOUS_SECRET_S`` (two signatures in
        ``webhook-signature``), so receivers can switch without losing deliveries."""
        ep = await self.get(ep_id)
        now = _now_ms()
        ep.previous_secret, ep.previous_until_ts = ep.secret, now + PREVIOUS_SECRET_S * 1000
        ep.secret = new_secret()
        ep.updated_ts = now
        await self._save(ep)
        await self.changed()
        return ep

    async def delete(self, ep_id: str) -> None:
        await self.get(ep_id)
        keep = self._keep_s()
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.keys.endpoint(ep_id))
            pipe.zrem(self.keys.endpoints, ep_id)
            pipe.expire(self.keys.endpoint_deliveries(ep_id), keep)
            await pipe.execute()
        await self.changed()  # its pending deliveries fail as "endpoint deleted" when due

    async def _save(self, ep: Endpoint) -> None:
        key = self.keys.endpoint(ep.id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.exists(key)
            pipe.hset(key, mapping=ep.fields())
            exists, _ = await pipe.execute()
        if not exists:  # deleted meanwhile: do not resurrect half of it
            await self.redis.delete(key)
            raise not_found(f"webhook endpoint {ep.id}")

    async def changed(self) -> None:
        """Refresh this node's subscription cache now and tell the other nodes."""
        await self.reload()
        await self.redis.publish(self.keys.changed, "1")

    async def reload(self) -> None:
        eps = await self.endpoints()
        wanted: set[str] = set()
        for ep in eps:
            if ep.enabled:
                wanted.update(ep.events or EVENT_TYPES)
        self._subs = _Subscriptions(eps, frozenset(wanted), time.monotonic())

    # --- deliveries (read side) ---------------------------------------------------------------

    async def deliveries(self, ep_id: str, limit: int = 50, state: str | None = None) -> list[dict[str, Any]]:
        """The endpoint's most recent deliveries, newest first, each with its attempts.
        (Endpoints deleted within ``webhooks.keep_days`` keep theirs readable by id.)"""
        if state is not None and state not in STATES:
            raise invalid("state", f"state must be one of {', '.join(STATES)}")
        if not _plain_id(ep_id):
            raise not_found(f"webhook endpoint {ep_id}")
        if not await self.redis.exists(self.keys.endpoint(ep_id), self.keys.endpoint_deliveries(ep_id)):
            raise not_found(f"webhook endpoint {ep_id}")
        ids = await self.redis.zrevrange(self.keys.endpoint_deliveries(ep_id), 0, -1 if state else limit - 1)
        out = [d for d in await self._load(ids, with_body=False) if state is None or d["state"] == state]
        return out[:limit]

    async def delivery(self, ep_id: str, dl_id: str) -> dict[str, Any]:
        found = await self._load([dl_id], with_body=True) if _plain_id(dl_id) else []
        if not found or found[0]["endpoint_id"] != ep_id:
            raise not_found(f"delivery {dl_id} of webhook endpoint {ep_id}")
        return found[0]

    async def _load(self, ids: list[str], with_body: bool) -> list[dict[str, Any]]:
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for dl_id in ids:
                pipe.hgetall(self.keys.delivery(dl_id))
                pipe.lrange(self.keys.attempts(dl_id), 0, -1)
            rows = await pipe.execute()
        out = []
        for i in range(0, len(rows), 2):
            h, attempts = rows[i], rows[i + 1]
            if h:
                out.append(_delivery_view(h, attempts, with_body))
        return out

    async def send_test(self, ep_id: str) -> dict[str, Any]:
        """Queue a ``webhook.test`` delivery to this endpoint (also when it is disabled)."""
        ep = await self.get(ep_id)
        now = _now_ms()
        dl_id = "msg_" + secrets.token_hex(12)
        body = _body(TEST_TYPE, now, {"endpoint_id": ep.id, "message": "This is a test event from Segue."})
        await self._fanout_script(keys=[self.keys.outbox, self.keys.due], args=[
            self.group, "", now, fastjson.dumps([{
                "id": dl_id, "ep": ep.id, "type": TEST_TYPE, "eid": "", "cid": "", "body": body, "test": "1",
                "idx": self.keys.endpoint_deliveries(ep.id)}]),
            self.keys.delivery_prefix, self.settings.deliveries_kept])
        self._wake.set()
        return await self.delivery(ep.id, dl_id)

    async def retry(self, ep_id: str, dl_id: str) -> dict[str, Any]:
        """Send a failed delivery again (same id and body): the earlier attempts stay listed and
        the retry schedule starts over."""
        found = await self.delivery(ep_id, dl_id)
        if found["state"] != "failed":
            raise ProtocolError("conflict", f"delivery {dl_id} is {found['state']}: only a failed delivery can be retried")
        await self._retry_script(keys=[self.keys.delivery(dl_id), self.keys.attempts(dl_id), self.keys.due],
                                 args=[dl_id, _now_ms()])
        self._wake.set()
        return await self.delivery(ep_id, dl_id)

    # --- the worker ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the subscriptions (before any event is stored) and, with ``webhooks.enabled``, start
        this node's fan-out and delivery tasks."""
        await self.reload()
        self._tasks.append(asyncio.create_task(self._watch_loop(), name="segue-webhooks-watch"))
        if not self.settings.enabled:
            return
        await self._ensure_group()
        # DNS may change after the URL was checked: the resolver refuses non-public answers when connecting
        self._resolver = None if self.settings.allow_private_urls else PublicOnlyResolver()
        connector = aiohttp.TCPConnector(limit=self.settings.concurrency, ttl_dns_cache=60, resolver=self._resolver)
        self._http = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=self.settings.timeout_s),
            headers={"User-Agent": self.user_agent}, cookie_jar=aiohttp.DummyCookieJar())
        self._tasks.append(asyncio.create_task(self._fanout_loop(), name="segue-webhooks-fanout"))
        self._tasks.append(asyncio.create_task(self._deliver_loop(), name="segue-webhooks-deliver"))

    async def stop(self) -> None:
        """Stop the tasks; attempts cut short are handed back (due now) for any node to redo."""
        self._stopping = True
        self._wake.set()
        inflight = list(self._inflight)
        for task in [*self._tasks, *self._inflight.values()]:
            task.cancel()
        for task in [*self._tasks, *self._inflight.values()]:
            try:
                async with asyncio.timeout(5):
                    await task
            except (asyncio.CancelledError, TimeoutError):
                pass
            except Exception:  # noqa: BLE001 - shutdown goes on
                log.exception("webhook task failed while stopping")
        self._tasks.clear()
        if inflight:
            try:
                await self.redis.zadd(self.keys.due, {dl_id: _now_ms() for dl_id in inflight}, xx=True)
            except (aioredis.RedisError, OSError) as exc:
                log.warning("could not hand back %d webhook attempts (their lease expires instead): %s",
                            len(inflight), exc)
        if self._http is not None:
            await self._http.close()
            self._http = None
        if self._resolver is not None:  # a resolver given to a connector is not closed by it
            await self._resolver.close()
            self._resolver = None

    async def _watch_loop(self) -> None:
        """Refresh the subscription cache when any node changes an endpoint (pub/sub), and every
        ``webhooks.refresh_s`` in case a message was missed."""
        while not self._stopping:
            try:
                async with self.redis.pubsub() as ps:
                    await ps.subscribe(self.keys.changed)
                    await self.reload()
                    while not self._stopping:
                        await ps.get_message(ignore_subscribe_messages=True, timeout=self.settings.refresh_s)
                        await self.reload()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis away: keep the last cache, try again
                log.warning("webhook subscriptions: %s; retrying", exc)
                await asyncio.sleep(1.0)

    async def _fanout_loop(self) -> None:
        last_claim = 0.0
        while not self._stopping:
            try:
                now = time.monotonic()
                if now - last_claim >= min(self.settings.claim_idle_s, 30.0):
                    last_claim = now
                    await self._claim_abandoned()
                if time.monotonic() - self._subs.loaded_at > self.settings.refresh_s:
                    await self.reload()
                rows = await self.redis.xreadgroup(self.group, self.consumer, {self.keys.outbox: ">"},
                                                   count=100, block=1000)
                for _stream, entries in rows or []:
                    # a few at a time: a burst of chat is fanned out in parallel, without taking
                    # many of the node's Redis connections from the signalling path
                    for i in range(0, len(entries), FANOUT_PARALLEL):
                        await asyncio.gather(*(self._fanout(entry_id, fields)
                                               for entry_id, fields in entries[i:i + FANOUT_PARALLEL]))
            except asyncio.CancelledError:
                raise
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    log.exception("webhook fan-out failed; continuing")
                await asyncio.sleep(1.0)
                try:  # the stream was deleted (e.g. FLUSHDB): make the group again
                    await self._ensure_group()
                except Exception as again:  # noqa: BLE001 - next turn tries again
                    log.warning("webhook fan-out: %s", again)
            except Exception as exc:  # noqa: BLE001
                log.warning("webhook fan-out: %s; retrying", exc)
                await asyncio.sleep(1.0)

    async def _ensure_group(self) -> None:
        """The outbox's consumer group, reading from the start: entries queued before any worker
        ran are delivered too (delivered ones are deleted from the stream)."""
        try:
            await self.redis.xgroup_create(self.keys.outbox, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _claim_abandoned(self) -> None:
        """Take over outbox entries a consumer read but never acknowledged (its node died)."""
        idle_ms = int(self.settings.claim_idle_s * 1000)
        start = "0-0"
        while True:
            result = await self.redis.xautoclaim(self.keys.outbox, self.group, self.consumer, idle_ms,
                                                 start_id=start, count=100)
            start, entries = result[0], result[1]
            for entry_id, fields in entries:
                if fields:  # None: deleted from the stream meanwhile
                    await self._fanout(entry_id, fields)
                else:
                    await self.redis.xack(self.keys.outbox, self.group, entry_id)
            if start in ("0-0", b"0-0") or not entries:
                break
        # forget consumers (old node processes) with nothing pending, idle for a day
        for c in await self.redis.xinfo_consumers(self.keys.outbox, self.group):
            if c["name"] != self.consumer and c["pending"] == 0 and c["idle"] > 86_400_000:
                await self.redis.xgroup_delconsumer(self.keys.outbox, self.group, c["name"])

    async def _fanout(self, entry_id: str, fields: dict[str, str]) -> None:
        cid, eid, logged = fields.get("c", ""), fields.get("e", ""), fields.get("t", "")
        dls: list[dict[str, str]] = []
        for type_ in (logged, "recording.ready") if logged == "call.ended" else (logged,):
            targets = [ep for ep in self._subs.endpoints if ep.wants(type_)]
            if not targets:
                continue
            data = await self.describe(cid, eid, type_ == "recording.ready")
            if data is None:
                continue
            body = _body(type_, int(eid.split("-", 1)[0]), data)
            for ep in targets:
                dls.append({"id": delivery_id(ep.id, cid, eid, type_), "ep": ep.id, "type": type_, "eid": eid,
                            "cid": cid, "body": body, "test": "", "idx": self.keys.endpoint_deliveries(ep.id)})
        await self._fanout_script(keys=[self.keys.outbox, self.keys.due], args=[
            self.group, entry_id, _now_ms(), fastjson.dumps(dls), self.keys.delivery_prefix,
            self.settings.deliveries_kept])
        if dls:
            self._wake.set()

    async def _deliver_loop(self) -> None:
        while not self._stopping:
            try:
                free = self.settings.concurrency - len(self._inflight)
                claimed: list[list[str]] = []
                if free > 0:
                    now = _now_ms()
                    lease = now + int((self.settings.timeout_s + LEASE_MARGIN_S) * 1000)
                    busy: dict[str, int] = {}
                    for ep_id in self._inflight_endpoint.values():
                        busy[ep_id] = busy.get(ep_id, 0) + 1
                    claimed = await self._claim_script(keys=[self.keys.due], args=[
                        now, lease, free, fastjson.dumps(busy) if busy else "{}",
                        self.settings.endpoint_concurrency, self.keys.delivery_prefix, now + DEFER_MS])
                    for dl_id, ep_id in claimed:
                        if dl_id in self._inflight:
                            continue
                        task = asyncio.create_task(self._attempt(dl_id), name=f"segue-webhook-{dl_id}")
                        self._inflight[dl_id] = task
                        self._inflight_endpoint[dl_id] = ep_id
                        task.add_done_callback(lambda _t, d=dl_id: self._done(d))
                if claimed and len(claimed) == free:
                    continue  # maybe more are due: claim again once a slot is free
                wait = 1.0  # or when an attempt ends (due ones may wait for their endpoint's slots)
                if free > 0:
                    head = await self.redis.zrange(self.keys.due, 0, 0, withscores=True)
                    if head and head[0][1] > _now_ms():
                        wait = max(0.01, min(1.0, (head[0][1] - _now_ms()) / 1000))
                self._wake.clear()
                try:
                    async with asyncio.timeout(wait):
                        await self._wake.wait()
                except TimeoutError:
                    pass
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                log.warning("webhook delivery loop: %s; retrying", exc)
                await asyncio.sleep(1.0)

    def _done(self, dl_id: str) -> None:
        self._inflight.pop(dl_id, None)
        self._inflight_endpoint.pop(dl_id, None)
        self._wake.set()

    async def _attempt(self, dl_id: str) -> None:
        try:
            await self._attempt_once(dl_id)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the lease expires and it is tried again
            log.exception("webhook delivery %s failed unexpectedly", dl_id)

    async def _attempt_once(self, dl_id: str) -> None:
        h = await self.redis.hgetall(self.keys.delivery(dl_id))
        if not h or h.get("state") != "pending":
            await self.redis.zrem(self.keys.due, dl_id)
            return
        done_before = int(h.get("attempts") or 0)
        n = done_before + 1
        k = n - int(h.get("base") or 0)  # the attempt's place in the schedule (a manual retry starts over)
        started = _now_ms()
        attempt: dict[str, Any] = {"n": n, "ts": started}
        ep_h = await self.redis.hgetall(self.keys.endpoint(h["endpoint"]))
        final_error = ""
        if not ep_h:
            final_error = "the endpoint was deleted"
        else:
            ep = Endpoint.from_fields(ep_h)
            if not ep.enabled and not h.get("test"):
                final_error = "the endpoint is disabled"
        if final_error:
            attempt.update(error=final_error, duration_ms=0)
            await self._finish(dl_id, done_before, attempt, "failed", 0)
            return
        status, error, text, retry_after = await self._post(ep, dl_id, h["body"])
        attempt["duration_ms"] = _now_ms() - started
        if status is not None:
            attempt["status_code"] = status
        if error:
            attempt["error"] = error
        if text:
            attempt["response"] = text
        if status is not None and 200 <= status < 300:
            await self._finish(dl_id, done_before, attempt, "succeeded", 0)
            return
        schedule = self.settings.retry_schedule_s
        if k > len(schedule):
            await self._finish(dl_id, done_before, attempt, "failed", 0)
            return
        delay = schedule[k - 1] * (1 + random.uniform(-self.settings.jitter, self.settings.jitter))
        if retry_after:  # a 429/503 that says when: not sooner (and not later than an hour)
            delay = max(delay, min(retry_after, RETRY_AFTER_MAX_S))
        next_ms = _now_ms() + max(1, int(delay * 1000))
        attempt["next_retry_ts"] = next_ms
        await self._finish(dl_id, done_before, attempt, "retry", next_ms)

    async def _post(self, ep: Endpoint, dl_id: str, body: str) -> tuple[int | None, str, str, float]:
        """POST one delivery: (status or None, error text, start of the answer, Retry-After s or 0)."""
        assert self._http is not None
        now = datetime.now(timezone.utc)
        signatures = " ".join(w.sign(dl_id, now, body) for w in ep.signers(_now_ms()))
        headers = {"Content-Type": "application/json", "webhook-id": dl_id,
                   "webhook-timestamp": str(int(now.timestamp())), "webhook-signature": signatures}
        if not self.settings.allow_private_urls:  # aiohttp connects to an IP literal without the resolver
            reason = refusal(urlsplit(ep.url).hostname or "")
            if reason is not None:
                return None, f"refused: {reason}: {PRIVATE_HINT}", "", 0.0
        try:
            async with self._http.post(ep.url, data=body.encode(), headers=headers, allow_redirects=False) as resp:
                raw = await resp.content.read(RESPONSE_KEPT)
                retry_after = 0.0
                if resp.status in (429, 503):
                    value = resp.headers.get("Retry-After", "").strip()
                    retry_after = float(value) if value.isdigit() else 0.0
                return resp.status, "", raw.decode(errors="replace"), retry_after
        except asyncio.TimeoutError:
            return None, f"no answer within {self.settings.timeout_s:g} s (webhooks.timeout_s)", "", 0.0
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, PrivateDestination):
                return None, f"refused: {exc.os_error}: {PRIVATE_HINT}", "", 0.0
            return None, f"{type(exc).__name__}: {exc}"[:300], "", 0.0
        except aiohttp.ClientError as exc:
            return None, f"{type(exc).__name__}: {exc}"[:300], "", 0.0
        except (OSError, ValueError) as exc:
            return None, f"{type(exc).__name__}: {exc}"[:300], "", 0.0

    async def _finish(self, dl_id: str, done_before: int, attempt: dict[str, Any], outcome: str, next_ms: int) -> None:
        await self._finish_script(keys=[self.keys.delivery(dl_id), self.keys.attempts(dl_id), self.keys.due], args=[
            dl_id, str(done_before), fastjson.dumps(attempt), outcome, next_ms, self._keep_s(), _now_ms()])

    def _keep_s(self) -> int:
        return max(60, int(self.settings.keep_days * 86400))


def _starts_call(data_json: str) -> bool:
    """``call.accepted`` starts a call when its data says ``started: true`` (the accept of the call
    itself; later accepts add video or screen share to a running call)."""
    if '"started"' not in data_json:
        return False
    try:
        data = fastjson.loads(data_json)
    except ValueError:
        return False
    return isinstance(data, dict) and data.get("started") is True


def _plain_id(value: str) -> bool:
    return 0 < len(value) <= 64 and value.replace("_", "").isalnum()


def delivery_id(ep_id: str, cid: str, eid: str, type_: str) -> str:
    """The ``webhook-id``: the same for every attempt and every node that fans the event out."""
    return "msg_" + hashlib.sha256(f"{ep_id}|{cid}|{eid}|{type_}".encode()).hexdigest()[:24]


def _body(type_: str, ts_ms: int, data: dict[str, Any]) -> str:
    return fastjson.dumps({"type": type_, "timestamp": iso_ms(ts_ms), "data": data})


def _delivery_view(h: dict[str, str], attempts: list[str], with_body: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": h.get("id", ""), "endpoint_id": h.get("endpoint", ""), "type": h.get("type", ""),
        "state": h.get("state", ""), "created_ts": int(h.get("created_ts") or 0),
        "attempts": [fastjson.loads(a) for a in attempts],
    }
    if h.get("conversation_id"):
        out["conversation_id"] = h["conversation_id"]
        out["event_id"] = h.get("event_id", "")
    if h.get("state") == "pending" and h.get("next_ts"):
        out["next_attempt_ts"] = int(h["next_ts"])
    if h.get("test"):
        out["test"] = True
    if with_body:
        out["payload"] = fastjson.loads(h.get("body") or "{}")
    return out



def store_describer(store: Any, summarize: Callable[[dict[str, str]], dict[str, Any]]) -> Describe:
    """The payload ``data`` read from Redis: the conversation's summary as it is when the delivery
    is prepared (normally milliseconds after the event) and the event exactly as stored."""

    async def describe(cid: str, eid: str, recording: bool = False) -> dict[str, Any] | None:
        h = await store.conversation(cid)
        event = await store.event(cid, eid)
        if not h or event is None:
            return None
        if recording:
            event = await _recording_of(store, cid, eid)
            if event is None:
                return None
        return {"conversation": summarize(h), "event": event}

    return describe


async def _recording_of(store: Any, cid: str, ended_id: str) -> dict[str, Any] | None:
    """The ``call.recording`` event of the call that ``ended_id`` (a ``call.ended``) ended: looked
    for back to the previous call's end (a conversation has one call at a time)."""
    rows = await store.redis.xrevrange(store.keys.log(cid), ended_id, "-", count=5000)
    for eid, f in rows:
        t = f.get("t")
        if t == "call.recording":
            return decode_event(cid, eid, f)
        if t == "call.ended" and eid != ended_id:
            return None
    return None
