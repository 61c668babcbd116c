"""Real Chromium: two pages (customer, agent) on web/sdk/call-demo.html place a call through the
server's aiortc legs; getStats shows audio bytes flowing both ways, then video after escalation."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from chat_pages import eventually, wait_js
from segue_clients import assigned_conversation
from media.ice import set_loopback_only
from signaling.calls import CALLS, Participant

pytestmark = pytest.mark.browser


async def open_side(new_page: Any, segue: Any, ns: str, cid: str, who: Participant) -> Any:
    page = await new_page()
    token = ""
    if ns == "agent":
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{segue.url}api/v1/auth/login", json={"username": "demo", "password": "demo"}) as r:
                token = (await r.json())["token"]
    await page.goto(f"{segue.url}sdk/call-demo.html?ns={ns}&conversation={cid}&token={token}")
    sid = await asyncio.wait_for(page.evaluate("() => window.demo.ready"), 20)
    await wait_js(page, "() => window.demo.call !== undefined")
    segue.app[CALLS].bind(f"/{ns}", sid, who)
    return page


async def accepted_call(segue: Any, new_page: Any, cid: str, request_options: str = "{}") -> tuple[Any, Any, Any]:
    """Conversation ``cid`` assigned to a_1; customer v_1 ("Ada") and the agent on call-demo.html;
    the customer asks for a voice call (``request_options``: the JS options object) and the
    agent accepts. Returns (store, customer page, agent page)."""
    store = await assigned_conversation(segue, cid)
    customer = await open_side(new_page, segue, "customer", cid, Participant("customer", "v_1", "Ada"))
    agent = await open_side(new_page, segue, "agent", cid, Participant("agent", "a_1", "Alan"))
    await agent.evaluate("() => window.demo.call.refresh()")  # the agent watches the conversation
    await customer.evaluate(f"() => window.demo.call.request('voice', {request_options})")
    await wait_js(agent, "() => window.demo.events.some(([n]) => n === 'requested')")
    await agent.evaluate("() => window.demo.call.accept()")
    return store, customer, agent


async def bytes_of(page: Any) -> dict[str, Any]:
    return await page.evaluate("() => window.demo.call.bytes()")


async def test_chromium_call_audio_both_ways_then_video(segue: Any, new_page: Any) -> None:
    set_loopback_only(True)
    try:
        cid = "c_browser"
        store, customer, agent = await accepted_call(segue, new_page, cid, "{pageUrl: location.href}")

        async def both_ways(page: Any) -> Any:
            b = await bytes_of(page)
            return b if b["audio"]["in"] > 2000 and b["audio"]["out"] > 2000 else None

        await eventually(lambda: both_ways(customer), what="customer audio both ways")
        await eventually(lambda: both_ways(agent), what="agent audio both ways")

        # escalate: the customer turns the camera on; the agent receives video, audio continues
        before = (await bytes_of(agent))["audio"]["in"]
        await customer.evaluate("() => window.demo.call.startVideo()")

        async def agent_video() -> Any:
            b = await bytes_of(agent)
            return b if b["video"]["in"] > 5000 and b["audio"]["in"] > before + 2000 else None

        await eventually(agent_video, what="agent receives video and audio")
        state = await customer.evaluate("() => window.demo.call.pc.connectionState")
        assert state == "connected"

        await customer.evaluate("() => window.demo.call.hangup()")
        await wait_js(agent, "() => window.demo.events.some(([n]) => n === 'ended')")
        types = [e["type"] for e in await store.events(cid)]
        assert "call.video_on" in types and "call.ended" in types
        assert customer.segue_errors == [] and agent.segue_errors == []
    finally:
        set_loopback_only(False)


async def test_chromium_reload_reattaches_to_the_running_call(segue: Any, new_page: Any) -> None:
    set_loopback_only(True)
    try:
        cid = "c_reload"
        _store, customer, agent = await accepted_call(segue, new_page, cid)

        async def flowing(page: Any, floor: int = 2000) -> Any:
            b = await bytes_of(page)
            return b if b["audio"]["in"] > floor and b["audio"]["out"] > floor else None

        await eventually(lambda: flowing(customer), what="customer audio both ways")
        first = await bytes_of(agent)

        # the customer reloads the page: new socket, new peer connection, same running call
        await customer.reload()
        sid = await asyncio.wait_for(customer.evaluate("() => window.demo.ready"), 20)
        await wait_js(customer, "() => window.demo.call !== undefined")
        segue.app[CALLS].bind("/customer", sid, Participant("customer", "v_1", "Ada"))
        state = await customer.evaluate("() => window.demo.call.refresh().then((s) => s.state)")
        assert state == "active"
        await eventually(lambda: flowing(customer), what="reloaded customer audio both ways")

        async def agent_hears_again() -> Any:
            b = await bytes_of(agent)
            return b if b["audio"]["in"] > first["audio"]["in"] + 4000 else None

        await eventually(agent_hears_again, what="agent hears the reloaded customer")
        assert await agent.evaluate("() => window.demo.call.pc.connectionState") == "connected"
        call = segue.app[CALLS].records[cid].call
        assert call.active and call.leg("customer").negotiations == 1
        new_voice = call.leg("customer").source("audio")
        assert call.leg("agent").sink("audio").source is new_voice  # the agent hears the new leg
        await eventually(lambda: _true(new_voice.stats.packets > 50), what="new leg sends audio")
        assert agent.segue_errors == []
    finally:
        set_loopback_only(False)


async def _true(value: bool) -> bool:
    return value
