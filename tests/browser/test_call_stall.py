"""Issue 4: "ICE restart on a connection that goes `disconnected`", as Segue delivers it.

aiortc (the server's side of every call) cannot restart ICE, so the SDK replaces a connection
that stays `disconnected` for STALL_REPLACE_MS with a new one offered on the same socket, and the
server attaches it to the running call as a new leg. Here the customer's network "vanishes" (the
server drops every datagram from the customer's connection, ICE consent checks included) while
chat and the call go on; Chromium reports `disconnected`, the widget replaces the connection
before it would ever reach `failed`, and the agent hears the customer again on the same call.
"""

from __future__ import annotations

from typing import Any

import pytest

from chat_pages import CUSTOMER_CALL, agent_call, audio_grows, chat_with_demo, eventually, start_voice_call
from media.ice import set_loopback_only
from signaling.calls import CALLS

pytestmark = pytest.mark.browser

WATCH_OLD_CONNECTION_JS = """() => {
  const call = window.segueWidget.call;
  window.__oldPc = call.pc;
  window.__oldStates = [];
  window.__replacing = null;
  call.pc.addEventListener("connectionstatechange", () => window.__oldStates.push(window.__oldPc.connectionState));
  call.on("replacing", (state) => { window.__replacing = state; });
}"""


def drop_everything_from_the_customer(segue: Any, conversation_id: str) -> None:
    """The customer's network goes silent, as seen by the server: every datagram arriving on the
    customer leg's socket is dropped (STUN consent checks too, so the browser's ICE stalls). Test
    code reaching the receive pump's table (media/aiortc_hooks.py DatagramPump) on purpose."""
    service = segue.app[CALLS]
    leg = service.records[conversation_id].call.leg("customer")
    connection = leg.pc.getTransceivers()[0].receiver.transport.transport._connection
    fd = connection._nominated[1].protocol.transport._sock.fileno()
    pump = service.forwarder._pump
    recvfrom, _handle, protocol = pump._entries[fd]
    pump._entries[fd] = (recvfrom, lambda data, addr: None, protocol)


async def test_a_stalled_connection_is_replaced_and_the_call_goes_on(segue: Any, new_page: Any) -> None:
    set_loopback_only(True)
    try:
        customer, agent, cid = await chat_with_demo(segue, new_page, "can you hear me?", name="Ada")
        await start_voice_call(customer, agent, cid)
        first_leg = segue.app[CALLS].records[cid].call.leg("customer")
        await customer.evaluate(WATCH_OLD_CONNECTION_JS)

        drop_everything_from_the_customer(segue, cid)

        replaced_from = await eventually(lambda: customer.evaluate("() => window.__replacing"),
                                         what="the widget replaces its stalled connection")
        assert replaced_from == "disconnected", replaced_from
        old_states = await customer.evaluate("() => window.__oldStates")
        assert "disconnected" in old_states and "failed" not in old_states, old_states
        assert await customer.evaluate(f"() => {CUSTOMER_CALL}.pc !== window.__oldPc")

        # the same call, a new leg: both hear each other again, and the call never ended
        await audio_grows(agent, agent_call(cid), "agent hears the customer on the new connection")
        await audio_grows(customer, CUSTOMER_CALL, "customer hears the agent on the new connection")
        record = segue.app[CALLS].records[cid]
        assert record.call.active and record.call.leg("customer") is not first_leg
    finally:
        set_loopback_only(False)
