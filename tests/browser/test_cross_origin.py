"""Embedding from another site: a page on a different origin (http://localhost:<port>, served by a
small aiohttp server here) imports the SDK from the node (http://127.0.0.1:<port>) as a module,
connects to /customer, and is refused on /agent with the reason in the connect error."""

from __future__ import annotations

from typing import Any, AsyncIterator

import pytest
from aiohttp import web

from chat_pages import other_origin
from segue_clients import World

pytestmark = pytest.mark.browser

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>A shop</title></head>
<body><p>A shop that embeds Segue.</p></body></html>
"""


@pytest.fixture
async def other_site() -> AsyncIterator[str]:
    """Another origin: the same machine, named ``localhost`` and on its own port."""

    async def page(_request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    async with other_origin(lambda router: router.add_get("/", page)) as origin:
        yield origin


async def test_a_page_on_another_origin_embeds_the_customer_sdk_but_not_the_agent_surface(
        segue: Any, new_page: Any, other_site: str) -> None:
    node = segue.url.rstrip("/")
    assert node.startswith("http://127.0.0.1:")
    token = await World(segue).login("demo", "demo")
    page = await new_page()
    await page.goto(other_site + "/")
    assert await page.evaluate("location.origin") == other_site

    result = await page.evaluate("""async ([node, token]) => {
        const sdk = await import(node + "/sdk/segue.js");
        const customer = new sdk.SegueCustomer({ url: node });
        const session = await customer.connect();
        const started = await customer.startConversation({ text: "hello from another site" });

        const agent = new sdk.SegueAgent({ url: node });
        agent.store.set("token", token);
        let refusal = null;
        try {
            await agent.connect();
        } catch (error) {
            refusal = { code: error.code, message: error.message };
        }
        // the same refusal as Socket.IO hands it over: connect_error's data
        const { io } = await import(node + "/sdk/vendor/socket.io.esm.min.js");
        const raw = await new Promise((resolve) => {
            const socket = io(node + "/agent", { auth: { v: 1, token }, reconnection: false });
            socket.on("connect", () => { socket.disconnect(); resolve({ connected: true }); });
            socket.on("connect_error", (err) => { socket.disconnect(); resolve({ data: err.data ?? null, message: err.message }); });
        });
        const out = {
            raw,
            imported: typeof sdk.SegueCustomer,
            customer: session.customer_id,
            conversation: started.id ?? started.conversation?.id ?? null,
            refusal,
        };
        customer.disconnect?.();
        return out;
    }""", [node, token])

    assert result["imported"] == "function"
    assert result["customer"]
    assert result["conversation"]
    assert result["refusal"] == {
        "code": "origin_not_allowed",
        "message": f"origin {other_site} is not allowed on /agent: add it to cors.agent_origins",
    }
    assert result["raw"]["data"] == result["refusal"]
    assert page.segue_errors == []
