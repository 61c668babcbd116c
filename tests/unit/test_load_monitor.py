"""The node's adaptive admission budget (signaling.limits.LoadMonitor), driven by hand, and the
loop clock it reads (media.ticks).

The monitor is fed what its loop-lag probe would see (``observe(now, lag)``) and asked to admit
events at chosen times (from the monotonic clock's present on), so each decision is checked on its
own: no waiting, no load.
"""

from __future__ import annotations

import asyncio
import math
import random
import time

import pytest

from media import ticks
from signaling.limits import LoadMonitor

TARGET = 0.02  # limits.shed_lag_ms = 20


def run(monitor: LoadMonitor, start: float, seconds: float, events_per_s: float, lag: float,
        key: str = "") -> tuple[float, int, int]:
    """``events_per_s`` events offered evenly from ``start`` for ``seconds`` while the loop runs
    ``lag`` late (a probe every 10 ms); returns (end, admitted, refused)."""
    admitted = refused = 0
    step = 0.01
    per_step = events_per_s * step
    owed = 0.0
    now = start
    for i in range(1, round(seconds / step) + 1):
        now = start + i * step  # not a running sum: its rounding would stretch the 100 ms intervals
        owed += per_step
        while owed >= 1:
            owed -= 1
            if monitor.admit(now, key):
                refused += 1
            else:
                admitted += 1
        monitor.observe(now, lag)
    return now, admitted, refused


def test_on_time_everything_is_admitted() -> None:
    monitor = LoadMonitor(TARGET)
    _, admitted, refused = run(monitor, time.monotonic(), 2.0, 5000, lag=0.002)
    assert refused == 0 and admitted == 10000
    assert not monitor.overloaded and monitor.budget == math.inf


def test_a_queue_that_lasts_sets_a_budget_below_what_the_node_did() -> None:
    monitor = LoadMonitor(TARGET)
    now, _, _ = run(monitor, time.monotonic(), 0.5, 3000, lag=0.002)
    assert not monitor.overloaded
    run(monitor, now, 0.1, 3000, lag=0.08)  # late for a whole interval: a standing queue
    assert monitor.overloaded
    assert 3000 * 0.6 - 1 <= monitor.rate < 3000  # cut from what it admitted, by target / lag (0.6-0.9)


def test_one_late_tick_is_a_burst_not_a_queue() -> None:
    monitor = LoadMonitor(TARGET)
    now, _, _ = run(monitor, time.monotonic(), 0.5, 3000, lag=0.002)
    monitor.observe(now + 0.005, 0.3)  # one slow callback ...
    run(monitor, now + 0.005, 0.2, 3000, lag=0.002)  # ... in an interval that was otherwise on time
    assert not monitor.overloaded


def test_a_late_loop_with_little_work_is_not_the_nodes_doing() -> None:
    # the machine is busy with something else: refusing the node's few events would not help
    monitor = LoadMonitor(TARGET)
    run(monitor, time.monotonic(), 2.0, LoadMonitor.MIN_RATE / 2, lag=0.2)
    assert not monitor.overloaded


def test_refusals_past_the_budget_then_the_budget_grows_back_and_is_lifted() -> None:
    monitor = LoadMonitor(TARGET)
    now, _, _ = run(monitor, time.monotonic(), 0.5, 3000, lag=0.002)
    now, _, _ = run(monitor, now, 0.1, 3000, lag=0.1)
    budget = monitor.rate
    now, admitted, refused = run(monitor, now, 0.05, 6000, lag=0.1)  # over budget: refused
    assert refused > 0 and admitted <= budget * 0.05 + budget * 0.1 + 1  # the budget (and its 100 ms burst)
    assert monitor.shed >= refused
    now, _, refused = run(monitor, now, 0.5, 6000, lag=0.002)  # on time again: probing for room
    assert monitor.rate > budget and refused > 0
    # demand falls: once every refused client has come back and nothing was refused for a second
    now, _, refused = run(monitor, now, 1.0 + LoadMonitor.MAX_RETRY_S + 0.5, 100, lag=0.002)
    assert refused == 0 and not monitor.overloaded


def test_cuts_wait_for_the_last_one_to_take_effect() -> None:
    monitor = LoadMonitor(TARGET)
    now, _, _ = run(monitor, time.monotonic(), 0.5, 3000, lag=0.002)
    now, _, _ = run(monitor, now, 0.1, 3000, lag=1.0)
    first = monitor.rate
    run(monitor, now, LoadMonitor.HOLD_S - 0.1, 3000, lag=1.0)  # still late, but the queue is draining
    assert monitor.rate == first


def test_the_fixed_ceiling_holds_without_any_lag() -> None:
    monitor = LoadMonitor(TARGET, ceiling=1000)
    _, admitted, refused = run(monitor, time.monotonic(), 2.0, 3000, lag=0.0)
    assert refused > 0 and admitted <= 1000 * 2 + 100 + 1
    assert monitor.budget == 1000


def test_refused_connections_are_told_distinct_times_spread_by_the_budget() -> None:
    monitor = LoadMonitor(TARGET, ceiling=400)  # slots 1 / (RETRY_SHARE x 400) = 25 ms apart
    now = time.monotonic()
    while not monitor.admit(now, "warm-up"):  # spend the burst
        pass
    waits = [monitor.admit(now, f"c{i}") for i in range(20)]
    assert all(w >= LoadMonitor.MIN_RETRY_S for w in waits)
    times = sorted(now + w for w in waits)
    gaps = [b - a for a, b in zip(times, times[1:])]
    spacing = 1 / (LoadMonitor.RETRY_SHARE * 400)
    assert min(gaps) >= spacing * 0.999  # one slot each: they come back one after another


def test_a_connection_keeps_its_slot_and_the_calendar_is_bounded() -> None:
    monitor = LoadMonitor(TARGET, ceiling=100)
    now = time.monotonic()
    while not monitor.admit(now, "warm-up"):
        pass
    first = monitor.admit(now, "a")
    again = monitor.admit(now, "a")  # its next request, before its slot
    assert again == first  # the same time: its other requests do not push everyone else back
    assert monitor.admit(now, "b") > first
    waits = [monitor.admit(now + 0.02, f"x{i}") for i in range(5000)]  # a crowd
    assert max(waits) <= LoadMonitor.MAX_RETRY_S


def test_after_a_cut_the_budget_climbs_back_towards_where_the_queue_appeared() -> None:
    monitor = LoadMonitor(TARGET)
    now, _, _ = run(monitor, time.monotonic(), 0.5, 3000, lag=0.002)
    now, _, _ = run(monitor, now, 0.1, 3000, lag=0.2)  # far too late: the deepest cut
    cut = monitor.rate
    assert cut < 3000 * 0.7
    run(monitor, now, 0.3, 6000, lag=0.002)  # on time, still refusing: three intervals
    assert 3000 * 0.9 <= monitor.rate <= 3000 * 1.05 ** 3  # most of the way back, not far past


def test_a_late_loop_never_cuts_below_a_quarter_of_what_the_node_did_lately() -> None:
    monitor = LoadMonitor(TARGET)
    now, _, _ = run(monitor, time.monotonic(), 1.0, 4000, lag=0.002)
    run(monitor, now, 3.0, 4000, lag=2.0)  # late for seconds on end (a machine busy with other work)
    assert monitor.rate >= 4000 * LoadMonitor.FLOOR_SHARE * 0.99


def test_a_late_loop_that_sat_idle_has_no_queue_of_its_own() -> None:
    # late ticks, but the loop waited for I/O meanwhile: the process was not run (a busy machine)
    monitor = LoadMonitor(TARGET)
    now, _, _ = run(monitor, time.monotonic(), 0.5, 3000, lag=0.002)
    for _ in range(30):
        now += 0.01
        for _ in range(30):
            monitor.admit(now)
        monitor.observe(now, 0.2, idle=0.002)  # 20 % of each 10 ms waiting in the selector
    assert not monitor.overloaded
    for _ in range(30):  # the same lateness, never idle: a queue of its own
        now += 0.01
        for _ in range(30):
            monitor.admit(now)
        monitor.observe(now, 0.2, idle=0.0)
    assert monitor.overloaded


async def test_ticks_say_how_late_and_how_idle_the_loop_was() -> None:
    clock = ticks(0.01)
    first = await anext(clock)  # nothing else to do: the loop waited in its selector
    assert first.idle is not None and first.idle > 0
    asyncio.get_running_loop().call_soon(time.sleep, 0.05)  # a callback that holds the loop
    held = await anext(clock)
    assert held.lag > 0 and held.idle is not None and held.idle < held.lag  # late, and not for want of work

    def spin() -> None:  # a callback that holds the loop working on a CPU
        start = time.thread_time()
        while time.thread_time() - start < 0.05:
            pass

    asyncio.get_running_loop().call_soon(spin)
    working = await anext(clock)
    assert working.lag > 0 and working.busy > held.busy  # sleeping in a callback is not the loop's work
    await clock.aclose()


async def test_ticks_come_sparser_while_the_loop_is_idle() -> None:
    clock = ticks(0.01, idle_interval=0.1)
    assert (await anext(clock)).interval == 0.01
    idle_ticks = [await anext(clock) for _ in range(3)]  # nothing else to do: a look per 0.1 s
    assert [t.interval for t in idle_ticks] == [0.1] * 3

    def spin() -> None:  # the loop busy: every 10 ms again
        start = time.thread_time()
        while time.thread_time() - start < 0.3:
            pass

    asyncio.get_running_loop().call_soon(spin)
    held = await anext(clock)
    assert held.interval == 0.1 and held.idle is not None and held.idle < 0.5 * held.lag
    assert (await anext(clock)).interval == 0.01
    await clock.aclose()
    with pytest.raises(ValueError, match="idle interval"):
        await anext(ticks(0.1, idle_interval=0.01))


def test_a_loop_run_only_a_share_of_the_time_counts_only_its_own_waiting_work() -> None:
    monitor = LoadMonitor(TARGET)
    now, _, _ = run(monitor, time.monotonic(), 0.5, 3000, lag=0.002)
    for _ in range(30):  # 200 ms late, never idle, but on a CPU 5 % of the time: 10 ms of its own
        now += 0.01
        for _ in range(30):
            monitor.admit(now)
        monitor.observe(now, 0.2, idle=0.0, busy=0.05)
    assert not monitor.overloaded


def test_a_client_back_at_its_time_is_served_for_what_was_refused() -> None:
    monitor = LoadMonitor(TARGET, ceiling=100)
    now = time.monotonic()
    while not monitor.admit(now, "warm-up"):  # spend the burst
        pass
    waits = [monitor.admit(now, "a") for _ in range(3)]  # three requests in flight, all refused
    assert len(set(waits)) == 1 and waits[0] > 0
    back = now + waits[0]
    while not monitor.admit(back, "crowd"):  # the budget is spent again by the time it comes back
        pass
    assert [monitor.admit(back, "a") for _ in range(4)][:3] == [0.0, 0.0, 0.0]  # the three are served
    assert monitor.admit(back, "newcomer") > 0  # the debt is paid by newcomers


def test_a_connection_with_a_long_queue_of_its_own_is_refused_even_when_the_node_is_not() -> None:
    monitor = LoadMonitor(TARGET)
    now = time.monotonic()
    long_wait = LoadMonitor.PIPELINE_TARGETS * TARGET * 2  # its requests behind this one would wait that long
    assert monitor.admit(now, "piped", waiting=long_wait) > 0
    assert monitor.admit(now, "other", waiting=TARGET) == 0.0  # a short queue of its own passes
    assert monitor.pipeline_shed == 1 and not monitor.overloaded


def test_a_crowd_whose_own_queues_near_the_limit_is_refused_in_part_not_all_at_once() -> None:
    random.seed(11)
    monitor = LoadMonitor(TARGET)
    now = time.monotonic()
    limit = LoadMonitor.PIPELINE_TARGETS * TARGET
    near = [monitor.admit(now, f"c{i}", waiting=0.75 * limit) > 0 for i in range(400)]
    assert 0.3 < sum(near) / len(near) < 0.7  # about half: the chance is halfway from 0 to 1
    assert all(monitor.admit(now, f"d{i}", waiting=1.01 * limit) > 0 for i in range(50))  # past it: always
    assert not any(monitor.admit(now, f"e{i}", waiting=0.49 * limit) > 0 for i in range(50))  # below half: never
