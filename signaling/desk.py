"""Search and the knowledge base on a node: building them, keeping them current, their customer
events ``kb.search`` and ``kb.article`` (docs/knowledge.md, docs/protocol.md "Customer").

Why one module: conversation search (``signaling.search``) and the knowledge base
(``signaling.knowledge``) each keep an in-process index fed from Redis; one background task per
node catches both up every ``knowledge.search_sync_s`` and settles ended self-service windows.
Searches catch up on their own before answering, so the task only keeps answers quick.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .errors import ProtocolError
from .knowledge import KbArticle, KbSearch, KnowledgeBase
from .limits import Buckets
from .search import ConversationSearch

if TYPE_CHECKING:
    from .service import Principal, Signaling

log = logging.getLogger(__name__)

PUBLIC_RATE = 5.0    # anonymous knowledge-base requests a second per client address, on average
PUBLIC_BURST = 40.0  # and at once


class Desk:
    """This node's conversation search and knowledge base, and the task that keeps them current."""

    def __init__(self, svc: "Signaling") -> None:
        settings = getattr(svc.config, "knowledge", None)
        self.every_s = float(getattr(settings, "search_sync_s", 1.0) or 1.0)
        window = float(getattr(settings, "self_service_window_s", 1800.0))
        self.svc = svc
        self.search = ConversationSearch(svc)
        self.knowledge = KnowledgeBase(svc, window)
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        # the public (anonymous) knowledge-base endpoints: requests per client address
        self._public = Buckets(PUBLIC_RATE, PUBLIC_BURST)

    def public_request(self, address: str) -> None:
        """Count an anonymous request from ``address``; ``rate_limited`` past the limit."""
        wait = self._public.take(address, time.monotonic())
        if wait > 0:
            raise ProtocolError("rate_limited", f"too many knowledge-base requests: try again in {wait:.1f} s",
                                retry_after_ms=max(1, int(wait * 1000)))

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="segue-search-sync")

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
            self._task = None

    async def _run(self) -> None:
        while not self._stopping:
            for step in (self.search.catch_up, self.knowledge.sync, self.knowledge.settle):
                try:
                    await step()
                except asyncio.CancelledError:
                    raise
                except Exception:  # noqa: BLE001 - Redis away a moment: the next turn catches up
                    log.warning("search: %s failed; retrying", getattr(step, "__qualname__", step), exc_info=True)
            await asyncio.sleep(self.every_s)

    # --- customer events ----------------------------------------------------------------------

    async def customer_search(self, who: "Principal", data: KbSearch, sid: str) -> dict[str, Any]:
        return {"articles": await self.knowledge.search(data.q, data.limit)}

    async def customer_article(self, who: "Principal", data: KbArticle, sid: str) -> dict[str, Any]:
        h = await self.knowledge.get_published(data.slug)
        # a self-service session starts only outside a conversation: a customer already talking
        # to an agent who reads an article was not helped "without an agent"
        if not await self.svc._open_conversations(who.id):
            await self.knowledge.opened(who.id)
        return {"article": self.knowledge.customer_view(h)}


DESK: web.AppKey[Desk] = web.AppKey("segue_desk", Desk)


def install(app: web.Application, svc: "Signaling", closers: list[Any]) -> Desk:
    """Build the node's :class:`Desk`, add the customer events, start and stop it with the app."""
    desk = Desk(svc)
    svc.desk = desk  # type: ignore[attr-defined]
    svc.stored_observers.append(desk.search.note_stored)
    ns = getattr(svc, "customer_ns", None)
    if ns is not None:
        ns.register("kb.search", KbSearch, desk.customer_search)
        ns.register("kb.article", KbArticle, desk.customer_article)
    app[DESK] = desk

    async def start(_app: web.Application) -> None:
        await desk.start()

    app.on_startup.append(start)
    closers.append(desk.stop)
    return desk


__all__ = ["Desk", "DESK", "install"]
