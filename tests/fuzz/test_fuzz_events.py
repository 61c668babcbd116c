"""Property tests (hypothesis) on the event schemas and the wire decoding (issue 11).

Random payloads — arbitrary JSON, and objects built from each schema's own field names with
values of every type — must only ever end in a ``ProtocolError`` (or a valid instance): never
another exception, so never ``internal``. The live test sends them through a real node's
Socket.IO dispatch and handlers (Redis included) on both namespaces. Bounded by example count.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signaling import call_messages, messages
from signaling.errors import ProtocolError
from signaling.fastjson import JsonTooDeep, SocketIOJson, TooDeep, Unreadable, loads_bounded
from signaling.schema import validate

SCALARS = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40)
           | st.sampled_from(["", "c_1", "1732345678901-0", "voice", "video", "chat", "general", "warm", "x" * 5000]))
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                                         max_size=4), max_leaves=12)

SCHEMAS = [c for module in (messages, call_messages) for c in vars(module).values()
           if isinstance(c, type) and dataclasses.is_dataclass(c) and c.__module__ == module.__name__]


def shaped(schema: type) -> st.SearchStrategy[Any]:
    """Objects with the schema's field names (and some others), each value anything."""
    names = [f.metadata.get("name", f.name) for f in dataclasses.fields(schema)]
    keys = st.sampled_from(names) | st.text(max_size=8) if names else st.text(max_size=8)
    return st.dictionaries(keys, JSON, max_size=len(names) + 2)


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda c: c.__name__)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_schemas_answer_random_payloads_with_protocol_errors_only(schema: type, data: Any) -> None:
    payload = data.draw(shaped(schema) | JSON)
    try:
        result = validate(schema, payload, 500)
    except ProtocolError as exc:
        assert exc.code == "invalid" and exc.message
        return
    assert isinstance(result, schema)


@settings(max_examples=400, deadline=None)
@given(text=st.text(max_size=300) | JSON.map(json.dumps) | st.integers(1, 3000).map(lambda n: "[" * n + "]" * n))
def test_socketio_decoding_of_random_text(text: str) -> None:
    """Any packet text decodes to a value or to a marker the namespace answers (TooDeep,
    Unreadable); it never raises anything but ValueError, and a value is what JSON says."""
    try:
        value = SocketIOJson.loads(text)
    except ValueError:
        return  # python-engineio drops the packet (orjson's JSONDecodeError is a ValueError)
    markers = (TooDeep, Unreadable)
    if isinstance(value, markers) or (isinstance(value, list) and value and isinstance(value[-1], markers)):
        return
    try:
        assert value == loads_bounded(text) or value != value  # noqa: PLR0124 (NaN-free JSON: equal)
    except JsonTooDeep:
        pytest.fail("too deep for loads_bounded but not marked by the Socket.IO decoder")


# --- live: a real node's dispatch and handlers ---------------------------------------------------

ANSWER_CODES = {"invalid", "too_large", "unknown_event", "not_found", "forbidden", "conflict", "rate_limited",
                "unauthorized", "bad_token"}
seen: dict[str, int] = {}


@pytest.fixture
async def live(start_segue: Any) -> Any:
    from raw_socketio import RawSocket
    from segue_clients import World

    node = await start_segue({"limits.events_per_s": 0, "limits.ip_events_per_s": 0, "limits.conversations_per_s": 0,
                              "limits.ip_conversations_per_s": 0, "limits.shed_lag_ms": 0})
    world = World(node)
    customer = await RawSocket(world.url).open()
    cid = (await customer.call("conversation.start", {"text": "fuzz"}))[0]["conversation"]["id"]
    token = await world.add_agent("fuzzer", role="supervisor")
    agent = await RawSocket(world.url, "/agent").open(auth={"v": 1, "token": token})
    from signaling import SIGNALING

    service = node.app[SIGNALING]
    yield {"customer": customer, "agent": agent, "cid": cid, "service": service}
    await customer.close()
    await agent.close()
    await world.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
async def test_random_events_on_a_live_node_never_get_internal(live: Any, data: Any) -> None:
    service = live["service"]
    side = data.draw(st.sampled_from(["customer", "agent"]))
    ns = service.customer_ns if side == "customer" else service.agent_ns  # type: ignore[attr-defined]
    known = st.sampled_from(sorted(e for e in ns.routes if e != "call.offer"))
    # mostly real event names (so payloads reach the handlers), sometimes any text
    event = data.draw(known if data.draw(st.integers(0, 4)) else st.text(max_size=20) | JSON)
    route = ns.routes.get(event) if isinstance(event, str) else None
    payload = data.draw(JSON | (shaped(route.schema) if route else JSON) | st.fixed_dictionaries(
        {"conversation_id": st.just(live["cid"])}, optional={"text": JSON, "typing": JSON, "event_id": JSON}))
    reply, _ = await live[side].call(event, payload, timeout=20)
    assert isinstance(reply, dict), reply
    if not reply.get("ok"):
        assert reply["error"]["code"] in ANSWER_CODES, (event, payload, reply)
    key = "ok" if reply.get("ok") else reply["error"]["code"]
    seen[key] = seen.get(key, 0) + 1



def test_report_live_fuzz_counts() -> None:
    """Prints what the live fuzz run got back (run after it; -s to see)."""
    from hostile_kit import report

    report("random_events_live", sum(seen.values()), answers=seen, internal=0, crashes=0)
