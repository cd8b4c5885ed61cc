"""Agent → phone (``AgentPlayout``): each frame sent just after it arrives, and barge-in.

Driven as ``MediaSession`` drives it, on a fake clock.

The agent's stream runs on the agent's clock: at any phase to ours, with some jitter, every frame
must leave on the first tick after it arrived, a few ms later, never a frame of silence between
(the slips that a fixed-phase tick among the arrivals made).
"""

import random

import numpy as np
import pytest

from sipbridge.media.opus import OpusEncoder, OpusSettings
from sipbridge.media_session.agent_playout import AgentPlayout
from sipbridge.rtp.clock import FRAME_SECONDS, aligned_due, slot_ceil

steps: list[float] = []  # the intervals between the ticks of the last ``send``


def tone_packets(count: int) -> list[bytes]:
    """``count`` 20 ms Opus packets of a 440 Hz tone, as an agent sends them."""
    encoder = OpusEncoder(OpusSettings())
    t = np.arange(count * 160) / 8000
    tone = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
    return [encoder.encode(tone[k * 160 : (k + 1) * 160]) for k in range(count)]


PACKETS = tone_packets(50)


def feed(playout: AgentPlayout, count: int, first: int = 0) -> None:
    for seq in range(first, first + count):
        playout.packet(seq, PACKETS[seq % len(PACKETS)], 0.0)


def send(arrivals: list[tuple[int, float]], until: float) -> tuple[list[float | None], AgentPlayout]:
    """Tick on the clock's grid, aligning after each tick; the wait of each frame sent (None: silence)."""
    playout = AgentPlayout("PCMU", pcm_rate=8000)
    pending, queued, waits = sorted(arrivals, key=lambda a: a[1]), [], []
    steps.clear()
    due, last, i = slot_ceil(arrivals[0][1] - 0.5, 0.0), -1.0, 0
    while due < until:
        while i < len(pending) and pending[i][1] <= due:
            seq, at = pending[i]
            playout.packet(seq, PACKETS[seq % len(PACKETS)], at)
            queued.append(at)
            i += 1
        last, due = due, due + FRAME_SECONDS  # the clock moves its due before it ticks
        frame, wanted = playout.next_frame(scheduled=due, now=last)
        waits.append(None if frame == playout.silence else last - queued.pop(0))
        if wanted is not None and (moved := aligned_due(wanted, last, 0.0)) is not None:
            due = moved
        steps.append(due - last)
    return waits, playout


def agent(frames: int, phase: float, jitter: float, seed: int = 3) -> list[tuple[int, float]]:
    rng = random.Random(seed)
    return [(k, 1.0 + phase + k * FRAME_SECONDS + rng.uniform(0, jitter)) for k in range(frames)]


def speech(waits: list[float | None]) -> list[float | None]:
    """From the first frame sent to the last."""
    sent = [i for i, w in enumerate(waits) if w is not None]
    return waits[sent[0] + 6 : sent[-1] + 1]  # the ticks are placed five packets in


@pytest.mark.parametrize("phase_ms", [0.0, 1.0, 4.9, 9.9, 10.1, 15.0, 19.0, 19.9])
@pytest.mark.parametrize("jitter_ms", [0.0, 1.5, 6.0])
def test_every_frame_leaves_on_the_first_tick_after_it_came(phase_ms, jitter_ms):
    waits, queue = send(agent(500, phase_ms / 1000, jitter_ms / 1000), until=12.0)
    body = speech(waits)
    assert (
        None not in body and queue.view()["playout_dropped_ms"] == 0
    )  # no silence inserted, nothing skipped
    # 8 ms of jitter assumed until measured (and kept while within the slack), the margin, a slot
    assert max(body) <= (8 + jitter_ms + 2 + 2 + 0.1) / 1000  # (a first reference may be late by the jitter)
    placed = next(i for i, step in enumerate(steps) if abs(step - FRAME_SECONDS) > 1e-9) + 1
    moves = [i for i, step in enumerate(steps[placed:]) if abs(step - FRAME_SECONDS) > 1e-9]
    assert all(abs(steps[placed + i] - 0.018) < 1e-9 for i in moves)  # then only 2 ms earlier ...
    assert all(b - a >= 50 for a, b in zip(moves, moves[1:], strict=False))  # ... at most once a second


def test_bunched_frames_of_a_30_ms_caller_echoed_back_go_out_without_a_gap():
    """Our playout of 30 ms phone packets on the 20 ms tick sends the agent 1, 2, 1, 2 ... frames per
    tick; an echoing agent returns them so (the spread is a whole frame)."""
    rng, arrivals, seq = random.Random(5), [], 0
    for tick in range(600):
        for _ in range((0, 1, 2)[tick % 3]):
            arrivals.append((seq, 1.0 + 0.013 + tick * FRAME_SECONDS + rng.uniform(0, 0.001)))
            seq += 1
    waits, queue = send(arrivals, until=13.0)
    assert None not in speech(waits) and queue.view()["playout_dropped_ms"] == 0


def test_jitter_of_more_than_a_frame_keeps_a_frame_and_still_inserts_no_silence():
    waits, queue = send(agent(500, 0.005, 0.030), until=12.0)
    body = speech(waits)
    assert None not in body[50:] and queue.view()["playout_dropped_ms"] == 0


@pytest.mark.parametrize("codec", ["PCMU", "G722", "OPUS"])
def test_the_agent_leaving_speaking_drops_what_it_queued_for_the_caller(codec):
    playout = AgentPlayout(codec, pcm_rate=8000)
    feed(playout, 15)  # 300 ms of agent speech queued
    assert playout.buffered_ms > 200
    playout.barge_in()
    assert playout.buffered_ms == 0 and playout.barge_ins == 1 and playout.barge_in_dropped_ms > 200
    playout.barge_in()  # nothing queued: not another barge-in
    assert playout.barge_ins == 1


@pytest.mark.parametrize("codec", ["PCMU", "OPUS"])  # (G.722's silence differs each frame: ADPCM)
def test_after_an_interrupt_the_very_next_frame_to_the_caller_is_silence(codec):
    """Worst case of stale audio: the playout queue full (400 ms) when the interrupt comes."""
    playout = AgentPlayout(codec, pcm_rate=8000)
    feed(playout, 50)  # a bursty agent: one second at once; the queue keeps its cap
    played = [playout.next_frame(None, 0.0)[0] for _ in range(3)]
    assert all(frame != playout.silence for frame in played)
    playout.barge_in()  # the caller barged in
    after = [playout.next_frame(None, 0.0)[0] for _ in range(25)]
    assert after == [playout.silence] * 25  # nothing queued before the interrupt is ever played
    assert 340 <= playout.barge_in_dropped_ms <= 400


def test_a_phone_on_opus_gets_the_agents_packets_as_they_are():
    playout = AgentPlayout("OPUS", pcm_rate=8000)
    feed(playout, 5)
    assert [playout.next_frame(None, 0.0)[0] for _ in range(5)] == PACKETS[:5]
    assert playout.next_frame(None, 0.0)[0] == playout.silence  # nothing queued: Opus silence


def test_a_gap_in_the_agents_opus_is_filled_with_packets_made_for_it():
    playout = AgentPlayout("OPUS", pcm_rate=8000)
    feed(playout, 3)
    playout.packet(5, PACKETS[5], 0.0)  # 3 and 4 lost: 4 comes from 5's FEC ... or concealment
    sent = [playout.next_frame(None, 0.0)[0] for _ in range(6)]
    assert sent[:3] == PACKETS[:3] and sent[5] == PACKETS[5]
    assert all(packet not in (playout.silence, *PACKETS) for packet in sent[3:5])
    view = playout.view()
    assert view["agent_lost"] == 2 and view["agent_concealed"] == 2
