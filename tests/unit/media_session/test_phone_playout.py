"""The phone-side playout (``PhonePlayout``), driven as ``MediaSession`` drives it: a packet pushed
as it arrives, a tick on the shared clock's grid, each tick moved to ``next_due`` (on a fake clock).

For every phase of the phone's packets to the clock's grid: every frame plays once, in order, the
target (plus under a slot) after its arrival, never early and never stretched.
"""

import random

import numpy as np
import pytest

from sipbridge.media_session.phone_playout import PhonePlayout
from sipbridge.rtp.clock import FRAME_SECONDS, aligned_due, slot_ceil
from sipbridge.rtp.packet import RtpPacket

LOST = "LOST"


def packet(n: int, size: int = 160) -> RtpPacket:
    payload = (b"%d." % n).ljust(size, b"\x7f")
    return RtpPacket(sequence=n & 0xFFFF, timestamp=(size * n) & 0xFFFFFFFF, ssrc=7, payload=payload)


def play(arrivals: list[tuple[float, RtpPacket]], until: float) -> list[tuple[float, bytes | str]]:
    """Push each packet when it comes, tick at the clock's dues and align the next tick after each;
    returns [(tick time, the payload played or LOST)] for the ticks that played something."""
    playout, out, base = PhonePlayout(), [], 0.0
    decoded: list[bytes] = []

    def decode(payload: bytes) -> np.ndarray:
        decoded.append(payload)
        return np.zeros(len(payload), np.int16)

    pending = sorted(arrivals, key=lambda item: item[0])
    due, last, i = slot_ceil(0.0, base), -1.0, 0
    while due < until:
        if i < len(pending) and pending[i][0] <= due:  # a packet before the tick: push, then align
            playout.push(pending[i][1], pending[i][0])
            i += 1
            due = align(playout, due, last, base)
            continue
        before = len(decoded)
        for _ in playout.tick(1, due, decode):
            out.append((due, decoded[-1] if len(decoded) > before else LOST))
        last = due
        due = align(playout, due + FRAME_SECONDS, last, base)
    return out


def align(playout: PhonePlayout, due: float, last: float, base: float) -> float:
    wanted = playout.next_due()
    moved = None if wanted is None else aligned_due(wanted, last, base)
    return due if moved is None else moved


def body(out: list[tuple[float, bytes | str]]) -> list[bytes | str]:
    """What played from the first frame to the last (LOST included: the stream's end is idle)."""
    frames = [f for _, f in out]
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


def test_the_playout_follows_the_phones_packet_time_even_against_our_answer():
    """We asked for 20 ms, the phone sends 30 ms anyway: played at its pace, nothing concealed."""
    playout, heard = PhonePlayout(), []
    events = [(100.0 + 0.03 * i, "packet", i) for i in range(100)]  # 3 s of 30 ms packets ...
    events += [(100.001 + 0.02 * k, "tick", k) for k in range(145)]  # ... played on the 20 ms clock
    for at, kind, i in sorted(events):
        if kind == "packet":
            playout.push(packet(i, size=240), at)
        else:
            heard += [len(pcm) for pcm in playout.tick(1, at, lambda p: np.zeros(len(p), np.int16))]
    assert playout.packet_samples == 240 and playout.next_due() is None  # the clock keeps its phase
    assert playout.stats.concealed == 0 and playout.stats.late == 0, playout.stats
    assert heard == [240] * len(heard) and len(heard) >= 95


def opus_packets(count: int) -> list[bytes]:
    from sipbridge.media.opus import OpusEncoder, OpusSettings

    encoder = OpusEncoder(OpusSettings(pcm_rate=48000, application="audio"))
    t = np.arange(count * 960) / 48000
    tone = (np.sin(2 * np.pi * 300 * t) * 6000).astype(np.int16)
    return [encoder.encode(tone[k * 960 : (k + 1) * 960]) for k in range(count)]


def test_a_phone_on_opus_has_its_packets_relayed_in_order_and_a_lost_one_made():
    from sipbridge.media.phone_codec import phone_codec

    playout = PhonePlayout()
    playout.use_codec(phone_codec("OPUS"))
    packets = opus_packets(30)
    out: list[bytes] = []
    for n, payload in enumerate(packets):
        if n != 12:  # lost on the way
            playout.push(RtpPacket(sequence=n, timestamp=960 * n, ssrc=9, payload=payload), n * FRAME_SECONDS)
        out += playout.tick(1, n * FRAME_SECONDS + 0.03, None)  # type: ignore[arg-type]
    assert playout.view()["packet_ms"] == 20 and playout.stats.lost == 1
    made = [p for p in out if p not in packets]
    assert len(made) == 1 and out.index(made[0]) == out.index(packets[11]) + 1
    relayed = [p for p in out if p in packets]
    assert len(relayed) > 20 and relayed == [p for n, p in enumerate(packets) if n != 12][: len(relayed)]


def test_opus_packets_of_40_ms_are_followed():
    from sipbridge.media.phone_codec import phone_codec

    playout = PhonePlayout()
    playout.use_codec(phone_codec("OPUS"))
    forty = bytes([0b11111_0_01, 1, 2])  # CELT 20 ms, two frames: 40 ms
    for n in range(6):
        playout.push(RtpPacket(sequence=n, timestamp=1920 * n, ssrc=9, payload=forty), n * 0.04)
    assert playout.view()["packet_ms"] == 40
