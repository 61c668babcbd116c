"""The REST write endpoints and the conversation listing, through the real stack: an API key (or an
agent token) writes, and the customer's and agents' live Socket.IO clients see it at once."""

from __future__ import annotations

import datetime
from typing import Any, AsyncIterator

import pytest

from segue_clients import World, http

ALL = ["conversations:read", "conversations:write", "customers:read"]


@pytest.fixture
async def world(segue: Any) -> AsyncIterator[World]:
    w = World(segue)
    yield w
    await w.close()


async def _key(world: World, scopes: list[str] = ALL, name: str = "crm") -> str:
    _, token = await world.service.api_keys.create(name, scopes, "test")
    return token


async def _known_customer(world: World) -> tuple[Any, str]:
    """A connected visitor Segue knows (an anonymous one is stored once they act: here a first
    conversation, closed again); returns the client and that conversation's id."""
    customer = await world.customer()
    cid = (await customer.ok("conversation.start", {"text": "earlier"}))["conversation"]["id"]
    await customer.ok("conversation.close", {"conversation_id": cid})
    return customer, cid


async def test_outreach_bot_agent_note_attributes_close(world: World) -> None:
    api = f"{world.url}/api/v1"
    key = await _key(world)
    customer, _ = await _known_customer(world)
    cust = customer.session["customer_id"]
    fresh = await world.customer()  # never acted: Segue does not know them yet
    status, body = await http("POST", f"{api}/conversations", token=key,
                              json_body={"customer_id": fresh.session["customer_id"]})
    assert status == 404 and body["error"]["code"] == "not_found"

    status, body = await http("POST", f"{api}/conversations", token=key, json_body={
        "customer_id": cust, "text": "Your order shipped", "attributes": {"order_id": "A-17"}})
    assert status == 201, body
    conv = body["conversation"]
    cid = conv["id"]
    assert conv["customer"]["id"] == cust and conv["state"] == "queued" and conv["updated_ts"] >= conv["created_ts"]
    created = body["events"][0]
    assert created["type"] == "conversation.created" and created["author"]["kind"] == "integration"
    assert created["author"]["name"] == "crm"
    # the customer's open widget sees the new conversation's text at once
    got = await customer.next("event", lambda e: e["type"] == "message" and e["conversation_id"] == cid)
    assert got["data"]["text"] == "Your order shipped" and got["author"]["kind"] == "integration"

    status, body = await http("POST", f"{api}/conversations/{cid}/messages", token=key,
                              json_body={"text": "Invoice ready", "as": {"kind": "bot", "name": "Billing bot"}})
    assert status == 201, body
    got = await customer.next("event", lambda e: e["type"] == "message" and e["data"]["text"] == "Invoice ready")
    assert got["author"]["kind"] == "bot" and got["author"]["name"] == "Billing bot" and got == body["event"]
    # a retried send with the same client_id is stored once
    again = {"text": "once", "client_id": "m-1"}
    s1, b1 = await http("POST", f"{api}/conversations/{cid}/messages", token=key, json_body=again)
    s2, b2 = await http("POST", f"{api}/conversations/{cid}/messages", token=key, json_body=again)
    assert (s1, s2) == (201, 200) and b2["duplicate"] is True and b2["event"]["id"] == b1["event"]["id"]

    # as an agent: only one working on the conversation
    await world.add_agent("ada", name="Ada L")
    status, body = await http("POST", f"{api}/conversations/{cid}/messages", token=key,
                              json_body={"text": "hi", "as": {"kind": "agent", "id": "ada"}})
    assert status == 403 and "ada" in body["error"]["message"]
    ada = await world.agent(await world.login("ada"))
    await ada.next("offer", lambda o: o["conversation"]["id"] == cid)
    await ada.ok("offer.accept", {"conversation_id": cid})
    status, body = await http("POST", f"{api}/conversations/{cid}/messages", token=key,
                              json_body={"text": "Ada here", "as": {"kind": "agent", "id": "ada"}})
    assert status == 201, body
    got = await customer.next("event", lambda e: e["type"] == "message" and e["data"]["text"] == "Ada here")
    assert got["author"] == {"kind": "agent", "id": "ada", "name": "Ada L"}
    status, body = await http("POST", f"{api}/conversations/{cid}/messages", token=key,
                              json_body={"text": "x", "as": {"kind": "agent", "id": "nobody"}})
    assert status == 404

    status, body = await http("POST", f"{api}/conversations/{cid}/notes", token=key, json_body={"text": "VIP"})
    assert status == 201 and body["event"]["visibility"] == "agents"
    await ada.next("event", lambda e: e["type"] == "note" and e["data"]["text"] == "VIP")

    status, body = await http("PATCH", f"{api}/conversations/{cid}/attributes", token=key,
                              json_body={"attributes": {"plan": "pro", "order_id": None}})
    assert status == 200, body
    assert body["attributes"].get("plan") == "pro" and "order_id" not in body["attributes"]
    status, body = await http("PATCH", f"{api}/conversations/{cid}/attributes", token=key,
                              json_body={"attributes": {"bad key": 1}})
    assert status == 400 and body["error"]["code"] == "invalid"

    status, body = await http("POST", f"{api}/conversations/{cid}/close", token=key, json_body={"disposition": "resolved"})
    assert status == 200, body
    assert body["conversation"]["state"] == "closed" and body["conversation"]["disposition"] == "resolved"
    assert body["event"]["author"]["kind"] == "integration"
    got = await customer.next("event", lambda e: e["type"] == "conversation.closed" and e["conversation_id"] == cid)
    assert got["data"]["disposition"] == "resolved"
    status, body = await http("POST", f"{api}/conversations/{cid}/messages", token=key, json_body={"text": "late"})
    assert status == 409 and body["error"]["code"] == "conflict"

    # nothing lost: the log holds every write, in order
    status, body = await http("GET", f"{api}/conversations/{cid}/events", token=key)
    kinds = [(e["type"], e["author"]["kind"]) for e in body["events"] if e["type"] in ("message", "note")]
    assert kinds == [("message", "integration"), ("message", "bot"), ("message", "integration"),
                     ("message", "agent"), ("note", "integration")]


async def test_outreach_by_identity_to_a_named_agent_and_bad_input(world: World) -> None:
    api = f"{world.url}/api/v1"
    key = await _key(world)
    ada_token = await world.add_agent("ada")
    await world.add_agent("bob")
    ada = await world.agent(ada_token)
    bob = await world.agent(await world.login("bob"))

    status, body = await http("POST", f"{api}/conversations", token=key, json_body={
        "identity": {"site": "shop", "id": "42", "name": "Zoe Z", "email": "zoe@example.com"},
        "agent": "bob", "queue": "general"})
    assert status == 201, body
    cid, cust = body["conversation"]["id"], body["conversation"]["customer"]["id"]
    assert body["conversation"]["state"] == "offered" and body["conversation"]["offer"] == {"agent": "bob"}
    offer = await bob.next("offer", lambda o: o["conversation"]["id"] == cid)
    assert offer["conversation"]["customer"]["name"] == "Zoe Z"
    assert not ada.got("offer", lambda o: o["conversation"]["id"] == cid)
    status, body = await http("GET", f"{api}/customers/{cust}", token=key)
    assert status == 200 and body["customer"] == {"id": cust, "name": "Zoe Z", "email": "zoe@example.com",
                                                  "site": "shop", "external_id": "42", "verified": True}

    bad = [
        ({"customer_id": cust, "identity": {"site": "shop", "id": "42"}}, 400, "customer_id"),
        ({}, 400, "customer_id"),
        ({"customer_id": "v_nobody"}, 404, None),
        ({"customer_id": cust, "agent": "nobody"}, 404, None),
        ({"customer_id": cust, "queue": "nowhere"}, 400, "queue"),
        ({"customer_id": cust, "text": ""}, 400, "text"),
        ({"customer_id": cust, "color": "red"}, 400, "color"),
        ({"identity": {"site": "shop"}}, 400, "identity.id"),
    ]
    for payload, want, field in bad:
        status, body = await http("POST", f"{api}/conversations", token=key, json_body=payload)
        assert status == want, (payload, body)
        assert body["error"].get("field") == field, (payload, body)
    status, body = await http("POST", f"{api}/conversations", token=key, data="{not json")
    assert status == 400 and body["error"]["code"] == "bad_json"

    # an agent token writes as that agent only
    status, body = await http("POST", f"{api}/conversations/{cid}/messages", token=ada_token,
                              json_body={"text": "x", "as": {"kind": "bot", "name": "Sneaky"}})
    assert status == 403
    status, body = await http("POST", f"{api}/conversations/{cid}/messages", token=ada_token, json_body={"text": "x"})
    assert status == 403 and body["error"]["code"] == "forbidden"
    # a read-only key cannot write
    reader = await _key(world, ["conversations:read"], "bi")
    status, body = await http("POST", f"{api}/conversations/{cid}/notes", token=reader, json_body={"text": "hi"})
    assert status == 403 and "conversations:write" in body["error"]["message"]
    status, body = await http("POST", f"{api}/conversations/c_missing/close", token=key, json_body={})
    assert status == 404


async def _ids(api: str, token: str, query: str) -> tuple[list[str], dict[str, Any]]:
    status, body = await http("GET", f"{api}/conversations?{query}", token=token)
    assert status == 200, body
    return [c["id"] for c in body["conversations"]], body


async def test_listing_pages_and_polls_with_a_cursor(world: World) -> None:
    api = f"{world.url}/api/v1"
    key = await _key(world)
    known = [await _known_customer(world) for _ in range(2)]
    customers = [c for c, _ in known]
    starters = [cid for _, cid in known]
    cids = []
    for i in range(5):
        cust = customers[i % 2].session["customer_id"]
        status, body = await http("POST", f"{api}/conversations", token=key,
                                  json_body={"customer_id": cust, "text": f"hello {i}"})
        assert status == 201
        cids.append(body["conversation"]["id"])

    # paging: every conversation once, in (updated_ts, id) order
    seen: list[dict[str, Any]] = []
    cursor = ""
    for _ in range(10):
        status, body = await http("GET", f"{api}/conversations?limit=2&state=all" + (f"&cursor={cursor}" if cursor else ""),
                                  token=key)
        assert status == 200 and len(body["conversations"]) <= 2
        seen += body["conversations"]
        cursor = body["next_cursor"]
        if not body["more"]:
            break
    assert sorted(c["id"] for c in seen) == sorted(cids + starters)
    order = [(c["updated_ts"], c["id"]) for c in seen]
    assert order == sorted(order)

    # a CRM polls from its last cursor and sees a close and a rating
    first = cids[0]
    status, _ = await http("POST", f"{api}/conversations/{first}/close", token=key, json_body={"disposition": "done"})
    assert status == 200
    await customers[0].ok("conversation.rate", {"conversation_id": first, "score": 4, "comment": "quick"})
    ids, body = await _ids(api, key, f"state=all&cursor={cursor}")
    changed = {c["id"]: c for c in body["conversations"]}
    assert changed[first]["state"] == "closed" and changed[first]["csat"] == {"score": 4, "comment": "quick"}
    # the default (open) leaves it out; closed finds it, by ms or ISO time
    closed_ts = changed[first]["closed_ts"]
    ids, _ = await _ids(api, key, "limit=500")
    assert first not in ids and set(cids[1:]) <= set(ids)
    ids, _ = await _ids(api, key, f"state=closed&updated_since={closed_ts}")
    assert ids == [first]
    iso = datetime.datetime.fromtimestamp(closed_ts / 1000, datetime.timezone.utc).isoformat().replace("+00:00", "Z")
    ids, _ = await _ids(api, key, f"state=closed&updated_since={iso}")
    assert ids == [first]
    ids, _ = await _ids(api, key, f"state=all&updated_since={changed[first]['updated_ts'] + 1}")
    assert first not in ids

    # filters
    c0 = customers[0].session["customer_id"]
    ids, _ = await _ids(api, key, f"state=all&customer={c0}")
    assert ids and set(ids) == {starters[0], cids[0], cids[2], cids[4]}
    ids, _ = await _ids(api, key, "state=queued&queue=general")
    assert set(ids) == set(cids[1:])
    ids, _ = await _ids(api, key, "state=all&queue=nowhere")
    assert ids == []

    # an agent sees only what they may read; a supervisor sees all
    ada = await world.add_agent("ada")
    ids, _ = await _ids(api, ada, "state=all")
    assert ids == []
    sup = await world.add_agent("sue", role="supervisor")
    ids, _ = await _ids(api, sup, "state=all")
    assert set(ids) == set(cids + starters)

    for query, field in (("state=bogus", "state"), ("cursor=%%%", "cursor"), ("cursor=abc", "cursor"),
                         ("limit=0", "limit"), ("limit=501", "limit"), ("updated_since=yesterday", "updated_since"),
                         ("sort=asc", "sort"), ("queue=a%20b", "queue")):
        status, body = await http("GET", f"{api}/conversations?{query}", token=key)
        assert status == 400 and body["error"]["field"] == field, (query, body)


async def test_sparse_pages_follow_the_cursor_to_the_end(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """A filter that matches little: each request reads a bounded part of the index; pages may be
    short or empty while ``more`` is true, and following the cursor finds every match once."""
    from signaling import listing

    monkeypatch.setattr(listing, "BATCH", 2)
    monkeypatch.setattr(listing, "SCAN_BUDGET", 2)
    api = f"{world.url}/api/v1"
    key = await _key(world)
    cids = []
    for i in range(7):
        status, body = await http("POST", f"{api}/conversations", token=key,
                                  json_body={"identity": {"site": "shop", "id": f"u{i % 3}"}, "text": f"n{i}"})
        assert status == 201, body
        cids.append(body["conversation"]["id"])
    for cid in (cids[1], cids[4]):
        status, _ = await http("POST", f"{api}/conversations/{cid}/close", token=key, json_body={})
        assert status == 200
    found: list[str] = []
    cursor, pages, empty = "", 0, 0
    while True:
        ids, body = await _ids(api, key, "state=closed&limit=5" + (f"&cursor={cursor}" if cursor else ""))
        found += ids
        pages += 1
        empty += not ids
        cursor = body["next_cursor"]
        if not body["more"]:
            break
        assert pages < 20, "the cursor must move on"
    assert found == [cids[1], cids[4]]  # closed in that order
    assert empty >= 1  # a page that read only unmatched entries says "more" with nothing in it


async def test_conversations_stored_before_the_index_are_indexed_at_start(world: World, start_segue: Any) -> None:
    api = f"{world.url}/api/v1"
    key = await _key(world)
    status, body = await http("POST", f"{api}/conversations", token=key,
                              json_body={"identity": {"site": "shop", "id": "7"}, "text": "old"})
    assert status == 201, body
    cid = body["conversation"]["id"]
    keys = world.service.keys
    # as a store from before convs:updated: no index, no marker, no updated_ts
    await world.service.redis.delete(keys.updated_convs, keys.updated_convs + ":built")
    await world.service.redis.hdel(keys.conv(cid), "updated_ts")
    ids, _ = await _ids(api, key, "state=all")
    assert ids == []
    # another node starting on the same Redis builds it once
    other = await start_segue(config=world.segue.config)
    ids, body = await _ids(f"{other.url.rstrip('/')}/api/v1", key, "state=all")
    assert ids == [cid]
    last = body["conversations"][0]["last_event_id"]
    assert await world.service.redis.zscore(keys.updated_convs, cid) == int(last.split("-")[0])
    assert await world.service.store.build_updated_index() == 0  # once
