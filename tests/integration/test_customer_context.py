"""Context that travels with the customer, through the real stack (real Redis, Socket.IO clients):
custom attributes (set at start, set later, limits, access, the log, the summary, the next
conversation) and the page trail (bounded, repeats ignored, seen by the agent, bad URLs refused)."""

from __future__ import annotations

from typing import Any, AsyncIterator

import pytest

from signaling import Principal
from signaling.errors import ProtocolError
from segue_clients import Peer, World


@pytest.fixture
async def world(segue: Any) -> AsyncIterator[World]:
    w = World(segue)
    yield w
    await w.close()


async def accepted(world: World, agent: Peer, customer: Peer, **start: Any) -> tuple[str, dict[str, Any]]:
    """Start a conversation as ``customer`` and have ``agent`` accept it: (id, the accept's ack)."""
    started = await customer.ok("conversation.start", start)
    cid = started["conversation"]["id"]
    await agent.next("offer", lambda o: o["conversation"]["id"] == cid)
    return cid, await agent.ok("offer.accept", {"conversation_id": cid})


async def test_attributes_set_at_start_and_later_follow_the_customer(world: World) -> None:
    agent = await world.agent(await world.add_agent("alice", name="Alice"))
    customer = await world.customer()
    cust_id = customer.session["customer_id"]

    cid, acc = await accepted(world, agent, customer, text="Hi",
                              attributes={"plan": "pro", "order_id": "A-1001", "seats": 12, "trial": False})
    assert acc["conversation"]["attributes"] == {"order_id": "A-1001", "plan": "pro", "seats": 12, "trial": False}
    logged = [e for e in acc["events"] if e["type"] == "attributes.updated"]
    assert len(logged) == 1 and logged[0]["visibility"] == "agents"
    assert logged[0]["data"]["attributes"]["plan"] == "pro"
    # the customer's own summary does not carry them, and agents-only events never reach them
    assert "attributes" not in (await customer.ok("conversations.list"))["conversations"][0]

    # set later: a change and a delete; the agent gets the event and a new summary live
    n = len(agent.pushed)
    result = await customer.ok("attributes.set", {"attributes": {"plan": "enterprise", "trial": None, "score": 4.5}})
    assert result["attributes"] == {"order_id": "A-1001", "plan": "enterprise", "score": 4.5, "seats": 12}
    ev = await agent.next("event", lambda e: e["type"] == "attributes.updated", after=n)
    assert ev["conversation_id"] == cid and ev["author"]["id"] == cust_id
    assert ev["data"]["attributes"] == {"plan": "enterprise", "trial": None, "score": 4.5}
    summ = await agent.next("conversation", lambda s: s["id"] == cid and s["attributes"].get("plan") == "enterprise", after=n)
    assert "trial" not in summ["attributes"]
    assert not customer.got("event", lambda e: e["type"] == "attributes.updated")

    # setting the same values again changes nothing and logs nothing
    before = [e["type"] for e in (await agent.ok("conversation.open", {"conversation_id": cid}))["events"]]
    await customer.ok("attributes.set", {"attributes": {"plan": "enterprise"}, "conversation_id": cid})
    after = [e["type"] for e in (await agent.ok("conversation.open", {"conversation_id": cid}))["events"]]
    assert after.count("attributes.updated") == before.count("attributes.updated") == 2

    # they survive into the customer's next conversation
    await agent.ok("conversation.close", {"conversation_id": cid, "disposition": "resolved"})
    cid2, acc2 = await accepted(world, agent, customer, text="Me again")
    assert cid2 != cid
    assert acc2["conversation"]["attributes"] == {"order_id": "A-1001", "plan": "enterprise", "score": 4.5, "seats": 12}
    # ... and a later change reaches the open one, not the closed one
    await customer.ok("attributes.set", {"attributes": {"plan": "basic"}})
    opened = await agent.ok("conversation.open", {"conversation_id": cid2})
    assert opened["conversation"]["attributes"]["plan"] == "basic"
    closed = await agent.ok("conversation.open", {"conversation_id": cid})
    assert closed["conversation"]["attributes"]["plan"] == "enterprise"


async def test_attribute_limits_and_access(world: World) -> None:
    agent = await world.agent(await world.add_agent("alice"))
    ada = await world.customer()
    bob = await world.customer()
    cid, _ = await accepted(world, agent, ada, text="Hi", attributes={"plan": "pro"})

    for attributes, field in [
        ({"1plan": "x"}, "attributes.1plan"),
        ({"plan id": "x"}, "attributes.plan id"),
        ({"plan": "x" * 1001}, "attributes.plan"),
        ({"plan": ["a"]}, "attributes.plan"),
        ({"plan": {"a": 1}}, "attributes.plan"),
        ({"n": 2**60}, "attributes.n"),
        ({f"k{i}": i for i in range(51)}, "attributes"),
    ]:
        err = await ada.fails("attributes.set", {"attributes": attributes}, "invalid")
        assert err["field"] == field, (attributes, err)
    err = await ada.fails("conversation.start", {"attributes": {"plan": "x" * 2000}}, "invalid")
    assert err["field"] == "attributes.plan"
    err = await ada.fails("attributes.set", {}, "invalid")
    assert err["field"] == "attributes"
    # 50 per customer in total: one already set (plan), 49 more fit, the 51st does not
    await ada.ok("attributes.set", {"attributes": {f"k{i}": i for i in range(49)}})
    err = await ada.fails("attributes.set", {"attributes": {"one_more": 1}}, "invalid")
    assert err["field"] == "attributes" and "50" in err["message"]
    await ada.ok("attributes.set", {"attributes": {"k0": None, "one_more": 1}})  # delete one, add one: fits

    # another customer's conversation
    await bob.fails("attributes.set", {"attributes": {"plan": "free"}, "conversation_id": cid}, "forbidden")
    await bob.fails("attributes.set", {"attributes": {"plan": "free"}, "conversation_id": "c_nope"}, "not_found")
    opened = await agent.ok("conversation.open", {"conversation_id": cid})
    assert opened["conversation"]["attributes"]["plan"] == "pro"

    # the service method (what the REST API calls): agents who may read the customer, not others
    service = world.service
    ada_id, bob_id = ada.session["customer_id"], bob.session["customer_id"]
    alice = Principal("agent", "alice", "Alice", account=await service.directory.get("alice"))
    out = await service.set_attributes(alice, ada_id, {"plan": "vip"}, cid)
    assert out["attributes"]["plan"] == "vip"
    out = await service.set_attributes(alice, ada_id, {"region": "eu", "k1": None})  # 50 at most
    assert out["attributes"]["region"] == "eu"
    await world.add_agent("carol")
    carol = Principal("agent", "carol", "Carol", account=await service.directory.get("carol"))
    for args in [(ada_id, {"plan": "x"}, cid), (ada_id, {"plan": "x"}, None)]:
        with pytest.raises(ProtocolError) as exc:
            await service.set_attributes(carol, *args)
        assert exc.value.code == "forbidden"
    with pytest.raises(ProtocolError) as exc:
        await service.set_attributes(alice, bob_id, {"plan": "x"}, cid)
    assert exc.value.code == "invalid" and exc.value.field == "conversation_id"
    with pytest.raises(ProtocolError) as exc:
        await service.set_attributes(alice, "v_nobody", {"plan": "x"})
    assert exc.value.code == "not_found"
    with pytest.raises(ProtocolError) as exc:
        await service.set_attributes(alice, ada_id, {"bad key": 1}, cid)
    assert exc.value.code == "invalid" and exc.value.field == "attributes.bad key"
    ada_p = Principal("customer", ada_id, "Ada")
    with pytest.raises(ProtocolError) as exc:
        await service.set_attributes(ada_p, bob_id, {"plan": "x"})
    assert exc.value.code == "forbidden"
    # nothing stored was lost along the way
    opened = await agent.ok("conversation.open", {"conversation_id": cid})
    assert opened["conversation"]["attributes"]["plan"] == "vip"
    assert opened["conversation"]["attributes"]["region"] == "eu"
    assert ada.sio.connected and bob.sio.connected


async def test_page_trail_bounded_and_seen_by_the_agent(world: World) -> None:
    agent = await world.agent(await world.add_agent("alice"))
    customer = await world.customer()
    cust_id = customer.session["customer_id"]
    redis = world.service.redis
    pages_key = world.service.keys.customer_pages(cust_id)

    # before any conversation: kept, but with a TTL (a visitor who never acts leaves no permanent record)
    for i in range(55):
        await customer.ok("page.view", {"url": f"https://shop.example/p/{i}", "title": f"Product {i}"})
    assert await redis.llen(pages_key) == 50
    assert await redis.ttl(pages_key) > 0
    # a repeat of the same URL within a few seconds counts once
    dup = await customer.ok("page.view", {"url": "https://shop.example/p/54", "title": "Product 54"})
    assert dup.get("duplicate") is True
    assert await redis.llen(pages_key) == 50

    # bad input is refused, naming the field
    for payload, field in [({"url": "javascript:alert(1)"}, "url"), ({"url": "/relative"}, "url"),
                           ({"url": "https://x.example/" + "a" * 2048}, "url"), ({}, "url"),
                           ({"url": "https://x.example/", "title": "t" * 513}, "title"),
                           ({"url": "https://x.example/", "extra": 1}, "extra")]:
        err = await customer.fails("page.view", payload, "invalid")
        assert err["field"] == field, (payload, err)

    cid, acc = await accepted(world, agent, customer, text="Help with product 54")
    assert await redis.ttl(pages_key) == -1  # the customer acted: the trail is kept
    pages = acc["customer"]["pages"]
    assert len(pages) == 50
    assert pages[0]["url"] == "https://shop.example/p/54" and pages[0]["title"] == "Product 54"
    assert pages[-1]["url"] == "https://shop.example/p/5"
    assert all(isinstance(p["ts"], int) for p in pages)

    # during the conversation: logged (agents only), and on the trail
    n = len(agent.pushed)
    await customer.ok("page.view", {"url": "https://shop.example/checkout", "title": "Checkout <b>"})
    ev = await agent.next("event", lambda e: e["type"] == "page.viewed", after=n)
    assert ev["visibility"] == "agents" and ev["conversation_id"] == cid
    assert ev["data"] == {"url": "https://shop.example/checkout", "title": "Checkout <b>"}
    assert not customer.got("event", lambda e: e["type"] == "page.viewed")
    opened = await agent.ok("conversation.open", {"conversation_id": cid})
    assert opened["customer"]["pages"][0]["url"] == "https://shop.example/checkout"
    assert len(opened["customer"]["pages"]) == 50
    resumed = await customer.ok("conversation.resume", {"conversation_id": cid})
    assert "customer" not in resumed and all(e["type"] != "page.viewed" for e in resumed["events"])
    # an agent who never served this customer does not see it
    other = await world.agent(await world.add_agent("bob"), available=False)
    await other.fails("conversation.open", {"conversation_id": cid}, "forbidden")


async def test_a_visitor_who_signs_in_brings_attributes_and_pages(start_segue: Any) -> None:
    from server.auth import sign_identity

    node = await start_segue({"auth.sites": {"shop": "site-secret-for-tests"}})
    world = World(node)
    try:
        agent = await world.agent(await world.add_agent("alice"))
        visitor = await world.customer()
        token = visitor.session["visitor_token"]
        await visitor.ok("attributes.set", {"attributes": {"cart": "3 items", "plan": "trial"}})
        await visitor.ok("page.view", {"url": "https://shop.example/pricing", "title": "Pricing"})
        await visitor.close()
        # the same browser, now signed in on the site: a verified customer with context of their own
        identity = sign_identity("site-secret-for-tests", "user-7", "Grace")
        customer = await world.customer(visitor_token=token, site="shop", identity=identity)
        assert customer.session["customer_id"].startswith("u_")
        await customer.ok("attributes.set", {"attributes": {"plan": "pro"}})
        await customer.ok("page.view", {"url": "https://shop.example/account", "title": "Account"})
        cid, acc = await accepted(world, agent, customer, text="Hi")
        # the identity's own value wins over the visitor's; the visitor's other keys come along
        assert acc["conversation"]["attributes"] == {"cart": "3 items", "plan": "pro"}
        assert [p["url"] for p in acc["customer"]["pages"]] == ["https://shop.example/account",
                                                                 "https://shop.example/pricing"]
        # and the visitor's keys are gone (moved, not copied)
        redis, keys = world.service.redis, world.service.keys
        assert not await redis.exists(keys.customer_attrs(visitor.session["customer_id"]))
        assert not await redis.exists(keys.customer_pages(visitor.session["customer_id"]))
    finally:
        await world.close()


async def test_page_views_are_rate_limited_per_customer(world: World) -> None:
    customer = await world.customer()
    for i in range(60):
        await customer.ok("page.view", {"url": f"https://shop.example/{i}"})
    err = await customer.fails("page.view", {"url": "https://shop.example/one-too-many"}, "rate_limited")
    assert err["retry_after_s"] >= 1 and "page views" in err["message"]
    # the trail kept the latest 50, the connection is fine, and another customer is not affected
    assert len(await world.service.store.pages(customer.session["customer_id"])) == 50
    await customer.ok("conversations.list")
    other = await world.customer()
    await other.ok("page.view", {"url": "https://shop.example/"})
