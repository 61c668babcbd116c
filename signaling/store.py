"""Conversations in Redis: a hash per conversation plus its append-only event log (a Stream).

Keys (every one starts with ``redis.key_prefix``, shown as ``P``; a conversation's keys share the
hash tag ``{<id>}`` so its script stays on one Redis Cluster slot):

``P conv:{<id>}``          hash: state, customer, queue, agent, times, transfer and read marks
``P conv:{<id>}:log``      stream: the events; the stream id is the event id and resume cursor
``P conv:{<id>}:active``   set: agents working on it now (two during a warm transfer)
``P conv:{<id>}:seen``     set: every agent ever assigned to it
``P conv:{<id>}:cids``     hash: author|client_id -> event id (a retried send is stored once)
``P cust:<id>``            hash: a customer's name, email, site identity
``P cust:<id>:convs``      sorted set: the customer's conversations by creation time
``P cust:<id>:agents``     set: agents ever assigned to any of the customer's conversations
``P grant:<agent>:<cust>`` string with a TTL: an agent holding an offer may read that customer's history
``P convs:open``           sorted set: conversations not closed (supervisors list these)
``P acct:<agent>:convs``   set: conversations an agent is working on
``P cust:<id>:attrs``      hash: the customer's custom attributes (key -> JSON value); TTL until they start a conversation
``P cust:<id>:pages``      list: the customer's page trail, newest first (JSON {url, title?, ts}), capped; TTL likewise
``P convs:updated``        sorted set: every conversation by its last change (ms; the REST listing)
``P apikeys``, ``P apikey:<id>``  API keys (``apikeys.py``)
``P rec:<id>``             hash: a call recording's conversation and file (the random id is its only handle)

Every change to a conversation is one Lua script (``MUTATE``): check the state and who is
asking, append the events, update the hash and the active set — atomically, so two nodes (or two
agents) can never interleave a check and a write. Its answer says who must be told (the
customer and the active agents), so pushing needs no second round trip.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable

import redis.asyncio as aioredis

from . import fastjson
from .script_batcher import ScriptBatcher

MUTATE = r"""
-- KEYS: the conversation's five (Keys.conv_keys), convs:updated, then the webhook outbox when
-- events go there; ARGV: the spec (JSON), the conversation id
local spec = cjson.decode(ARGV[1])
local h = KEYS[1]
local cur = redis.call('HMGET', h, 'state', 'customer', 'last_event_id')
local state, customer = cur[1], cur[2]
if spec.create then
  if state then return cjson.encode({err='exists', state=state}) end
  local pairs_ = {}
  for k, v in pairs(spec.create) do table.insert(pairs_, k); table.insert(pairs_, v) end
  redis.call('HSET', h, unpack(pairs_))
  state, customer = spec.create.state, spec.create.customer
elseif not state then
  return cjson.encode({err='not_found'})
end
local function fail(code) return cjson.encode({err=code, state=state}) end
if spec.customer and customer ~= spec.customer then return fail('forbidden') end
if spec.actor then
  if redis.call('SISMEMBER', KEYS[3], spec.actor) == 0 then
    local ok = false
    if spec.also then
      for _, f in ipairs(spec.also) do
        if redis.call('HGET', h, f) == spec.actor then ok = true end
      end
    end
    if not ok then return fail('not_yours') end
  end
end
if spec.open and state == 'closed' then return fail('closed') end
if spec.states then
  local ok = false
  for _, s in ipairs(spec.states) do if s == state then ok = true end end
  if not ok then return fail('state') end
end
if spec.expect then
  for k, v in pairs(spec.expect) do
    local have = redis.call('HGET', h, k)
    if (v == '' and have) or (v ~= '' and have ~= v) then return fail('state') end
  end
end
if spec.dedup then
  local prev = redis.call('HGET', KEYS[5], spec.dedup)
  if prev then return cjson.encode({dup=prev, state=state, customer=customer}) end
end
local ids = {}
if spec.events then
  for i, e in ipairs(spec.events) do
    ids[i] = redis.call('XADD', KEYS[2], '*', 't', e[1], 'a', e[2], 'v', e[3], 'd', e[4])
  end
end
if spec.dedup and ids[1] then redis.call('HSET', KEYS[5], spec.dedup, ids[1]) end
-- webhooks (webhooks.py): the events some endpoint wants go to the outbox in the same step, so
-- an event that is stored is always delivered; KEYS[7] is passed only then
if spec.outbox then
  for _, o in ipairs(spec.outbox.picks) do
    if ids[o[1]] then redis.call('XADD', KEYS[7], '*', 'c', spec.outbox.cid, 'e', ids[o[1]], 't', o[2]) end
  end
end
if spec.add then
  for _, a in ipairs(spec.add) do redis.call('SADD', KEYS[3], a); redis.call('SADD', KEYS[4], a) end
end
if spec.rem then
  for _, a in ipairs(spec.rem) do redis.call('SREM', KEYS[3], a) end
end
local sets = {}
if #ids > 0 then
  table.insert(sets, 'last_event_id'); table.insert(sets, ids[#ids])
  if spec.create then table.insert(sets, 'created_ts'); table.insert(sets, string.match(ids[1], '^(%d+)')) end
  if spec.stamp then table.insert(sets, spec.stamp); table.insert(sets, string.match(ids[#ids], '^(%d+)')) end
end
if spec.set then
  for k, v in pairs(spec.set) do table.insert(sets, k); table.insert(sets, v) end
end
-- updated_ts: when anything about the conversation last changed (the REST listing's order)
local updated = nil
if #ids > 0 then
  updated = string.match(ids[#ids], '^(%d+)')
elseif spec.set or spec.del or spec.add or spec.rem then
  local t = redis.call('TIME')
  updated = string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
end
if updated then
  table.insert(sets, 'updated_ts'); table.insert(sets, updated)
  -- the change feed and REST listing's index (one key for all conversations: see Store.mutate)
  redis.call('ZADD', KEYS[6], 'GT', updated, ARGV[2])
end
if #sets > 0 then redis.call('HSET', h, unpack(sets)) end
if spec.del and #spec.del > 0 then redis.call('HDEL', h, unpack(spec.del)) end
local after = redis.call('HMGET', h, 'state', 'transfer_agent', 'agent')
-- prev: the stream's last event before these (a node's search indexes them at once when it has
-- indexed up to there, signaling/search.py)
return cjson.encode({ids=ids, state=after[1], customer=customer, updated=updated, prev=cur[3] or '',
                     agents=redis.call('SMEMBERS', KEYS[3]), transfer_agent=after[2], agent=after[3]})
"""


# Merge custom attributes into a customer's hash (KEYS[1]) and say which keys changed.
# ARGV: max keys, TTL seconds (0: keep for good), then key, JSON value pairs ('' deletes the key).
# Values stay JSON text end to end (cjson would round large integers).
SET_ATTRIBUTES = r"""
local key, max, ttl = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])
local count = redis.call('HLEN', key)
local changed = {}
for i = 3, #ARGV, 2 do
  local k, v = ARGV[i], ARGV[i + 1]
  local have = redis.call('HGET', key, k)
  if v == '' then
    if have then count = count - 1; changed[#changed + 1] = k end
  elseif have ~= v then
    if not have then count = count + 1 end
    changed[#changed + 1] = k
  end
end
if count > max then return cjson.encode({err = 'too_many', count = count}) end
for i = 3, #ARGV, 2 do
  if ARGV[i + 1] == '' then redis.call('HDEL', key, ARGV[i]) else redis.call('HSET', key, ARGV[i], ARGV[i + 1]) end
end
if ttl > 0 then redis.call('EXPIRE', key, ttl) else redis.call('PERSIST', key) end
return cjson.encode({changed = changed, count = count})
"""

# Add a page to a customer's trail (KEYS[1], newest first) unless it repeats the newest URL
# within ARGV[4] ms. ARGV: entry JSON, url, now ms, repeat window ms, keep, TTL seconds (0: for good).
ADD_PAGE = r"""
local key = KEYS[1]
local head = redis.call('LINDEX', key, 0)
if head then
  local last = cjson.decode(head)
  if last.url == ARGV[2] and tonumber(ARGV[3]) - tonumber(last.ts) < tonumber(ARGV[4]) then return 0 end
end
redis.call('LPUSH', key, ARGV[1])
redis.call('LTRIM', key, 0, tonumber(ARGV[5]) - 1)
if tonumber(ARGV[6]) > 0 then redis.call('EXPIRE', key, ARGV[6]) else redis.call('PERSIST', key) end
return 1
"""


class Keys:
    """Every Redis key name Segue's signaling layer uses, from one prefix."""

    def __init__(self, prefix: str) -> None:
        self.p = prefix
        self.open_convs = f"{prefix}convs:open"
        self.canned = f"{prefix}canned"
        self.accounts = f"{prefix}accts"
        self.api_keys = f"{prefix}apikeys"
        self.updated_convs = f"{prefix}convs:updated"

    def conv(self, cid: str) -> str:
        return f"{self.p}conv:{{{cid}}}"

    def recording(self, rid: str) -> str:
        """hash: the recording's conversation and file name (the id is all a client ever sees)."""
        return f"{self.p}rec:{rid}"

    def conv_keys(self, cid: str) -> list[str]:
        base = f"{self.p}conv:{{{cid}}}"
        return [base, base + ":log", base + ":active", base + ":seen", base + ":cids"]

    def log(self, cid: str) -> str:
        return f"{self.p}conv:{{{cid}}}:log"

    def active(self, cid: str) -> str:
        return f"{self.p}conv:{{{cid}}}:active"

    def seen(self, cid: str) -> str:
        return f"{self.p}conv:{{{cid}}}:seen"

    def customer(self, cust: str) -> str:
        return f"{self.p}cust:{cust}"

    def customer_convs(self, cust: str) -> str:
        return f"{self.p}cust:{cust}:convs"

    def customer_agents(self, cust: str) -> str:
        return f"{self.p}cust:{cust}:agents"

    def customer_attrs(self, cust: str) -> str:
        return f"{self.p}cust:{cust}:attrs"

    def customer_pages(self, cust: str) -> str:
        return f"{self.p}cust:{cust}:pages"

    def grant(self, agent_id: str, cust: str) -> str:
        return f"{self.p}grant:{agent_id}:{cust}"

    def account(self, agent_id: str) -> str:
        return f"{self.p}acct:{agent_id}"

    def agent_convs(self, agent_id: str) -> str:
        return f"{self.p}acct:{agent_id}:convs"

    def agent_conns(self, agent_id: str) -> str:
        """Superseded by :meth:`agent_sockets` (a count that a repeated connect could inflate)."""
        return f"{self.p}acct:{agent_id}:conns"

    def agent_sockets(self, agent_id: str) -> str:
        """Set of the agent's live console connections (Socket.IO sids): online while not empty."""
        return f"{self.p}acct:{agent_id}:sockets"

    def api_key(self, key_id: str) -> str:
        return f"{self.p}apikey:{key_id}"


class MutationFailed(Exception):
    """The script refused: ``code`` is not_found, forbidden, not_yours, closed, state or exists."""

    def __init__(self, code: str, state: str | None) -> None:
        super().__init__(code)
        self.code = code
        self.state = state


class Outcome:
    """What a mutation did: the new event ids, the state after, and who is in the conversation."""

    __slots__ = ("ids", "state", "customer", "agents", "transfer_agent", "agent", "dup", "prev")

    def __init__(self, raw: dict[str, Any]) -> None:
        ids = raw.get("ids") or []
        self.ids: list[str] = ids if isinstance(ids, list) else []
        self.state: str | None = raw.get("state") or None
        self.customer: str | None = raw.get("customer") or None
        agents = raw.get("agents") or []
        self.agents: list[str] = agents if isinstance(agents, list) else []
        self.transfer_agent: str | None = raw.get("transfer_agent") or None
        # the assigned agent (kept after close, so a late CSAT reaches them)
        self.agent: str | None = raw.get("agent") or None
        self.dup: str | None = raw.get("dup")
        # the conversation's last event before ``ids`` ("" when they are its first)
        self.prev: str = raw.get("prev") or ""


def ts_of(event_id: str) -> int:
    return int(event_id.split("-", 1)[0])


def encode_event(type_: str, author: dict[str, Any], visibility: str, data: dict[str, Any]) -> list[str]:
    return [type_, fastjson.dumps(author), visibility, fastjson.dumps(data)]


def event_type(fields: dict[str, str]) -> str:
    """A stored event's type, read without decoding the rest (the search's catch-up skips most events)."""
    return fields.get("t", "")


def event_author(fields: dict[str, str]) -> Any:
    return fastjson.loads(fields.get("a") or "{}")


def event_data(fields: dict[str, str]) -> Any:
    return fastjson.loads(fields.get("d") or "{}")


def decode_event(cid: str, event_id: str, fields: dict[str, str]) -> dict[str, Any]:
    return {
        "id": event_id,
        "conversation_id": cid,
        "type": event_type(fields),
        "ts": ts_of(event_id),
        "author": event_author(fields),
        "visibility": fields.get("v", "all"),
        "data": event_data(fields),
    }


class Store:
    """Redis access for conversations and customers (no rules about who may do what: see service)."""

    def __init__(self, redis: aioredis.Redis, prefix: str) -> None:
        self.redis = redis
        self.keys = Keys(prefix)
        self._mutate = redis.register_script(MUTATE)
        self._batched = ScriptBatcher(redis, self._mutate)
        self._set_attributes = redis.register_script(SET_ATTRIBUTES)
        self._add_page = redis.register_script(ADD_PAGE)
        # set by Webhooks.attach: picks the events to enqueue, and the outbox stream's key
        self.webhook_picker: Callable[[list[list[str]]], list[list[Any]]] | None = None
        self.outbox_key = ""

    async def mutate(self, cid: str, spec: dict[str, Any]) -> Outcome:
        # the script also moves the conversation in convs:updated (the change feed: search, the
        # REST listing), in the same atomic step and round trip. That key and the webhook outbox
        # lie outside the conversation's hash slot: atomic on one Redis or Sentinel, Segue's
        # client (docs/webhooks.md, "Delivery guarantees", for Redis Cluster)
        keys = self.keys.conv_keys(cid)
        keys.append(self.keys.updated_convs)
        if self.webhook_picker is not None and spec.get("events"):
            picks = self.webhook_picker(spec["events"])
            if picks:
                spec = {**spec, "outbox": {"cid": cid, "picks": picks}}
                keys.append(self.outbox_key)
        raw = await self._batched(keys, [fastjson.dumps(spec), cid])
        result = fastjson.loads(raw)
        if "err" in result:
            raise MutationFailed(result["err"], result.get("state"))
        return Outcome(result)

    async def touch(self, cid: str, ms: int | None = None) -> None:
        """Record a change made outside ``mutate`` (e.g. a visitor's conversations joining an identity)."""
        if ms is None:
            sec, usec = await self.redis.time()
            ms = sec * 1000 + usec // 1000
        await self.redis.hset(self.keys.conv(cid), "updated_ts", str(ms))
        # GT: a late, older time never moves a conversation back (mutate moves it inside its script)
        await self.redis.zadd(self.keys.updated_convs, {cid: ms}, gt=True)

    async def updated_since(self, min_ms: int, offset: int, count: int) -> list[tuple[str, int]]:
        """Conversations by (last change, id) from ``min_ms`` on: ``count`` of them after ``offset``."""
        rows = await self.redis.zrangebyscore(self.keys.updated_convs, min_ms, "+inf", start=offset, num=count,
                                              withscores=True)
        return [(cid, int(score)) for cid, score in rows]

    async def updated_scores(self, cids: list[str]) -> list[int | None]:
        if not cids:
            return []
        scores = await self.redis.zmscore(self.keys.updated_convs, cids)
        return [int(s) if s is not None else None for s in scores]

    async def build_updated_index(self) -> int:
        """Once per Redis: index the conversations stored before ``convs:updated`` existed."""
        marker = self.keys.updated_convs + ":built"
        if await self.redis.exists(marker):
            return 0
        # marked when done, so a node stopped half-way leaves it to the next one; nodes starting
        # together may both scan, which is harmless (ZADD GT)
        count = 0
        async for key in self.redis.scan_iter(match=f"{self.keys.p}conv:{{*}}", count=500):
            if not key.endswith("}"):
                continue  # the log, active, seen and cids keys
            cid = key[len(self.keys.p) + len("conv:{"):-1]
            row = await self.redis.hmget(key, "updated_ts", "last_event_id", "created_ts")
            ms = int(row[0] or (row[1] or "0").split("-")[0] or row[2] or 0)
            await self.redis.zadd(self.keys.updated_convs, {cid: ms}, gt=True)
            count += 1
        await self.redis.set(marker, "1")
        return count

    async def conversation(self, cid: str) -> dict[str, str]:
        return await self.redis.hgetall(self.keys.conv(cid))

    async def conversations(self, cids: Iterable[str]) -> list[dict[str, str]]:
        cids = list(cids)
        if not cids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for cid in cids:
                pipe.hgetall(self.keys.conv(cid))
            rows = await pipe.execute()
        return [row for row in rows if row]

    async def events(self, cid: str, after: str | None = None, upto: str | None = None,
                     count: int | None = None) -> list[dict[str, Any]]:
        start = f"({after}" if after else "-"
        end = upto or "+"
        rows = await self.redis.xrange(self.keys.log(cid), start, end, count=count)
        return [decode_event(cid, eid, fields) for eid, fields in rows]

    async def event(self, cid: str, event_id: str) -> dict[str, Any] | None:
        rows = await self.redis.xrange(self.keys.log(cid), event_id, event_id)
        return decode_event(cid, rows[0][0], rows[0][1]) if rows else None

    async def active(self, cid: str) -> set[str]:
        return await self.redis.smembers(self.keys.active(cid))

    # --- customers --------------------------------------------------------------------------

    async def customer(self, cust: str) -> dict[str, str]:
        return await self.redis.hgetall(self.keys.customer(cust))

    async def save_customer(self, cust: str, fields: dict[str, str]) -> None:
        fields = {k: v for k, v in fields.items() if v is not None}
        if fields:
            await self.redis.hset(self.keys.customer(cust), mapping=fields)

    async def ensure_customer(self, cust: str, fields: dict[str, str]) -> None:
        """Write a customer's record if it does not exist yet (with ``created_ts``); kept for good."""
        key = self.keys.customer(cust)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(key, "created_ts", str(int(time.time() * 1000)))
            for k, v in fields.items():
                pipe.hsetnx(key, k, v)
            pipe.persist(key)
            await pipe.execute()

    async def customer_conversation_ids(self, cust: str, limit: int = 100) -> list[str]:
        return await self.redis.zrevrange(self.keys.customer_convs(cust), 0, limit - 1)

    # --- custom attributes and the page trail (docs/conversations.md "Context") -------------

    async def set_customer_attributes(self, cust: str, values: dict[str, str], max_keys: int,
                                      ttl_s: int) -> tuple[list[str], int] | None:
        """Merge ``values`` (key -> JSON text, "" deletes) into the customer's attributes.
        Returns (changed keys, count after), or None when the result would exceed ``max_keys``
        (nothing is written then)."""
        args: list[Any] = [max_keys, ttl_s]
        for k, v in values.items():
            args += [k, v]
        result = fastjson.loads(await self._set_attributes(keys=[self.keys.customer_attrs(cust)], args=args))
        if result.get("err"):
            return None
        changed = result.get("changed") or []
        return (changed if isinstance(changed, list) else []), int(result.get("count") or 0)

    async def customer_attributes(self, cust: str) -> dict[str, Any]:
        raw = await self.redis.hgetall(self.keys.customer_attrs(cust))
        return {k: fastjson.loads(v) for k, v in sorted(raw.items())}

    async def add_page(self, cust: str, entry: dict[str, Any], now_ms: int, repeat_ms: int, keep: int,
                       ttl_s: int) -> bool:
        """Push a page view on the customer's trail; False: a repeat of the newest URL (ignored)."""
        added = await self._add_page(keys=[self.keys.customer_pages(cust)],
                                     args=[fastjson.dumps(entry), entry["url"], now_ms, repeat_ms, keep, ttl_s])
        return bool(added)

    async def pages(self, cust: str, limit: int = 50) -> list[dict[str, Any]]:
        """The customer's page trail, newest first."""
        return [fastjson.loads(raw) for raw in await self.redis.lrange(self.keys.customer_pages(cust), 0, limit - 1)]

    async def move_customer_context(self, src: str, dst: str, max_keys: int, keep_pages: int, ttl_s: int) -> bool:
        """A visitor became an identified customer: their attributes (where the customer has none of
        that key, up to ``max_keys``) and page views (merged by time, the newest ``keep_pages``) join
        the customer's. ``ttl_s``: the customer's TTL for these keys (0: kept for good). False: nothing to move."""
        src_attrs, src_pages = self.keys.customer_attrs(src), self.keys.customer_pages(src)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(src_attrs)
            pipe.lrange(src_pages, 0, keep_pages - 1)
            attrs, pages = await pipe.execute()
        if not attrs and not pages:
            return False
        dst_attrs, dst_pages = self.keys.customer_attrs(dst), self.keys.customer_pages(dst)
        if attrs:
            have = await self.redis.hgetall(dst_attrs)
            room = max_keys - len(have)
            new = {k: v for k, v in sorted(attrs.items()) if k not in have}
            if new and room > 0:
                await self.redis.hset(dst_attrs, mapping=dict(list(new.items())[:room]))
        if pages:
            entries = [fastjson.loads(raw) for raw in [*await self.redis.lrange(dst_pages, 0, keep_pages - 1), *pages]]
            entries.sort(key=lambda e: e.get("ts") or 0, reverse=True)
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.delete(dst_pages)
                pipe.rpush(dst_pages, *[fastjson.dumps(e) for e in entries[:keep_pages]])
                await pipe.execute()
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in (dst_attrs, dst_pages):
                if ttl_s > 0:
                    pipe.expire(key, ttl_s)
                else:
                    pipe.persist(key)
            pipe.delete(src_attrs, src_pages)
            await pipe.execute()
        return True

    async def keep_customer_context(self, cust: str) -> None:
        """The customer acted (started a conversation): their attributes and pages are kept for good."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.persist(self.keys.customer_attrs(cust))
            pipe.persist(self.keys.customer_pages(cust))
            pipe.persist(self.keys.customer(cust))  # a signed-in user's record, idle until now
            await pipe.execute()

    async def link_conversation(self, cust: str, cid: str, created_ms: int) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(self.keys.customer_convs(cust), {cid: created_ms})
            pipe.zadd(self.keys.open_convs, {cid: created_ms})
            await pipe.execute()
