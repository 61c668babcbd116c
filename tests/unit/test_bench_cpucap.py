"""bench.load's CPU cap per node: the default size of a node and the reading of cgroup counters.

Why: the 2-node/1-node ratio is only sound when the nodes get the same CPU in both runs and the
clients and Redis still fit next to them; these pick that size and read the throttling that shows
the nodes were the bottleneck.
"""

from __future__ import annotations

import pytest

from bench.cpucap import Throttling, default_node_cpu, parse_cpu_stat


@pytest.mark.parametrize("cpus, nodes, expected", [
    (2, 2, 0.6),   # this machine: 1.2 cores of nodes, the clients and Redis in the rest
    (2, 1, 1.0),   # at most one core: a node's event loop uses one
    (4, 2, 1.0),
    (8, 4, 1.0),
    (4, 4, 0.6),
    (1, 2, 0.3),
    (1, 64, 0.05),  # never 0 (that would mean uncapped)
])
def test_default_node_cpu_leaves_room_for_clients_and_redis(cpus: int, nodes: int, expected: float) -> None:
    fraction = default_node_cpu(cpus, nodes)
    assert fraction == pytest.approx(expected)
    if fraction > 0.05:
        # nodes plus half of their CPU again (clients and Redis) fit in the machine
        assert nodes * fraction * 1.5 <= cpus


def test_default_node_cpu_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        default_node_cpu(0, 2)
    with pytest.raises(ValueError):
        default_node_cpu(2, 0)


def test_cpu_stat_v1_and_v2() -> None:
    v1 = parse_cpu_stat("nr_periods 100\nnr_throttled 40\nthrottled_time 1210950374\nnr_bursts 0\nburst_time 0\n")
    assert v1 == Throttling(100, 40, pytest.approx(1.210950374))
    v2 = parse_cpu_stat("usage_usec 5000\nuser_usec 4000\nsystem_usec 1000\n"
                        "nr_periods 50\nnr_throttled 5\nthrottled_usec 250000\n")
    assert v2 == Throttling(50, 5, pytest.approx(0.25))
    assert parse_cpu_stat("") == Throttling()


def test_throttling_over_a_window() -> None:
    window = Throttling(300, 150, 2.5) - Throttling(100, 50, 0.5)
    assert window == Throttling(200, 100, pytest.approx(2.0))
    assert window.throttled_pct == pytest.approx(50.0)
    assert Throttling().throttled_pct == 0.0
