"""The webhook engine's pure parts: which stored events are queued, URL and event-type checks,
stable delivery ids, signatures across a secret rotation."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from standardwebhooks import Webhook

from signaling import ProtocolError
from signaling.store import encode_event
from signaling.webhooks import EVENT_TYPES, Endpoint, Webhooks, _Subscriptions, check_events, check_url, delivery_id

WHO = {"kind": "customer", "id": "v_1", "name": "Visitor"}


def engine(wanted: list[str]) -> Webhooks:
    hooks = Webhooks.__new__(Webhooks)  # only pick() is used: no Redis
    hooks._subs = _Subscriptions([], frozenset(wanted))
    return hooks


def test_pick_maps_log_events_to_webhook_types() -> None:
    events = [
        encode_event("conversation.created", WHO, "all", {"channel": "chat"}),
        encode_event("conversation.queued", WHO, "all", {"queue": "general"}),
        encode_event("message", WHO, "all", {"text": "hi"}),
        encode_event("note", WHO, "agents", {"text": "internal"}),
        encode_event("transfer.completed", WHO, "all", {}),
        encode_event("call.accepted", WHO, "all", {"media": "video", "started": True}),
        encode_event("call.accepted", WHO, "all", {"media": "video"}),  # video added to a running call
        encode_event("call.recording", WHO, "all", {"id": "r", "url": "/api/v1/recordings/r"}),
        encode_event("conversation.rated", WHO, "all", {"score": 4}),
    ]
    assert engine(list(EVENT_TYPES)).pick(events) == [
        [1, "conversation.created"], [3, "message.created"], [5, "conversation.transferred"], [6, "call.started"],
        [9, "csat.submitted"]]
    assert engine(["message.created"]).pick(events) == [[3, "message.created"]]
    assert engine([]).pick(events) == []
    # recording.ready is sent once the call ended (the file is complete), from its call.ended
    ended = [encode_event("call.ended", WHO, "all", {"reason": "hangup"})]
    assert engine(["recording.ready"]).pick(ended) == [[1, "call.ended"]]
    assert engine(["call.started"]).pick(ended) == []


@pytest.mark.parametrize("url", ["https://example.com/hooks", "http://127.0.0.1:8081/x?token=1", "https://[::1]:9/"])
def test_good_urls(url: str) -> None:
    assert check_url(url) == url


@pytest.mark.parametrize("url", ["", "example.com", "ftp://example.com/", "https://", "https://a:b@example.com/",
                                 "https://example.com/#frag", "https://example.com:99999/", "x" * 3000])
def test_bad_urls(url: str) -> None:
    with pytest.raises(ProtocolError) as exc:
        check_url(url)
    assert exc.value.code == "invalid" and exc.value.field == "url"


def test_event_lists() -> None:
    assert check_events(None) == () and check_events([]) == () and check_events(["*"]) == ()
    assert check_events(["call.ended", "call.ended", "message.created"]) == ("call.ended", "message.created")
    for bad, field in ((["message"], "events[0]"), (["call.ended", "*"], "events[1]")):
        with pytest.raises(ProtocolError) as exc:
            check_events(bad)
        assert exc.value.field == field


def test_delivery_ids_are_stable_per_endpoint_and_event() -> None:
    a = delivery_id("ep_1", "c_1", "1-0", "call.ended")
    assert a == delivery_id("ep_1", "c_1", "1-0", "call.ended") and a.startswith("msg_")
    assert len({a, delivery_id("ep_2", "c_1", "1-0", "call.ended"), delivery_id("ep_1", "c_1", "1-1", "call.ended"),
                delivery_id("ep_1", "c_1", "1-0", "recording.ready")}) == 4


def test_signatures_during_a_rotation() -> None:
    old, new = Webhook("whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), "whsec_" + "QWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4"
    ep = Endpoint("ep_1", "https://example.com/", (), "", True, new, 0, 0,
                  previous_secret="whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", previous_until_ts=2_000)
    now = datetime.now(timezone.utc)
    body = '{"type":"webhook.test"}'
    headers: dict[str, Any] = {"webhook-id": "msg_1", "webhook-timestamp": str(int(now.timestamp()))}
    headers["webhook-signature"] = " ".join(w.sign("msg_1", now, body) for w in ep.signers(1_000))
    old.verify(body, headers)
    Webhook(new).verify(body, headers)
    assert len(ep.signers(3_000)) == 1  # the old secret is no longer used after its time
