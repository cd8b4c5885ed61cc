"""The phone-side playout: jitter buffer popped on the shared clock, each tick moved to the next due.

Scripted on a fake clock the way ``Call`` drives them (pop, then ``align`` to ``next_due``), for
every phase of the phone's packets to the clock's grid: every frame plays once, in order, the
target (plus under a slot) after its arrival, never early and never stretched.
"""

import random

import pytest

from sipbridge.rtp.clock import FRAME_SECONDS, aligned_due, slot_ceil
from sipbridge.rtp.jitter import LOST, JitterBuffer
from sipbridge.rtp.packet import RtpPacket

MARGIN = 0.0002  # as Call's PLAYOUT_MARGIN_S


def packet(n: int) -> RtpPacket:
    return RtpPacket(sequence=n & 0xFFFF, timestamp=(160 * n) & 0xFFFFFFFF, ssrc=7, payload=b"%d" % n)


def play(arrivals: list[tuple[float, RtpPacket]], until: float) -> list[tuple[float, bytes | object]]:
    """Push each packet when it comes and tick at the clock's dues, aligning the next tick after
    each (as ``Call`` does); returns [(tick time, frame)]."""
    jb, out, base = JitterBuffer(), [], 0.0
    pending = sorted(arrivals, key=lambda item: item[0])
    due, last, i = slot_ceil(0.0, base), -1.0, 0
    while due < until:
        if i < len(pending) and pending[i][0] <= due:  # a packet before the tick: push, then align
            jb.push(pending[i][1], pending[i][0])
            i += 1
            due = align(jb, due, last, base)
            continue
        out.append((due, jb.pop(due)))
        last = due
        due = align(jb, due + FRAME_SECONDS, last, base)
    return out


def align(jb: JitterBuffer, due: float, last: float, base: float) -> float:
    wanted = jb.next_due()
    moved = None if wanted is None else aligned_due(wanted + MARGIN, last, base)
    return due if moved is None else moved


def body(out: list[tuple[float, bytes | object]]) -> list[bytes | object]:
    """What played from the first frame to the last (LOST included: the stream's end is idle)."""
    frames = [f for _, f in out if f is not None]
    played = [i for i, f in enumerate(frames) if f is not LOST]
    return frames[played[0] : played[-1] + 1]


@pytest.mark.parametrize("phase_ms", [0.0, 0.9, 5.0, 9.5, 10.0, 10.5, 11.0, 15.3, 19.1, 19.9])
def test_every_frame_plays_once_in_order_the_target_after_it_arrived(phase_ms):
    rng = random.Random(phase_ms)
    arrivals = [(0.5 + phase_ms / 1000 + k * 0.020 + rng.uniform(0, 0.0005), packet(k)) for k in range(200)]
    arrived = {p.payload: t for t, p in arrivals}
    out = play(arrivals, until=5.0)
    assert body(out) == [packet(k).payload for k in range(200)]  # nothing stretched or concealed
    delays = [t - arrived[f] for t, f in out if f in arrived]
    assert 0.0195 <= min(delays) and max(delays) <= 0.0230  # the 20 ms target, plus under a slot


@pytest.mark.parametrize("step_ms", [-11.0, -3.0, 4.0])
def test_a_transit_time_that_steps_within_the_margin_or_earlier_loses_nothing(step_ms):
    first = [(0.5 + k * 0.020, packet(k)) for k in range(100)]
    later = [(0.5 + step_ms / 1000 + k * 0.020, packet(k)) for k in range(100, 200)]
    out = play(first + later, until=7.0)
    assert body(out) == [packet(k).payload for k in range(200)]
