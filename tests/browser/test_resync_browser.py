"""The customer's page (the widget's SDK) on one node, the agent on another; the nodes' pub/sub
connections are cut while the agent writes (Redis stays up). What the agent's node publishes while
the page's node subscribes again reaches nobody, and pushes arrive again before the page's node
says ``resync``: the SDK resumes from the resync's ``since``, not only from the last id it saw, so
the page shows every message the agent got acknowledged.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from chat_pages import open_widget, start_chat, wait_js
from cluster_kit import cut_pubsub, running_cluster

pytestmark = pytest.mark.browser


async def test_widget_gets_every_message_sent_while_its_nodes_fanout_was_cut(redis_url: str, tmp_path: Path,
                                                                              new_page: Any) -> None:
    async with running_cluster(redis_url, tmp_path) as c:
        n1, n2 = (n.node_id for n in c.nodes)
        base = c.url + "/"
        page = await new_page()
        await page.context.add_cookies([{"name": "segue_node", "value": n2, "url": base}])
        agent = await c.agent("alice", node=n1)
        await open_widget(page, base)
        cid = await start_chat(page, "anyone there?", name="Ada")
        await agent.wait(lambda: [o for o in agent.got("offer") if o["conversation"]["id"] == cid])
        await agent.ok("offer.accept", {"conversation_id": cid})
        acked = []
        for i in range(300):
            if i == 20:
                assert await cut_pubsub(c.redis, c.nodes) > 0
            acked.append((await agent.send(cid, f"reply {i}"))["id"])
        # every acknowledged reply is in the page's conversation (its SDK's events, by id)
        await wait_js(page, "(ids) => ids.every((id) => window.segueWidget.conversation.events.some((e) => e.id === id))",
                      timeout=60_000, arg=acked)
        shown = await page.evaluate("(ids) => window.segueWidget.conversation.events.filter((e) => ids.includes(e.id)).length",
                                    acked)
        assert shown == len(acked) and not page.segue_errors
        print(f"FANOUT cut under a widget (Chromium): acked={len(acked)} shown={shown}")
