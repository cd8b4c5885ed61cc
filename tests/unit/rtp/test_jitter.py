"""Adaptive jitter buffer: scripted arrivals on a fake clock, popped every 20 ms like the sender clock."""

import random

import pytest

from sipbridge.rtp.jitter import LOST, JitterBuffer, JitterConfig
from sipbridge.rtp.packet import RtpPacket

FRAME = 0.020
PHASE = 0.007  # the pop clock ticks 7 ms after the sender's


def packet(n, tag="a", seq0=1000, ts0=50_000, ssrc=0x1234, marker=False, ts_frames=None):
    """Frame ``n`` of a stream; its payload names it (``tag`` + n); ``ts_frames`` overrides its clock."""
    frames = n if ts_frames is None else ts_frames
    return RtpPacket(
        sequence=(seq0 + n) & 0xFFFF,
        timestamp=(ts0 + 160 * frames) & 0xFFFFFFFF,
        ssrc=ssrc,
        marker=marker,
        payload=f"{tag}{n}".encode(),
    )


def name(frame):
    return frame if frame is None or frame is LOST else frame.decode()


def run(jb, arrivals, until, start=0.0):
    """Push each (arrival, packet) when its time comes, pop every 20 ms; returns [(pop time, frame)]."""
    return list(ticks(jb, arrivals, until, start))


def ticks(jb, arrivals, until, start=0.0):
    """``run`` one pop at a time, so that the caller can look at the statistics in between."""
    pending = sorted(arrivals, key=lambda item: item[0])
    i, k = 0, 0
    while (now := start + PHASE + k * FRAME) < until:
        while i < len(pending) and pending[i][0] <= now:
            jb.push(pending[i][1], pending[i][0])
            i += 1
        yield now, name(jb.pop(now))
        k += 1


def steady(frames, delay=0.030, **kw):
    """Frame k sent at k * 20 ms, arriving ``delay`` later."""
    return [(delay + k * FRAME, packet(k, **kw)) for k in frames]


def played(out):
    return [f for _, f in out if f is not None and f is not LOST]


def body(out):
    """Everything from the first frame played to the last one (LOST included), Nones dropped."""
    frames = [f for _, f in out]
    first = next(i for i, f in enumerate(frames) if f not in (None, LOST))
    last = max(i for i, f in enumerate(frames) if f not in (None, LOST))
    return [f for f in frames[first : last + 1] if f is not None]


def test_in_order_stream_plays_every_frame_once_at_a_constant_delay():
    jb = JitterBuffer()
    arrivals = steady(range(100))
    out = run(jb, arrivals, until=2.5)
    assert body(out) == [f"a{k}" for k in range(100)]
    arrived = {p.payload.decode(): t for t, p in arrivals}
    delays = {round(t - arrived[f], 9) for t, f in out if f in arrived}
    assert len(delays) == 1 and 0.020 <= delays.pop() < 0.040
    assert out[0][1] is None  # nothing before the initial fill
    s = jb.stats
    assert (s.received, s.played, s.late, s.duplicate, s.overflow, s.shrunk) == (100, 100, 0, 0, 0, 0)
    assert s.target_ms == 20.0 and s.jitter_ms < 0.01


def test_popped_when_due_every_frame_plays_exactly_the_target_after_its_arrival():
    jb = JitterBuffer()
    assert jb.next_due() is None  # nothing has arrived
    arrivals = steady(range(50), delay=0.0137)
    arrived_at = {p.payload: t for t, p in arrivals}
    delays = []

    def pop_what_is_due(before: float) -> None:
        while (due := jb.next_due()) is not None and due < before:
            now = due + 1e-6  # just after, as the playout clock ticks
            delays.append(round(now - arrived_at[jb.pop(now)], 5))

    for t, p in arrivals:
        pop_what_is_due(before=t)
        jb.push(p, t)
    pop_what_is_due(before=arrivals[-1][0] + 0.021)
    assert delays == [0.020] * 50  # the target, not up to a frame more at a clock's own phase


def test_reordering_within_the_delay_plays_in_order():
    jb = JitterBuffer(JitterConfig(initial_ms=60, fall_ms_per_s=0))
    arrivals = steady(range(40))
    for a, b in [(10, 11), (20, 22), (30, 33)]:  # swap pairs up to three frames apart
        (ta, pa), (tb, pb) = arrivals[a], arrivals[b]
        arrivals[a], arrivals[b] = (tb, pa), (ta, pb)
    out = run(jb, arrivals, until=1.2)
    assert body(out) == [f"a{k}" for k in range(40)]
    assert jb.stats.late == 0 and jb.stats.lost == 0


def test_a_stream_that_starts_out_of_order_starts_from_its_first_frame():
    jb = JitterBuffer()
    arrivals = steady(range(20))
    arrivals[0], arrivals[1] = (
        (arrivals[1][0] - 0.015, arrivals[0][1]),
        (arrivals[1][0] - 0.016, arrivals[1][1]),
    )
    assert body(run(jb, arrivals, until=0.6)) == [f"a{k}" for k in range(20)]


def test_duplicates_play_once_and_are_counted():
    jb = JitterBuffer()
    arrivals = steady(range(30))
    arrivals += [(t + 0.005, p) for t, p in steady(range(30))]  # every packet twice
    arrivals += [(0.5, packet(3))]  # and one long after it was played
    out = run(jb, arrivals, until=0.9)
    assert body(out) == [f"a{k}" for k in range(30)]
    assert jb.stats.duplicate == 31 and jb.stats.late == 0


def test_sequence_and_timestamp_wrap():
    jb = JitterBuffer()
    arrivals = steady(range(30), seq0=65530, ts0=2**32 - 3 * 160)
    out = run(jb, arrivals, until=0.8)
    assert body(out) == [f"a{k}" for k in range(30)]
    assert jb.stats.lost == jb.stats.late == 0


def test_loss_bursts_give_lost_for_exactly_the_missing_frames():
    jb = JitterBuffer()
    missing = {10, 20, 21, 22, 40, 41, 42, 43}
    out = run(jb, steady(k for k in range(60) if k not in missing), until=1.4)
    assert body(out) == [LOST if k in missing else f"a{k}" for k in range(60)]
    assert jb.stats.lost == len(missing) and jb.stats.stretched == 0


def test_a_packet_later_than_its_playout_is_dropped_and_the_target_grows():
    jb = JitterBuffer()
    arrivals = steady(range(40))
    arrivals[10] = (arrivals[10][0] + 0.1, arrivals[10][1])
    out = run(jb, arrivals, until=1.0)
    assert body(out)[10] is LOST and "a10" not in played(out)
    assert played(out) == [f"a{k}" for k in range(40) if k != 10]
    assert jb.stats.late == 1 and jb.stats.lost == 1
    assert jb.stats.target_ms == 120.0  # 100 ms late, one frame more, capped at max_ms


def test_a_late_frame_is_waited_for_once_the_target_has_grown():
    jb = JitterBuffer()
    arrivals = steady(range(60))
    arrivals[10] = (arrivals[10][0] + 0.05, arrivals[10][1])  # late: raises the target
    arrivals[40] = (arrivals[40][0] + 0.05, arrivals[40][1])  # now waited for: the delay stretches
    out = run(jb, arrivals, until=1.6)
    assert jb.stats.late == 1
    assert played(out) == [f"a{k}" for k in range(60) if k != 10]
    assert jb.stats.stretched >= 1


def test_ssrc_change_restarts_the_stream():
    jb = JitterBuffer()
    a = steady(range(50))
    b = [(t + 1.0, p) for t, p in steady(range(50), tag="b", seq0=7, ts0=999, ssrc=0xBEEF)]
    out = run(jb, a + b, until=2.5)
    frames = body(out)
    first_b = frames.index("b0")
    assert frames[first_b:] == [f"b{k}" for k in range(50)]
    assert all(f is LOST or f.startswith("a") for f in frames[:first_b])
    assert len(frames[:first_b]) <= 52  # a's frames still buffered are dropped, no long gap
    assert jb.stats.resyncs >= 1 and jb.stats.late == 0


def test_a_lone_packet_of_another_source_or_far_away_sequence_changes_nothing():
    jb = JitterBuffer()
    arrivals = steady(range(40))
    arrivals += [(0.301, packet(0, tag="x", ssrc=0xBAD)), (0.501, packet(0, tag="y", seq0=30000))]
    out = run(jb, arrivals, until=1.0)
    assert body(out) == [f"a{k}" for k in range(40)]
    assert jb.stats.resyncs == 0 and jb.stats.received == 42


def test_a_sequence_restart_within_the_same_ssrc_is_believed_on_the_second_packet():
    jb = JitterBuffer()
    a = steady(range(30))
    b = [(t + 0.6, p) for t, p in steady(range(30), tag="b", seq0=40000, ts0=77)]
    out = run(jb, a + b, until=1.6)
    assert played(out)[-30:] == [f"b{k}" for k in range(30)]
    assert jb.stats.resyncs >= 1 and jb.stats.late == 0


def test_talkspurt_after_silence_suppression_plays_after_a_fresh_fill():
    jb = JitterBuffer()
    first = steady(range(50))
    # 2 s of silence: sequence numbers go on from 50, the timestamp jumps by the 2 s of silence.
    second = [
        (0.030 + (k + 100) * FRAME, packet(k, marker=k == 50, ts_frames=k + 100)) for k in range(50, 80)
    ]
    out = run(jb, first + second, until=4.0)
    frames = [f for _, f in out]
    assert played(out) == [f"a{k}" for k in range(80)]
    tail = frames[frames.index("a49") + 1 : frames.index("a50")]
    assert tail[:10] == [LOST] * 10 and set(tail[10:]) == {None}  # concealed 200 ms, then idle
    arrived = second[0][0]
    start = next(t for t, f in out if f == "a50")
    assert arrived + 0.020 <= start < arrived + 0.040
    assert jb.stats.lost == 0 and jb.stats.late == 0


@pytest.mark.parametrize("jump", [+4_800_000, -4_800_000, +4000])
def test_a_timestamp_jump_without_silence_resyncs_without_a_gap(jump):
    jb = JitterBuffer()
    arrivals = steady(range(40))
    arrivals += [(t, packet(k, marker=k == 40, ts_frames=k + jump // 160)) for t, k in steady_times(40, 80)]
    out = run(jb, arrivals, until=1.9)
    frames = body(out)
    assert played(out) == [f"a{k}" for k in range(80)]
    assert frames.count(LOST) <= 1 and jb.stats.late == 0
    assert jb.stats.resyncs >= 1


def steady_times(first, stop, delay=0.030):
    return [(delay + k * FRAME, k) for k in range(first, stop)]


def jittery(frames, spread, seed=1, base=0.050):
    rng = random.Random(seed)
    return [(base + k * FRAME + rng.uniform(-spread, spread), packet(k)) for k in frames]


def test_jitter_of_40ms_grows_the_target_and_then_nothing_is_late():
    jb = JitterBuffer()
    arrivals = jittery(range(1500), 0.040)
    late_at_10s = concealed_at_10s = None
    out = []
    for t, frame in ticks(jb, arrivals, until=29.0):
        out.append((t, frame))
        if late_at_10s is None and t >= 10.0:
            late_at_10s, concealed_at_10s = jb.stats.late, jb.stats.concealed
    assert jb.stats.late == late_at_10s and jb.stats.concealed == concealed_at_10s
    assert 80 <= jb.stats.target_ms <= 120
    assert 15 <= jb.stats.jitter_ms <= 35  # RFC 3550's estimate of uniform +-40 ms is about 27 ms
    names = played(out)
    numbers = [int(f[1:]) for f in names]
    assert numbers == sorted(set(numbers))  # in order, each once
    assert set(range(600, 1400)) <= set(numbers)


def test_a_steady_network_lets_the_target_shrink_back_to_the_minimum():
    jb = JitterBuffer()
    noisy = jittery(range(500), 0.040)  # 10 s of +-40 ms
    calm = [(0.050 + k * FRAME, packet(k)) for k in range(500, 2500)]  # then 40 s of none
    samples = []
    for t, _ in ticks(jb, noisy + calm, until=49.0):
        samples.append((t, jb.stats.target_ms, jb.stats.delay_ms, jb.stats.late))
    peak = max(target for t, target, _, _ in samples if t < 10.5)
    assert peak >= 80
    late_at_calm = next(late for t, _, _, late in samples if t >= 10.5)
    t_end, target, delay, late = samples[-1]
    assert target == 20.0 and delay <= target + 20.5
    assert late == late_at_calm
    assert jb.stats.shrunk >= 1
    # It came down slowly: still well above the minimum a few seconds after the network calmed.
    assert next(target for t, target, _, _ in samples if t >= 13.0) >= 60


def test_bursts_are_absorbed_in_order():
    jb = JitterBuffer()
    # Packets are held and released five at a time, every 100 ms (Wi-Fi power save, a busy router).
    arrivals = [(0.030 + (k // 5 + 1) * 0.1, packet(k)) for k in range(1000)]
    late_at_5s = None
    out = []
    for t, frame in ticks(jb, arrivals, until=20.0):
        out.append((t, frame))
        if late_at_5s is None and t >= 5.0:
            late_at_5s = (jb.stats.late, jb.stats.concealed)
    assert (jb.stats.late, jb.stats.concealed) == late_at_5s
    numbers = [int(f[1:]) for f in played(out)]
    assert numbers == sorted(set(numbers)) and set(range(250, 950)) <= set(numbers)
    assert 80 <= jb.stats.target_ms <= 110


def test_a_network_stall_recovers_without_lasting_delay():
    jb = JitterBuffer()
    arrivals = steady(range(600))
    stalled = range(100, 115)  # held for 300 ms, then delivered at once
    arrivals = [(max(t, 0.030 + 115 * FRAME) if k in stalled else t, p) for k, (t, p) in enumerate(arrivals)]
    out = run(jb, arrivals, until=12.0)
    numbers = [int(f[1:]) for f in played(out)]
    assert numbers == sorted(set(numbers)) and set(range(115, 590)) <= set(numbers)
    assert jb.stats.late == jb.stats.lost == 14  # the stalled frames were given up in time
    assert jb.stats.delay_ms <= jb.stats.target_ms + 20.5  # whatever the stall added is gone


def test_overflow_keeps_the_buffer_bounded_and_the_newest_frames():
    jb = JitterBuffer(JitterConfig(capacity=16))
    for k in range(100):  # nobody pops (a stalled sender clock)
        jb.push(packet(k), k * FRAME)
    assert jb.stats.overflow == 84 and jb.stats.lost == 0
    assert jb.stats.received == 100
    out = [name(jb.pop(1.99 + i * FRAME)) for i in range(20)]
    got = [int(f[1:]) for f in out if f not in (None, LOST)]
    assert got == [98, 99]  # the older ones are too old to play
    assert jb.stats.depth_ms <= 16 * 20


def test_nothing_before_the_first_packet_and_after_reset():
    jb = JitterBuffer()
    assert jb.pop(0.0) is None and not jb.started
    run(jb, steady(range(10)), until=0.4)
    jb.reset()
    assert jb.pop(1.0) is None and not jb.started
    out = run(jb, [(t + 1.0, p) for t, p in steady(range(10), tag="c", ssrc=9)], until=1.5, start=1.0)
    assert body(out) == [f"c{k}" for k in range(10)]


def test_config_is_validated():
    with pytest.raises(ValueError):
        JitterConfig(min_ms=50, max_ms=40)
    with pytest.raises(ValueError):
        JitterConfig(capacity=4)
