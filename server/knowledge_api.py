"""REST for search and the knowledge base, and the public article pages (docs/rest.md, docs/knowledge.md).

- ``GET /api/v1/search``: conversations' words by text, customer and date (what the caller may read);
- ``/api/v1/kb/...``: articles (list, get, create, update, versions, search), the self-service rate;
- ``GET /api/v1/conversations/{cid}/suggestions``: articles and canned replies for a conversation;
- ``/api/v1/public/kb/...``: the customer surface (no token; published articles; rate-limited per address);
- ``/kb/`` and ``/kb/<slug>``: the published articles as pages a link in a chat can open.

Why a module of its own: the rules live in ``signaling`` (``signaling.search``,
``signaling.knowledge``); this parses requests and shapes answers, and registers its operations
with the OpenAPI document (``server.openapi.register``) so they are described like the rest.
"""

from __future__ import annotations

import html
from typing import Any

from aiohttp import web

from signaling import DESK, ArticleCreate, ArticleUpdate, Desk, ProtocolError, client_address as _client_address
from signaling import fastjson, parse_search, validate

from .rest import API, Op, Param, _agent, _svc, authorize
from .rest_schemas import ANSWERS, SCHEMAS, BOOL, INT, MS, STR, array, obj, ref

MAX_ARTICLE_BODY_BYTES = 256 * 1024
KB = f"{API}/kb"
PUBLIC_KB = f"{API}/public/kb"


def _desk(request: web.Request) -> Desk:
    return request.app[DESK]


def _address(request: web.Request) -> str:
    svc = _svc(request)
    return _client_address(request.remote, request.headers.get("X-Forwarded-For"), svc.config.auth.trusted_proxies)


async def _article_body(request: web.Request, schema: type) -> Any:
    """The JSON body (articles may be longer than ``limits.max_event_bytes``)."""
    raw = await request.read()
    if len(raw) > MAX_ARTICLE_BODY_BYTES:
        raise ProtocolError("too_large", f"request body is {len(raw)} bytes; the limit is {MAX_ARTICLE_BODY_BYTES}")
    try:
        payload = fastjson.loads_bounded(raw) if raw.strip() else {}
    except fastjson.JsonTooDeep as exc:
        raise ProtocolError("invalid", f"body: {exc}", "body") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError("bad_json", f"request body is not valid JSON: {exc}") from None
    return validate(schema, payload, _svc(request).max_message)


def _only(request: web.Request, known: set[str]) -> None:
    for key in request.query:
        if key not in known:
            raise ProtocolError("invalid", f"{key}: unknown parameter (expected: {', '.join(sorted(known)) or 'none'})",
                                key)


def _int_param(request: web.Request, name: str, default: int, most: int) -> int:
    raw = request.query.get(name)
    if raw in (None, ""):
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= most:
        raise ProtocolError("invalid", f"{name} must be a whole number from 1 to {most}", name)
    return int(raw)


def _text_param(request: web.Request, name: str, most: int = 200) -> str:
    value = request.query.get(name, "")
    if len(value) > most:
        raise ProtocolError("invalid", f"{name} is {len(value)} characters; at most {most}", name)
    return value


# --- conversation search -----------------------------------------------------------------------

async def search_conversations(request: web.Request) -> web.Response:
    who = await authorize(request, "conversations:read")
    query = parse_search(request.query)
    return web.json_response(await _desk(request).search.search(who, query))


async def suggestions(request: web.Request) -> web.Response:
    who = await authorize(request, "conversations:read")
    _only(request, set())
    return web.json_response(await _desk(request).knowledge.suggest(who, request.match_info["cid"]))


# --- articles (agents; API keys read) ----------------------------------------------------------

async def list_articles(request: web.Request) -> web.Response:
    await authorize(request, "conversations:read")
    _only(request, {"status", "limit"})
    status = request.query.get("status") or None
    if status is not None and status not in ("draft", "published"):
        raise ProtocolError("invalid", "status must be draft or published", "status")
    limit = _int_param(request, "limit", 200, 1000)
    return web.json_response({"articles": await _desk(request).knowledge.list(status, limit)})


async def create_article(request: web.Request) -> web.Response:
    who = await _agent(request)
    body = await _article_body(request, ArticleCreate)
    article = await _desk(request).knowledge.save(who, None, body.title, body.body, body.status, body.slug)
    return web.json_response({"article": article}, status=201)


async def get_article(request: web.Request) -> web.Response:
    await authorize(request, "conversations:read")
    return web.json_response({"article": await _desk(request).knowledge.get(request.match_info["article"])})


async def update_article(request: web.Request) -> web.Response:
    who = await _agent(request)
    body = await _article_body(request, ArticleUpdate)
    if all(getattr(body, k) is None for k in ("title", "body", "status", "slug")):
        raise ProtocolError("invalid", "body: give at least one of title, body, status, slug", "body")
    article = await _desk(request).knowledge.save(who, request.match_info["article"], body.title, body.body,
                                                  body.status, body.slug, body.base_version)
    return web.json_response({"article": article})


async def article_versions(request: web.Request) -> web.Response:
    await authorize(request, "conversations:read")
    return web.json_response({"versions": await _desk(request).knowledge.versions(request.match_info["article"])})


async def article_version(request: web.Request) -> web.Response:
    await authorize(request, "conversations:read")
    raw = request.match_info["version"]
    if not raw.isdigit() or not 1 <= int(raw) <= 1_000_000_000:
        raise ProtocolError("invalid", "version must be a whole number from 1", "version")
    version = await _desk(request).knowledge.version(request.match_info["article"], int(raw))
    return web.json_response({"version": version})


async def search_articles(request: web.Request) -> web.Response:
    await authorize(request, "conversations:read")
    _only(request, {"q", "limit", "kind"})
    q = _text_param(request, "q")
    kind = request.query.get("kind") or "article"
    if kind not in ("article", "canned"):
        raise ProtocolError("invalid", "kind must be article or canned", "kind")
    limit = _int_param(request, "limit", 10, 50)
    results = await _desk(request).knowledge.search(q, limit, published_only=False, kind=kind)
    return web.json_response({"results": results})


async def self_service(request: web.Request) -> web.Response:
    await authorize(request, "conversations:read")
    _only(request, {"days"})
    days = _int_param(request, "days", 1, 90)
    return web.json_response({"self_service": await _desk(request).knowledge.self_service(days)})


# --- the customer surface ----------------------------------------------------------------------

async def public_search(request: web.Request) -> web.Response:
    desk = _desk(request)
    desk.public_request(_address(request))
    _only(request, {"q", "limit"})
    q = _text_param(request, "q")
    limit = _int_param(request, "limit", 5, 20)
    return web.json_response({"articles": await desk.knowledge.search(q, limit)})


async def public_article(request: web.Request) -> web.Response:
    desk = _desk(request)
    desk.public_request(_address(request))
    _only(request, set())
    h = await desk.knowledge.get_published(request.match_info["article"])
    return web.json_response({"article": desk.knowledge.customer_view(h)})


# --- pages -------------------------------------------------------------------------------------

def _page(title: str, main: str, status: int = 200, title_key: str = "") -> web.Response:
    """A help page: readable without script (in English); /help/help.js puts the page's own words
    (``data-i18n`` keys of web/sdk/i18n.js, ``help.*``) in the visitor's language. ``title_key``:
    the key of a title that is one of those words (an article's title is the article's own)."""
    key = f' data-i18n="{title_key}"' if title_key else ""
    doc = (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
           f'<meta name="viewport" content="width=device-width, initial-scale=1">'
           f'<title{key}>{html.escape(title)}</title><link rel="stylesheet" href="/help/help.css">'
           f'<script type="module" src="/help/help.js"></script></head>'
           f'<body><div class="kb-bar" id="kb-bar"></div><main class="kb-page">{main}</main></body></html>')
    return web.Response(text=doc, content_type="text/html", status=status)


async def article_page(request: web.Request) -> web.StreamResponse:
    """A published article as a page: its title escaped, its body the sanitised HTML."""
    desk = _desk(request)
    desk.public_request(_address(request))
    slug = request.match_info["slug"]
    try:
        h = await desk.knowledge.get_published(slug)
    except ProtocolError:
        return _page("Not found", '<h1 data-i18n="help.not_found.heading">Article not found</h1>'
                     '<p><a href="/kb/" data-i18n="help.all">All articles</a></p>', 404, "help.not_found")
    if h.get("slug") != slug and not slug.startswith("kb_"):
        raise web.HTTPMovedPermanently(f"/kb/{h['slug']}")  # an old slug: the article's current address
    view = desk.knowledge.customer_view(h)
    main = (f'<p class="kb-crumb"><a href="/kb/" data-i18n="help.title">Help articles</a></p><article class="kb-article">'
            f'<h1>{html.escape(view["title"])}</h1>{view["html"]}</article>')
    return _page(view["title"], main)


async def index_page(request: web.Request) -> web.StreamResponse:
    """The published articles, or those matching ``?q=`` (a form: works without script)."""
    desk = _desk(request)
    desk.public_request(_address(request))
    q = request.query.get("q", "")[:200]
    if q.strip():
        found = await desk.knowledge.search(q, 20)
        items = [(a["slug"], a["title"]) for a in found]
    else:
        items = [(a["slug"], a["title"]) for a in await desk.knowledge.list("published", 200)]
    rows = "".join(f'<li><a href="/kb/{html.escape(slug)}">{html.escape(title)}</a></li>' for slug, title in items)
    empty = "" if items else '<p data-i18n="help.none">No articles found.</p>'
    main = (f'<h1 data-i18n="help.title">Help articles</h1><form class="kb-search" method="get" action="/kb/">'
            f'<input type="search" name="q" value="{html.escape(q)}" aria-label="Search help" '
            f'data-i18n-aria-label="help.search.label" maxlength="200">'
            f'<button type="submit" data-i18n="help.search">Search</button></form><ul class="kb-list">{rows}</ul>{empty}')
    return _page("Help articles", main, title_key="help.title")


# --- operations --------------------------------------------------------------------------------

_SNIPPET = obj({"text": STR, "highlights": array(array(INT))},
               description="a fragment of the text; highlights: [start, end) character ranges of matched words")
KB_SCHEMAS: dict[str, Any] = {
    "SearchResult": obj({"conversation": ref("Conversation"),
                         "event": obj({"id": STR, "type": STR, "ts": MS, "author": obj({"kind": STR, "name": STR})}),
                         "snippet": _SNIPPET, "score": {"type": ["number", "null"]}}),
    "ArticleBrief": obj({"id": STR, "slug": STR, "title": STR, "status": {"enum": ["draft", "published"]},
                         "version": INT, "created_ts": MS, "updated_ts": MS, "updated_by": obj({"id": STR, "name": STR}),
                         "url": STR}),
    "Article": {"allOf": [ref("ArticleBrief"), obj({"body": STR, "html": {
        "type": "string", "description": "the body as sanitised HTML (safe to insert into a page)"}})]},
    "ArticleVersionBrief": obj({"version": INT, "title": STR, "status": STR, "slug": STR, "ts": MS,
                                "by": obj({"id": STR, "name": STR})}),
    "ArticleHit": obj({"id": STR, "title": STR, "snippet": _SNIPPET, "score": {"type": "number"}},
                      {"slug": STR, "status": STR, "url": STR}),
    "PublicArticle": obj({"id": STR, "slug": STR, "title": STR, "html": STR, "updated_ts": MS, "url": STR}),
}
KB_ANSWERS: dict[str, Any] = {
    "SearchPage": obj({"results": array(ref("SearchResult")), "more": BOOL, "indexed_at": MS}),
    "Suggestions": obj({"articles": array(ref("ArticleHit")), "replies": array(ref("ArticleHit")), "from_text": STR}),
    "ArticleList": obj({"articles": array(ref("ArticleBrief"))}),
    "ArticleAnswer": obj({"article": ref("Article")}),
    "ArticleVersions": obj({"versions": array(ref("ArticleVersionBrief"))}),
    "ArticleVersion": obj({"version": obj({"id": STR, "version": INT, "title": STR, "status": STR, "slug": STR,
                                           "body": STR, "html": STR, "ts": MS, "by": obj({"id": STR, "name": STR})})}),
    "ArticleSearch": obj({"results": array(ref("ArticleHit"))}),
    "SelfService": obj({"self_service": obj(
        {"days": array(obj({"day": STR, "sessions": INT, "helped": INT, "escalated": INT})),
         "sessions": INT, "helped": INT, "escalated": INT, "pending": INT,
         "rate": {"type": ["number", "null"], "description": "helped / (helped + escalated); null: none decided"},
         "window_s": {"type": "number"}})}),
    "PublicArticles": obj({"articles": array(ref("ArticleHit"))}),
    "PublicArticleAnswer": obj({"article": ref("PublicArticle")}),
}

_SEARCH = (
    Param("q", {"type": "string", "maxLength": 200}, "words to find (all of them); may be empty with customer, from or to"),
    Param("customer", {"type": "string", "pattern": r"^[A-Za-z0-9_.:-]{1,128}$"}, "only this customer's conversations"),
    Param("from", {"type": "string", "pattern": r"^(\d{1,15}|\d{4}-\d\d-\d\d([T ].+)?)$"},
          "only events at or after this time (ms since 1970, or ISO 8601)"),
    Param("to", {"type": "string", "pattern": r"^(\d{1,15}|\d{4}-\d\d-\d\d([T ].+)?)$"},
          "only events at or before this time (a bare date: the whole day)"),
    Param("limit", {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}),
)
_A = f"{KB}/articles/{{article}}"
KB_OPERATIONS: list[Op] = [
    Op("GET", f"{API}/search", search_conversations, "Search conversations by words, customer and date",
       "SearchPage", "conversations:read", query=_SEARCH, tag="search",
       description="Messages, notes, transfer notes, close dispositions and tags, rating comments. Only "
                   "conversations the caller may read; best match first (newest first without words)."),
    Op("GET", f"{API}/conversations/{{cid}}/suggestions", suggestions,
       "Articles and canned replies matching the customer's latest messages", "Suggestions", "conversations:read",
       tag="knowledge"),
    Op("GET", f"{KB}/articles", list_articles, "Knowledge-base articles, last changed first", "ArticleList",
       "conversations:read", tag="knowledge",
       query=(Param("status", {"enum": ["draft", "published"]}, "only articles in this state"),
              Param("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 200}))),
    Op("POST", f"{KB}/articles", create_article, "Write an article (Markdown; version 1)", "ArticleAnswer",
       auth="agent", status=201, body=ArticleCreate, tag="knowledge"),
    Op("GET", _A, get_article, "An article (by id or slug) with its sanitised HTML", "ArticleAnswer",
       "conversations:read", tag="knowledge"),
    Op("PATCH", _A, update_article, "Change an article: a new version", "ArticleAnswer", auth="agent",
       body=ArticleUpdate, tag="knowledge",
       description="409 conflict when base_version is given and the article changed meanwhile, or the slug is taken."),
    Op("GET", f"{_A}/versions", article_versions, "An article's versions, oldest first", "ArticleVersions",
       "conversations:read", tag="knowledge"),
    Op("GET", f"{_A}/versions/{{version}}", article_version, "One version of an article", "ArticleVersion",
       "conversations:read", tag="knowledge"),
    Op("GET", f"{KB}/search", search_articles, "Search articles (drafts too) or canned replies", "ArticleSearch",
       "conversations:read", tag="knowledge",
       query=(Param("q", {"type": "string", "maxLength": 200}, "words (any of them, BM25 ranking)"),
              Param("kind", {"enum": ["article", "canned"], "default": "article"}),
              Param("limit", {"type": "integer", "minimum": 1, "maximum": 50, "default": 10}))),
    Op("GET", f"{KB}/self-service", self_service, "The self-service rate by day", "SelfService",
       "conversations:read", tag="knowledge",
       query=(Param("days", {"type": "integer", "minimum": 1, "maximum": 90, "default": 1}, "UTC days, today included"),),
       description="A session: a customer opened an article (the widget's kb.article); helped: they started no "
                   "conversation within knowledge.self_service_window_s; escalated: they did."),
    Op("GET", f"{PUBLIC_KB}/search", public_search, "Search published articles (customers)", "PublicArticles",
       auth="none", tag="knowledge",
       query=(Param("q", {"type": "string", "maxLength": 200}), Param("limit", {"type": "integer", "minimum": 1,
                                                                               "maximum": 20, "default": 5}))),
    Op("GET", f"{PUBLIC_KB}/articles/{{article}}", public_article, "A published article (customers)",
       "PublicArticleAnswer", auth="none", tag="knowledge"),
]


def setup(app: web.Application) -> None:
    """Routes, answers' schemas and the OpenAPI description; after ``server.rest.setup``."""
    from .openapi import register

    for name, schema in KB_SCHEMAS.items():
        SCHEMAS.setdefault(name, schema)
    for name, schema in KB_ANSWERS.items():
        ANSWERS.setdefault(name, schema)
    register(app, KB_OPERATIONS)
    app.router.add_get("/kb", index_page)
    app.router.add_get("/kb/", index_page)
    app.router.add_get("/kb/{slug}", article_page)
