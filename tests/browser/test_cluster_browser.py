"""A call in Chromium across two real nodes behind nginx (docs/deployment.md): the customer's page
is sticky to one node (its ``segue_node`` cookie), the agent's console to the other; the call lives
on the customer's node. That node is killed (SIGKILL) mid-call: the customer's page reconnects to
the survivor through nginx, both SDKs get ``call.migrated`` (or see their connection stall) and
offer new connections, and each page hears the other again, with nobody clicking anything.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from chat_pages import (CUSTOMER_CALL, accept_offer, agent_call, agent_login, audio_grows, open_widget, set_presence,
                        start_chat, start_voice_call, wait_js)
from cluster_kit import running_cluster

pytestmark = pytest.mark.browser


async def page_on(new_page: Any, base: str, node: str) -> Any:
    page = await new_page()
    await page.context.add_cookies([{"name": "segue_node", "value": node, "url": base}])
    return page


async def test_call_in_the_browser_survives_its_node(redis_url: str, tmp_path: Path, new_page: Any) -> None:
    async with running_cluster(redis_url, tmp_path) as c:
        n1, n2 = (n.node_id for n in c.nodes)
        # (the demo account signs in only without a proxy: a real account)
        await c.directory.create("alice", "pw-secret-1", "Alice", "agent", [], {"chat": 3, "voice": 1})
        base = c.url + "/"
        customer = await page_on(new_page, base, n1)
        agent = await page_on(new_page, base, n2)
        await open_widget(customer, base)
        cid = await start_chat(customer, "can you hear me?", name="Ada")
        await agent_login(agent, base, "alice", "pw-secret-1")
        await set_presence(agent, "available")
        await accept_offer(agent, cid)
        await start_voice_call(customer, agent, cid)
        assert await c.redis.hget(f"{c.prefix}call:{cid}", "node") == n1

        calls = {customer: CUSTOMER_CALL, agent: agent_call(cid)}
        for page, expr in calls.items():  # remember each page's connection to the dead node
            await page.evaluate(f"() => {{ window.__oldPc = {expr}.pc; }}")
        killed = time.monotonic()
        c.nodes[0].kill()
        for page, expr in calls.items():  # a new connection (call.migrated), then audio on it
            await wait_js(page, f"() => {expr}.pc && {expr}.pc !== window.__oldPc && "
                                f"{expr}.pc.connectionState === 'connected'")
        await audio_grows(customer, CUSTOMER_CALL, "the customer hears the agent again")
        await audio_grows(agent, agent_call(cid), "the agent hears the customer again")
        audio_s = time.monotonic() - killed
        assert await c.redis.hget(f"{c.prefix}call:{cid}", "node") == n2
        types = [e["type"] for e in await c.store.events(cid)]
        assert "call.migrated" in types and "call.ended" not in types
        assert not customer.segue_errors and not agent.segue_errors
        print(f"CLUSTER node kill mid-call (Chromium): audio_again_s<={audio_s:.2f} (node_ttl_s=2; an upper bound: "
              "pages polled in turn)")
