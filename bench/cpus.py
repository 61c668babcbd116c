"""CPU placement for benchmark processes: a server on one core, its clients on another.

Why: on a 2-core machine shared with other jobs, a server and its load generator fighting for
the same core measure each other; pinning them apart (where the OS allows) makes the server's
CPU time per unit of work comparable between the two sides of one run.
"""

from __future__ import annotations

import os


def two_cpus() -> tuple[int | None, int | None]:
    """(server core, client core), or (None, None) when fewer than two are available."""
    try:
        available = sorted(os.sched_getaffinity(0))
    except AttributeError:
        return None, None
    if len(available) >= 2:
        return available[0], available[1]
    return None, None


def pin_cpu(cpu: int | None) -> bool:
    """Pin this process to ``cpu``; False if not pinned (None, or the OS refused)."""
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        return False
    try:
        os.sched_setaffinity(0, {cpu})
        return True
    except OSError:
        return False
