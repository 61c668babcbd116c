"""The SDK's answer to ``rate_limited`` (issue 11, overload), run in Chromium as ES modules.

The server names one time for the whole connection to come back (``retry_after_ms``); an SDK that
only delayed the refused request would send its other requests into the same wall. The socket here
is a stand-in that refuses the first ``message.send`` and records what the SDK sends, in order.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser


async def test_after_rate_limited_every_request_but_call_signalling_waits(segue, new_page) -> None:
    page = await new_page()
    await page.goto(segue.url)  # any page of the node: the modules resolve against it
    result = await page.evaluate("""async () => {
        const { SegueCustomer } = await import("/sdk/segue.js");
        const client = new SegueCustomer({ autoResume: false });
        const sent = [];
        let refused = false;
        client.socket = {
            connected: true,
            timeout: () => ({
                emit(event, payload, ack) {
                    sent.push(`${event}:${payload.text ?? ""}`);
                    if (event === "message.send" && !refused) {
                        refused = true;
                        setTimeout(() => ack(null, { ok: false, error: { code: "rate_limited",
                            message: "the server is busy: try again in 2000 ms", retry_after_ms: 2000 } }), 0);
                    } else {
                        setTimeout(() => ack(null, { ok: true, event: { id: "1-0" } }), 0);
                    }
                },
            }),
        };
        const first = client.request("message.send", { conversation_id: "c_1", text: "first" });
        await new Promise((r) => setTimeout(r, 50));  // the refusal has arrived: the client is paused
        const second = client.request("message.send", { conversation_id: "c_1", text: "second" });
        const call = await client.request("call.state", { conversation_id: "c_1" });
        const whilePaused = [...sent];
        await Promise.all([first, second]);
        return { whilePaused, sent, call };
    }""")
    # the second message waited for the time the server named; call signalling did not
    assert result["whilePaused"] == ["message.send:first", "call.state:"]
    assert sorted(result["sent"][2:]) == ["message.send:first", "message.send:second"]
    assert result["call"] == {"event": {"id": "1-0"}}
    assert page.segue_errors == []
