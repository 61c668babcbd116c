"""Event names python-socketio uses itself (``connect``, ``disconnect``) sent by a client: an error
answer, and nothing else — the connect handler does not run again, the session is not torn down."""

from __future__ import annotations

from typing import Any, AsyncIterator

import pytest

from raw_socketio import RawSocket
from segue_clients import World


@pytest.fixture
async def world(segue: Any) -> AsyncIterator[World]:
    w = World(segue)
    yield w
    await w.close()


async def _sockets(world: World, agent_id: str) -> set[str]:
    return set(await world.service.redis.smembers(world.service.keys.agent_sockets(agent_id)))


@pytest.mark.parametrize("name", ["connect", "disconnect"])
async def test_an_agent_sending_a_reserved_event_gets_an_error_and_keeps_its_session(world: World, name: str) -> None:
    token = await world.add_agent("amy")
    raw = RawSocket(world.url, "/agent")
    try:
        await raw.open({"v": 1, "token": token})
        assert raw.refusal is None
        agent_id = (await world.service.agent_from_token(token)).id
        before = await _sockets(world, agent_id)
        assert len(before) == 1

        reply, _ = await raw.call(name, {"v": 1, "token": token})
        assert reply["ok"] is False
        assert reply["error"]["code"] == "unknown_event"
        assert reply["error"]["message"].startswith(f"{name} is reserved")

        # no second session, no session torn down: the same socket is still online and working
        assert await _sockets(world, agent_id) == before
        reply, _ = await raw.call("presence.set", {"status": "available"})
        assert reply["ok"] is True, reply
        reply, _ = await raw.call("queues.list", {})
        assert reply["ok"] is True and reply["queues"], reply
        assert raw.connected
    finally:
        await raw.close()


@pytest.mark.parametrize("name", ["connect", "disconnect"])
async def test_a_customer_sending_a_reserved_event_without_an_ack_gets_an_error_event(world: World, name: str) -> None:
    raw = RawSocket(world.url, "/customer")
    try:
        await raw.open({"v": 1})
        await raw.send_text(f'42/customer,["{name}",{{}}]')  # no ack id: the error comes as an `error` event
        reply, _ = await raw.call("conversation.start", {"text": "still here"})
        assert reply["ok"] is True, reply
        errors = [t for t in raw.received if t.startswith('42/customer,["error"')]
        assert len(errors) == 1 and f'"{name} is reserved' in errors[0] and '"event":"' + name in errors[0].replace(" ", "")
        assert raw.connected
    finally:
        await raw.close()
