"""Searching conversations: by words, customer and date, only what the caller may read.

What is indexed: every event of a conversation that carries words a person wrote (messages, notes,
consultations, transfer notes, the close's disposition and tags, a rating's comment), with its
conversation, customer and time. Where: a tantivy index in each node's memory
(``signaling.textindex``), filled from Redis, which stays the only source of truth.

How every node stays current (several nodes share one Redis): every change to a conversation
already moves it in the sorted set ``P convs:updated`` (the ``MUTATE`` script, ``Store.touch``), written
before the change is acknowledged. That set is the change feed: a node reads the conversations
changed since its last look (with a ``SETTLE_MS`` overlap) and appends each one's events after the
last it indexed (``XRANGE`` from that id). It does so every ``knowledge.search_sync_s`` in the background *and*
right before answering a search (``signaling.desk`` runs the background turns), so a search always sees every change acknowledged before it was
asked, on whichever node. Reading a conversation twice adds nothing (the events after the last
indexed id are none); a conversation whose customer changed (a visitor who signed in) is indexed
again whole. At start a node indexes everything from the beginning of the set.

Events a node stores itself it indexes at once, from memory (``note_stored``), when they follow
the last event it indexed of that conversation (``MUTATE`` says which event came before them);
the catch-up then reads nothing new there. On one node that is every message; with several, a
conversation whose sides write through different nodes goes on through the catch-up.

Cost on a busy node: a background turn works in slices (``YIELD_EVERY`` events, then the event
loop runs other work), commits in a thread (tantivy releases the GIL) and only every
``COMMIT_EVERY_S`` (a commit per second cost as much as the indexing itself); a search commits
before it looks. A turn reads a group of conversations' customers and new events in one round
trip and decodes only events whose type can carry words (``may_have_words``).

Access: hits are checked with the listing's rules (``listing._readable``: assigned, offered, seen
before, the customer's agent, a grant; supervisors, admins and API keys read all), conversation by
conversation; a request looks at no more than ``SCAN_HITS`` hits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import invalid
from .listing import _readable, parse_time
from .schema import ID_RE
from .store import Outcome, event_author, event_data, event_type, ts_of
from .textindex import Field, TextIndex, plain_query

if TYPE_CHECKING:
    from .service import Principal, Signaling

log = logging.getLogger(__name__)

SETTLE_MS = 2000          # the change feed is re-read this far back (a change's index write lands just after it)
BATCH = 200               # changed conversations listed per Redis round trip
LOG_BATCH = 20            # conversations whose new events are read per Redis round trip
SCAN_HITS = 2000          # hits looked at per request, at most (access filtering happens after ranking)
MAX_LIMIT = 100
MAX_QUERY_CHARS = 200
COMMIT_EVERY_S = 10.0     # background catch-ups make what they added searchable this often (a search: at once)
FLUSH_AFTER_S = 0.2       # documents of events stored here wait this long to be added as one batch
YIELD_EVERY = 50          # events indexed between two yields to the event loop (a catch-up never blocks it long)

# no per-event key field: a unique term per document was a third of tantivy's indexing work and
# nothing looks it up (a conversation is deleted and re-indexed by ``conversation_id``)
FIELDS = [Field("conversation_id", "key"), Field("customer", "key"), Field("event_id", "key"),
          Field("type", "key"), Field("author_kind", "key"), Field("author_name", "key"), Field("text", "text"),
          Field("ts", "int")]


WORDY_TYPES = frozenset({"message", "note", "consult.message", "conversation.closed", "conversation.rated"})


def may_have_words(type_: str) -> bool:
    """Whether events of this type can carry searchable words (the others are never decoded)."""
    return type_ in WORDY_TYPES or type_.startswith("transfer.")


def words_in(t: str, d: Any) -> str:
    """The searchable words of an event of type ``t`` with data ``d``."""
    if not isinstance(d, dict):
        return ""
    if t in ("message", "note", "consult.message"):
        return str(d.get("text") or "")
    if t == "conversation.closed":
        tags = d.get("tags") if isinstance(d.get("tags"), list) else []
        return " ".join(str(x) for x in [d.get("disposition") or "", *tags] if x)
    if t == "conversation.rated":
        return str(d.get("comment") or "")
    if t.startswith("transfer.") and d.get("note"):
        return str(d["note"])
    return ""


def _document(cid: str, customer: str, event_id: str, type_: str, author: Any, data: Any) -> dict[str, Any] | None:
    """The index document of an event, or None when it carries no words."""
    if not may_have_words(type_):
        return None
    text = words_in(type_, data)
    if not text.strip():
        return None
    if not isinstance(author, dict):
        author = {}
    return {"conversation_id": cid, "customer": customer, "event_id": event_id, "type": type_,
            "author_kind": str(author.get("kind") or ""), "author_name": str(author.get("name") or ""),
            "text": text, "ts": ts_of(event_id)}


@dataclass(frozen=True)
class SearchQuery:
    text: str = ""
    customer: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    limit: int = 20


def parse_search(params: Any) -> SearchQuery:
    """A :class:`SearchQuery` from ``q``, ``customer``, ``from``, ``to`` and ``limit`` (REST query
    parameters or an event's fields); unknown parameters are refused."""
    known = {"q", "customer", "from", "to", "limit"}
    for key in params:
        if key not in known:
            raise invalid(key, f"unknown parameter (expected: {', '.join(sorted(known))})")
    text = params.get("q") or ""
    if not isinstance(text, str):
        raise invalid("q", "must be text")
    if len(text) > MAX_QUERY_CHARS:
        raise invalid("q", f"is {len(text)} characters; at most {MAX_QUERY_CHARS}")
    customer = params.get("customer") or None
    if customer is not None and (not isinstance(customer, str) or not ID_RE.match(customer)):
        raise invalid("customer", "must be a customer id (letters, digits and _ . : - only, up to 128)")
    since = until = None
    if params.get("from"):
        since = parse_time(str(params["from"]), "from")
    if params.get("to"):
        raw = str(params["to"]).strip()
        until = parse_time(raw, "to")
        if len(raw) == 10 and raw[4] == "-":  # a bare date: the whole day
            until += 86_400_000 - 1
    if since is not None and until is not None and since > until:
        raise invalid("from", "is after to")
    limit = 20
    raw_limit = params.get("limit")
    if raw_limit not in (None, ""):
        text_limit = str(raw_limit)
        if not text_limit.isdigit() or not 1 <= int(text_limit) <= MAX_LIMIT:
            raise invalid("limit", f"must be a whole number from 1 to {MAX_LIMIT}")
        limit = int(text_limit)
    if not plain_query(text) and customer is None and since is None and until is None:
        raise invalid("q", "give words to search for, or a customer or dates to list by")
    return SearchQuery(text, customer, since, until, limit)


class ConversationSearch:
    """This node's index of conversation text, kept in step with Redis (see the module doc)."""

    def __init__(self, svc: "Signaling") -> None:
        self.svc = svc
        self.index = TextIndex(FIELDS)
        self._cursor_ms = 0            # the change feed has been read up to here (Redis time)
        self._seen: dict[str, tuple[str, str]] = {}   # conversation -> (customer, last indexed event id)
        self._lock = asyncio.Lock()
        self.ready = False             # the first full pass is done
        self._committed = 0.0          # time.monotonic() of the last commit
        # documents added from events this node stored (from memory) and from events read back (Redis)
        self.indexed = {"stored": 0, "read": 0}
        self._pending: list[dict[str, Any]] = []  # documents of events stored here, added in batches
        self._flush_timer: asyncio.TimerHandle | None = None

    # --- keeping current --------------------------------------------------------------------

    async def catch_up(self) -> int:
        """The background turn: :meth:`sync`, committing only every ``COMMIT_EVERY_S``.

        Why: a commit costs about as much as indexing again what it commits when it holds a
        second of a busy node's messages, and far less per document when it holds ten; a search
        commits first anyway, so it still sees every change acknowledged before it was asked."""
        return await self.sync(commit=time.monotonic() - self._committed >= COMMIT_EVERY_S)

    async def sync(self, commit: bool = True) -> int:
        """Index every conversation changed since the last look (searchable once committed:
        ``commit``); returns how many were read."""
        async with self._lock:
            self._flush()  # before a re-index deletes anything, and so that a commit holds them
            redis, keys = self.svc.redis, self.svc.keys
            sec, usec = await redis.time()
            now_ms = sec * 1000 + usec // 1000
            low = max(0, self._cursor_ms - SETTLE_MS) if self._cursor_ms else 0
            offset, read = 0, 0
            while True:
                rows = await redis.zrangebyscore(keys.updated_convs, low, "+inf", start=offset, num=BATCH)
                if not rows:
                    break
                offset += len(rows)
                await self._index_conversations(rows)
                read += len(rows)
                if len(rows) < BATCH:
                    break
            if commit:
                # tantivy writes the segment without holding the GIL: in a thread, the loop runs on
                await asyncio.to_thread(self.index.commit)
                self._committed = time.monotonic()
            self._cursor_ms = now_ms
            self.ready = True
            return read

    def note_stored(self, cid: str, outcome: Outcome, events: list[dict[str, Any]]) -> None:
        """Index events this node has just stored, from memory (``Signaling.stored_observers``).

        Why: reading every message back from Redis and decoding it again was most of what search
        cost a busy node. Only events that follow what this index already holds of the
        conversation (``outcome.prev`` is its last indexed event, the customer is the same) are
        added here, and never while a catch-up runs (it owns ``_seen`` then); anything else,
        e.g. a conversation another node wrote to in between, is left to the next catch-up,
        which reads from the last indexed event on."""
        if not self.ready or self._lock.locked() or not outcome.ids:
            return
        customer = outcome.customer or ""
        if self._seen.get(cid, (customer, "")) != (customer, outcome.prev):
            return
        for event in events:
            doc = _document(cid, customer, event["id"], event["type"], event["author"], event["data"])
            if doc is not None:
                self._pending.append(doc)
        self._seen[cid] = (customer, outcome.ids[-1])
        if self._pending and self._flush_timer is None:
            self._flush_timer = asyncio.get_running_loop().call_later(FLUSH_AFTER_S, self._flush_soon)

    def _flush_soon(self) -> None:
        self._flush_timer = None
        if self._lock.locked():  # the catch-up adds them itself before it changes anything
            return
        self._flush()

    def _flush(self) -> None:
        """Add the documents ``note_stored`` kept: tantivy's indexing thread takes a batch for
        little more than one document, and wakes for each document given it alone (about 100 µs
        of CPU each, seven times the cost of one in a batch)."""
        pending, self._pending = self._pending, []
        for doc in pending:
            self.index.add_values(**doc)
        self.indexed["stored"] += len(pending)

    def _add(self, cid: str, customer: str, event_id: str, type_: str, author: Any, data: Any) -> None:
        """One event read back from Redis in the index, when it carries words."""
        doc = _document(cid, customer, event_id, type_, author, data)
        if doc is not None:
            self.index.add_values(**doc)
            self.indexed["read"] += 1

    async def _index_conversations(self, cids: list[str]) -> None:
        # a few conversations per round trip: redis-py turns each stream entry into Python objects
        # in one go, and a page of busy conversations' new events would hold the loop a while
        for i in range(0, len(cids), LOG_BATCH):
            await self._index_some(cids[i:i + LOG_BATCH])

    async def _index_some(self, cids: list[str]) -> None:
        redis, keys = self.svc.redis, self.svc.keys
        # one round trip for the lot: each conversation's customer and its events after the last indexed
        async with redis.pipeline(transaction=False) as pipe:
            for cid in cids:
                have = self._seen.get(cid)
                pipe.hget(keys.conv(cid), "customer")
                pipe.xrange(keys.log(cid), "(" + have[1] if have is not None and have[1] else "-", "+")
            replies = await pipe.execute()
        customers: list[str] = [c or "" for c in replies[0::2]]
        logs: list[Any] = replies[1::2]
        # joined another customer (a visitor who signed in): indexed again, whole
        again = [i for i, cid in enumerate(cids) if (have := self._seen.get(cid)) is not None and have[0] != customers[i]]
        if again:
            async with redis.pipeline(transaction=False) as pipe:
                for i in again:
                    self.index.delete("conversation_id", cids[i])
                    self._seen[cids[i]] = (customers[i], "")
                    pipe.xrange(keys.log(cids[i]), "-", "+")
                for i, entries in zip(again, await pipe.execute()):
                    logs[i] = entries
        add = self._add
        done = 0
        for cid, cust, entries in zip(cids, customers, logs):
            have = self._seen.get(cid)
            last = have[1] if have is not None else ""
            self._seen[cid] = (cust, last)
            for eid, fields in entries:
                done += 1
                if done % YIELD_EVERY == 0:
                    # a second of a busy node's messages is thousands of events: in slices, so chat
                    # messages go on meanwhile (only this task changes the index and _seen: its lock)
                    self._seen[cid] = (cust, last)
                    await asyncio.sleep(0)
                last = eid
                type_ = event_type(fields)
                if may_have_words(type_):  # typing, reads, joins, calls' signalling...: not decoded
                    add(cid, cust, eid, type_, event_author(fields), event_data(fields))
            self._seen[cid] = (cust, last)

    # --- searching --------------------------------------------------------------------------

    async def search(self, who: "Principal", q: SearchQuery) -> dict[str, Any]:
        """``{results: [...], more, indexed}``: hits the caller may read, best first (newest first
        when no words are given). Each result: the conversation's summary, the event (id, type,
        ts, author) and a snippet with highlight ranges."""
        from .service import summary

        await self.sync()
        words = self.index.text_query(q.text, ["text"], all_words=True)
        parts = [words]
        if q.customer:
            parts.append(self.index.term("customer", q.customer))
        if q.since_ms is not None or q.until_ms is not None:
            parts.append(self.index.int_range("ts", q.since_ms, q.until_ms))
        query = self.index.all_of(parts)
        newest = None if words is not None else "ts"
        results: list[dict[str, Any]] = []
        allowed: dict[str, dict[str, str] | None] = {}
        offset, page = 0, max(50, q.limit * 3)
        more = False
        while offset < SCAN_HITS:
            hits = self.index.search(query, page, offset, newest_by=newest, snippet_field="text",
                                     snippet_query=words)
            offset += len(hits)
            unknown = list(dict.fromkeys(h["conversation_id"] for h in hits if h["conversation_id"] not in allowed))
            if unknown:
                hashes = await self.svc.store.conversations(unknown)
                found = {h.get("id"): h for h in hashes if h}
                rows = [found[c] for c in unknown if c in found]
                oks = await _readable(self.svc, who, rows)
                for c in unknown:
                    allowed[c] = None
                for h, ok in zip(rows, oks):
                    if ok:
                        allowed[h["id"]] = h
            for hit in hits:
                h = allowed.get(hit["conversation_id"])
                if h is None:
                    continue
                if len(results) >= q.limit:
                    more = True
                    break
                results.append({
                    "conversation": summary(h),
                    "event": {"id": hit["event_id"], "type": hit["type"], "ts": int(hit["ts"]),
                              "author": {"kind": hit.get("author_kind") or "", "name": hit.get("author_name") or ""}},
                    "snippet": hit["_snippet"],
                    "score": round(hit["_score"], 4) if hit["_score"] is not None else None,
                })
            if more or len(hits) < page:
                break
        return {"results": results, "more": more, "indexed_at": self._cursor_ms}

    def status(self) -> dict[str, Any]:
        return {"ready": self.ready, "documents": self.index.count(), "conversations": len(self._seen),
                "indexed": dict(self.indexed)}
