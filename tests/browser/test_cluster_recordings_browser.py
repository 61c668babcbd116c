"""A call recording in the agent console across two real nodes behind nginx (docs/deployment.md
"Recordings with several nodes"), in Chromium with the console in Chinese: the customer's page is
sticky to node 1, which holds and records the call; the agent's console is sticky to node 2, whose
disk lacks the file. The console plays the recording (node 2 streams it from node 1); with node 1
dead, the console says in Chinese that the server holding the recording is not reachable.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import expect

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from chat_pages import (CUSTOMER_CALL, WAIT_MS, accept_offer, agent_call, agent_login, answer_call, audio_grows,
                        open_widget, panel, press_call, set_presence, start_chat)
from cluster_kit import running_cluster

pytestmark = pytest.mark.browser

ZH = {"locale": "zh-CN", "viewport": {"width": 1440, "height": 900}}


async def page_on(new_page: Any, base: str, node: str, **context: Any) -> Any:
    page = await new_page(**context)
    await page.context.add_cookies([{"name": "segue_node", "value": node, "url": base}])
    return page


async def test_the_console_plays_a_recording_held_by_another_node(redis_url: str, tmp_path: Path, new_page: Any) -> None:
    async with running_cluster(redis_url, tmp_path, {"SEGUE_ROUTING_QUEUES": "[{name: general, record_calls: true}]"}) as c:
        n1, n2 = (n.node_id for n in c.nodes)
        await c.directory.create("alice", "pw-secret-1", "Alice", "agent", [], {"chat": 3, "voice": 1})
        base = c.url + "/"
        customer = await page_on(new_page, base, n1)
        agent = await page_on(new_page, base, n2, **ZH)
        await open_widget(customer, base)
        cid = await start_chat(customer, "can you hear me?", name="Ada")
        await agent_login(agent, base, "alice", "pw-secret-1")
        await set_presence(agent, "available")
        await accept_offer(agent, cid)
        await press_call(customer)  # (chat_pages.start_voice_call checks the agent's bar in English)
        await answer_call(agent, cid)
        await audio_grows(customer, CUSTOMER_CALL, "customer hears the agent")
        await audio_grows(agent, agent_call(cid), "agent hears the customer")
        assert await c.redis.hget(f"{c.prefix}call:{cid}", "node") == n1
        await customer.locator("#segue-callbar .call-hangup").click()
        rid = next(e["data"]["id"] for e in await c.store.events(cid) if e["type"] == "call.recording")
        assert await c.redis.hget(f"{c.prefix}rec:{rid}", "node") == n1
        assert not (tmp_path / "data2" / "recordings" / f"{rid}.webm").exists()

        # this conversation's call, in the console on node 2: its recording plays
        play = panel(agent, cid).locator(".conv-this .call-play")
        await expect(play).to_have_count(1, timeout=WAIT_MS)
        await play.click()
        audio = panel(agent, cid).locator(".conv-this audio.history-recording")
        await expect(audio).to_have_count(1, timeout=WAIT_MS)
        duration = await audio.evaluate("""(a) => new Promise((resolve, reject) => {
            if (a.readyState >= 1) return resolve(a.duration);
            a.addEventListener("loadedmetadata", () => resolve(a.duration), { once: true });
            a.addEventListener("error", () => reject(new Error("recording did not load: " + (a.error && a.error.message))), { once: true });
        })""")
        assert duration > 0

        # node 1 dies: the console (reloaded, still on node 2) says so, in Chinese
        c.nodes[0].kill()
        await agent.reload()
        play = panel(agent, cid).locator(".conv-this .call-play")
        await expect(play).to_have_count(1, timeout=WAIT_MS)
        await play.click()
        status = panel(agent, cid).locator(".conv-this .history-call-status")
        await expect(status).to_have_text("无法加载录音：保存该录音的服务器暂时无法访问，请稍后重试。", timeout=WAIT_MS)
        assert not agent.segue_errors
