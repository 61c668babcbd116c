"""Protocol building blocks without a server: payload validation, tokens, identities, placeholders."""

from __future__ import annotations

import time

import pytest

from server.auth import (IdentityError, Signer, TokenError, hash_password, sign_identity, verify_identity,
                         verify_password)
from signaling import messages as m
from signaling.agents import parse_capacity, render
from signaling.errors import ProtocolError
from signaling.schema import validate


def _invalid(schema: type, payload: object, max_message: int = 4000) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        validate(schema, payload, max_message)
    assert info.value.code == "invalid"
    return info.value


def test_valid_payloads() -> None:
    msg = validate(m.MessageSend, {"conversation_id": "c_1", "text": "hi", "client_id": "m-1"})
    assert (msg.conversation_id, msg.text, msg.client_id) == ("c_1", "hi", "m-1")
    start = validate(m.ConversationStart, None)
    assert start.channel == "chat" and start.queue is None
    t = validate(m.Transfer, {"conversation_id": "c_1", "to": {"queue": "billing"}})
    assert t.mode == "cold" and t.to.queue == "billing" and t.to.agent is None
    a = validate(m.AgentCreate, {"username": "a.b-c", "password": "pass", "capacity": {"chat": 2}})
    assert a.capacity == {"chat": 2} and a.role == "agent"


@pytest.mark.parametrize(
    ("schema", "payload", "field", "words"),
    [
        (m.MessageSend, {"conversation_id": "c_1"}, "text", "required"),
        (m.MessageSend, {"conversation_id": "c_1", "text": None}, "text", "got null"),
        (m.MessageSend, {"conversation_id": "c_1", "text": 1}, "text", "text, got a number"),
        (m.MessageSend, {"conversation_id": "c_1", "text": "a", "x": 1}, "x", "unknown field"),
        (m.MessageSend, {"conversation_id": "a b", "text": "a"}, "conversation_id", "letters, digits"),
        (m.MessageSend, "hello", "payload", "object"),
        (m.Transfer, {"conversation_id": "c_1"}, "to", "required"),
        (m.Transfer, {"conversation_id": "c_1", "to": {"agent": 5}}, "to.agent", "text"),
        (m.Transfer, {"conversation_id": "c_1", "to": {"agent": "b"}, "mode": "hot"}, "mode", "cold, warm"),
        (m.Rate, {"conversation_id": "c_1", "score": 0}, "score", "between 1 and 5"),
        (m.Rate, {"conversation_id": "c_1", "score": True}, "score", "whole number"),
        (m.Typing, {"conversation_id": "c_1", "typing": 1}, "typing", "true or false"),
        (m.Read, {"conversation_id": "c_1", "event_id": "abc"}, "event_id", "stream id"),
        (m.ConversationStart, {"context": {"page_url": "u", "cookie": "x"}}, "context.cookie", "unknown"),
        (m.AgentCreate, {"username": "x", "password": "pass", "capacity": {"chat": "3"}}, "capacity.chat", "whole"),
        (m.AgentCreate, {"username": "x", "password": "pass", "capacity": {"Chat!": 3}}, "capacity.Chat!", "channel"),
        (m.AgentCreate, {"username": "x", "password": "pass", "skills": "billing"}, "skills", "list"),
        (m.AgentCreate, {"username": "x", "password": "pass", "skills": [""]}, "skills[0]", "empty"),
    ],
)
def test_invalid_payloads_name_the_field(schema: type, payload: object, field: str, words: str) -> None:
    err = _invalid(schema, payload)
    assert err.field == field
    assert words in err.message, err.message


def test_message_length_follows_the_limit() -> None:
    validate(m.MessageSend, {"conversation_id": "c", "text": "x" * 10}, max_message=10)
    err = _invalid(m.MessageSend, {"conversation_id": "c", "text": "x" * 11}, max_message=10)
    assert "at most 10 characters" in err.message


def test_tokens() -> None:
    signer = Signer(b"secret")
    token = signer.sign("a", "ada", 60, ver=3)
    claims = signer.verify(token, "a")
    assert (claims.sub, claims.ver) == ("ada", 3)
    for bad, words in [
        (token + "x", "signature"),
        (Signer(b"other").sign("a", "ada", 60), "signature"),
        (signer.sign("a", "ada", -1), "expired"),
        (signer.sign("v", "ada", 60), "not an agent token"),
        ("nodot", "malformed"),
        (None, "malformed"),
    ]:
        with pytest.raises(TokenError) as info:
            signer.verify(bad, "a")
        assert words in str(info.value)


def test_passwords() -> None:
    stored = hash_password("correct horse")
    assert stored.startswith("scrypt$") and "correct" not in stored
    assert verify_password("correct horse", stored)
    assert not verify_password("wrong", stored)
    assert not verify_password("x", "garbage")


def test_site_identity() -> None:
    sites = {"shop": "k"}
    ident = sign_identity("k", "42", "Ada", "ada@example.com")
    assert verify_identity(sites, "shop", ident, 60) == {"site": "shop", "id": "42", "name": "Ada", "email": "ada@example.com"}
    for site, identity, words in [
        ("other", ident, "unknown site"),
        ("shop", {**ident, "name": "Eve"}, "signature"),
        ("shop", sign_identity("k", "42", ts=int(time.time()) - 120), "expired"),
        ("shop", {**ident, "ts": "now"}, "whole number"),
        ("shop", {**ident, "admin": True}, "unknown field"),
        ("shop", "42", "object"),
    ]:
        with pytest.raises(IdentityError) as info:
            verify_identity(sites, site, identity, 60)
        assert words in str(info.value)


def test_render_and_capacity() -> None:
    values = {"customer": {"name": "Ada L", "first_name": "Ada"}, "agent": {"name": "Bo"},
              "conversation": {"id": "c_1", "queue": "billing"}}
    assert render("Hi {customer.first_name}, {agent.name} here ({queue}) {customer.email} {x}", values) == \
        "Hi Ada, Bo here (billing) {customer.email} {x}"
    assert parse_capacity("chat=3, voice=1") == {"chat": 3, "voice": 1}
    with pytest.raises(ValueError):
        parse_capacity("chat:3")


@pytest.mark.parametrize(
    ("schema", "payload", "field", "words"),
    [
        ("CallOffer", {"conversation_id": "c_1"}, "sdp", "required"),
        ("CallOffer", {"conversation_id": "c_1", "sdp": "v=0" + "x" * 64_000}, "sdp", "at most 64000"),
        ("CallCandidate", {"conversation_id": "c_1", "candidate": "candidate:1 1 udp"}, "candidate", "object"),
        ("CallCandidate", {"conversation_id": "c_1", "candidate": {"sdpMid": "0"}}, "candidate.candidate", "required"),
        ("CallCandidate", {"conversation_id": "c_1", "candidate": {"candidate": "", "sdpMLineIndex": -1}},
         "candidate.sdpMLineIndex", "between"),
        ("CallRequest", {"conversation_id": "c_1", "media": "fax"}, "media", "voice, video, screen"),
        ("CallMute", {"conversation_id": "c_1", "muted": 1}, "muted", "true or false"),
        ("CallMonitor", {"conversation_id": "c_1", "mode": "spy"}, "mode", "listen, whisper, barge"),
    ],
)
def test_call_payloads_name_the_field(schema: str, payload: object, field: str, words: str) -> None:
    from signaling import call_messages as cm

    err = _invalid(getattr(cm, schema), payload)
    assert err.field == field
    assert words in err.message, err.message


def test_call_payloads_accept_what_browsers_send() -> None:
    from signaling import call_messages as cm

    c = validate(cm.CallCandidate, {"conversation_id": "c_1", "candidate": {
        "candidate": "candidate:1 1 udp 2122260223 192.0.2.1 50000 typ host", "sdpMid": "0", "sdpMLineIndex": 0,
        "usernameFragment": "abcd"}})
    assert c.candidate.sdpMLineIndex == 0
    assert validate(cm.CallCandidate, {"conversation_id": "c_1", "candidate": None}).candidate is None
    assert validate(cm.CallMonitor, {"conversation_id": "c_1"}).mode == "listen"
    assert cm.OFFER_MAX_BYTES > 2 * 64_000


def test_an_identity_holding_a_lone_surrogate_is_refused_clearly() -> None:
    # a browser's JSON can carry "\ud800" (a lone UTF-16 surrogate): it cannot be signed or stored
    signed = sign_identity("s3cret", "u1", "Ada", ts=int(time.time()))
    signed["name"] = "Ada\ud800"
    with pytest.raises(IdentityError, match="identity.name must be Unicode text"):
        verify_identity({"shop": "s3cret"}, "shop", signed, 300)
