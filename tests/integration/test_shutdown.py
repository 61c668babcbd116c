"""A node shuts down even when a Socket.IO client went away mid-session (a polling client whose
next poll never comes: python-engineio's close of it waits for that poll)."""

from __future__ import annotations

import asyncio
from typing import Callable

import aiohttp
from aiohttp import web

from server import Config, create_app


async def test_shutdown_finishes_with_an_abandoned_polling_session(make_config: Callable[..., Config]) -> None:
    config = make_config({"http.shutdown_timeout_s": 1})
    app = create_app(config, config.redis.url)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    async with aiohttp.ClientSession() as session:
        # the Engine.IO handshake opens a session; this client then never polls again
        async with session.get(f"http://127.0.0.1:{port}/socket.io/?EIO=4&transport=polling") as resp:
            assert resp.status == 200
            assert (await resp.text()).startswith('0{"sid"')
    # a guard against a hang, not a measurement: without the bound, cleanup never returns
    await asyncio.wait_for(runner.cleanup(), timeout=120)
