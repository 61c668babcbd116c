"""Contact-center routing: queues, skills, per-channel capacity, presence, offers, overflow.

Why this shape: every node of a Segue deployment runs the same routing loop against one Redis.
If two nodes decided "conversation C goes to agent A" by reading state and then writing it, both
could read the same free agent or the same waiting conversation and hand it out twice. So every
decision here is **one Lua script**: Redis runs a script to completion before any other command,
which makes each decision atomic across processes without locks or retries. Python only
validates input, calls a script and turns its JSON answer into dataclasses.

The clock is Redis ``TIME``, read inside each script, so nodes whose clocks disagree still agree
on who has been idle longest, when an offer expires and when a queue overflows. Tests (and
simulations) may pass ``clock=`` to drive time by hand; production leaves it ``None``.

Rules, keys and the estimated-wait formula are in ``docs/routing.md``; the contract with the
Socket.IO namespaces is ``docs/routing-interface.md``.
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import redis.asyncio as aioredis

# ``routing`` settings (``server.config.RoutingConfig``): duck-typed, signaling never imports the server layer
RoutingConfig = Any

__all__ = [
    "Presence",
    "Offer",
    "QueueStats",
    "AgentState",
    "RoutedConversation",
    "RoutingError",
    "Router",
]

# How much one new answer moves the moving averages (exponentially weighted: the last ~10 answers
# carry most of the weight, so the estimate follows a queue that speeds up or slows down).
EWMA_ALPHA = 0.2
# One ``route()`` call looks at most this many waiting conversations per queue (oldest first), so
# no single script holds Redis for long. The scan stops early once no available agent has a free
# slot, and skips at once a conversation whose channel no free agent takes; a conversation deeper
# than this in its queue is considered once those ahead of it have been offered.
DEFAULT_ROUTE_BATCH = 500

_ID_RE = re.compile(r"^[^\s]{1,200}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class Presence(str, enum.Enum):
    """An agent's own status. Only ``AVAILABLE`` agents receive new offers.

    ``AWAY`` and ``OFFLINE`` stop new offers but leave offers already out and conversations in
    progress alone (the agent finishes what they have). A missed offer sets an available agent to
    ``AWAY`` with reason ``"missed"`` (see ``Offer.agent_set_away``).
    """

    AVAILABLE = "available"
    AWAY = "away"
    OFFLINE = "offline"


class RoutingError(ValueError):
    """A routing call was refused; ``code`` is the protocol error code, the message says what to do.

    ``code`` is ``"invalid"`` (bad argument), ``"not_found"`` (unknown agent) or ``"conflict"``
    (the current state does not allow it).
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Offer:
    """A conversation reserved for one agent until it is accepted, declined or expires.

    Why a reservation: the offer counts against the agent's capacity for its channel from the
    moment it is made, so two offers can never together push an agent over capacity.
    Times are seconds since the epoch by the Redis clock; use ``expires_in_s`` for a countdown
    (it does not depend on this machine's clock).
    """

    conversation_id: str
    agent_id: str
    queue: str
    channel: str
    expires_at: float
    kind: str = "new"  # "new": routed from a queue; "transfer": a direct offer_to()
    offered_at: float = 0.0
    # Set by expire_offers(): the agent missed this offer and was moved from available to away.
    agent_set_away: bool = False

    @property
    def expires_in_s(self) -> float:
        return round(max(0.0, self.expires_at - self.offered_at), 3)


@dataclass(frozen=True)
class QueueStats:
    """One queue as the wallboard and the agent console show it.

    ``waiting`` counts conversations in the queue (not those with an offer out, see ``offered``);
    ``longest_wait_s`` is the oldest of them's time in this queue; ``agents_available`` counts
    agents whose presence is available and who have the queue's skills (busy or not).
    ``avg_answer_s`` is the moving average of recent answer times (None before the first answer);
    ``estimated_wait_s`` is what a conversation joining now would be told.
    """

    name: str
    waiting: int
    longest_wait_s: float
    agents_available: int
    answer_target_s: float
    offered: int = 0
    answered: int = 0
    answered_in_target: int = 0
    avg_answer_s: float | None = None
    estimated_wait_s: float = 0.0


@dataclass(frozen=True)
class AgentState:
    """What routing knows about an agent (for the console's session payload and for supervisors)."""

    id: str
    skills: list[str]
    channels: list[str]
    capacity: dict[str, int]
    presence: Presence
    presence_reason: str  # "" or "missed" (set away by a missed offer)
    idle_since: float  # seconds since the epoch (Redis clock)
    conversations: dict[str, str]  # conversation id -> channel (offers out and assignments)
    load: dict[str, int] = field(default_factory=dict)  # channel -> conversations counted


@dataclass(frozen=True)
class RoutedConversation:
    """Routing's view of one conversation (routing forgets it once nobody holds it)."""

    id: str
    state: str  # "queued" / "offered" / "assigned"
    queue: str
    channel: str
    skills: list[str]
    enqueued_at: float
    queued_at: float  # entered its current queue
    assigned: dict[str, str]  # agent id -> channel
    offer: Offer | None
    skipped: list[str]  # agents that declined or missed it: not offered to them again


# ---------------------------------------------------------------------------------------------
# Lua. Every script starts with the same prelude. Calling convention (the same for all scripts):
#   KEYS[1] agents (hash)  KEYS[2] available (zset)  KEYS[3] convs (hash)  KEYS[4] offers (zset)
#   KEYS[5] stats (hash)   then per configured queue i: KEYS[4+2i] waiting zset, KEYS[5+2i] since zset
#   ARGV[1] now in ms, or "" to use Redis TIME   ARGV[2] the routing settings as JSON
#   ARGV[3..] the script's own arguments
# Records are JSON in hashes; see docs/routing.md for their fields.
# ---------------------------------------------------------------------------------------------

_PRELUDE = r"""
-- Redis < 5 replicates scripts verbatim and refuses writes after TIME; this switches to
-- replicating effects (the default, and then a no-op, from Redis 5 on).
if redis.replicate_commands then redis.replicate_commands() end
local cfg = cjson.decode(ARGV[2])
local K_AGENTS, K_AVAIL, K_CONVS, K_OFFERS, K_STATS = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local QUEUES, QUEUE_ORDER = {}, {}
for i, q in ipairs(cfg.queues) do
  local entry = {name = q.name, skills = q.skills, target_ms = q.target_ms, overflow_ms = q.overflow_ms,
                 overflow_to = q.overflow_to, q = KEYS[4 + 2 * i], qt = KEYS[5 + 2 * i]}
  QUEUES[q.name] = entry
  QUEUE_ORDER[i] = entry
end

local NOW
if ARGV[1] ~= '' then
  NOW = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  NOW = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function queue_of(name) return QUEUES[name] or QUEUES[cfg.default_queue] end
local function get_json(key, id)
  local raw = redis.call('HGET', key, id)
  if raw then return cjson.decode(raw) end
  return nil
end
local function get_agent(id) return get_json(K_AGENTS, id) end
local function put_agent(a) redis.call('HSET', K_AGENTS, a.id, cjson.encode(a)) end
local function get_conv(id) return get_json(K_CONVS, id) end
local function put_conv(c) redis.call('HSET', K_CONVS, c.id, cjson.encode(c)) end
local function set_of(list)
  local s = {}
  for _, v in ipairs(list) do s[v] = true end
  return s
end
local function count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end
-- An agent's load: every conversation on the capacity it was routed on (a.convs), plus each
-- call running in a conversation that counts elsewhere (a.calls: a chat escalated to voice also
-- holds a voice slot while the call runs).
local function each_load(a, fn)
  for _, ch in pairs(a.convs) do fn(ch) end
  if type(a.calls) == 'table' then
    for id, ch in pairs(a.calls) do if a.convs[id] ~= ch then fn(ch) end end
  end
end
local function load_of(a, channel)
  local n = 0
  each_load(a, function(ch) if ch == channel then n = n + 1 end end)
  return n
end
local function drop_call(a, id)
  if type(a.calls) == 'table' then a.calls[id] = nil end
end
local function capacity_of(a, channel) return tonumber(a.capacity[channel]) or 0 end
-- The channel whose capacity a conversation on `channel` uses for an agent who takes `channels`
-- (a set): a video call counts as a voice call unless the agent takes "video" itself.
local function lane(channels, channel)
  if channel == 'video' and not channels['video'] then return 'voice' end
  return channel
end
local function offer_out(c, o, away)
  return {conversation_id = c.id, agent_id = o.agent, queue = c.queue, channel = o.channel,
          offered_at = o.at, expires_at = o.expires, kind = o.kind, agent_set_away = away or false}
end
-- Put c (back) in its queue. Its FIFO score is its first enqueue time, so a conversation coming
-- back from a declined or expired offer keeps its place ahead of everyone who came later.
local function enqueue_entry(c)
  local q = queue_of(c.queue)
  c.queue = q.name
  c.state = 'queued'
  redis.call('ZADD', q.q, c.enqueued_at, c.id)
  redis.call('ZADD', q.qt, c.queued_at, c.id)
end
local function dequeue_entry(c)
  local q = queue_of(c.queue)
  redis.call('ZREM', q.q, c.id)
  redis.call('ZREM', q.qt, c.id)
end
-- The offer on c is gone (declined / expired): back to its agents, or back to its queue.
local function after_offer_gone(c)
  c.offer = nil
  if next(c.assigned) ~= nil then c.state = 'assigned' else enqueue_entry(c) end
  put_conv(c)
end
-- An agent's idle clock restarts: the available zset is ordered by it.
local function restart_idle(a)
  a.idle_since = NOW
  if a.presence == 'available' then redis.call('ZADD', K_AVAIL, NOW, a.id) end
end
local function stats_of(q)
  local raw = redis.call('HGET', K_STATS, q.name)
  if raw then return cjson.decode(raw) end
  return {answered = 0, in_target = 0}
end
-- Estimated wait (ms) for the conversation with `ahead` conversations before it in queue q. The
-- line moves one place every `per` ms (moving average of the time between answers, or the
-- queue's answer target before any answer); the place being served now has been running since
-- the later of the last answer and the arrival of the conversation at the head of the line.
local function wait_at(q, ahead)
  local s = stats_of(q)
  local per = s.gap_ms or q.target_ms
  local head = redis.call('ZRANGE', q.q, 0, 0)
  if #head == 0 then return per end
  local since = math.max(s.last or 0, tonumber(redis.call('ZSCORE', q.qt, head[1])) or NOW)
  return ahead * per + math.max(0, per - (NOW - since))
end
local function fail(code, message) return cjson.encode({error = code, message = message}) end
"""

# register_agent(agent_id, skills_json, capacity_json, channels_json)
_REGISTER = r"""
local id = ARGV[3]
local a = get_agent(id)
if not a then
  a = {id = id, presence = 'offline', reason = '', idle_since = NOW, convs = {}}
end
a.skills = cjson.decode(ARGV[4])
a.capacity = cjson.decode(ARGV[5])
a.channels = cjson.decode(ARGV[6])
put_agent(a)
return cjson.encode(a)
"""

# set_presence(agent_id, status)
_PRESENCE = r"""
local id, status = ARGV[3], ARGV[4]
local a = get_agent(id)
if not a then
  return fail('not_found', 'agent ' .. id .. ' is not registered with routing: call register_agent first')
end
if status == 'available' then
  if a.presence ~= 'available' then a.idle_since = NOW end
  redis.call('ZADD', K_AVAIL, a.idle_since, id)
else
  redis.call('ZREM', K_AVAIL, id)
end
a.presence = status
a.reason = ''
put_agent(a)
return cjson.encode(a)
"""

# enqueue(conversation_id, queue, channel, skills_json)
_ENQUEUE = r"""
local id, queue, channel = ARGV[3], ARGV[4], ARGV[5]
local c = get_conv(id)
if c then
  if c.state == 'queued' and c.queue == queue and c.channel == channel then return '{"ok":true}' end
  if c.state == 'queued' then
    return fail('conflict', 'conversation ' .. id .. ' is already queued in ' .. c.queue ..
                ' (' .. c.channel .. '): cancel it first to queue it elsewhere')
  end
  return fail('conflict', 'conversation ' .. id .. ' is ' .. c.state .. ': its agents release it ' ..
              '(or cancel it) before it is queued again; a transfer to a queue is release, then enqueue')
end
c = {id = id, queue = queue, channel = channel, skills = cjson.decode(ARGV[6]), enqueued_at = NOW,
     queued_at = NOW, assigned = {}, skip = {}}
enqueue_entry(c)
put_conv(c)
return '{"ok":true}'
"""

# route(limit)
_ROUTE = r"""
local limit = tonumber(ARGV[3])
local avail = redis.call('ZRANGE', K_AVAIL, 0, -1, 'WITHSCORES')
if #avail == 0 then return '[]' end
local pending = {}
for _, q in ipairs(QUEUE_ORDER) do
  local items = redis.call('ZRANGE', q.q, 0, limit - 1, 'WITHSCORES')
  for i = 1, #items, 2 do pending[#pending + 1] = {id = items[i], at = tonumber(items[i + 1]), q = q} end
end
if #pending == 0 then return '[]' end
-- One FIFO across queues: oldest enqueue first (ties by id, as ZRANK orders them).
table.sort(pending, function(x, y)
  if x.at ~= y.at then return x.at < y.at end
  return x.id < y.id
end)

-- free_ch[channel]: how many candidates can still take one more conversation on it
local free_ch = {}
local function slots(w, delta)
  local any = false
  for ch in pairs(w.channels) do
    if (w.load[ch] or 0) < capacity_of(w.rec, ch) then
      free_ch[ch] = (free_ch[ch] or 0) + delta
      any = true
    end
  end
  return any
end
local cands, free = {}, 0
for i = 1, #avail, 2 do
  local a = get_agent(avail[i])
  if a and a.presence == 'available' then
    local w = {rec = a, idle = tonumber(avail[i + 1]), total = count(a.convs), load = {},
               skills = set_of(a.skills), channels = set_of(a.channels), dirty = false}
    each_load(a, function(ch) w.load[ch] = (w.load[ch] or 0) + 1 end)
    w.free = slots(w, 1)
    if w.free then free = free + 1 end
    cands[#cands + 1] = w
  end
end

local out = {}
for _, p in ipairs(pending) do
  if free == 0 then break end
  local c = get_conv(p.id)
  if not c or c.state ~= 'queued' then
    redis.call('ZREM', p.q.q, p.id)  -- a stale entry (no record): drop it
    redis.call('ZREM', p.q.qt, p.id)
  elseif (free_ch[c.channel] or 0) > 0 or (c.channel == 'video' and (free_ch['voice'] or 0) > 0) then
    local q = queue_of(c.queue)
    local need = {}
    for _, s in ipairs(q.skills) do need[#need + 1] = s end
    for _, s in ipairs(c.skills) do need[#need + 1] = s end
    local best = nil
    for _, w in ipairs(cands) do
      local id = w.rec.id
      local ch = lane(w.channels, c.channel)
      if w.free and w.channels[ch] and (w.load[ch] or 0) < capacity_of(w.rec, ch)
         and not c.skip[id] then
        local ok = true
        for _, s in ipairs(need) do
          if not w.skills[s] then ok = false; break end
        end
        -- fewest conversations in progress first, then longest idle, then id
        if ok and (best == nil or w.total < best.total
                   or (w.total == best.total and (w.idle < best.idle
                       or (w.idle == best.idle and id < best.rec.id)))) then
          best = w
        end
      end
    end
    if best then
      dequeue_entry(c)
      local ch = lane(best.channels, c.channel)
      local o = {agent = best.rec.id, channel = c.channel, lane = ch, at = NOW, expires = NOW + cfg.offer_timeout_ms,
                 kind = 'new'}
      c.offer = o
      c.state = 'offered'
      put_conv(c)
      redis.call('ZADD', K_OFFERS, o.expires, c.id)
      slots(best, -1)
      best.rec.convs[c.id] = ch
      best.total = best.total + 1
      best.load[ch] = (best.load[ch] or 0) + 1
      best.dirty = true
      best.free = slots(best, 1)
      if not best.free then free = free - 1 end
      out[#out + 1] = offer_out(c, o)
    end
  end
end
for _, w in ipairs(cands) do if w.dirty then put_agent(w.rec) end end
if #out == 0 then return '[]' end
return cjson.encode(out)
"""

# offer_to(conversation_id, agent_id, channel, queue_or_empty)
_OFFER_TO = r"""
local id, agent, channel, queue = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local a = get_agent(agent)
if not a then
  return fail('not_found', 'agent ' .. agent .. ' is not registered with routing: pick an agent who is logged in')
end
if a.presence ~= 'available' then
  return fail('conflict', 'agent ' .. agent .. ' is ' .. a.presence .. ': pick an available agent or transfer to a queue')
end
local ch = lane(set_of(a.channels), channel)
if not set_of(a.channels)[ch] then
  return fail('conflict', 'agent ' .. agent .. ' does not take ' .. channel .. ': pick another agent or a queue')
end
if load_of(a, ch) >= capacity_of(a, ch) then
  return fail('conflict', 'agent ' .. agent .. ' is at capacity for ' .. ch .. ': try again later or pick a queue')
end
local c = get_conv(id)
if c then
  if c.offer then
    return fail('conflict', 'conversation ' .. id .. ' already has an offer out to ' .. c.offer.agent ..
                ': wait for it to be answered or cancel the transfer')
  end
  if c.assigned[agent] or a.convs[id] then
    return fail('conflict', 'agent ' .. agent .. ' already has conversation ' .. id)
  end
  if c.state == 'queued' then dequeue_entry(c) end
  if queue ~= '' and queue ~= c.queue then c.queue = queue; c.queued_at = NOW end
else
  if queue == '' then queue = cfg.default_queue end
  c = {id = id, queue = queue, channel = channel, skills = {}, enqueued_at = NOW, queued_at = NOW,
       assigned = {}, skip = {}}
end
local o = {agent = agent, channel = channel, lane = ch, at = NOW, expires = NOW + cfg.offer_timeout_ms, kind = 'transfer'}
c.offer = o
if next(c.assigned) ~= nil then c.state = 'assigned' else c.state = 'offered' end
put_conv(c)
redis.call('ZADD', K_OFFERS, o.expires, id)
a.convs[id] = ch
put_agent(a)
return cjson.encode(offer_out(c, o))
"""

# accept(agent_id, conversation_id) -> 1 / 0
_ACCEPT = r"""
local agent, id = ARGV[3], ARGV[4]
local c = get_conv(id)
if not c or not c.offer or c.offer.agent ~= agent then return 0 end
local o = c.offer
if NOW >= o.expires then return 0 end  -- too late: expire_offers() hands it on
redis.call('ZREM', K_OFFERS, id)
c.assigned[agent] = o.lane or o.channel
c.offer = nil
c.state = 'assigned'
if o.kind == 'new' then
  local q = queue_of(c.queue)
  local s = stats_of(q)
  local answer = NOW - c.queued_at
  -- time this answer took once the conversation was at the head of the line, i.e. since the
  -- previous answer in this queue or its own arrival, whichever is later
  local gap = NOW - math.max(s.last or 0, c.queued_at)
  if s.answered == 0 then
    s.answer_ms = answer
    s.gap_ms = gap
  else
    s.answer_ms = s.answer_ms + cfg.alpha * (answer - s.answer_ms)
    s.gap_ms = s.gap_ms + cfg.alpha * (gap - s.gap_ms)
  end
  s.answered = s.answered + 1
  if answer <= q.target_ms then s.in_target = (s.in_target or 0) + 1 end
  s.last = NOW
  redis.call('HSET', K_STATS, q.name, cjson.encode(s))
end
put_conv(c)
return 1
"""

# decline(agent_id, conversation_id) -> 1 / 0
_DECLINE = r"""
local agent, id = ARGV[3], ARGV[4]
local c = get_conv(id)
if not c or not c.offer or c.offer.agent ~= agent then return 0 end
redis.call('ZREM', K_OFFERS, id)
local a = get_agent(agent)
if a then
  a.convs[id] = nil
  put_agent(a)
end
c.skip[agent] = true
after_offer_gone(c)
return 1
"""

# expire_offers()
_EXPIRE = r"""
local due = redis.call('ZRANGEBYSCORE', K_OFFERS, '-inf', NOW)
local out = {}
for _, id in ipairs(due) do
  redis.call('ZREM', K_OFFERS, id)
  local c = get_conv(id)
  if c and c.offer then
    local o = c.offer
    local away = false
    local a = get_agent(o.agent)
    if a then
      a.convs[id] = nil
      if cfg.away_on_missed and a.presence == 'available' then
        a.presence = 'away'
        a.reason = 'missed'
        redis.call('ZREM', K_AVAIL, a.id)
        away = true
      end
      put_agent(a)
    end
    c.skip[o.agent] = true
    out[#out + 1] = offer_out(c, o, away)
    after_offer_gone(c)
  end
end
if #out == 0 then return '[]' end
return cjson.encode(out)
"""

# overflow()
_OVERFLOW = r"""
local out = {}
for _, q in ipairs(QUEUE_ORDER) do
  local to = QUEUES[q.overflow_to]
  if q.overflow_ms > 0 and to and to ~= q then
    local ids = redis.call('ZRANGEBYSCORE', q.qt, '-inf', NOW - q.overflow_ms)
    for _, id in ipairs(ids) do
      redis.call('ZREM', q.q, id)
      redis.call('ZREM', q.qt, id)
      local c = get_conv(id)
      if c and c.state == 'queued' then
        c.queue = to.name
        c.queued_at = NOW
        enqueue_entry(c)
        put_conv(c)
        out[#out + 1] = {id, q.name, to.name}
      end
    end
  end
end
if #out == 0 then return '[]' end
return cjson.encode(out)
"""

# release(agent_id, conversation_id) -> 1 / 0
_RELEASE = r"""
local agent, id = ARGV[3], ARGV[4]
local a = get_agent(agent)
local c = get_conv(id)
if c then
  if not c.assigned[agent] then return 0 end
  c.assigned[agent] = nil
  if next(c.assigned) ~= nil then
    put_conv(c)
  elseif c.offer then
    c.state = 'offered'  -- handed over to a transfer offer that is still out
    put_conv(c)
  else
    redis.call('HDEL', K_CONVS, id)
  end
elseif not (a and a.convs[id]) then
  return 0
end
if a then
  a.convs[id] = nil
  drop_call(a, id)
  restart_idle(a)
  put_agent(a)
end
return 1
"""

# call(agent_id, conversation_id, channel_or_empty) -> 1 / 0: a call in a conversation the agent
# holds starts (its lane counts against the agent's capacity) or ends ('' : the slot frees)
_CALL = r"""
local agent, id, channel = ARGV[3], ARGV[4], ARGV[5]
local a = get_agent(agent)
if not a then return 0 end
if type(a.calls) ~= 'table' then a.calls = {} end
if channel == '' then
  if not a.calls[id] then return 0 end
  a.calls[id] = nil
else
  a.calls[id] = lane(set_of(a.channels), channel)
end
put_agent(a)
return 1
"""

# cancel(conversation_id)
_CANCEL = r"""
local id = ARGV[3]
local c = get_conv(id)
if not c then return '{}' end
if c.state == 'queued' then dequeue_entry(c) end
local res = {}
if c.offer then
  redis.call('ZREM', K_OFFERS, id)
  local a = get_agent(c.offer.agent)
  if a then
    a.convs[id] = nil
    put_agent(a)
  end
  res.revoked = offer_out(c, c.offer)
end
for agent in pairs(c.assigned) do
  local a = get_agent(agent)
  if a then
    a.convs[id] = nil
    drop_call(a, id)
    restart_idle(a)
    put_agent(a)
  end
end
redis.call('HDEL', K_CONVS, id)
return cjson.encode(res)
"""

# position(conversation_id) -> [position, estimated_wait_ms] or ""
_POSITION = r"""
local c = get_conv(ARGV[3])
if not c or c.state ~= 'queued' then return '' end
local q = queue_of(c.queue)
local rank = redis.call('ZRANK', q.q, c.id)
if not rank then return '' end
return cjson.encode({rank + 1, wait_at(q, rank)})
"""

# queue_stats()
_STATS = r"""
local skills = {}
for _, id in ipairs(redis.call('ZRANGE', K_AVAIL, 0, -1)) do
  local a = get_agent(id)
  if a and a.presence == 'available' then skills[#skills + 1] = set_of(a.skills) end
end
local offered = {}
for _, id in ipairs(redis.call('ZRANGE', K_OFFERS, 0, -1)) do
  local c = get_conv(id)
  if c and c.offer and next(c.assigned) == nil then offered[c.queue] = (offered[c.queue] or 0) + 1 end
end
local out = {}
for _, q in ipairs(QUEUE_ORDER) do
  local waiting = redis.call('ZCARD', q.q)
  local oldest = redis.call('ZRANGE', q.qt, 0, 0, 'WITHSCORES')
  local longest = 0
  if #oldest > 0 then longest = math.max(0, NOW - tonumber(oldest[2])) end
  local n = 0
  for _, have in ipairs(skills) do
    local ok = true
    for _, s in ipairs(q.skills) do
      if not have[s] then ok = false; break end
    end
    if ok then n = n + 1 end
  end
  local s = stats_of(q)
  out[#out + 1] = {name = q.name, waiting = waiting, longest_wait_ms = longest, agents_available = n,
                   answer_target_ms = q.target_ms, offered = offered[q.name] or 0,
                   answered = s.answered or 0, answered_in_target = s.in_target or 0,
                   avg_answer_ms = s.answer_ms or -1, estimated_wait_ms = wait_at(q, waiting)}
end
return cjson.encode(out)
"""


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode()
    return str(value)


def _listify(value: Any) -> list[Any]:
    """cjson writes an empty Lua table as ``{}``; read that back as an empty list."""
    if isinstance(value, list):
        return value
    return []


def _secs(ms: Any) -> float:
    return float(ms) / 1000.0


def _offer(raw: Mapping[str, Any]) -> Offer:
    return Offer(
        conversation_id=str(raw["conversation_id"]),
        agent_id=str(raw["agent_id"]),
        queue=str(raw["queue"]),
        channel=str(raw["channel"]),
        expires_at=_secs(raw["expires_at"]),
        kind=str(raw.get("kind", "new")),
        offered_at=_secs(raw.get("offered_at", 0)),
        agent_set_away=bool(raw.get("agent_set_away", False)),
    )


def _agent_state(raw: Mapping[str, Any]) -> AgentState:
    convs = raw.get("convs") or {}
    if not isinstance(convs, dict):
        convs = {}
    load: dict[str, int] = {}
    for channel in convs.values():
        load[channel] = load.get(channel, 0) + 1
    calls = raw.get("calls") or {}
    # a running call counts on its lane unless its conversation already counts there (as in the scripts)
    for cid, channel in (calls.items() if isinstance(calls, dict) else []):
        if convs.get(cid) != channel:
            load[str(channel)] = load.get(str(channel), 0) + 1
    capacity = raw.get("capacity") or {}
    return AgentState(
        id=str(raw["id"]),
        skills=[str(s) for s in _listify(raw.get("skills"))],
        channels=[str(c) for c in _listify(raw.get("channels"))],
        capacity={str(k): int(v) for k, v in (capacity.items() if isinstance(capacity, dict) else [])},
        presence=Presence(raw.get("presence", "offline")),
        presence_reason=str(raw.get("reason") or ""),
        idle_since=_secs(raw.get("idle_since", 0)),
        conversations={str(k): str(v) for k, v in convs.items()},
        load=load,
    )


class Router:
    """Atomic routing decisions in Redis (Lua), shared by every node.

    Why one class with one script per decision: the namespaces never need to know Redis keys,
    and any number of nodes can call any method at the same time — Redis serialises the
    scripts, so a conversation is offered to one agent at a time and no agent goes over
    capacity. See ``docs/routing.md`` for the rules (longest idle, skills, capacity, presence,
    offer timeout, overflow, estimated wait).

    ``clock``: seconds since the epoch, for tests and simulations only; ``None`` (production)
    uses Redis ``TIME`` so every node shares one clock. ``away_on_missed``: set an available
    agent away when an offer to them expires unanswered (what Amazon Connect and Genesys do).
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        key_prefix: str,
        routing: RoutingConfig,
        *,
        clock: Callable[[], float] | None = None,
        away_on_missed: bool = True,
        route_batch: int = DEFAULT_ROUTE_BATCH,
    ) -> None:
        if routing.offer_timeout_s <= 0:
            raise RoutingError("invalid", f"routing.offer_timeout_s must be above 0, got {routing.offer_timeout_s}")
        if route_batch < 1:
            raise RoutingError("invalid", f"route_batch must be at least 1, got {route_batch}")
        self._redis = redis
        self._clock = clock
        self._batch = route_batch
        self.routing = routing
        self.queues = {q.name: q for q in routing.queues}
        if routing.default_queue not in self.queues:
            raise RoutingError(
                "invalid",
                f"routing.default_queue {routing.default_queue!r} is not one of routing.queues "
                f"({', '.join(self.queues) or 'none'})",
            )
        # One hash tag for every routing key: on Redis Cluster they all live in one slot, so a
        # script may touch any of them; on a single Redis the tag is just part of the name.
        base = f"{key_prefix}{{routing}}:"
        self.keys = {
            "agents": base + "agents",
            "available": base + "available",
            "convs": base + "convs",
            "offers": base + "offers",
            "stats": base + "stats",
        }
        self._keys: list[str] = list(self.keys.values())
        for q in routing.queues:
            self._keys += [base + "q:" + q.name, base + "qt:" + q.name]
        self._settings = json.dumps(
            {
                "queues": [
                    {
                        "name": q.name,
                        "skills": list(q.skills),
                        "target_ms": int(q.answer_target_s * 1000),
                        "overflow_ms": int(q.overflow_after_s * 1000) if q.overflow_queue else 0,
                        "overflow_to": q.overflow_queue,
                    }
                    for q in routing.queues
                ],
                "default_queue": routing.default_queue,
                "offer_timeout_ms": int(routing.offer_timeout_s * 1000),
                "away_on_missed": away_on_missed,
                "alpha": EWMA_ALPHA,
            }
        )
        self._scripts = {
            name: redis.register_script(_PRELUDE + body)
            for name, body in (
                ("register", _REGISTER),
                ("presence", _PRESENCE),
                ("enqueue", _ENQUEUE),
                ("route", _ROUTE),
                ("offer_to", _OFFER_TO),
                ("accept", _ACCEPT),
                ("decline", _DECLINE),
                ("expire", _EXPIRE),
                ("overflow", _OVERFLOW),
                ("release", _RELEASE),
                ("call", _CALL),
                ("cancel", _CANCEL),
                ("position", _POSITION),
                ("stats", _STATS),
            )
        }

    # -- plumbing ---------------------------------------------------------------------------

    async def _run(self, name: str, *args: Any) -> Any:
        now = "" if self._clock is None else str(int(round(self._clock() * 1000)))
        result = await self._scripts[name](keys=self._keys, args=[now, self._settings, *args])
        return result

    async def _run_json(self, name: str, *args: Any) -> Any:
        text = _text(await self._run(name, *args))
        if text == "":
            return None
        data = json.loads(text)
        if isinstance(data, dict) and "error" in data:
            raise RoutingError(str(data["error"]), str(data.get("message", data["error"])))
        return data

    def _queue_name(self, queue: str | None) -> str:
        name = queue or self.routing.default_queue
        if name not in self.queues:
            raise RoutingError(
                "invalid",
                f"unknown queue {name!r}: known queues are {', '.join(self.queues)} (routing.queues in config.yaml)",
            )
        return name

    # -- agents -----------------------------------------------------------------------------

    async def register_agent(
        self, agent_id: str, skills: Sequence[str], capacity: Mapping[str, int], channels: Sequence[str]
    ) -> None:
        """Create or update an agent's skills, capacity per channel and channels taken.

        A new agent starts ``OFFLINE``; an existing one keeps presence, idle clock and the
        conversations they hold (a lowered capacity only stops new offers).
        """
        _check_id("agent_id", agent_id)
        skill_list = _check_names("skills", skills)
        channel_list = _check_names("channels", channels)
        if not isinstance(capacity, Mapping):
            raise RoutingError("invalid", 'capacity must map channel to a count, e.g. {"chat": 3, "voice": 1}')
        caps: dict[str, int] = {}
        for channel, n in capacity.items():
            _check_name("capacity channel", channel)
            if not isinstance(n, int) or isinstance(n, bool) or n < 0:
                raise RoutingError("invalid", f"capacity[{channel!r}] must be a whole number >= 0, got {n!r}")
            caps[channel] = n
        for channel in channel_list:
            if caps.get(channel, 0) < 1:
                raise RoutingError(
                    "invalid",
                    f"agent {agent_id} takes channel {channel!r} but has no capacity for it: "
                    f"set capacity[{channel!r}] to 1 or more, or drop it from channels",
                )
        await self._run("register", agent_id, json.dumps(skill_list), json.dumps(caps), json.dumps(channel_list))

    async def set_presence(self, agent_id: str, status: Presence | str) -> None:
        """Set available / away / offline. Becoming available (from away or offline) restarts the
        agent's idle clock; away and offline stop new offers and keep existing ones."""
        _check_id("agent_id", agent_id)
        try:
            presence = Presence(status)
        except ValueError:
            raise RoutingError(
                "invalid", f"presence must be one of {', '.join(p.value for p in Presence)}, got {status!r}"
            ) from None
        await self._run_json("presence", agent_id, presence.value)

    # -- conversations ------------------------------------------------------------------------

    async def enqueue(
        self, conversation_id: str, queue: str, channel: str, required_skills: Iterable[str] = ()
    ) -> None:
        """Put a conversation at the back of ``queue`` (empty: the default queue).

        ``required_skills`` add to the queue's own skills. Enqueueing again into the same queue
        and channel while still queued does nothing (safe to retry); anything else while routing
        holds the conversation is a ``conflict`` (release or cancel it first).
        """
        _check_id("conversation_id", conversation_id)
        name = self._queue_name(queue)
        _check_name("channel", channel)
        skills = _check_names("required_skills", list(required_skills))
        await self._run_json("enqueue", conversation_id, name, channel, json.dumps(skills))

    async def route(self, limit: int | None = None) -> list[Offer]:
        """Offer waiting conversations (oldest first) to the best eligible agent each; one script.

        Eligible: available, takes the channel, has every required skill, has capacity left on
        that channel, and has not declined or missed this conversation. Best: fewest
        conversations in progress, then longest idle. Each offer reserves capacity.
        """
        n = self._batch if limit is None else limit
        if n < 1:
            raise RoutingError("invalid", f"route limit must be at least 1, got {n}")
        data = await self._run_json("route", n)
        return [_offer(o) for o in _listify(data)]

    async def offer_to(
        self,
        conversation_id: str,
        agent_id: str,
        channel: str,
        *,
        queue: str | None = None,
        raise_on_refusal: bool = False,
    ) -> Offer | None:
        """Offer a conversation to a named agent (transfer, supervisor pick); kind ``"transfer"``.

        Returns None (or raises ``RoutingError("conflict")`` with ``raise_on_refusal``) when the
        agent is not available, does not take ``channel``, is at capacity for it, already holds
        the conversation, or another offer for it is out. A queued conversation leaves its queue.
        ``queue`` names the queue it goes back to if this offer is declined or missed while no
        agent holds it (default: its current queue, else the default queue). The declined/missed
        list does not apply: naming an agent is deliberate.
        """
        _check_id("conversation_id", conversation_id)
        _check_id("agent_id", agent_id)
        _check_name("channel", channel)
        name = self._queue_name(queue) if queue else ""
        try:
            data = await self._run_json("offer_to", conversation_id, agent_id, channel, name)
        except RoutingError as exc:
            if exc.code == "conflict" and not raise_on_refusal:
                return None
            raise
        return _offer(data)

    async def accept(self, agent_id: str, conversation_id: str) -> bool:
        """Turn this agent's offer into an assignment. False: the offer is not (or no longer) theirs,
        or it expired (a late accept loses: the conversation goes on to the next agent)."""
        _check_id("agent_id", agent_id)
        _check_id("conversation_id", conversation_id)
        return int(await self._run("accept", agent_id, conversation_id)) == 1

    async def decline(self, agent_id: str, conversation_id: str) -> bool:
        """Give an offer back: the conversation returns to its place in the queue (or stays with the
        agents who hold it, for a transfer) and is not offered to this agent again.
        Returns False when the offer was not theirs (already expired, taken or cancelled)."""
        _check_id("agent_id", agent_id)
        _check_id("conversation_id", conversation_id)
        return int(await self._run("decline", agent_id, conversation_id)) == 1

    async def expire_offers(self) -> list[Offer]:
        """Offers past ``offer_timeout_s`` go back like a decline; the agent is set away (missed)
        if they were available — ``Offer.agent_set_away`` says so, to push their new presence."""
        data = await self._run_json("expire")
        return [_offer(o) for o in _listify(data)]

    async def overflow(self) -> list[tuple[str, str, str]]:
        """Conversations that waited ``overflow_after_s`` in a queue move to its ``overflow_queue``
        (keeping their FIFO place by first enqueue time). Returns (conversation_id, from, to)."""
        data = await self._run_json("overflow")
        return [(str(c), str(f), str(t)) for c, f, t in _listify(data)]

    async def release(self, agent_id: str, conversation_id: str) -> bool:
        """The agent is done with a conversation (closed, or transferred away): frees their capacity
        and restarts their idle clock. Routing forgets the conversation once nobody holds it.
        Returns False when the agent was not assigned to it (an offer is declined, not released)."""
        _check_id("agent_id", agent_id)
        _check_id("conversation_id", conversation_id)
        return int(await self._run("release", agent_id, conversation_id)) == 1

    async def call_started(self, agent_id: str, conversation_id: str, channel: str) -> bool:
        """A call (``voice``/``video``) runs in a conversation the agent works on: it holds a slot
        of that channel's capacity (a video call uses ``voice`` unless the agent takes ``video``)
        until ``call_ended`` or ``release``, even when the conversation was routed as a chat.
        A conversation routed on that capacity already (a call from the web) counts once."""
        _check_id("agent_id", agent_id)
        _check_id("conversation_id", conversation_id)
        _check_name("channel", channel)
        return int(await self._run("call", agent_id, conversation_id, channel)) == 1

    async def call_ended(self, agent_id: str, conversation_id: str) -> bool:
        """The call's slot frees (the call ended, or this agent left it). False: none was held."""
        _check_id("agent_id", agent_id)
        _check_id("conversation_id", conversation_id)
        return int(await self._run("call", agent_id, conversation_id, "")) == 1

    async def cancel(self, conversation_id: str) -> Offer | None:
        """The customer left: drop the conversation from its queue, withdraw any offer and free any
        agent holding it. Returns the withdrawn offer (to send ``offer.revoked``), if one was out."""
        _check_id("conversation_id", conversation_id)
        data = await self._run_json("cancel", conversation_id)
        if isinstance(data, dict) and data.get("revoked"):
            return _offer(data["revoked"])
        return None

    # -- reading ----------------------------------------------------------------------------

    async def position(self, conversation_id: str) -> tuple[int, float] | None:
        """(1-based place in its queue, estimated wait in seconds); None when not waiting in a queue
        (offered, assigned or unknown)."""
        _check_id("conversation_id", conversation_id)
        data = await self._run_json("position", conversation_id)
        if not data:
            return None
        place, est_ms = data
        return int(place), round(_secs(est_ms), 3)

    async def queue_stats(self) -> list[QueueStats]:
        """Every configured queue, in config order (one consistent snapshot)."""
        data = await self._run_json("stats")
        out: list[QueueStats] = []
        for q in _listify(data):
            avg = float(q["avg_answer_ms"])
            out.append(
                QueueStats(
                    name=str(q["name"]),
                    waiting=int(q["waiting"]),
                    longest_wait_s=round(_secs(q["longest_wait_ms"]), 3),
                    agents_available=int(q["agents_available"]),
                    answer_target_s=_secs(q["answer_target_ms"]),
                    offered=int(q["offered"]),
                    answered=int(q["answered"]),
                    answered_in_target=int(q["answered_in_target"]),
                    avg_answer_s=None if avg < 0 else round(avg / 1000.0, 3),
                    estimated_wait_s=round(_secs(q["estimated_wait_ms"]), 3),
                )
            )
        return out

    async def agent(self, agent_id: str) -> AgentState | None:
        """One agent's routing state, or None if never registered."""
        raw = await self._redis.hget(self.keys["agents"], agent_id)
        return None if raw is None else _agent_state(json.loads(_text(raw)))

    async def agents(self) -> list[AgentState]:
        """Every registered agent, sorted by id (one command, so one consistent snapshot)."""
        raw = await self._redis.hgetall(self.keys["agents"])
        return sorted((_agent_state(json.loads(_text(v))) for v in raw.values()), key=lambda a: a.id)

    async def conversation(self, conversation_id: str) -> RoutedConversation | None:
        """Routing's view of a conversation, or None when routing does not hold it."""
        raw = await self._redis.hget(self.keys["convs"], conversation_id)
        if raw is None:
            return None
        c = json.loads(_text(raw))
        offer = None
        if isinstance(c.get("offer"), dict):
            o = c["offer"]
            offer = _offer(
                {
                    "conversation_id": c["id"], "agent_id": o["agent"], "queue": c["queue"],
                    "channel": o["channel"], "offered_at": o["at"], "expires_at": o["expires"], "kind": o["kind"],
                }
            )
        assigned = c.get("assigned") or {}
        skip = c.get("skip") or {}
        return RoutedConversation(
            id=str(c["id"]),
            state=str(c["state"]),
            queue=str(c["queue"]),
            channel=str(c["channel"]),
            skills=[str(s) for s in _listify(c.get("skills"))],
            enqueued_at=_secs(c["enqueued_at"]),
            queued_at=_secs(c["queued_at"]),
            assigned={str(k): str(v) for k, v in (assigned.items() if isinstance(assigned, dict) else [])},
            offer=offer,
            skipped=sorted(str(k) for k in (skip if isinstance(skip, dict) else {})),
        )


def _check_id(what: str, value: Any) -> None:
    if not isinstance(value, str) or not _ID_RE.match(value):
        raise RoutingError("invalid", f"{what} must be a non-empty string of at most 200 characters without spaces, got {value!r}")


def _check_name(what: str, value: Any) -> None:
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise RoutingError(
            "invalid", f"{what} must be 1-64 letters, digits, '_', '.' or '-', got {value!r}"
        )


def _check_names(what: str, values: Any) -> list[str]:
    if isinstance(values, str) or not isinstance(values, Iterable):
        raise RoutingError("invalid", f"{what} must be a list of names, got {values!r}")
    out: list[str] = []
    for v in values:
        _check_name(f"each of {what}", v)
        if v not in out:
            out.append(v)
    return out
