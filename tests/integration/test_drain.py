"""Draining one node (server/ops.py ``drain``, the first SIGTERM): it stops only once its calls are
over *and* the hangup that ended the last one has been answered. It used to stop as soon as the
call left ``CallService.records``, which the hangup does before it closes the legs, logs and pushes
``call.ended``: the node then closed the customer's socket and the hangup was never answered
(tests/integration/test_cluster_calls.py's drain test timed out on it now and then under load).
A real node, real Redis, real aiortc peers; the end of the call is held open by the test.
"""

from __future__ import annotations

import asyncio
from typing import Any

from server.ops import drain
from test_call_signaling import call_room, in_voice_call


async def test_drain_waits_for_the_answer_to_the_last_calls_hangup(segue: Any) -> None:
    async with call_room(segue, "c_drain1") as room:
        customer, agent, service = room["customer"], room["agent"], room["service"]
        await in_voice_call(customer, agent)
        call = service.records["c_drain1"].call
        ending, release = asyncio.Event(), asyncio.Event()
        end = call.end

        async def held_end(reason: str) -> None:  # closing the legs takes as long as the test says
            ending.set()
            await release.wait()
            await end(reason)

        call.end = held_end
        draining = asyncio.ensure_future(drain(segue.app, 60))
        hangup = asyncio.ensure_future(customer.call("call.hangup"))
        await ending.wait()
        # the call has left the records, but its hangup is still being handled: the node is busy
        assert not service.records and service.busy
        await asyncio.sleep(0.6)  # the drain looks every 0.2 s: it had its chances to stop
        assert not draining.done(), "the drain finished while the last call's hangup was unanswered"
        release.set()
        reply = await hangup
        assert reply["ok"] and reply["event"]["type"] == "call.ended" and reply["event"]["data"]["reason"] == "hangup"
        assert await asyncio.wait_for(draining, 30) == 0  # (a bound against a hang, not a measurement)
        assert not service.busy
