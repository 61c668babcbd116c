"""Search and the knowledge base through real nodes and a real Redis: conversation search with its
access rules and bad input, articles with versions and safe Markdown, the customer's events,
suggestions from the customer's words, the self-service count, and two nodes that answer alike."""

from __future__ import annotations

import asyncio
import contextlib
from html.parser import HTMLParser
from urllib.parse import urlencode
from typing import Any, AsyncIterator

import aiohttp
import pytest

from segue_clients import World, http, metric_counters


@pytest.fixture
async def world(segue: Any) -> AsyncIterator[World]:
    w = World(segue)
    yield w
    await w.close()


async def _chat(world: World, agent: Any, customer: Any, text: str, agent_id: str) -> str:
    """A conversation the customer starts with ``text`` and ``agent`` accepts; returns its id."""
    started = await customer.ok("conversation.start", {"text": text})
    cid = started["conversation"]["id"]
    await agent.next("offer", lambda o: o["conversation"]["id"] == cid)
    await agent.ok("offer.accept", {"conversation_id": cid})
    return cid


async def test_search_finds_only_what_the_caller_may_read(world: World) -> None:
    api = f"{world.url}/api/v1"
    ann_token = await world.add_agent("ann")
    bob_token = await world.add_agent("bob")
    sup_token = await world.add_agent("sue", role="supervisor")
    ann = await world.agent(ann_token)
    first = await world.customer()
    cid1 = await _chat(world, ann, first, "My zeppelin tickets never arrived", "ann")
    await ann.ok("note.add", {"conversation_id": cid1, "text": "refund the zeppelin order"})
    await ann.ok("presence.set", {"status": "away"})
    bob = await world.agent(bob_token)
    second = await world.customer()
    cid2 = await _chat(world, bob, second, "zeppelin seats for two please", "bob")

    # ann reads her customer's conversation (message and her note), not bob's
    status, body = await http("GET", f"{api}/search?q=zeppelin", token=ann_token)
    assert status == 200, body
    found = {(r["conversation"]["id"], r["event"]["type"]) for r in body["results"]}
    assert found == {(cid1, "message"), (cid1, "note")}
    hit = next(r for r in body["results"] if r["event"]["type"] == "message")
    start, end = hit["snippet"]["highlights"][0]
    assert hit["snippet"]["text"][start:end].lower() == "zeppelin"
    status, body = await http("GET", f"{api}/search?q=zeppelin", token=bob_token)
    assert {r["conversation"]["id"] for r in body["results"]} == {cid2}
    # a supervisor reads both; every word must match
    status, body = await http("GET", f"{api}/search?q=zeppelin+seats", token=sup_token)
    assert {r["conversation"]["id"] for r in body["results"]} == {cid2}
    status, body = await http("GET", f"{api}/search?q=ZEPPELIN", token=sup_token)
    assert {r["conversation"]["id"] for r in body["results"]} == {cid1, cid2}
    # by customer (without words: newest first) and by date
    customer1 = first.session["customer_id"]
    status, body = await http("GET", f"{api}/search?customer={customer1}", token=sup_token)
    assert [r["event"]["type"] for r in body["results"]] == ["note", "message"]
    status, body = await http("GET", f"{api}/search?customer={customer1}", token=bob_token)
    assert body["results"] == []
    status, body = await http("GET", f"{api}/search?q=zeppelin&to=2001-01-01", token=sup_token)
    assert body["results"] == []
    status, body = await http("GET", f"{api}/search?q=zeppelin&from=2001-01-01&limit=1", token=sup_token)
    assert len(body["results"]) == 1 and body["more"] is True
    # query syntax typed by a person is words, not operators: it finds the words, never fails
    for q in ['"zeppelin', "zeppelin) (", "zeppelin:", "zeppelin*", "+zeppelin -", "zeppelin~^"]:
        status, body = await http("GET", f"{api}/search?" + urlencode({"q": q}), token=sup_token)
        assert status == 200 and {r["conversation"]["id"] for r in body["results"]} == {cid1, cid2}, (q, body)


async def test_search_bad_input(world: World) -> None:
    api = f"{world.url}/api/v1"
    token = await world.add_agent("ann")
    cases = [("", "q"), ("q=x&limit=0", "limit"), ("q=x&limit=101", "limit"), ("q=x&from=yesterday", "from"),
             ("q=x&customer=a%20b", "customer"), ("q=x&colour=red", "colour"), ("q=" + "x" * 201, "q"),
             ("q=x&from=2024-02-01&to=2024-01-01", "from"), ("q=%22%28%29", "q")]
    for query, field in cases:
        status, body = await http("GET", f"{api}/search?{query}", token=token)
        assert status == 400 and body["error"]["code"] == "invalid" and body["error"]["field"] == field, (query, body)
    status, body = await http("GET", f"{api}/search?q=x")
    assert status == 401
    status, body = await http("GET", f"{api}/search?q=x", token=token)
    assert status == 200 and body["results"] == []


async def test_a_visitors_words_follow_them_when_they_sign_in(world: World) -> None:
    """A conversation that joins another customer (a visitor who signs in) is found by the new one."""
    api = f"{world.url}/api/v1"
    sup = await world.add_agent("sue", role="supervisor")
    ann = await world.agent(await world.add_agent("ann"))
    visitor = await world.customer()
    await _chat(world, ann, visitor, "the quokka plush is torn", "ann")
    status, body = await http("GET", f"{api}/search?q=quokka", token=sup)
    assert body["results"][0]["conversation"]["customer"]["id"] == visitor.session["customer_id"]
    await world.service._merge_visitor(visitor.session["customer_id"], "u_joined", {"name": "Quinn"})
    status, body = await http("GET", f"{api}/search?q=quokka&customer=u_joined", token=sup)
    assert len(body["results"]) == 1, body


class _Markup(HTMLParser):
    """The elements and attributes a browser would build from an HTML text."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))


# the one script a help page has: its own words in the visitor's language (web/help/help.js)
PAGE_SCRIPT = ("script", [("type", "module"), ("src", "/help/help.js")])


def assert_safe(text: str) -> None:
    """No script element (but the page's own), no event-handler attribute, no javascript: URL anywhere as markup."""
    tags = _Markup(text).tags
    assert tags.count(PAGE_SCRIPT) <= 1, text
    for tag, attrs in tags:
        if (tag, attrs) == PAGE_SCRIPT:
            continue
        assert tag not in ("script", "iframe", "object", "embed", "style"), (tag, text)
        for name, value in attrs:
            assert not name.startswith("on"), (tag, name, text)
            assert not (value or "").strip().lower().startswith(("javascript:", "vbscript:", "data:")), (tag, value)


async def _article(api: str, token: str, **fields: Any) -> dict[str, Any]:
    status, body = await http("POST", f"{api}/kb/articles", token=token, json_body=fields)
    assert status == 201, body
    return body["article"]


async def test_articles_versions_and_safe_markdown(world: World) -> None:
    api = f"{world.url}/api/v1"
    ann = await world.add_agent("ann", name="Ann Author")
    bob = await world.add_agent("bob", name="Bob Editor")
    evil = ("# Returns\n\n<script>alert('x')</script>\n\n[click](javascript:alert(1)) "
            "[also](JAVASCRIPT:alert(2)) <img src=x onerror=alert(3)> [ok](https://shop.example/returns)\n")
    art = await _article(api, ann, title="Returning an item", body=evil)
    assert art["slug"] == "returning-an-item" and art["version"] == 1 and art["status"] == "draft"
    html = art["html"]
    assert_safe(html)
    assert "&lt;script&gt;" in html  # shown as text
    assert '<a href="https://shop.example/returns" rel="noopener noreferrer nofollow">ok</a>' in html
    # drafts are not public
    status, body = await http("GET", f"{api}/public/kb/articles/returning-an-item")
    assert status == 404
    # an edit is a new version; an edit from an old version is refused
    status, body = await http("PATCH", f"{api}/kb/articles/{art['id']}", token=bob,
                              json_body={"body": "Send it back within **30 days**.", "status": "published",
                                         "base_version": 1})
    assert status == 200 and body["article"]["version"] == 2, body
    assert body["article"]["updated_by"] == {"id": "bob", "name": "Bob Editor"}
    status, body = await http("PATCH", f"{api}/kb/articles/{art['id']}", token=ann,
                              json_body={"title": "Stale edit", "base_version": 1})
    assert status == 409 and body["error"]["code"] == "conflict"
    status, body = await http("PATCH", f"{api}/kb/articles/returning-an-item", token=ann,
                              json_body={"title": "Returns and refunds", "slug": "returns", "base_version": 2})
    assert status == 200 and body["article"]["version"] == 3 and body["article"]["slug"] == "returns"
    status, body = await http("GET", f"{api}/kb/articles/{art['id']}/versions", token=ann)
    assert [(v["version"], v["title"], v["by"]["id"]) for v in body["versions"]] == [
        (1, "Returning an item", "ann"), (2, "Returning an item", "bob"), (3, "Returns and refunds", "ann")]
    status, body = await http("GET", f"{api}/kb/articles/{art['id']}/versions/1", token=bob)
    assert body["version"]["body"] == evil
    assert_safe(body["version"]["html"])
    status, body = await http("GET", f"{api}/kb/articles/{art['id']}/versions/9", token=bob)
    assert status == 404
    # public: by the new slug, the old one still works; the page escapes and sanitises
    status, body = await http("GET", f"{api}/public/kb/articles/returning-an-item")
    assert status == 200 and body["article"]["title"] == "Returns and refunds"
    assert "<strong>30 days</strong>" in body["article"]["html"] and "updated_by" not in body["article"]
    status, page = await http("GET", f"{world.url}/kb/returns")
    assert status == 200 and "<strong>30 days</strong>" in page
    status, _ = await http("GET", f"{world.url}/kb/no-such-article")
    assert status == 404
    # an old version with a script, once current again, still never reaches the page as markup
    status, body = await http("PATCH", f"{api}/kb/articles/returns", token=ann, json_body={"body": evil, "title": "<b>T</b>"})
    assert status == 200
    status, page = await http("GET", f"{world.url}/kb/returns")
    assert_safe(page)
    assert "<b>T</b>" not in page and "<a href=\"javascript" not in page.lower()
    assert "&lt;b&gt;T&lt;/b&gt;" in page


async def test_article_bad_input(world: World) -> None:
    api = f"{world.url}/api/v1"
    ann = await world.add_agent("ann")
    await _article(api, ann, title="Taken", body="x", slug="taken")
    bad = [({"title": "", "body": "x"}, "title"), ({"title": "t"}, "body"), ({"title": "t", "body": "x", "status": "live"}, "status"),
           ({"title": "t", "body": "x", "slug": "Not A Slug"}, "slug"), ({"title": "t" * 201, "body": "x"}, "title"),
           ({"title": "t", "body": "x", "colour": 1}, "colour")]
    for fields, field in bad:
        status, body = await http("POST", f"{api}/kb/articles", token=ann, json_body=fields)
        assert status == 400 and body["error"]["field"] == field, (fields, body)
    status, body = await http("POST", f"{api}/kb/articles", token=ann, json_body={"title": "t", "body": "x", "slug": "taken"})
    assert status == 409 and body["error"]["field"] == "slug"
    status, body = await http("POST", f"{api}/kb/articles", token=ann, data="{nope", headers={"Content-Type": "application/json"})
    assert status == 400 and body["error"]["code"] == "bad_json"
    status, body = await http("POST", f"{api}/kb/articles", token=ann, json_body={"title": "t", "body": "x" * 50_001})
    assert status in (400, 413) and body["error"]["field"] == "body"
    status, body = await http("PATCH", f"{api}/kb/articles/taken", token=ann, json_body={})
    assert status == 400
    status, body = await http("PATCH", f"{api}/kb/articles/nothing-here", token=ann, json_body={"title": "x"})
    assert status == 404
    status, body = await http("GET", f"{api}/kb/articles/taken/versions/zero", token=ann)
    assert status == 400 and body["error"]["field"] == "version"
    status, body = await http("GET", f"{api}/public/kb/search?q=x&limit=500")
    assert status == 400 and body["error"]["field"] == "limit"
    # a lone surrogate is refused, not stored
    status, body = await http("POST", f"{api}/kb/articles", token=ann,
                              data='{"title": "bad \\ud800", "body": "x"}', headers={"Content-Type": "application/json"})
    assert status == 400 and body["error"]["code"] == "invalid", body


async def test_customer_search_suggestions_and_self_service(start_segue: Any) -> None:
    segue = await start_segue({"knowledge.self_service_window_s": 1.0})
    world = World(segue)
    try:
        api = f"{world.url}/api/v1"
        ann_token = await world.add_agent("ann")
        art = await _article(api, ann_token, title="Reset your password",
                             body="Open **Settings**, choose *Security* and press Reset password.", status="published")
        await _article(api, ann_token, title="Password policy draft", body="password rules", status="draft")
        await world.service.canned.create("Password help", "You can reset it under Settings > Security.", "ann")
        # the customer searches and opens it (before any chat)
        reader = await world.customer()
        found = await reader.ok("kb.search", {"q": "forgot my password"})
        assert [a["slug"] for a in found["articles"]] == ["reset-your-password"]
        opened = await reader.ok("kb.article", {"slug": "reset-your-password"})
        assert "<strong>Settings</strong>" in opened["article"]["html"]
        await reader.fails("kb.article", {"slug": "password-policy-draft"}, "not_found")
        await reader.fails("kb.search", {"q": ""}, "invalid")
        assert (await reader.ok("kb.search", {"q": "the of and"}))["articles"] == []  # stop words only: nothing
        # another customer asks an agent; the console's suggestions match their words
        agent = await world.agent(ann_token)
        asker = await world.customer()
        cid = await _chat(world, agent, asker, "hi, I can't log in, how do I reset my password?", "ann")
        status, body = await http("GET", f"{api}/conversations/{cid}/suggestions", token=ann_token)
        assert status == 200, body
        assert [a["id"] for a in body["articles"]] == [art["id"]]
        assert [r["title"] for r in body["replies"]] == ["Password help"]
        other = await world.add_agent("olga")
        status, body = await http("GET", f"{api}/conversations/{cid}/suggestions", token=other)
        assert status == 403
        # the reader started no conversation within the window: helped; another reads, then chats:
        # escalated; the asker reads it during their chat: no session (an agent is helping already)
        escalates = await world.customer()
        await escalates.ok("kb.article", {"slug": art["id"]})
        await escalates.ok("conversation.start", {"text": "still stuck"})
        await asker.ok("kb.article", {"slug": art["id"]})
        await asyncio.sleep(1.2)  # the 1 s window ends (a wait, not a timing assertion)
        status, body = await http("GET", f"{api}/kb/self-service", token=ann_token)
        stats = body["self_service"]
        assert (stats["sessions"], stats["helped"], stats["escalated"], stats["rate"]) == (2, 1, 1, 0.5), stats
        # settled once, however many nodes ask
        status, body = await http("GET", f"{api}/kb/self-service?days=2", token=ann_token)
        assert body["self_service"]["helped"] == 1 and len(body["self_service"]["days"]) == 2
    finally:
        await world.close()


@contextlib.asynccontextmanager
async def _two_nodes(start_segue: Any, config: Any) -> AsyncIterator[tuple[World, World, str, str]]:
    """Two nodes on one Redis, a client world on each, and a supervisor signed in on both."""
    wa, wb = World(await start_segue(config=config)), World(await start_segue(config=config))
    try:
        sup_a = await wa.add_agent("sue", role="supervisor")
        yield wa, wb, sup_a, await wb.login("sue")
    finally:
        await wa.close()
        await wb.close()


async def test_two_nodes_search_alike(start_segue: Any, make_config: Any) -> None:
    """Each node keeps its own index; both answer from the same Redis, whichever wrote."""
    config = make_config()
    async with _two_nodes(start_segue, config) as (wa, wb, sup_a, sup_b):
        ann = await wa.agent(await wa.add_agent("ann"))
        customer = await wa.customer()
        await _chat(wa, ann, customer, "the platypus arrived broken", "ann")
        await _article(f"{wa.url}/api/v1", sup_a, title="Broken platypus", body="Send us a photo.", status="published")
        for w, token in ((wa, sup_a), (wb, sup_b)):
            status, body = await http("GET", f"{w.url}/api/v1/search?q=platypus", token=token)
            assert len(body["results"]) == 1, (w.url, body)
            status, body = await http("GET", f"{w.url}/api/v1/public/kb/search?q=platypus")
            assert [x["title"] for x in body["articles"]] == ["Broken platypus"], body
        status, body = await http("PATCH", f"{wb.url}/api/v1/kb/articles/broken-platypus", token=sup_b,
                                  json_body={"title": "Damaged on arrival"})
        status, body = await http("GET", f"{wa.url}/api/v1/public/kb/search?q=damaged")
        assert [x["title"] for x in body["articles"]] == ["Damaged on arrival"]
        # a node that starts later builds its indexes from what Redis holds
        c = await start_segue(config=config)
        wc = World(c)
        sup_c = await wc.login("sue")
        status, body = await http("GET", f"{wc.url}/api/v1/search?q=platypus", token=sup_c)
        assert len(body["results"]) == 1, body
        status, body = await http("GET", f"{wc.url}/api/v1/kb/articles/broken-platypus/versions", token=sup_c)
        assert [v["title"] for v in body["versions"]] == ["Broken platypus", "Damaged on arrival"]
        status, body = await http("GET", f"{wc.url}/api/v1/public/kb/search?q=damaged")
        assert [x["title"] for x in body["articles"]] == ["Damaged on arrival"]


async def test_each_event_is_indexed_once_whichever_node_stored_it(start_segue: Any, make_config: Any) -> None:
    """A node indexes the events it stores from memory and reads the others' back from Redis: in
    a conversation whose customer writes through one node and agent through another, each node
    finds every message exactly once."""
    async with _two_nodes(start_segue, make_config({"redis.fanout": True})) as (wa, wb, sup_a, sup_b):
        await wa.add_agent("ann")
        ann = await wb.agent(await wb.login("ann"))  # the agent on node b, the customer on node a
        customer = await wa.customer()
        cid = await _chat(wa, ann, customer, "okapi 0", "ann")
        n = 1
        for sender, node_token in ((customer, None), (ann, (wb, sup_b)), (customer, None)):
            if node_token is not None:  # the agent's node catches up first: its next events follow on
                status, body = await http("GET", f"{node_token[0].url}/api/v1/search?q=okapi", token=node_token[1])
                assert status == 200, body
            for _ in range(3):
                await sender.ok("message.send", {"conversation_id": cid, "text": f"okapi {n}"})
                n += 1
        for w, token in ((wa, sup_a), (wb, sup_b)):
            status, body = await http("GET", f"{w.url}/api/v1/search?q=okapi&limit=100", token=token)
            assert status == 200, body
            ids = [r["event"]["id"] for r in body["results"]]
            assert len(ids) == n and len(set(ids)) == n, (w.url, ids)
        # each node indexed events it stored from memory, and read the other's back from Redis
        for w in (wa, wb):
            indexed = await metric_counters(w.url, "segue_search_indexed_events", "source")
            assert indexed.get("stored", 0) > 0 and indexed.get("read", 0) > 0, (w.url, indexed)
            assert indexed["stored"] + indexed["read"] == n, (w.url, indexed)


async def test_another_site_may_search_help_but_not_the_agents_api(world: World) -> None:
    """The public knowledge base is on the customer surface (any origin by default); the rest is not."""
    api = f"{world.url}/api/v1"
    token = await world.add_agent("ann")
    await _article(api, token, title="Opening hours", body="9 to 5", status="published")
    other = "https://help.shop.example"
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{api}/public/kb/search?q=hours", headers={"Origin": other}) as r:
            assert r.status == 200 and r.headers["Access-Control-Allow-Origin"] == other
            assert [a["title"] for a in (await r.json())["articles"]] == ["Opening hours"]
        async with session.options(f"{api}/public/kb/articles/opening-hours", headers={
                "Origin": other, "Access-Control-Request-Method": "GET"}) as r:
            assert r.status == 200 and r.headers["Access-Control-Allow-Origin"] == other
        async with session.get(f"{api}/kb/articles", headers={"Origin": other, "Authorization": f"Bearer {token}"}) as r:
            assert r.status == 403 and (await r.json())["error"]["code"] == "origin_not_allowed"


async def test_the_public_endpoints_are_rate_limited_per_address(world: World) -> None:
    """A script hammering the anonymous search gets 429 with Retry-After; the node stays healthy."""
    statuses = []
    async with aiohttp.ClientSession() as session:
        for _ in range(100):
            async with session.get(f"{world.url}/api/v1/public/kb/search?q=hello") as r:
                statuses.append(r.status)
                if r.status == 429:
                    body = await r.json()
                    assert body["error"]["code"] == "rate_limited" and int(r.headers["Retry-After"]) >= 1
                    break
    assert statuses[-1] == 429 and set(statuses[:-1]) == {200}, statuses
    status, body = await http("GET", f"{world.url}/healthz")
    assert status == 200
