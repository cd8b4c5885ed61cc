"""Arrival timing of a 20 ms stream (the agent's): scripted arrivals on a fake clock."""

import random

import pytest

from sipbridge.rtp.arrival import ArrivalConfig, ArrivalTiming

FRAME = 0.020
MEASURED = ArrivalConfig(initial_ms=0.0)  # no cautious start: the wait is what was measured


def feed(timing, arrivals):
    for seq, at in arrivals:
        timing.arrived(seq, at)


def stream(frames, start=10.0, phase=0.007, jitter=0.0, seq0=100, seed=1):
    rng = random.Random(seed)
    return [((seq0 + k) & 0xFFFF, start + phase + k * FRAME + rng.uniform(0, jitter)) for k in frames]


def test_nothing_is_due_before_the_first_packet():
    assert ArrivalTiming().frame_due() is None


def test_a_new_stream_starts_with_a_cautious_wait_that_falls_to_what_is_measured():
    timing = ArrivalTiming()
    feed(timing, stream(range(10)))
    assert timing.wait_s == pytest.approx(0.010, abs=0.0005)  # 8 ms assumed, plus the margin
    feed(timing, stream(range(10, 400)))
    assert timing.wait_s == pytest.approx(0.002)


def test_a_steady_stream_is_due_the_margin_after_each_arrival():
    timing = ArrivalTiming(MEASURED)
    arrivals = stream(range(100))
    feed(timing, arrivals)
    last = arrivals[-1][1]
    assert timing.frame_due(queued=1) == pytest.approx(last + 0.002)  # the newest, still queued
    assert timing.frame_due() == pytest.approx(last + 0.022)  # the next to come
    assert timing.keep_frames == 0


def test_the_wait_covers_the_jitter_so_every_frame_is_there_by_its_due():
    timing = ArrivalTiming(MEASURED)
    arrivals = stream(range(300), jitter=0.004)
    feed(timing, arrivals[:100])
    assert 0.0035 < timing.wait_s - 0.002 <= 0.004  # the spread: the jitter seen so far
    for seq, at in arrivals[100:]:
        assert timing.frame_due() >= at  # the next frame has arrived when its tick comes
        timing.arrived(seq, at)


def test_a_late_frame_widens_the_wait_at_once_and_it_narrows_slowly():
    timing = ArrivalTiming(MEASURED)
    feed(timing, stream(range(50)))
    timing.arrived(150, 10.007 + 50 * FRAME + 0.012)  # 12 ms late
    assert timing.wait_s == pytest.approx(0.014)
    feed(timing, stream(range(51, 201)))  # 3 s on time afterwards: the peak has left the windows
    falling = timing.wait_s
    feed(timing, stream(range(201, 251)))  # one more second
    assert 0.014 > falling > timing.wait_s >= falling - 0.002 - 1e-9  # at most 2 ms per second
    feed(timing, stream(range(251, 2000)))
    assert timing.wait_s == pytest.approx(0.002)


def test_sequence_wrap_is_followed():
    timing = ArrivalTiming(MEASURED)
    feed(timing, stream(range(200), seq0=65500))
    last = stream([199], seq0=65500)[0][1]
    assert timing.frame_due(queued=1) == pytest.approx(last + 0.002)


def test_a_new_stream_or_a_sequence_jump_starts_over():
    timing = ArrivalTiming(MEASURED)
    feed(timing, stream(range(100)))
    restart = stream(range(100), start=12.0, phase=0.013, seq0=40000)  # a resumed agent session
    feed(timing, restart)
    last = restart[-1][1]
    assert timing.frame_due(queued=1) == pytest.approx(last + 0.002)


def test_jitter_beyond_a_frame_keeps_frames_standing():
    timing = ArrivalTiming(MEASURED)
    feed(timing, stream(range(100), jitter=0.030))
    assert timing.keep_frames == 1


def test_a_senders_ticks_are_placed_once_then_move_as_seldom_as_they_can():
    timing = ArrivalTiming(MEASURED)
    feed(timing, stream(range(4)))  # frame k on time at 10.007 + k * 20 ms
    assert timing.tick_at(scheduled=10.080, now=10.07, queued=0) is None  # 4 packets: not settled
    feed(timing, stream([4]))
    assert timing.tick_at(scheduled=10.120, now=10.09, queued=0) == pytest.approx(10.109)  # frame 5
    assert timing.tick_at(scheduled=10.110, now=10.11, queued=0) is None  # 1 ms late: margin enough
    later = stream(range(5, 400), phase=0.014)  # the agent's timing moved 7 ms later (a slow clock)
    feed(timing, later[:100])
    # At once, to 7 ms later, plus the 7 ms as spread until the earlier timing leaves the windows.
    assert timing.tick_at(scheduled=12.109, now=12.0, queued=0) == pytest.approx(12.123)


def test_ticks_well_after_the_frames_come_move_earlier_by_small_steps():
    timing = ArrivalTiming(MEASURED)
    feed(timing, stream(range(100)))
    due = timing.frame_due()
    assert timing.tick_at(scheduled=due, now=12.0, queued=0) == pytest.approx(due)  # placed
    late = due + 0.012  # 12 ms later than needed (the spread has fallen since)
    moves = [timing.tick_at(scheduled=late, now=now, queued=0) for now in (13.0, 13.5, 14.1)]
    assert moves == [pytest.approx(late - 0.002), None, pytest.approx(late - 0.002)]
    assert timing.tick_at(scheduled=due + 0.008, now=20.0, queued=0) is None  # 8 ms: within the slack


def test_the_next_tick_is_for_the_oldest_frame_still_queued():
    timing = ArrivalTiming(MEASURED)
    feed(timing, stream(range(10)))
    assert timing.tick_at(scheduled=10.5, now=10.2, queued=3) == pytest.approx(10.007 + 7 * FRAME + 0.002)
