"""``resync`` in the widget's SDK (docs/protocol.md): pushes lost while a node's link to Redis
pub/sub was down are fetched again.

- The customer's page on one node, the agent on another; the nodes' pub/sub connections are cut
  while the agent writes (Redis stays up). What the agent's node publishes while the page's node
  subscribes again reaches nobody, and pushes arrive again before the page's node says
  ``resync``: the SDK resumes from the resync's ``since``, not only from the last id it saw.
- The resume after a ``resync`` is answered ``unavailable`` (the node's Redis blinked as its link
  came back): the SDK asks again, as nothing else would fetch what was lost.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from chat_pages import open_widget, redis_drops_first, start_chat, wait_js
from cluster_kit import cut_pubsub, running_cluster
from signaling import SIGNALING
from signaling.store import Store, encode_event

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


async def test_widget_asks_again_when_its_resume_after_resync_is_unavailable(segue: Any, new_page: Any,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    page = await new_page()
    await open_widget(page, segue.url)
    cid = await start_chat(page, "hello?", name="Ada")
    # a reply stored whose push was lost (as while the node's pub/sub link was down)
    store = Store(segue.node.redis, segue.config.redis.key_prefix)
    outcome = await store.mutate(cid, {"events": [encode_event("message", {"kind": "agent", "id": "a_9", "name": "Alan"},
                                                                "all", {"text": "sent while the link was down"})]})
    lost = outcome.ids[0]
    answered = redis_drops_first(monkeypatch, segue.app[SIGNALING], "resume", 1)
    last = await page.evaluate("window.segueWidget.conversation.lastEventId")
    since = f"{int(last.partition('-')[0]) - 1}-0"  # earlier than what the page has: it resumes from there
    await segue.node.sio.emit("resync", {"reason": "fanout_reconnected", "since": since}, namespace="/customer")
    await wait_js(page, "(id) => window.segueWidget.conversation.events.some((e) => e.id === id)", arg=lost)
    assert answered[:2] == [since, since]  # asked again, from the same point
    assert not page.segue_errors
