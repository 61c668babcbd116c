"""The knowledge base: articles agents write in Markdown, with every edit kept as a version;
customers search the published ones from the widget; the console suggests articles and canned
replies that match what the customer wrote (docs/knowledge.md).

Redis (``P`` is ``redis.key_prefix``):

``P kb:{kb}:art:<id>``          hash: id, slug, title, body (Markdown), status (draft|published), version,
                           created_ts/by, updated_ts/by(_name)
``P kb:{kb}:art:<id>:v``        list: every version as JSON {title, body, status, slug, ts, by, by_name};
                           version n is element n-1
``P kb:{kb}:slugs``             hash: slug -> article id (old slugs stay, so links already sent keep working)
``P kb:{kb}:arts``              sorted set: article ids by last change
``P kb:{kb}:feed``              stream: the id of each changed article (every node's search index tails it)
``P kbss:{ss}:cust:<cust>``    string with a TTL: this customer's self-service window is running
``P kbss:{ss}:pending``        sorted set: "<customer>|<opened ms>|<day>" by when the window ends
``P kbss:{ss}:day:<date>``     hash: sessions (windows started), helped, escalated (UTC day of the first open)

The hash tags ``{kb}`` and ``{ss}`` keep each script's keys in one Redis Cluster slot.

A save is one Lua script: the version check (``base_version``: two agents editing at once get
``conflict`` instead of losing a change), the slug's owner, the hash, the version list, the order
and the feed entry change together.

Markdown becomes HTML on the server (markdown-it-py with raw HTML off, then nh3, the Ammonia
sanitiser, with an allowlist of tags, attributes and URL schemes), so no client ever turns article
text into markup itself; pages insert only that sanitised HTML.

Search: a tantivy index per node (``signaling.textindex``: BM25, English stop words removed, Han
characters as single tokens) of articles and canned replies, kept current from ``P kb:{kb}:feed``
before each search (articles) and by comparing the canned replies' hash (few, small).
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import re
import secrets
import time
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import nh3
from markdown_it import MarkdownIt

from .errors import ProtocolError, conflict, invalid, not_found
from .schema import chars, number
from .textindex import Field, TextIndex, plain_query

if TYPE_CHECKING:
    from .service import Principal, Signaling

log = logging.getLogger(__name__)

SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,78}[a-z0-9])?$")
ARTICLE_ID_RE = re.compile(r"^kb_[0-9a-f]{12}$")
STATUSES = ("draft", "published")
MAX_TITLE = 200
MAX_BODY = 50_000
MAX_ARTICLES = 10_000
SUGGEST_MESSAGES = 5      # the customer's latest messages a suggestion is made from
SUGGEST_EACH = 3          # articles and canned replies suggested, at most each
SUGGEST_SCAN = 200        # events looked at (newest first) to find those messages
FEED_KEEP = 10_000
DAY_KEEP_S = 400 * 86400

# --- Markdown to safe HTML ------------------------------------------------------------------------

_MD = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable(
    ["table", "strikethrough"])
ALLOWED_TAGS = {"p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "s", "del", "code", "pre",
                "blockquote", "ul", "ol", "li", "a", "img", "table", "thead", "tbody", "tr", "th", "td"}
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "title"}, "ol": {"start"},
                      "th": {"align"}, "td": {"align"}}
URL_SCHEMES = {"http", "https", "mailto"}


def render_markdown(body: str) -> str:
    """Sanitised HTML for an article's Markdown: raw HTML in the source is shown as text, and the
    sanitiser keeps only the tags above, links and images with http(s)/mailto or relative URLs,
    each link with ``rel="noopener noreferrer nofollow"``."""
    return nh3.clean(_MD.render(body), tags=ALLOWED_TAGS, attributes=ALLOWED_ATTRIBUTES, url_schemes=URL_SCHEMES,
                     link_rel="noopener noreferrer nofollow", strip_comments=True)


def slugify(title: str) -> str:
    """A URL slug from a title (ASCII letters and digits; "" when none are left, e.g. Chinese)."""
    ascii_ = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode().lower()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_).strip("-")[:80].strip("-")
    return slug


def _check_text(name: str, value: Any, most: int, required: bool) -> str | None:
    if value is None:
        if required:
            raise invalid(name, "is required")
        return None
    if not isinstance(value, str):
        raise invalid(name, "must be text")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise invalid(name, "is not valid Unicode text (a lone surrogate)") from None
    if "\x00" in value:
        raise invalid(name, "must not contain NUL characters")
    if required and not value.strip():
        raise invalid(name, "must not be empty")
    if len(value) > most:
        raise ProtocolError("too_large", f"{name} is {len(value)} characters; at most {most}", name)
    return value


SAVE = r"""
local spec = cjson.decode(ARGV[1])
local art, versions, slugs, arts, feed = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local exists = redis.call('EXISTS', art) == 1
if spec.create then
  if exists then return cjson.encode({err='exists'}) end
  if redis.call('ZCARD', arts) >= spec.max then return cjson.encode({err='too_many'}) end
elseif not exists then
  return cjson.encode({err='not_found'})
end
local version = tonumber(redis.call('HGET', art, 'version') or '0')
if spec.base_version and spec.base_version ~= version then
  return cjson.encode({err='stale', version=version})
end
local owner = redis.call('HGET', slugs, spec.fields.slug)
if owner and owner ~= spec.id then return cjson.encode({err='slug_taken'}) end
version = version + 1
local sets = {'version', tostring(version)}
for k, v in pairs(spec.fields) do table.insert(sets, k); table.insert(sets, v) end
if spec.create then
  table.insert(sets, 'created_ts'); table.insert(sets, spec.now)
  table.insert(sets, 'created_by'); table.insert(sets, spec.by)
end
redis.call('HSET', art, unpack(sets))
redis.call('RPUSH', versions, spec.version_json)
redis.call('HSET', slugs, spec.fields.slug, spec.id)
redis.call('ZADD', arts, tonumber(spec.now), spec.id)
redis.call('XADD', feed, 'MAXLEN', '~', spec.feed_keep, '*', 'a', spec.id)
return cjson.encode({version=version})
"""

# A customer opened an article: start their self-service window unless one is running.
# KEYS: the customer's window key, the pending set, the day's hash. ARGV: customer, now ms, window ms, day.
OPENED = r"""
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[3]) then
  redis.call('ZADD', KEYS[2], tonumber(ARGV[2]) + tonumber(ARGV[3]), ARGV[1] .. '|' .. ARGV[2] .. '|' .. ARGV[4])
  redis.call('HINCRBY', KEYS[3], 'sessions', 1)
  redis.call('EXPIRE', KEYS[3], ARGV[5])
  return 1
end
return 0
"""


def _day(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime("%Y-%m-%d")


KB_FIELDS = [Field("key", "key"), Field("kind", "key"), Field("id", "key"), Field("slug", "key"),
             Field("status", "key"), Field("title", "text"), Field("body", "text"), Field("ts", "int")]


class KnowledgeBase:
    """Articles, their versions, their search, suggestions and the self-service count (module doc)."""

    def __init__(self, svc: "Signaling", self_service_window_s: float = 1800) -> None:
        self.svc = svc
        self.redis = svc.redis
        p = svc.config.redis.key_prefix
        self.p = p
        self.slugs_key = f"{p}kb:{{kb}}:slugs"
        self.arts_key = f"{p}kb:{{kb}}:arts"
        self.feed_key = f"{p}kb:{{kb}}:feed"
        self.pending_key = f"{p}kbss:{{ss}}:pending"
        self.window_ms = int(self_service_window_s * 1000)
        self._save = self.redis.register_script(SAVE)
        self._opened = self.redis.register_script(OPENED)
        self.index = TextIndex(KB_FIELDS, stop_words="english")
        self._feed_id: str | None = None   # the feed has been applied up to here (None: not loaded yet)
        self._canned: dict[str, str] = {}
        self._lock = asyncio.Lock()

    def art_key(self, aid: str) -> str:
        return f"{self.p}kb:{{kb}}:art:{aid}"

    def versions_key(self, aid: str) -> str:
        return f"{self.p}kb:{{kb}}:art:{aid}:v"

    def day_key(self, day: str) -> str:
        return f"{self.p}kbss:{{ss}}:day:{day}"

    # --- articles ---------------------------------------------------------------------------

    @staticmethod
    def public(h: dict[str, str], with_body: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"id": h["id"], "slug": h["slug"], "title": h.get("title", ""),
                               "status": h.get("status", "draft"), "version": int(h.get("version") or 0),
                               "created_ts": int(h.get("created_ts") or 0), "updated_ts": int(h.get("updated_ts") or 0),
                               "updated_by": {"id": h.get("updated_by", ""), "name": h.get("updated_by_name", "")},
                               "url": f"/kb/{h['slug']}"}
        if with_body:
            out["body"] = h.get("body", "")
            out["html"] = render_markdown(h.get("body", ""))
        return out

    @staticmethod
    def customer_view(h: dict[str, str]) -> dict[str, Any]:
        """What a customer sees of a published article: no authors, no drafts' history."""
        return {"id": h["id"], "slug": h["slug"], "title": h.get("title", ""), "html": render_markdown(h.get("body", "")),
                "updated_ts": int(h.get("updated_ts") or 0), "url": f"/kb/{h['slug']}"}

    async def _resolve(self, ref: str) -> str:
        """An article id from an id or a slug (old slugs too)."""
        if not isinstance(ref, str) or not ref:
            raise invalid("article", "must be an article id or slug")
        if ARTICLE_ID_RE.match(ref):
            return ref
        if not SLUG_RE.match(ref):
            raise not_found(f"article {ref[:80]!r}")
        aid = await self.redis.hget(self.slugs_key, ref)
        if aid is None:
            raise not_found(f"article {ref!r}")
        return aid

    async def raw(self, ref: str) -> dict[str, str]:
        aid = await self._resolve(ref)
        h = await self.redis.hgetall(self.art_key(aid))
        if not h:
            raise not_found(f"article {ref[:80]!r}")
        return h

    async def get(self, ref: str) -> dict[str, Any]:
        return self.public(await self.raw(ref))

    async def get_published(self, ref: str) -> dict[str, str]:
        """A published article's hash, or ``not_found`` (drafts are not shown to customers)."""
        h = await self.raw(ref)
        if h.get("status") != "published":
            raise not_found(f"article {ref[:80]!r}")
        return h

    async def list(self, status: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        ids = await self.redis.zrevrange(self.arts_key, 0, MAX_ARTICLES - 1)
        out: list[dict[str, Any]] = []
        async with self.redis.pipeline(transaction=False) as pipe:
            for aid in ids:
                pipe.hgetall(self.art_key(aid))
            hashes = await pipe.execute()
        for h in hashes:
            if h and (status is None or h.get("status") == status):
                out.append(self.public(h, with_body=False))
                if len(out) >= limit:
                    break
        return out

    async def save(self, who: "Principal", ref: str | None, title: Any = None, body: Any = None,
                   status: Any = None, slug: Any = None, base_version: Any = None) -> dict[str, Any]:
        """Create (``ref`` None) or change an article; each save is a new version."""
        creating = ref is None
        title = _check_text("title", title, MAX_TITLE, creating)
        body = _check_text("body", body, MAX_BODY, creating)
        if status is not None and status not in STATUSES:
            raise invalid("status", f"must be one of {', '.join(STATUSES)}")
        if slug is not None and (not isinstance(slug, str) or not SLUG_RE.match(slug)):
            raise invalid("slug", "must be lower-case letters, digits and inner hyphens, up to 80 (e.g. reset-password)")
        if base_version is not None and (isinstance(base_version, bool) or not isinstance(base_version, int)
                                         or base_version < 1):
            raise invalid("base_version", "must be the version number you edited (1 or more)")
        now = int(time.time() * 1000)
        if creating:
            aid = "kb_" + secrets.token_hex(6)
            current: dict[str, str] = {}
        else:
            aid = await self._resolve(ref)  # type: ignore[arg-type]
            current = await self.redis.hgetall(self.art_key(aid))
            if not current:
                raise not_found(f"article {ref!r}")
        fields = {
            "id": aid,
            "title": title if title is not None else current.get("title", ""),
            "body": body if body is not None else current.get("body", ""),
            "status": status or current.get("status") or "draft",
            "slug": slug or current.get("slug") or slugify(title or "") or aid.replace("_", "-"),
            "updated_ts": str(now), "updated_by": who.id, "updated_by_name": who.name,
        }
        version = {k: fields[k] for k in ("title", "body", "status", "slug")}
        version.update({"ts": now, "by": who.id, "by_name": who.name})
        spec: dict[str, Any] = {"create": creating, "id": aid, "fields": fields, "now": str(now), "by": who.id,
                                "version_json": json.dumps(version), "feed_keep": FEED_KEEP, "max": MAX_ARTICLES}
        if base_version is not None:
            spec["base_version"] = base_version
        keys = [self.art_key(aid), self.versions_key(aid), self.slugs_key, self.arts_key, self.feed_key]
        result = json.loads(await self._save(keys=keys, args=[json.dumps(spec)]))
        err = result.get("err")
        if err == "slug_taken":
            raise ProtocolError("conflict", f"the slug {fields['slug']!r} is taken by another article: choose another",
                                "slug")
        if err == "stale":
            raise conflict(f"article {aid} changed meanwhile (now version {result.get('version')}): "
                           "reload it and apply your edit again")
        if err == "not_found":
            raise not_found(f"article {ref!r}")
        if err == "too_many":
            raise ProtocolError("too_large", f"the knowledge base holds at most {MAX_ARTICLES} articles")
        if err:
            raise conflict(f"article {aid} could not be saved ({err}): try again")
        return self.public({**current, **fields, "version": str(result["version"]),
                            "created_ts": current.get("created_ts") or str(now)})

    async def versions(self, ref: str) -> list[dict[str, Any]]:
        """Every version, oldest first, without bodies (see :meth:`version`)."""
        aid = (await self.raw(ref))["id"]
        out = []
        for n, raw in enumerate(await self.redis.lrange(self.versions_key(aid), 0, -1), start=1):
            v = json.loads(raw)
            out.append({"version": n, "title": v.get("title", ""), "status": v.get("status", ""),
                        "slug": v.get("slug", ""), "ts": int(v.get("ts") or 0),
                        "by": {"id": v.get("by", ""), "name": v.get("by_name", "")}})
        return out

    async def version(self, ref: str, n: int) -> dict[str, Any]:
        aid = (await self.raw(ref))["id"]
        raw = await self.redis.lindex(self.versions_key(aid), n - 1) if n >= 1 else None
        if raw is None:
            raise not_found(f"version {n} of article {ref!r}")
        v = json.loads(raw)
        return {"id": aid, "version": n, "title": v.get("title", ""), "status": v.get("status", ""),
                "slug": v.get("slug", ""), "body": v.get("body", ""), "html": render_markdown(v.get("body", "")),
                "ts": int(v.get("ts") or 0), "by": {"id": v.get("by", ""), "name": v.get("by_name", "")}}

    # --- the search index -------------------------------------------------------------------

    async def sync(self) -> None:
        """Bring this node's index up to date with Redis (the feed, and the canned replies)."""
        async with self._lock:
            if self._feed_id is None:
                last = await self.redis.xrevrange(self.feed_key, "+", "-", count=1)
                self._feed_id = last[0][0] if last else "0-0"
                ids = await self.redis.zrange(self.arts_key, 0, -1)
                await self._reindex(ids)
            while True:
                batch = await self.redis.xread({self.feed_key: self._feed_id}, count=500)
                if not batch:
                    break
                entries = batch[0][1]
                self._feed_id = entries[-1][0]
                await self._reindex(list(dict.fromkeys(f.get("a", "") for _, f in entries if f.get("a"))))
                if len(entries) < 500:
                    break
            rows = await self.redis.hgetall(self.svc.keys.canned)
            if rows != self._canned:
                self.index.delete("kind", "canned")
                for rid, raw in rows.items():
                    try:
                        reply = json.loads(raw)
                    except ValueError:
                        continue
                    self.index.add({"key": f"canned:{rid}", "kind": "canned", "id": rid, "slug": "", "status": "",
                                    "title": str(reply.get("title") or ""), "body": str(reply.get("text") or ""),
                                    "ts": int(reply.get("updated_ts") or 0)})
                self._canned = rows
            self.index.commit()

    async def _reindex(self, ids: list[str]) -> None:
        if not ids:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for aid in ids:
                pipe.hgetall(self.art_key(aid))
            hashes = await pipe.execute()
        for aid, h in zip(ids, hashes):
            self.index.delete("key", f"art:{aid}")
            if h:
                self.index.add({"key": f"art:{aid}", "kind": "article", "id": aid, "slug": h.get("slug", ""),
                                "status": h.get("status", "draft"), "title": h.get("title", ""),
                                "body": h.get("body", ""), "ts": int(h.get("updated_ts") or 0)})

    async def search(self, text: str, limit: int = 10, published_only: bool = True,
                     kind: str = "article") -> list[dict[str, Any]]:
        """Articles (or canned replies) best matching ``text`` (BM25 over title and body; any word)."""
        await self.sync()
        words = self.index.text_query(text, ["title", "body"], all_words=False, boosts={"title": 2.0})
        if words is None:
            return []
        parts = [words, self.index.term("kind", kind)]
        if published_only and kind == "article":
            parts.append(self.index.term("status", "published"))
        hits = self.index.search(self.index.all_of(parts), limit, snippet_field="body", snippet_query=words)
        out = []
        for hit in hits:
            item: dict[str, Any] = {"id": hit["id"], "title": hit.get("title", ""), "snippet": hit["_snippet"],
                                    "score": round(hit["_score"] or 0, 4)}
            if kind == "article":
                item.update({"slug": hit.get("slug", ""), "status": hit.get("status", ""), "url": f"/kb/{hit.get('slug', '')}"})
            out.append(item)
        return out

    async def suggest(self, who: "Principal", cid: str) -> dict[str, Any]:
        """Published articles and canned replies that match the customer's latest messages."""
        await self.svc.readable(who, cid)
        from .store import decode_event

        # the latest events only: a long conversation is not read whole on every customer message
        raw = await self.redis.xrevrange(self.svc.keys.log(cid), "+", "-", count=SUGGEST_SCAN)
        said: list[str] = []
        for eid, fields in raw:
            e = decode_event(cid, eid, fields)
            if e["type"] == "message" and (e.get("author") or {}).get("kind") == "customer":
                said.append(str((e.get("data") or {}).get("text") or ""))
                if len(said) >= SUGGEST_MESSAGES:
                    break
        text = " ".join(reversed(said))
        if not plain_query(text):
            return {"articles": [], "replies": [], "from_text": ""}
        return {"articles": await self.search(text, SUGGEST_EACH), "replies": await self.search(text, SUGGEST_EACH, kind="canned"),
                "from_text": text[-500:]}

    # --- self-service -----------------------------------------------------------------------

    async def opened(self, customer: str, now_ms: int | None = None) -> bool:
        """A customer opened an article: starts their self-service window (one per window)."""
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        day = _day(now)
        started = await self._opened(keys=[f"{self.p}kbss:{{ss}}:cust:{customer}", self.pending_key, self.day_key(day)],
                                     args=[customer, now, self.window_ms, day, DAY_KEEP_S])
        return bool(started)

    async def settle(self, now_ms: int | None = None) -> int:
        """Windows that ended: helped when the customer started no conversation in the window,
        escalated otherwise. Any node may run this; ``ZREM`` decides which one counts an entry."""
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        due = await self.redis.zrangebyscore(self.pending_key, "-inf", now, start=0, num=500)
        counted = 0
        for member in due:
            if not await self.redis.zrem(self.pending_key, member):
                continue  # another node counted it
            customer, opened_ms, day = member.rsplit("|", 2)
            started = await self.redis.zcount(self.svc.keys.customer_convs(customer), int(opened_ms),
                                              int(opened_ms) + self.window_ms)
            key = self.day_key(day)
            await self.redis.hincrby(key, "escalated" if started else "helped", 1)
            await self.redis.expire(key, DAY_KEEP_S)
            counted += 1
        return counted

    async def self_service(self, days: int = 1, now_ms: int | None = None) -> dict[str, Any]:
        """The self-service rate over the last ``days`` UTC days (today included)."""
        await self.settle(now_ms)
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        names = [_day(now - i * 86_400_000) for i in range(days)]
        async with self.redis.pipeline(transaction=False) as pipe:
            for d in names:
                pipe.hgetall(self.day_key(d))
            rows = await pipe.execute()
        per_day = []
        totals = {"sessions": 0, "helped": 0, "escalated": 0}
        for d, row in zip(names, rows):
            entry = {k: int(row.get(k) or 0) for k in totals}
            for k in totals:
                totals[k] += entry[k]
            per_day.append({"day": d, **entry})
        decided = totals["helped"] + totals["escalated"]
        return {"days": per_day, **totals, "pending": totals["sessions"] - decided,
                "rate": round(totals["helped"] / decided, 4) if decided else None,
                "window_s": self.window_ms / 1000}


# --- payloads (REST bodies and customer events; docs/knowledge.md) --------------------------------

Status = Literal["draft", "published"]
_SLUG = dict(max_len=80, min_len=1, pattern=SLUG_RE, describe="lower-case letters, digits and inner hyphens")


@dataclass(frozen=True)
class ArticleCreate:
    """A new article: Markdown ``body``; ``slug`` defaults to one made from the title."""

    title: str = chars(max_len=MAX_TITLE, min_len=1)
    body: str = chars(max_len=MAX_BODY, min_len=1)
    status: Status = "draft"
    slug: str | None = chars(**_SLUG, default=None)


@dataclass(frozen=True)
class ArticleUpdate:
    """A change to an article (a new version); ``base_version``: the version edited, so a change
    made meanwhile by someone else is refused (``conflict``) instead of overwritten."""

    title: str | None = chars(max_len=MAX_TITLE, min_len=1, default=None)
    body: str | None = chars(max_len=MAX_BODY, min_len=1, default=None)
    status: Status | None = None
    slug: str | None = chars(**_SLUG, default=None)
    base_version: int | None = number(1, 1_000_000_000, default=None)


@dataclass(frozen=True)
class KbSearch:
    """``kb.search`` (customers): published articles matching ``q``."""

    q: str = chars(max_len=200, min_len=1)
    limit: int = number(1, 20, default=5)


@dataclass(frozen=True)
class KbArticle:
    """``kb.article`` (customers): a published article by slug or id."""

    slug: str = chars(max_len=80, min_len=1)
