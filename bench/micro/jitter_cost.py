"""Micro-benchmark: the CPU cost of the jitter buffer and of loss concealment per 20 ms frame.

    .venv/bin/python -m bench.micro.jitter_cost [--frames N]

Fake time, no sockets: a stream of N packets (default 50000) is pushed and popped on a steady network
and on one with +-40 ms of jitter (reordering, late packets), and a voiced signal is concealed
through losses of one to three frames. Prints microseconds per call on this machine; a 20 ms frame
is 20000 us of real time per call.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

import numpy as np

from sipbridge.media.plc import Concealer
from sipbridge.rtp.jitter import JitterBuffer
from sipbridge.rtp.packet import RtpPacket

FRAME = 0.020


def stream(frames: int, spread: float) -> list[tuple[float, RtpPacket]]:
    rng = random.Random(7)
    payload = b"\xff" * 160
    packets = [
        (
            0.05 + k * FRAME + rng.uniform(-spread, spread),
            RtpPacket(sequence=k & 0xFFFF, timestamp=160 * k, ssrc=1, payload=payload),
        )
        for k in range(frames)
    ]
    return sorted(packets, key=lambda item: item[0])


def jitter_costs(frames: int, spread: float) -> dict[str, float]:
    """Microseconds per push and per pop, the two timed apart, over one run of the stream."""
    arrivals = stream(frames, spread)
    jb = JitterBuffer()
    push_s = pop_s = 0.0
    clock = time.perf_counter
    i = 0
    for k in range(frames):
        now = 0.007 + k * FRAME
        start = clock()
        while i < len(arrivals) and arrivals[i][0] <= now:
            jb.push(arrivals[i][1], arrivals[i][0])
            i += 1
        middle = clock()
        jb.pop(now)
        pop_s += clock() - middle
        push_s += middle - start
    s = jb.stats
    network = f"+-{round(spread * 1000)} ms"
    print(
        f"  {network:>9}: played {s.played}, concealed {s.concealed}, late {s.late}, "
        f"target {s.target_ms:.0f} ms"
    )
    return {"push": push_s / i * 1e6, "pop": pop_s / frames * 1e6}


def per_call_us(step: Callable[[int], object], calls: int) -> float:
    start = time.perf_counter()
    for n in range(calls):
        step(n)
    return (time.perf_counter() - start) / calls * 1e6


def plc_costs(frames: int) -> dict[str, float]:
    """Microseconds per good frame, per lost frame (the first of a loss and the next two), per good
    frame ending a loss."""
    t = np.arange(160 * 500) / 8000
    voice = np.round(8000 * np.sin(2 * np.pi * 118 * t) + 2000 * np.sin(2 * np.pi * 826 * t)).astype(np.int16)
    pcm = [voice[i * 160 : (i + 1) * 160] for i in range(500)]
    plc = Concealer()
    good = per_call_us(lambda n: plc.good(pcm[n % 500]), frames)
    clock = time.perf_counter
    rounds = max(frames // 10, 100)
    totals = [0.0, 0.0, 0.0]
    for n in range(rounds):  # a 60 ms loss, then the good frame that ends it
        t0 = clock()
        plc.lost()
        t1 = clock()
        plc.lost()
        plc.lost()
        t2 = clock()
        plc.good(pcm[n % 500])
        t3 = clock()
        totals[0] += t1 - t0
        totals[1] += (t2 - t1) / 2
        totals[2] += t3 - t2
    first, later, ending = (total / rounds * 1e6 for total in totals)
    return {"good": good, "first lost": first, "next lost": later, "good ending a loss": ending}


def main(argv: list[str] | None = None) -> int:
    description = __doc__.splitlines()[0]
    parser = argparse.ArgumentParser(prog="python -m bench.micro.jitter_cost", description=description)
    parser.add_argument("--frames", type=int, default=50000)
    args = parser.parse_args(argv)
    print(f"jitter buffer, {args.frames} frames:")
    for spread in (0.0, 0.040):
        costs = jitter_costs(args.frames, spread)
        print(f"{'':13}push {costs['push']:5.2f} us, pop {costs['pop']:5.2f} us")
    print("concealment (Concealer):")
    costs = plc_costs(args.frames)
    for name, us in costs.items():
        print(f"  {name:18s} {us:7.1f} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
