"""The shared 20 ms clock: one wakeup serves every stream, and a stall is reported as elapsed frames."""

import asyncio
import time

import pytest

from sipbridge.rtp.clock import FrameClock, aligned_due


async def test_every_subscriber_ticks_once_per_20ms():
    clock, counts = FrameClock(), {"a": 0, "b": 0}
    tokens = [clock.subscribe(lambda n, k=k: counts.__setitem__(k, counts[k] + n)) for k in counts]
    await asyncio.sleep(0.205)
    for token in tokens:
        clock.unsubscribe(token)
    assert 9 <= counts["a"] <= 12 and counts["a"] == counts["b"]
    await asyncio.sleep(0.05)
    assert clock._task is None  # the clock stops when nobody listens


async def test_a_stall_is_reported_as_the_frames_it_ate():
    clock, frames = FrameClock(), []
    token = clock.subscribe(frames.append)
    await asyncio.sleep(0.03)
    time.sleep(0.25)  # the event loop is blocked: ~12 frame times pass
    await asyncio.sleep(0.03)
    clock.unsubscribe(token)
    assert max(frames) >= 10 and clock.stalls == 1
    assert sum(frames) * 0.02 >= 0.25


async def test_a_failing_subscriber_does_not_stop_the_others():
    clock, good = FrameClock(), []

    def broken(frames: int) -> None:
        raise RuntimeError("boom")

    tokens = [clock.subscribe(broken), clock.subscribe(good.append)]
    await asyncio.sleep(0.07)
    for token in tokens:
        clock.unsubscribe(token)
    assert len(good) >= 3


def test_aligned_due_is_the_wanted_time_rounded_up_to_the_slot_grid():
    base, last = 100.0, 100.020  # the subscriber last ticked at slot 0
    assert aligned_due(100.0311, last, base) == pytest.approx(100.032)  # 11.1 ms after its usual tick
    assert aligned_due(100.0337, last, base) == pytest.approx(100.034)
    assert aligned_due(100.0400, last, base) == pytest.approx(100.040)  # on the grid already


def test_aligned_due_is_never_before_the_wanted_time_even_half_a_frame_away():
    base, last = 0.0, 1.000
    for step in range(100):
        at = last + 0.011 + step * 0.00029  # 11 to 40 ms after the last tick
        due = aligned_due(at, last, base)
        assert due is not None and at <= due < at + 0.002


def test_an_overdue_tick_waits_half_a_frame_and_a_far_one_is_left_alone():
    base, last = 0.0, 1.000
    assert aligned_due(0.990, last, base) == pytest.approx(1.010)  # overdue: one tick, 10 ms on
    assert aligned_due(1.061, last, base) is None  # more than two frames away: keep the schedule


async def test_an_aligned_subscriber_ticks_between_the_others_and_as_often():
    clock, order = FrameClock(), []
    plain = clock.subscribe(lambda n: order.append(("plain", n)))
    moved = clock.subscribe(lambda n: order.append(("moved", n)))
    clock.align(moved, asyncio.get_running_loop().time() + 0.007)  # 8 ms after the others (on the grid)
    await asyncio.sleep(0.205)
    clock.unsubscribe(plain)
    clock.unsubscribe(moved)
    names = [who for who, _ in order]
    assert all(a != b for a, b in zip(names, names[1:], strict=False))  # strictly interleaved
    counts = {who: sum(n for w, n in order if w == who) for who in ("plain", "moved")}
    assert abs(counts["plain"] - counts["moved"]) <= 1


def test_wider_slots_put_the_ticks_on_a_coarser_grid():
    assert aligned_due(100.0311, 100.020, 100.0, slot=0.005) == pytest.approx(100.035)
    assert FrameClock(0.005).slot == 0.005
    with pytest.raises(ValueError, match="divide 20 ms"):
        FrameClock(0.003)
