"""CPU caps for benchmark nodes: each node in its own cgroup with a CPU quota (a node of fixed size).

Why: a throughput ratio of N nodes to one node, measured on one machine, says how Segue scales
out only if every node gets the same CPU in both runs and the load generator and Redis do not
take it from them. Uncapped, one node runs on a whole core while the clients and Redis share the
other, and two nodes must share everything with them: the ratio then measures the machine. With
each node capped at the same fraction of a core (Linux CFS bandwidth control), one node's
throughput is the cap over its CPU per message, N nodes' is what adding nodes gives, and the
clients and Redis run unthrottled in the CPU that is left.

cgroup v1 (``/sys/fs/cgroup/cpu``: ``cpu.cfs_period_us``, ``cpu.cfs_quota_us``) and v2
(``cpu.max``) are both handled; creating a group needs root (or a delegated, writable group).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
# A short period: a capped node that spent its quota waits at most (1 - cap) x 20 ms for the next
# period, instead of up to 100 ms with the kernel's default period.
PERIOD_US = 20_000
# CPU the load generator and Redis spend per unit of node CPU in bench.load (measured: clients
# 0.066 ms + Redis 0.05 ms per message, for a node's 0.236 ms): the default cap leaves them this.
CLIENT_SHARE = 0.5
# Of the machine, the share the nodes, clients and Redis may plan on (the rest: the OS, the bench).
HEADROOM = 0.9


class CpuCapError(RuntimeError):
    """A cgroup could not be created or written: the caller cannot cap nodes on this machine."""


def available_cpus() -> int:
    """Cores this process may run on (its affinity), else ``os.cpu_count()``."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def default_node_cpu(cpus: int, nodes: int) -> float:
    """Cores per node such that ``nodes`` capped nodes, plus the clients and Redis that keep them
    busy (``CLIENT_SHARE`` of their CPU), fit in ``HEADROOM`` of ``cpus``: rounded down to 0.05,
    at most one core (a node's event loop uses one), at least 0.05. 2 cores, 2 nodes: 0.6."""
    if cpus < 1 or nodes < 1:
        raise ValueError("cpus and nodes must be at least 1")
    fraction = HEADROOM * cpus / (nodes * (1.0 + CLIENT_SHARE))
    return max(0.05, min(1.0, math.floor(fraction * 20 + 1e-9) / 20))


@dataclass(frozen=True)
class Throttling:
    """A group's CFS bandwidth counters (``cpu.stat``): periods it ran in, periods in which it spent
    its quota and waited, and the time it waited."""

    periods: int = 0
    throttled: int = 0
    throttled_s: float = 0.0

    def __sub__(self, other: Throttling) -> Throttling:
        return Throttling(self.periods - other.periods, self.throttled - other.throttled,
                          self.throttled_s - other.throttled_s)

    @property
    def throttled_pct(self) -> float:
        """Share of the periods in which the group was throttled (the node was the bottleneck)."""
        return 100.0 * self.throttled / self.periods if self.periods else 0.0


def parse_cpu_stat(text: str) -> Throttling:
    """``cpu.stat`` of cgroup v1 (``throttled_time`` in ns) or v2 (``throttled_usec``)."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            values[key] = int(value)
    if "throttled_usec" in values:
        throttled_s = values["throttled_usec"] / 1e6
    else:
        throttled_s = values.get("throttled_time", 0) / 1e9
    return Throttling(values.get("nr_periods", 0), values.get("nr_throttled", 0), throttled_s)


def _cpu_hierarchy() -> tuple[Path, int]:
    """(the folder new groups go in, cgroup version)."""
    v1 = CGROUP_ROOT / "cpu"
    if (v1 / "cpu.cfs_quota_us").exists():
        return v1, 1
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        return CGROUP_ROOT, 2
    raise CpuCapError(f"no cgroup cpu controller under {CGROUP_ROOT}")


class CpuCap:
    """One cgroup limited to ``cores`` of CPU, for the processes put in it with :meth:`add`;
    :meth:`remove` moves any process left back to the parent group and deletes the group."""

    def __init__(self, path: Path, version: int, cores: float) -> None:
        self.path = path
        self.version = version
        self.cores = cores

    @classmethod
    def create(cls, name: str, cores: float, period_us: int = PERIOD_US) -> CpuCap:
        if not 0 < cores:
            raise ValueError("cores must be above 0")
        parent, version = _cpu_hierarchy()
        path = parent / name
        quota_us = max(1000, round(cores * period_us))  # the kernel's minimum quota is 1 ms
        try:
            if version == 2 and "cpu" not in (parent / "cgroup.subtree_control").read_text().split():
                (parent / "cgroup.subtree_control").write_text("+cpu")
            path.mkdir()
        except OSError as exc:
            raise CpuCapError(f"cannot create the cgroup {path}: {exc}") from None
        cap = cls(path, version, cores)
        try:
            if version == 1:
                (path / "cpu.cfs_period_us").write_text(str(period_us))
                (path / "cpu.cfs_quota_us").write_text(str(quota_us))
            else:
                (path / "cpu.max").write_text(f"{quota_us} {period_us}")
        except OSError as exc:
            cap.remove()
            raise CpuCapError(f"cannot set the CPU quota of {path}: {exc}") from None
        return cap

    def add(self, pid: int) -> None:
        """Move process ``pid`` (all its threads; its later children follow) into the group."""
        try:
            (self.path / "cgroup.procs").write_text(str(pid))
        except OSError as exc:
            raise CpuCapError(f"cannot move process {pid} into {self.path}: {exc}") from None

    def throttling(self) -> Throttling:
        try:
            return parse_cpu_stat((self.path / "cpu.stat").read_text())
        except OSError:
            return Throttling()

    def remove(self) -> None:
        """Delete the group (never raises: called on the way out, also after errors)."""
        try:
            left = (self.path / "cgroup.procs").read_text().split()
        except OSError:
            left = []
        for pid in left:  # a process that outlived its stop goes back to the parent group
            try:
                (self.path.parent / "cgroup.procs").write_text(pid)
            except OSError:
                pass
        try:
            self.path.rmdir()
        except OSError:
            pass
