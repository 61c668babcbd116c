"""Listing conversations by their last change, with filters and a cursor a server can poll.

Why by last change: a CRM keeps its copy in step by asking "what changed since I last asked?"
(messages, closes, ratings, transfers). Every change to a conversation bumps its place in the
sorted set ``P convs:updated`` (``Store.mutate``), so the answer is a range read in
``(updated_ts, id)`` order, open and closed conversations alike.

The cursor is the ``(updated_ts, id)`` of the last conversation looked at, sent back opaque. Paging
on from it never skips or repeats a conversation that did not change meanwhile; one that changed
moves behind the cursor and is listed again with its new ``updated_ts``. At the end of the list
the cursor stays usable for polling; it steps back ``SETTLE_MS`` so a change recorded a moment
after its read (the index is written just after the change) is not missed, so a poll may list a
conversation again unchanged: de-duplicate by ``(id, updated_ts)``.

Filtering happens while reading, and a request reads at most ``SCAN_BUDGET`` index entries: a
page can hold fewer than ``limit`` conversations while ``more`` is true. Agents see only the
conversations their access rules allow (docs/conversations.md); supervisors, admins and API keys
see all.
"""

from __future__ import annotations

import base64
import datetime
from contextlib import aclosing
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AsyncIterator

from .errors import invalid
from .schema import ID_RE

if TYPE_CHECKING:
    from .service import Principal, Signaling

STATES = ("open", "closed", "all", "queued", "offered", "assigned", "transferring")
SETTLE_MS = 2000
SCAN_BUDGET = 2000
BATCH = 200
MAX_LIMIT = 500


@dataclass(frozen=True)
class Cursor:
    ts: int
    id: str

    def encode(self) -> str:
        return base64.urlsafe_b64encode(f"1|{self.ts}|{self.id}".encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> "Cursor":
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
            version, ts, cid = raw.split("|", 2)
            if version != "1" or not ts.isdigit() or (cid and not ID_RE.match(cid)):
                raise ValueError(raw)
            return cls(int(ts), cid)
        except (ValueError, UnicodeDecodeError):
            raise invalid("cursor", "is not a cursor this server gave out (use next_cursor from an earlier answer)") from None

    def __lt__(self, other: "Cursor") -> bool:
        return (self.ts, self.id) < (other.ts, other.id)


@dataclass(frozen=True)
class Query:
    state: str = "open"
    queue: str | None = None
    agent: str | None = None
    customer: str | None = None
    updated_since: int = 0
    limit: int = 100
    cursor: Cursor | None = None


def parse_time(text: str, where: str = "updated_since") -> int:
    """Milliseconds since the epoch from ``1732345678901`` or an ISO 8601 time (UTC when no zone)."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    try:
        when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise invalid(where, "must be milliseconds since 1970 (1732345678901) or an ISO 8601 time "
                             "(2024-11-23T07:14:38Z)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    try:
        return max(0, int(when.timestamp() * 1000))
    except (OverflowError, OSError, ValueError):
        raise invalid(where, "is out of range") from None


def parse_query(params: Any) -> Query:
    """A :class:`Query` from URL query parameters; unknown parameters are refused."""
    known = {"state", "queue", "agent", "customer", "updated_since", "limit", "cursor"}
    for key in params:
        if key not in known:
            raise invalid(key, f"unknown parameter (expected: {', '.join(sorted(known))})")
    state = params.get("state") or "open"
    if state not in STATES:
        raise invalid("state", f"must be one of {', '.join(STATES)}, got {state!r}"[:200])
    ids = {}
    for name in ("queue", "agent", "customer"):
        value = params.get(name)
        if value is not None and not ID_RE.match(value):
            raise invalid(name, "must be an id (letters, digits and _ . : - only, up to 128)")
        ids[name] = value or None
    limit_raw = params.get("limit")
    limit = 100
    if limit_raw is not None:
        if not limit_raw.isdigit() or not 1 <= int(limit_raw) <= MAX_LIMIT:
            raise invalid("limit", f"must be a whole number from 1 to {MAX_LIMIT}")
        limit = int(limit_raw)
    since_raw = params.get("updated_since")
    since = parse_time(since_raw) if since_raw else 0
    cursor_raw = params.get("cursor")
    cursor = Cursor.decode(cursor_raw) if cursor_raw else None
    return Query(state, ids["queue"], ids["agent"], ids["customer"], since, limit, cursor)


def _matches(h: dict[str, str], q: Query) -> bool:
    state = h.get("state", "")
    if q.state == "open" and state == "closed":
        return False
    if q.state not in ("open", "all") and state != q.state:
        return False
    if q.queue and h.get("queue") != q.queue:
        return False
    if q.agent and q.agent not in (h.get("agent"), h.get("offer_agent"), h.get("transfer_agent")):
        return False
    if q.customer and h.get("customer") != q.customer:
        return False
    return True


async def _readable(svc: "Signaling", who: "Principal", rows: list[dict[str, str]]) -> list[bool]:
    """``can_read`` for many conversations with one round trip (agents without the supervisor role)."""
    if who.is_server or who.is_supervisor:
        return [True] * len(rows)
    out: list[bool | None] = []
    ask: list[int] = []
    for i, h in enumerate(rows):
        if who.id in (h.get("offer_agent"), h.get("transfer_agent"), h.get("agent")):
            out.append(True)
        else:
            out.append(None)
            ask.append(i)
    if ask:
        keys = svc.keys
        async with svc.redis.pipeline(transaction=False) as pipe:
            for i in ask:
                cust = rows[i].get("customer", "")
                pipe.sismember(keys.seen(rows[i]["id"]), who.id)
                pipe.sismember(keys.customer_agents(cust), who.id)
                pipe.exists(keys.grant(who.id, cust))
            answers = await pipe.execute()
        for n, i in enumerate(ask):
            out[i] = any(answers[3 * n:3 * n + 3])
    return [bool(x) for x in out]


async def _candidates(svc: "Signaling", q: Query, start: Cursor) -> AsyncIterator[tuple[list[Cursor], bool]]:
    """Batches of ``(updated_ts, id)`` after ``start``, in order, and whether it is the last batch.

    A customer's conversations, or the open ones, are few enough to read whole (the open set is
    what a console lists, and scanning the whole history for it would be slow); anything else
    walks the index by last change."""
    small: list[str] | None = None
    if q.customer:
        small = await svc.store.customer_conversation_ids(q.customer, 10_000)
    elif q.state not in ("closed", "all"):
        small = await svc.redis.zrange(svc.keys.open_convs, 0, -1)
    if small is not None:
        scores = await svc.store.updated_scores(small)
        ordered = sorted((k for k in (Cursor(s, c) for c, s in zip(small, scores) if s is not None) if start < k),
                         key=lambda k: (k.ts, k.id))
        for i in range(0, max(len(ordered), 1), BATCH):
            yield ordered[i:i + BATCH], i + BATCH >= len(ordered)
        return
    offset = 0
    while True:
        rows = await svc.store.updated_since(start.ts, offset, BATCH)
        offset += len(rows)
        yield [Cursor(ts, cid) for cid, ts in rows if start < Cursor(ts, cid)], len(rows) < BATCH


async def list_conversations(svc: "Signaling", who: "Principal", q: Query,
                             now_ms: int | None = None) -> dict[str, Any]:
    """``{conversations: [summary], next_cursor, more}`` for ``q`` (see the module doc)."""
    from .service import summary

    start = Cursor(q.updated_since, "") if q.cursor is None or q.cursor < Cursor(q.updated_since, "") else q.cursor
    found: list[dict[str, Any]] = []
    last: Cursor | None = None
    scanned = 0
    more = False
    async with aclosing(_candidates(svc, q, start)) as batches:
        async for entries, exhausted in batches:
            hashes = await svc.store.conversations(k.id for k in entries)
            by_id = {h.get("id"): h for h in hashes}
            candidates: list[tuple[Cursor, dict[str, str]]] = []
            for k in entries:
                h = by_id.get(k.id)
                if h is not None and _matches(h, q):
                    candidates.append((k, h))
            allowed = await _readable(svc, who, [h for _, h in candidates])
            allowed_ids = {k.id for (k, _), ok in zip(candidates, allowed) if ok}
            for k in entries:
                scanned += 1
                last = k
                if k.id in allowed_ids:
                    found.append(summary(by_id[k.id]))
                    if len(found) >= q.limit:
                        break
            if len(found) >= q.limit:
                more = not (exhausted and last == entries[-1])
                break
            if exhausted:
                break
            if scanned >= SCAN_BUDGET:
                more = True
                break
    if more:
        assert last is not None
        cursor = last
    else:
        # the end: a cursor to poll with, a little behind "now" (see the module doc)
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        settled = Cursor(now_ms - SETTLE_MS, "")
        cursor = last if last is not None else start
        if settled < cursor:
            cursor = settled if start < settled else start
    return {"conversations": found, "next_cursor": cursor.encode(), "more": more}
