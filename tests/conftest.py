"""Shared test harness: a real Redis for the session, a real Segue node per test, real Chromium.

- ``redis_url``: the embedded ``redis-server`` (the launcher the server itself uses), started once
  on a temporary data folder and stopped at the end of the session.
- ``make_config`` / ``segue``: a node on a real port, with its own Redis key prefix so tests never
  see each other's data.
- ``browser``: Debian's Chromium driven by Playwright, headless, with fake camera and microphone.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import pytest
import pytest_asyncio

from server import NODE, Config, EmbeddedRedis, Node, create_app, load_config

CHROMIUM = os.environ.get("SEGUE_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("redis")
    instance = asyncio.run(EmbeddedRedis.start(folder))
    yield instance.url
    asyncio.run(instance.stop())


@pytest.fixture
def make_config(redis_url: str, tmp_path: Path) -> Callable[..., Config]:
    """``make_config({"routing.offer_timeout_s": 2})``: test settings over the defaults, no env."""

    def make(overrides: dict[str, Any] | None = None) -> Config:
        base: dict[str, Any] = {
            "redis.url": redis_url,
            "redis.key_prefix": f"test-{uuid.uuid4().hex[:10]}:",
            "data_dir": str(tmp_path / "data"),
            "log.level": "warning",
            # Load shedding watches the event loop's lag; here the loop is shared with the tests' own
            # clients and aiortc peers (and the machine with Chromium), so its lag says nothing about
            # the node. Tests of shedding set it themselves (tests/integration/test_overload.py).
            "limits.shed_lag_ms": 0,
        }
        base.update(overrides or {})
        return load_config(environ={}, overrides=base)

    return make


@dataclass
class SegueServer:
    """A running node: its base URL (ending in /), app and shared Node."""

    url: str
    app: Any
    node: Node

    @property
    def config(self) -> Config:
        return self.node.config


@pytest.fixture
def start_segue(aiohttp_server: Any, make_config: Callable[..., Config]) -> Callable[..., Any]:
    """Start a node (several per test are fine: they share Redis when given the same key prefix)."""

    async def start(overrides: dict[str, Any] | None = None, config: Config | None = None) -> SegueServer:
        cfg = config or make_config(overrides)
        app = create_app(cfg, cfg.redis.url)
        server = await aiohttp_server(app)
        return SegueServer(url=str(server.make_url("/")), app=app, node=app[NODE])

    return start


@pytest_asyncio.fixture
async def segue(start_segue: Callable[..., Any]) -> SegueServer:
    return await start_segue()


def _require_chromium() -> str:
    path = shutil.which(CHROMIUM) or CHROMIUM
    if not Path(path).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: run `make test` (it installs Debian's chromium as root)")
    return path


@pytest_asyncio.fixture
async def browser() -> AsyncIterator[Any]:
    """Headless Debian Chromium with fake media devices; pages get a fresh context each."""
    from playwright.async_api import async_playwright

    path = _require_chromium()
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest_asyncio.fixture
async def new_page(browser: Any) -> AsyncIterator[Callable[..., Any]]:
    """``page = await new_page()``: a page in its own context (own storage), console errors collected.

    ``page.segue_errors`` lists uncaught page errors; tests assert it stays empty.
    """
    contexts = []

    async def make(**context_args: Any) -> Any:
        # Pages run under their real Content-Security-Policy, so a page that breaks under it fails
        # its tests. (It has no 'unsafe-eval': poll with chat_pages.wait_js, not wait_for_function.)
        context = await browser.new_context(**context_args)
        contexts.append(context)
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.segue_errors = errors  # type: ignore[attr-defined]
        return page

    yield make
    for context in contexts:
        await context.close()
