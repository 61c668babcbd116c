"""What every benchmark's client process does around its own work.

Why a module: bench.chat and bench.load both run their Socket.IO clients in ``spawn``-ed processes
(one core's worth of clients each) that must ignore the parent's Ctrl-C (the parent stops them),
use uvloop when it is installed (``pip install -e '.[bench]'``: the load generator should cost as
little of the machine as it can), and report a failure to the parent through the pipe instead of
dying silently.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any, Awaitable, Callable


def run_client(index: int, conn: Any, main: Callable[[], Awaitable[None]]) -> None:
    """Run ``main()`` in this process's own event loop; an exception is sent to the parent as
    ``("error", "worker <index>: ...")``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    try:
        asyncio.run(main())  # type: ignore[arg-type]
    except Exception as exc:  # noqa: BLE001
        conn.send(("error", f"worker {index}: {type(exc).__name__}: {exc}"))
