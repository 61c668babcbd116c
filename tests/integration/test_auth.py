"""Identity and access: visitor tokens, site-vouched identities, agent tokens, and who may read
which conversation — always a clear error, never someone else's data."""

from __future__ import annotations

import time
from typing import Any, AsyncIterator

import pytest

from segue_clients import Peer, Refused, World, http
from server.auth import Signer, sign_identity

SITE_SECRET = "s3cret-of-shop"


@pytest.fixture
async def world(start_segue: Any) -> AsyncIterator[World]:
    node = await start_segue({"auth.sites": {"shop": SITE_SECRET}})
    w = World(node)
    yield w
    await w.close()


async def _refusal(world: World, ns: str, auth: Any) -> dict[str, Any]:
    peer = Peer(world.url, ns)
    world.peers.append(peer)
    with pytest.raises(Refused) as info:
        await peer.connect(auth)
    data = info.value.args[0]
    assert isinstance(data, dict) and data["code"] and data["message"], data
    return data


async def test_customer_cannot_reach_another_customers_conversation(world: World) -> None:
    agent = await world.agent(await world.add_agent("amy"))
    ada = await world.customer()
    cid = (await ada.ok("conversation.start", {"text": "private"}))["conversation"]["id"]
    mallory = await world.customer()
    assert mallory.session["customer_id"] != ada.session["customer_id"]
    for event, payload in [
        ("conversation.resume", {"conversation_id": cid}),
        ("message.send", {"conversation_id": cid, "text": "hi"}),
        ("typing", {"conversation_id": cid, "typing": True}),
        ("read", {"conversation_id": cid, "event_id": "1-0"}),
        ("conversation.close", {"conversation_id": cid}),
        ("conversation.rate", {"conversation_id": cid, "score": 1}),
    ]:
        err = await mallory.fails(event, payload, "forbidden")
        assert "another customer" in err["message"]
    await mallory.fails("conversation.resume", {"conversation_id": "c_doesnotexist"}, "not_found")
    assert (await mallory.ok("conversations.list"))["conversations"] == []
    assert not mallory.got("event")
    # ada's conversation is untouched
    events = (await ada.ok("conversation.resume", {"conversation_id": cid}))["events"]
    assert [e["type"] for e in events] == ["conversation.created", "conversation.queued", "message"]
    await agent.next("offer")


async def test_agent_reaches_only_assigned_conversations_unless_supervisor(world: World) -> None:
    amy = await world.agent(await world.add_agent("amy", capacity={"chat": 1}))
    customer = await world.customer()
    cid = (await customer.ok("conversation.start", {"text": "hi"}))["conversation"]["id"]
    await amy.next("offer")
    await amy.ok("offer.accept", {"conversation_id": cid})
    other = await world.agent(await world.add_agent("otto"), available=False)
    err = await other.fails("conversation.open", {"conversation_id": cid}, "forbidden")
    assert "supervisor" in err["message"]
    await other.fails("message.send", {"conversation_id": cid, "text": "hi"}, "forbidden")
    await other.fails("note.add", {"conversation_id": cid, "text": "hi"}, "forbidden")
    await other.fails("conversation.close", {"conversation_id": cid}, "forbidden")
    await other.fails("offer.accept", {"conversation_id": cid}, "conflict")
    status, body = await http("GET", f"{world.url}/api/v1/conversations/{cid}/events",
                              token=await world.login("otto"))
    assert status == 403 and body["error"]["code"] == "forbidden"

    boss = await world.agent(await world.add_agent("sue", role="supervisor"), available=False)
    opened = await boss.ok("conversation.open", {"conversation_id": cid})
    assert opened["conversation"]["agent"]["id"] == "amy"
    await boss.ok("note.add", {"conversation_id": cid, "text": "watching"})
    # the supervisor now watches live
    await customer.ok("message.send", {"conversation_id": cid, "text": "are you there"})
    await boss.next("event", lambda e: e["type"] == "message" and e["data"]["text"] == "are you there")
    assert cid in [c["id"] for c in (await boss.ok("conversations.list"))["conversations"]]


async def test_bad_tokens_are_refused_clearly(world: World) -> None:
    signer = Signer(world.segue.node.secret)
    await world.add_agent("tom")
    cases = [
        ("/agent", {"v": 1, "token": "garbage"}, "bad_token"),
        ("/agent", {"v": 1, "token": Signer(b"another-server").sign("a", "tom", 60)}, "bad_token"),
        ("/agent", {"v": 1, "token": signer.sign("a", "tom", -10, ver=1)}, "bad_token"),  # expired
        ("/agent", {"v": 1, "token": signer.sign("v", "tom", 60)}, "bad_token"),  # a visitor token
        ("/agent", {"v": 1, "token": signer.sign("a", "ghost", 60, ver=1)}, "bad_token"),  # no such agent
        ("/agent", {"v": 1}, "invalid"),
        ("/agent", None, "invalid"),
        ("/agent", {"v": 2, "token": "x"}, "unsupported_version"),
        ("/customer", {"v": 1, "visitor_token": "forged.token"}, "bad_token"),
        ("/customer", {"v": 1, "visitor_token": signer.sign("v", "v_x", -5)}, "bad_token"),
        ("/customer", {"v": 1, "surprise": 1}, "invalid"),
    ]
    for ns, auth, code in cases:
        data = await _refusal(world, ns, auth)
        assert data["code"] == code, (auth, data)
    expired = await _refusal(world, "/agent", {"v": 1, "token": signer.sign("a", "tom", -10, ver=1)})
    assert "expired" in expired["message"]
    # the server keeps serving
    assert (await world.customer()).session["customer_id"]


async def test_password_change_revokes_old_tokens(world: World) -> None:
    token = await world.add_agent("una")
    sup = await world.add_agent("boss", role="supervisor")
    status, _ = await http("PATCH", f"{world.url}/api/v1/agents/una", token=sup, json_body={"password": "new-pass"})
    assert status == 200
    data = await _refusal(world, "/agent", {"v": 1, "token": token})
    assert data["code"] == "bad_token" and "log in again" in data["message"]
    status, body = await http("GET", f"{world.url}/api/v1/me", token=token)
    assert status == 401 and body["error"]["code"] == "bad_token"
    fresh = await world.login("una", "new-pass")
    assert (await world.agent(fresh)).session["agent"]["id"] == "una"


async def test_verified_identity_joins_devices_and_earlier_visits(world: World) -> None:
    agent = await world.agent(await world.add_agent("ivy"))
    # anonymous first, on the laptop
    laptop = await world.customer()
    anon = (await laptop.ok("conversation.start", {"text": "before login"}))["conversation"]["id"]
    await agent.next("offer", lambda o: o["conversation"]["id"] == anon)
    identity = sign_identity(SITE_SECRET, "user-42", "Grace Hopper", "grace@example.com")
    # then logged in on the laptop (same visitor token) and on a phone (new visitor)
    laptop2 = await world.customer(visitor_token=laptop.session["visitor_token"], site="shop", identity=identity)
    phone = await world.customer(site="shop", identity=identity)
    assert laptop2.session["customer_id"] == phone.session["customer_id"]
    assert phone.session["verified"] is True and phone.session["name"] == "Grace Hopper"
    from_phone = (await phone.ok("conversation.start", {"text": "from my phone"}))["conversation"]
    assert from_phone["customer"] == {"id": phone.session["customer_id"], "name": "Grace Hopper",
                                      "email": "grace@example.com", "verified": True}
    listed = [c["id"] for c in (await laptop2.ok("conversations.list"))["conversations"]]
    assert listed == [from_phone["id"], anon]
    # the phone can read the laptop's earlier anonymous conversation
    await phone.ok("conversation.resume", {"conversation_id": anon})

    bad_sig = dict(identity, sig="0" * 64)
    data = await _refusal(world, "/customer", {"v": 1, "site": "shop", "identity": bad_sig})
    assert data["code"] == "bad_identity" and "signature" in data["message"]
    old = sign_identity(SITE_SECRET, "user-42", ts=int(time.time()) - 10 * 86400)
    data = await _refusal(world, "/customer", {"v": 1, "site": "shop", "identity": old})
    assert data["code"] == "bad_identity" and "expired" in data["message"]
    data = await _refusal(world, "/customer", {"v": 1, "site": "nope", "identity": identity})
    assert data["code"] == "bad_identity"
