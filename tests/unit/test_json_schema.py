"""``signaling.json_schema`` says what ``signaling.validate`` does: the same payloads pass and fail
both (checked with a real JSON Schema validator), and the OpenAPI document holds every body."""

from __future__ import annotations

from typing import Any

import jsonschema_rs
import pytest

from signaling import ProtocolError, json_schema, validate
from signaling import messages as m

LONG = "x" * 4001
CASES: list[tuple[type, Any, bool]] = [
    (m.MessagePost, {"text": "hi"}, True),
    (m.MessagePost, {"text": ""}, False),
    (m.MessagePost, {"text": LONG}, False),
    (m.MessagePost, {}, False),
    (m.MessagePost, {"text": "hi", "extra": 1}, False),
    (m.MessagePost, {"text": "hi", "as": {"kind": "bot", "name": "B"}}, True),
    (m.MessagePost, {"text": "hi", "as": {"kind": "robot"}}, False),
    (m.MessagePost, {"text": "hi", "as": None, "client_id": None}, True),
    (m.MessagePost, {"text": 5}, False),
    (m.ApiKeyCreate, {"name": "crm", "scopes": ["conversations:read"]}, True),
    (m.ApiKeyCreate, {"name": "crm", "scopes": ["root"]}, False),
    (m.ApiKeyCreate, {"name": " crm", "scopes": ["conversations:read"]}, False),
    (m.ApiKeyCreate, {"name": "crm", "scopes": ["customers:read"] * 6}, False),
    (m.ConversationCreate, {"customer_id": "v_1", "attributes": {"plan": "pro", "n": 3, "ok": True, "gone": None}}, True),
    (m.ConversationCreate, {"attributes": {"1bad": 1}}, False),
    (m.ConversationCreate, {"attributes": {"a": [1]}}, False),
    (m.ConversationCreate, {"identity": {"site": "shop", "id": "42"}}, True),
    (m.ConversationCreate, {"identity": {"site": "shop"}}, False),
    (m.ConversationCreate, {"identity": {"site": "a b", "id": "42"}}, False),
    (m.ConversationCreate, {"queue": "billing", "agent": "ada"}, True),
    (m.AgentCreate, {"username": "ada", "password": "pw-12", "capacity": {"chat": 3}}, True),
    (m.AgentCreate, {"username": "ada", "password": "pw-12", "capacity": {"Chat": 3}}, False),
    (m.AgentCreate, {"username": "ada", "password": "pw-12", "capacity": {"chat": 1001}}, False),
    (m.AgentCreate, {"username": "Ada", "password": "pw-12"}, False),
    (m.AgentCreate, {"username": "ada", "password": "pw-12", "role": "root"}, False),
    (m.AgentCreate, {"username": "ada", "password": "pw-12", "skills": ["billing", "de"]}, True),
    (m.Rate, {"conversation_id": "c_1", "score": 6}, False),
    (m.Rate, {"conversation_id": "c_1", "score": 5}, True),
]


def _schema(cls: type) -> dict[str, Any]:
    defs: dict[str, Any] = {}
    schema = json_schema(cls, 4000, defs, "#/$defs/")
    return {**schema, "$defs": defs}


def _accepted(cls: type, payload: Any) -> bool:
    try:
        validate(cls, payload, 4000)
    except ProtocolError:
        return False
    return True


@pytest.mark.parametrize(("cls", "payload", "ok"), CASES, ids=[f"{c.__name__}-{i}" for i, (c, _, _) in enumerate(CASES)])
def test_schema_and_validator_agree(cls: type, payload: Any, ok: bool) -> None:
    assert _accepted(cls, payload) is ok
    assert jsonschema_rs.validator_for(_schema(cls)).is_valid(payload) is ok


def test_the_document_holds_every_body_and_answer() -> None:
    from server.openapi import ELSEWHERE, OPENAPI, build
    from server.rest import OPERATIONS

    spec = build([*OPERATIONS, OPENAPI, *ELSEWHERE])
    schemas = spec["components"]["schemas"]
    for op in [*OPERATIONS, *ELSEWHERE]:
        if op.body is not None:
            assert op.body.__name__ in schemas, op.path
        if op.answer is not None:
            assert op.answer in schemas, op.path
    refs = [v for v in _walk(spec) if isinstance(v, str) and v.startswith("#/components/schemas/")]
    missing = {r for r in refs if r.rsplit("/", 1)[1] not in schemas}
    assert not missing


def _walk(node: Any) -> Any:
    if isinstance(node, dict):
        for v in node.values():
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)
    else:
        yield node
