"""Micro-benchmark: the CPU one call's recording costs, per format and per phone codec.

    .venv/bin/python -m bench.micro.recording_cost [--seconds 60] [--runs 3]

Drives the real ``CallRecorder`` as a call does, tick by tick: each 20 ms the caller's frame and the
agent's (talking in turns, a second each, noise-like speech), then the tick that writes both to the
file in a temporary folder. For a phone on Opus the two sides come as Opus packets, decoded by the
recorder (encoded beforehand: not counted). Prints the CPU seconds (``time.process_time``) per
minute of call (the least of ``--runs``) and per tick, the longest single tick in wall time (what the
event loop waits for; the least of the runs' longest) and the file's size per minute.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from sipbridge.media.opus import OpusEncoder, OpusSettings
from sipbridge.media_session.recorder import CallRecorder

CASES = (("wav", "PCMU"), ("wav", "G722"), ("wav", "OPUS"), ("ogg", "PCMU"), ("ogg", "G722"), ("ogg", "OPUS"))


def talk(rate: int, frames: int, who: int) -> list[np.ndarray]:
    """20 ms frames: a voiced buzz with noise for one second, silence the next (``who`` says which)."""
    n = rate // 50
    rng = np.random.default_rng(who)
    t = np.arange(n * frames) / rate
    voice = 6000 * np.sign(np.sin(2 * np.pi * (120 + 40 * who) * t)) + rng.normal(0, 1500, len(t))
    speaking = ((np.arange(len(t)) // rate) % 2) == who
    signal = np.where(speaking, voice, 0).astype(np.int16)
    return [signal[i * n : (i + 1) * n] for i in range(frames)]


def opus_packets(frames: list[np.ndarray]) -> list[bytes]:
    encoder = OpusEncoder(OpusSettings(pcm_rate=48000, application="audio", complexity=5))
    return [encoder.encode(np.repeat(frame, 3)) for frame in frames]  # 16 kHz frames, 48 kHz packets


def one_run(fmt: str, codec: str, seconds: float, folder: Path) -> tuple[float, float, int]:
    rate = 16000 if codec in ("G722", "OPUS") else 8000
    frames = int(seconds * 50)
    caller, agent = talk(rate, frames, 0), talk(rate, frames, 1)
    packets = (opus_packets(caller), opus_packets(agent)) if codec == "OPUS" else None
    path = folder / f"call-{fmt}-{codec}.{fmt}"
    start = time.process_time()
    recorder = CallRecorder.open(str(path), codec)
    longest = 0.0
    for i in range(frames):
        began = time.perf_counter()
        if packets is not None:
            recorder.caller_opus(packets[0][i])
            recorder.agent_opus(packets[1][i])
        else:
            recorder.caller_pcm(caller[i], rate)
            recorder.agent_pcm(agent[i], rate)
        recorder.tick(1)
        longest = max(longest, time.perf_counter() - began)
    recorder.close()
    return time.process_time() - start, longest, path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"{'format':6} {'codec':5} {'CPU s/min':>9} {'per tick':>10} {'longest tick':>12} {'file':>10}")
    with tempfile.TemporaryDirectory(prefix="recording-cost-") as tmp:
        for fmt, codec in CASES:
            runs = [one_run(fmt, codec, args.seconds, Path(tmp)) for _ in range(args.runs)]
            cpu = min(run[0] for run in runs)
            longest = min(run[1] for run in runs)  # the quietest run's: the rest is the machine's noise
            per_minute = 60 / args.seconds
            print(
                f"{fmt:6} {codec:5} {cpu * per_minute:9.3f} {cpu / (args.seconds * 50) * 1e6:7.1f} us"
                f" {longest * 1000:9.2f} ms {runs[0][2] * per_minute / 1e6:7.2f} MB"
            )


if __name__ == "__main__":
    main()
