"""Fixtures for the forwarder tests (helpers live in ``media_testkit``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from media_testkit import MediaLab

from media import Forwarder, set_loopback_only


@pytest.fixture(autouse=True)
def loopback() -> Any:
    """aioice gathers 127.0.0.1 only for the duration of each media test."""
    set_loopback_only(True)
    yield
    set_loopback_only(False)


@pytest_asyncio.fixture
async def lab() -> AsyncIterator[MediaLab]:
    instance = MediaLab(Forwarder())
    try:
        yield instance
    finally:
        await instance.close()
