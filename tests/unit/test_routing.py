"""Routing rules, driven through the real Redis (the session's embedded redis-server).

Time is a hand-driven clock passed to the Router (``clock=``), so expiry, overflow, idle order and
estimated waits are exact without sleeping. One test runs on Redis ``TIME`` instead.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Callable

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from signaling.routing import Offer, Presence, QueueStats, Router, RoutingError

T0 = 1_700_000_000.0

QUEUES = [
    {"name": "general", "answer_target_s": 30},
    {"name": "billing", "skills": ["billing"], "answer_target_s": 20, "overflow_after_s": 60, "overflow_queue": "general"},
    {"name": "vip", "skills": ["vip"], "answer_target_s": 10},
]


class Clock:
    """Seconds since the epoch, moved by hand."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest_asyncio.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_router(make_config: Callable[..., Any], redis_client: aioredis.Redis, clock: Clock) -> Callable[..., Router]:
    def make(overrides: dict[str, Any] | None = None, **kwargs: Any) -> Router:
        cfg = make_config({"routing.queues": QUEUES, "routing.offer_timeout_s": 20, **(overrides or {})})
        kwargs.setdefault("clock", clock)
        return Router(redis_client, cfg.redis.key_prefix, cfg.routing, **kwargs)

    return make


@pytest.fixture
def router(make_router: Callable[..., Router]) -> Router:
    return make_router()


async def add_agent(
    router: Router,
    agent_id: str,
    skills: list[str] | None = None,
    capacity: dict[str, int] | None = None,
    channels: list[str] | None = None,
    available: bool = True,
) -> None:
    capacity = capacity if capacity is not None else {"chat": 3, "voice": 1}
    await router.register_agent(agent_id, skills or [], capacity, channels if channels is not None else list(capacity))
    if available:
        await router.set_presence(agent_id, Presence.AVAILABLE)


def pairs(offers: list[Offer]) -> list[tuple[str, str]]:
    return [(o.conversation_id, o.agent_id) for o in offers]


# -- selection ----------------------------------------------------------------------------------


async def test_offer_goes_to_longest_idle_agent(router: Router, clock: Clock) -> None:
    for name in ("carol", "alice", "bob"):  # carol has been available longest
        await add_agent(router, name)
        clock.advance(1)
    await router.enqueue("c1", "general", "chat")
    offers = await router.route()
    assert pairs(offers) == [("c1", "carol")]
    assert offers[0].kind == "new" and offers[0].queue == "general" and offers[0].channel == "chat"
    assert offers[0].expires_in_s == 20

    # carol now has a conversation in progress, so the idle agents come first, longest idle first
    await router.enqueue("c2", "general", "chat")
    await router.enqueue("c3", "general", "chat")
    assert pairs(await router.route()) == [("c2", "alice"), ("c3", "bob")]
    # everyone holds one: back to the longest idle among equals
    await router.enqueue("c4", "general", "chat")
    assert pairs(await router.route()) == [("c4", "carol")]


async def test_release_restarts_idle_clock(router: Router, clock: Clock) -> None:
    await add_agent(router, "alice")
    clock.advance(1)
    await add_agent(router, "bob")
    await router.enqueue("c1", "general", "chat")
    assert pairs(await router.route()) == [("c1", "alice")]
    assert await router.accept("alice", "c1")
    clock.advance(10)
    assert await router.release("alice", "c1")
    state = await router.agent("alice")
    assert state is not None and state.idle_since == clock.now and state.conversations == {}
    # alice was available first, but her idle clock restarted when her conversation ended
    await router.enqueue("c2", "general", "chat")
    assert pairs(await router.route()) == [("c2", "bob")]
    assert not await router.release("alice", "c1")  # already released


async def test_becoming_available_restarts_idle_clock(router: Router, clock: Clock) -> None:
    await add_agent(router, "alice")
    clock.advance(1)
    await add_agent(router, "bob")
    clock.advance(1)
    await router.set_presence("alice", Presence.AWAY)
    await router.set_presence("alice", "available")
    await router.set_presence("bob", Presence.AVAILABLE)  # already available: clock unchanged
    await router.enqueue("c1", "general", "chat")
    assert pairs(await router.route()) == [("c1", "bob")]


async def test_skills_of_queue_and_conversation_must_all_match(router: Router) -> None:
    await add_agent(router, "generalist")
    await add_agent(router, "biller", skills=["billing"])
    await add_agent(router, "spanish-biller", skills=["billing", "spanish"])
    await router.enqueue("b1", "billing", "chat", required_skills=["spanish"])
    await router.enqueue("b2", "billing", "chat")
    await router.enqueue("v1", "vip", "chat")  # nobody has vip
    offers = await router.route()
    assert pairs(offers) == [("b1", "spanish-biller"), ("b2", "biller")]
    assert await router.position("v1") == (1, 10.0)


async def test_fifo_within_queue_and_no_head_of_line_blocking(router: Router, clock: Clock) -> None:
    await add_agent(router, "chat-only", capacity={"chat": 1})
    await router.enqueue("voice1", "general", "voice")  # nobody takes voice
    clock.advance(1)
    await router.enqueue("chat1", "general", "chat")
    clock.advance(1)
    await router.enqueue("chat2", "general", "chat")
    assert pairs(await router.route()) == [("chat1", "chat-only")]
    assert await router.position("voice1") == (1, 28.0)  # waited 2 s of the 30 s target
    assert await router.position("chat2") == (2, 58.0)  # the line moves from its head


# -- capacity and presence ----------------------------------------------------------------------


async def test_per_channel_capacity_counts_offers_and_assignments(router: Router) -> None:
    await add_agent(router, "alice", capacity={"chat": 2, "voice": 1})
    for i in range(3):
        await router.enqueue(f"chat{i}", "general", "chat")
    for i in range(2):
        await router.enqueue(f"voice{i}", "general", "voice")
    offers = await router.route()
    assert sorted(o.conversation_id for o in offers) == ["chat0", "chat1", "voice0"]
    state = await router.agent("alice")
    assert state is not None and state.load == {"chat": 2, "voice": 1}
    # offers not yet accepted already count: nothing more for alice
    assert await router.route() == []
    assert await router.accept("alice", "chat0")
    assert await router.route() == []
    # a declined offer frees its slot, but the declined conversation is not offered back to her
    assert await router.decline("alice", "chat1")
    assert pairs(await router.route()) == [("chat2", "alice")]
    assert await router.release("alice", "chat0")
    assert await router.route() == []  # chat1 was declined by alice; chat2 holds the other slot


async def test_one_route_call_fills_every_free_slot_and_no_more(router: Router) -> None:
    for name in ("alice", "bob", "carol"):
        await add_agent(router, name, capacity={"chat": 2, "voice": 1})
    for i in range(10):
        await router.enqueue(f"chat{i}", "general", "chat")
    for i in range(5):
        await router.enqueue(f"voice{i}", "general", "voice")
    offers = await router.route()
    assert len(offers) == 9
    for state in await router.agents():
        assert state.load == {"chat": 2, "voice": 1}
    # oldest first: the offered chats are the first six enqueued, the voices the first three
    assert sorted(o.conversation_id for o in offers) == sorted([f"chat{i}" for i in range(6)] + ["voice0", "voice1", "voice2"])
    assert await router.route() == []
    assert [s.waiting for s in await router.queue_stats()] == [6, 0, 0]


async def test_capacity_change_applies_to_new_offers_only(router: Router) -> None:
    await add_agent(router, "alice", capacity={"chat": 2})
    await router.enqueue("c1", "general", "chat")
    await router.enqueue("c2", "general", "chat")
    assert len(await router.route()) == 2
    await router.register_agent("alice", [], {"chat": 1}, ["chat"])
    state = await router.agent("alice")
    assert state is not None and state.presence is Presence.AVAILABLE and state.load == {"chat": 2}
    assert await router.accept("alice", "c1") and await router.accept("alice", "c2")
    await router.release("alice", "c1")
    await router.enqueue("c3", "general", "chat")
    assert await router.route() == []  # 1 held, capacity now 1
    await router.release("alice", "c2")
    assert pairs(await router.route()) == [("c3", "alice")]


async def test_channel_preferences(router: Router) -> None:
    # capacity for voice, but alice does not take voice right now
    await add_agent(router, "alice", capacity={"chat": 3, "voice": 1}, channels=["chat"])
    await router.enqueue("v1", "general", "voice")
    assert await router.route() == []
    await router.register_agent("alice", [], {"chat": 3, "voice": 1}, ["chat", "voice"])
    assert pairs(await router.route()) == [("v1", "alice")]


async def test_video_calls_count_against_voice_unless_the_agent_takes_video(router: Router) -> None:
    # alice takes no "video" channel: a video call uses her voice slot (one call at a time)
    await add_agent(router, "alice", capacity={"chat": 2, "voice": 1})
    await router.enqueue("vid1", "general", "video")
    await router.enqueue("voice1", "general", "voice")
    offers = await router.route()
    assert [(o.conversation_id, o.channel) for o in offers] == [("vid1", "video")]  # the offer says video
    state = await router.agent("alice")
    assert state is not None and state.load == {"voice": 1}
    assert await router.accept("alice", "vid1")
    routed = await router.conversation("vid1")
    assert routed is not None and routed.assigned == {"alice": "voice"}
    assert await router.route() == []  # voice1 waits: her only call slot is taken
    # a direct offer (transfer) follows the same rule
    with pytest.raises(RoutingError, match="at capacity for voice"):
        await router.offer_to("vid2", "alice", "video", raise_on_refusal=True)
    # bob takes video as a channel of its own: video calls count there, his voice slot stays free
    await add_agent(router, "bob", capacity={"voice": 1, "video": 1})
    await router.enqueue("vid3", "general", "video")
    assert sorted(pairs(await router.route())) == [("vid3", "bob"), ("voice1", "bob")]
    state = await router.agent("bob")
    assert state is not None and state.load == {"voice": 1, "video": 1}
    # carol takes chat only: never offered a video call
    await add_agent(router, "carol", capacity={"chat": 3})
    await router.enqueue("vid4", "general", "video")
    assert await router.route() == []


async def test_a_call_in_a_chat_holds_a_voice_slot_until_it_ends(router: Router) -> None:
    # alice (chat 3, voice 1) takes a chat; the chat escalates to a voice call
    await add_agent(router, "alice", capacity={"chat": 3, "voice": 1})
    await router.enqueue("chat1", "general", "chat")
    assert pairs(await router.route()) == [("chat1", "alice")]
    assert await router.accept("alice", "chat1")
    assert await router.call_started("alice", "chat1", "voice")
    state = await router.agent("alice")
    assert state is not None and state.load == {"chat": 1, "voice": 1}
    # a call from the web is not offered to her now (her one voice slot is the escalated call) ...
    await router.enqueue("voice1", "general", "voice")
    assert await router.route() == []
    with pytest.raises(RoutingError, match="at capacity for voice"):
        await router.offer_to("vid1", "alice", "video", raise_on_refusal=True)
    # ... but chats still are
    await router.enqueue("chat2", "general", "chat")
    assert pairs(await router.route()) == [("chat2", "alice")]
    assert await router.accept("alice", "chat2")
    # the call ends: the voice slot frees and the waiting call is offered
    assert await router.call_ended("alice", "chat1")
    assert not await router.call_ended("alice", "chat1")  # nothing held any more
    assert pairs(await router.route()) == [("voice1", "alice")]
    assert await router.accept("alice", "voice1")
    # a call in a conversation routed as a call counts once
    assert await router.call_started("alice", "voice1", "voice")
    state = await router.agent("alice")
    assert state is not None and state.load == {"chat": 2, "voice": 1}
    # releasing a conversation frees its call's slot too
    assert await router.call_started("alice", "chat2", "voice")
    assert (await router.agent("alice")).load == {"chat": 2, "voice": 2}  # type: ignore[union-attr]
    assert await router.release("alice", "chat2")
    assert (await router.agent("alice")).load == {"chat": 1, "voice": 1}  # type: ignore[union-attr]
    with pytest.raises(RoutingError, match="channel"):
        await router.call_started("alice", "chat1", "not a channel")


async def test_away_and_offline_get_no_new_offers_but_keep_existing(router: Router) -> None:
    await add_agent(router, "alice")
    await add_agent(router, "bob", available=False)  # registered agents start offline
    bob = await router.agent("bob")
    assert bob is not None and bob.presence is Presence.OFFLINE
    await router.enqueue("c1", "general", "chat")
    assert pairs(await router.route()) == [("c1", "alice")]
    await router.set_presence("alice", Presence.AWAY)
    await router.enqueue("c2", "general", "chat")
    assert await router.route() == []
    assert await router.accept("alice", "c1")  # her offer stayed
    await router.set_presence("alice", Presence.OFFLINE)
    assert await router.route() == []
    await router.set_presence("bob", Presence.AVAILABLE)
    assert pairs(await router.route()) == [("c2", "bob")]
    assert (await router.conversation("c1")).assigned == {"alice": "chat"}  # type: ignore[union-attr]


# -- offers -------------------------------------------------------------------------------------


async def test_offer_timeout_goes_to_next_agent_and_sets_missed_agent_away(router: Router, clock: Clock) -> None:
    await add_agent(router, "alice")
    clock.advance(1)
    await add_agent(router, "bob")
    await router.enqueue("c1", "general", "chat")
    assert pairs(await router.route()) == [("c1", "alice")]
    clock.advance(19.9)
    assert await router.expire_offers() == []
    clock.advance(0.1)
    expired = await router.expire_offers()
    assert pairs(expired) == [("c1", "alice")] and expired[0].agent_set_away
    alice = await router.agent("alice")
    assert alice is not None and alice.presence is Presence.AWAY and alice.presence_reason == "missed"
    assert alice.load == {}
    assert not await router.accept("alice", "c1")  # too late
    assert pairs(await router.route()) == [("c1", "bob")]
    # alice comes back; bob declines: c1 is not offered to alice again (she let it time out)
    await router.set_presence("alice", Presence.AVAILABLE)
    assert (await router.agent("alice")).presence_reason == ""  # type: ignore[union-attr]
    assert await router.decline("bob", "c1")
    assert await router.route() == []
    assert (await router.conversation("c1")).skipped == ["alice", "bob"]  # type: ignore[union-attr]


async def test_late_accept_loses_even_before_expiry_runs(router: Router, clock: Clock) -> None:
    await add_agent(router, "alice")
    await router.enqueue("c1", "general", "chat")
    await router.route()
    clock.advance(20)
    assert not await router.accept("alice", "c1")
    assert pairs(await router.expire_offers()) == [("c1", "alice")]


async def test_missed_offer_without_away_rule(make_router: Callable[..., Router], clock: Clock) -> None:
    router = make_router(away_on_missed=False)
    await add_agent(router, "alice")
    await router.enqueue("c1", "general", "chat")
    await router.route()
    clock.advance(21)
    (expired,) = await router.expire_offers()
    assert not expired.agent_set_away
    assert (await router.agent("alice")).presence is Presence.AVAILABLE  # type: ignore[union-attr]


async def test_decline_returns_to_front_of_queue(router: Router, clock: Clock) -> None:
    await add_agent(router, "alice", capacity={"chat": 1})
    await router.enqueue("c1", "general", "chat")
    assert pairs(await router.route()) == [("c1", "alice")]
    clock.advance(5)
    await router.enqueue("c2", "general", "chat")
    assert await router.position("c2") == (1, 30.0)
    assert await router.decline("alice", "c1")
    assert not await router.decline("alice", "c1")  # nothing left to decline
    assert await router.position("c1") == (1, 25.0)  # its place back, its wait keeps counting
    assert await router.position("c2") == (2, 55.0)
    # declining does not restart the idle clock
    assert (await router.agent("alice")).idle_since == T0  # type: ignore[union-attr]
    await add_agent(router, "bob", capacity={"chat": 1})
    assert pairs(await router.route()) == [("c1", "bob"), ("c2", "alice")]


async def test_accept_only_by_the_offered_agent_and_only_once(router: Router) -> None:
    await add_agent(router, "alice")
    await add_agent(router, "bob")
    await router.enqueue("c1", "general", "chat")
    (offer,) = await router.route()
    other = "bob" if offer.agent_id == "alice" else "alice"
    assert not await router.accept(other, "c1")
    assert await router.accept(offer.agent_id, "c1")
    assert not await router.accept(offer.agent_id, "c1")
    assert not await router.decline(offer.agent_id, "c1")
    conv = await router.conversation("c1")
    assert conv is not None and conv.state == "assigned" and conv.assigned == {offer.agent_id: "chat"}
    assert await router.position("c1") is None


async def test_cancel_while_queued_offered_or_assigned(router: Router, clock: Clock) -> None:
    await add_agent(router, "alice", capacity={"chat": 2})
    await router.enqueue("q1", "general", "chat")
    await router.cancel("q1")
    assert await router.position("q1") is None and await router.conversation("q1") is None
    assert await router.cancel("q1") is None  # unknown: nothing to do

    await router.enqueue("o1", "general", "chat")
    await router.enqueue("a1", "general", "chat")
    assert len(await router.route()) == 2
    assert await router.accept("alice", "a1")
    revoked = await router.cancel("o1")
    assert revoked is not None and (revoked.conversation_id, revoked.agent_id) == ("o1", "alice")
    assert await router.expire_offers() == []  # no stale offer left behind
    clock.advance(3)
    assert await router.cancel("a1") is None
    alice = await router.agent("alice")
    assert alice is not None and alice.load == {} and alice.idle_since == clock.now
    assert [s.waiting for s in await router.queue_stats()] == [0, 0, 0]


# -- direct offers (transfer) -------------------------------------------------------------------


async def test_warm_transfer_to_named_agent(router: Router) -> None:
    await add_agent(router, "alice")
    await add_agent(router, "bob")
    await router.enqueue("c1", "general", "chat")
    (offer,) = await router.route()
    first, second = offer.agent_id, ("bob" if offer.agent_id == "alice" else "alice")
    assert await router.accept(first, "c1")
    transfer = await router.offer_to("c1", second, "chat")
    assert transfer is not None and transfer.kind == "transfer" and transfer.agent_id == second
    assert await router.offer_to("c1", second, "chat") is None  # one offer at a time
    assert await router.accept(second, "c1")
    conv = await router.conversation("c1")
    assert conv is not None and conv.assigned == {first: "chat", second: "chat"}
    assert await router.release(first, "c1")
    conv = await router.conversation("c1")
    assert conv is not None and conv.assigned == {second: "chat"} and conv.state == "assigned"
    # a queue answer was counted once, the transfer is not an answer
    assert [s.answered for s in await router.queue_stats()] == [1, 0, 0]


async def test_cold_transfer_declined_goes_back_to_its_queue(router: Router) -> None:
    await add_agent(router, "alice", skills=["billing"])
    await add_agent(router, "bob", skills=["billing"])
    await router.enqueue("c1", "billing", "chat")
    (offer,) = await router.route()
    first, second = offer.agent_id, ("bob" if offer.agent_id == "alice" else "alice")
    assert await router.accept(first, "c1")
    assert await router.release(first, "c1")
    assert await router.conversation("c1") is None  # nobody holds it: routing forgot it
    assert await router.offer_to("c1", second, "chat", queue="billing") is not None
    assert await router.decline(second, "c1")
    conv = await router.conversation("c1")
    assert conv is not None and conv.state == "queued" and conv.queue == "billing"
    assert pairs(await router.route()) == [("c1", first)]


async def test_offer_to_refusals_say_why(router: Router) -> None:
    await add_agent(router, "alice", capacity={"chat": 1}, channels=["chat"])
    await add_agent(router, "bob", available=False)
    assert await router.offer_to("c1", "bob", "chat") is None
    with pytest.raises(RoutingError) as err:
        await router.offer_to("c1", "bob", "chat", raise_on_refusal=True)
    assert err.value.code == "conflict" and "offline" in err.value.message
    with pytest.raises(RoutingError, match="does not take voice"):
        await router.offer_to("c1", "alice", "voice", raise_on_refusal=True)
    with pytest.raises(RoutingError) as err:
        await router.offer_to("c1", "nobody", "chat")
    assert err.value.code == "not_found"
    assert await router.offer_to("c1", "alice", "chat") is not None
    with pytest.raises(RoutingError, match="at capacity"):
        await router.offer_to("c2", "alice", "chat", raise_on_refusal=True)


async def test_offer_to_takes_a_queued_conversation_out_of_its_queue(router: Router) -> None:
    await add_agent(router, "alice")
    await router.enqueue("c1", "general", "chat")
    offer = await router.offer_to("c1", "alice", "chat")
    assert offer is not None and offer.queue == "general"
    assert [s.waiting for s in await router.queue_stats()][0] == 0
    assert await router.route() == []


# -- overflow, position, estimated wait, stats ---------------------------------------------------


async def test_overflow_moves_long_waiters_keeping_fifo_place(router: Router, clock: Clock) -> None:
    await add_agent(router, "generalist")
    await router.set_presence("generalist", Presence.AWAY)
    await router.enqueue("b1", "billing", "chat")
    clock.advance(10)
    await router.enqueue("g1", "general", "chat")
    clock.advance(49)
    assert await router.overflow() == []
    clock.advance(1)
    assert await router.overflow() == [("b1", "billing", "general")]
    assert await router.overflow() == []
    # first enqueued, so ahead of g1 in the new queue
    assert await router.position("b1") == (1, 30.0)
    assert await router.position("g1") == (2, 60.0)
    await router.set_presence("generalist", Presence.AVAILABLE)
    assert pairs(await router.route()) == [("b1", "generalist"), ("g1", "generalist")]


async def test_queue_without_overflow_never_spills(router: Router, clock: Clock) -> None:
    await router.enqueue("v1", "vip", "chat")
    clock.advance(10_000)
    assert await router.overflow() == []


async def test_position_and_estimated_wait_follow_recent_answers(router: Router, clock: Clock) -> None:
    # no answers yet: each place ahead costs the queue's answer target (30 s for general)
    for i in range(1, 4):
        await router.enqueue(f"c{i}", "general", "chat")
    assert [await router.position(f"c{i}") for i in range(1, 4)] == [(1, 30.0), (2, 60.0), (3, 90.0)]
    clock.advance(10)
    assert await router.position("c1") == (1, 20.0)  # its own wait counts down the first slot

    await add_agent(router, "alice", capacity={"chat": 1})
    (offer,) = await router.route()
    assert offer.conversation_id == "c1"
    clock.advance(2)
    assert await router.accept("alice", "c1")  # answered after 12 s: per-place time is now 12 s
    assert await router.position("c2") == (1, 12.0)
    assert await router.position("c3") == (2, 24.0)
    clock.advance(5)
    assert await router.position("c2") == (1, 7.0)
    clock.advance(20)
    assert await router.position("c2") == (1, 0.0)  # overdue: "any moment"

    await router.release("alice", "c1")
    (offer,) = await router.route()
    assert offer.conversation_id == "c2"
    assert await router.accept("alice", "c2")  # 25 s after the previous answer
    # moving average: 12 + 0.2 * (25 - 12) = 14.6
    assert await router.position("c3") == (1, 14.6)
    general = (await router.queue_stats())[0]
    # answer times 12 s and 37 s (c2 waited from T0; over the 30 s target): 12 + 0.2 * (37 - 12) = 17
    assert (general.answered, general.answered_in_target, general.avg_answer_s) == (2, 1, 17.0)
    assert general.estimated_wait_s == 29.2  # a newcomer: c3 ahead (14.6) + one place (14.6)


async def test_queue_stats_snapshot(router: Router, clock: Clock) -> None:
    await add_agent(router, "alice", capacity={"chat": 1})
    await add_agent(router, "biller", skills=["billing"], capacity={"chat": 1}, available=False)
    await add_agent(router, "away-biller", skills=["billing"])
    await router.set_presence("away-biller", Presence.AWAY)
    await router.enqueue("g1", "general", "chat")
    clock.advance(4)
    await router.enqueue("g2", "general", "chat")
    await router.enqueue("b1", "billing", "chat")
    clock.advance(3)
    await router.route()
    stats = await router.queue_stats()
    assert [s.name for s in stats] == ["general", "billing", "vip"]
    general, billing, vip = stats
    assert general == QueueStats(
        name="general", waiting=1, longest_wait_s=3.0, agents_available=1, answer_target_s=30.0,
        offered=1, answered=0, answered_in_target=0, avg_answer_s=None, estimated_wait_s=57.0,
    )
    assert (billing.waiting, billing.longest_wait_s, billing.agents_available, billing.offered) == (1, 3.0, 0, 0)
    assert (vip.waiting, vip.agents_available, vip.estimated_wait_s) == (0, 0, 10.0)


# -- input and clients ----------------------------------------------------------------------------


async def test_bad_input_gets_clear_errors(router: Router) -> None:
    with pytest.raises(RoutingError, match="unknown queue 'nope': known queues are general, billing, vip") as err:
        await router.enqueue("c1", "nope", "chat")
    assert err.value.code == "invalid"
    with pytest.raises(RoutingError, match="register_agent first") as err:
        await router.set_presence("ghost", Presence.AVAILABLE)
    assert err.value.code == "not_found"
    with pytest.raises(RoutingError, match="presence must be one of available, away, offline"):
        await router.set_presence("ghost", "busy")
    with pytest.raises(RoutingError, match="no capacity for it"):
        await router.register_agent("alice", [], {"chat": 0}, ["chat"])
    with pytest.raises(RoutingError, match="whole number"):
        await router.register_agent("alice", [], {"chat": -1}, [])
    with pytest.raises(RoutingError, match="conversation_id"):
        await router.enqueue("", "general", "chat")
    with pytest.raises(RoutingError, match="channel"):
        await router.enqueue("c1", "general", "chat room")

    await router.enqueue("c1", "", "chat")  # empty queue: the default queue
    await router.enqueue("c1", "general", "chat")  # a retry is harmless
    with pytest.raises(RoutingError, match="already queued in general") as err:
        await router.enqueue("c1", "billing", "chat")
    assert err.value.code == "conflict"


async def test_works_on_redis_time_and_bytes_client(make_config: Callable[..., Any], redis_url: str) -> None:
    """Production path: no injected clock (Redis TIME), and a client without decode_responses."""
    cfg = make_config({"routing.offer_timeout_s": 0.05})
    client = aioredis.Redis.from_url(redis_url)
    try:
        router = Router(client, cfg.redis.key_prefix, cfg.routing)
        await router.register_agent("alice", ["x"], {"chat": 1}, ["chat"])
        await router.set_presence("alice", Presence.AVAILABLE)
        await router.enqueue("c1", "general", "chat")
        (offer,) = await router.route()
        assert offer.agent_id == "alice" and offer.expires_in_s == 0.05
        await asyncio.sleep(0.1)  # longer than the offer timeout: only the ordering matters
        assert pairs(await router.expire_offers()) == [("c1", "alice")]
        await router.set_presence("alice", Presence.AVAILABLE)
        await router.enqueue("c2", "general", "chat")
        (offer,) = await router.route()
        assert offer.conversation_id == "c2"
        state = await router.agent("alice")
        assert state is not None and state.skills == ["x"] and state.load == {"chat": 1}
        assert (await router.agents())[0].id == "alice"
    finally:
        await client.aclose()


async def test_keys_live_under_the_prefix(router: Router, redis_client: aioredis.Redis) -> None:
    await add_agent(router, "alice")
    await router.enqueue("c1", "billing", "chat")
    await router.route()
    prefix = router.keys["agents"].split("{routing}")[0]
    assert prefix.startswith("test-")  # the per-test key_prefix from make_config
    mine = sorted([k async for k in redis_client.scan_iter(match=prefix + "*")])
    assert mine == sorted(
        [prefix + "{routing}:" + name for name in ("agents", "available", "convs", "q:billing", "qt:billing")]
    )
