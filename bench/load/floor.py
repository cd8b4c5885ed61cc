"""The transcoding floor: the CPU the media work alone costs, for a given number of call-seconds.

Per call and 20 ms frame, exactly what a bridged call must compute at the least, through the
project's own public media API (whatever resampler or codec binding sits behind it):

- phone -> agent: ``PhoneToAgent.push(160 bytes of μ-law)`` (G.711 decode, resampling to the Opus
  PCM rate if it is not 8 kHz, Opus encode with the bridge's settings), and
- agent -> phone: ``OpusDecoder.decode`` of each packet that came out (standing in for the agent's
  reply: same size, same content) at the rate ``AgentToPhone`` takes, ``AgentToPhone.push_pcm``
  (to 8 kHz, G.711 encode) and ``pop_frame()``.

The pipelines are built as the bridge builds them (``bench.common.Pipelines``), from its
configuration (its defaults and SIPBRIDGE_* variables): the codec and the Opus settings
(``config.opus``). For G.722 the phone payloads are the probe's own (bench.load.wire.encode_loop):
G.722 decode and Opus encode at 16 kHz; back, Opus decode at 16 kHz and G.722 encode. Opus on the
phone leg is relayed, not transcoded: it has no floor.

It leaves out everything else a call costs: sockets, RTP, SRTP, ICE/DTLS, aiortc, asyncio, SIP. The
calls are stepped frame by frame in turn (call 1 frame 1, call 2 frame 1, ...), as a bridge serving
them all interleaves them, and the CPU time of the whole process is measured around the loop
(``time.process_time``: every thread, user + system), while nothing else runs in this process.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from sipbridge.config import Config
from sipbridge.media.opus import OpusDecoder

from ..common import Pipelines, bridge_config
from .speech import Speech


class _FloorCall:
    def __init__(self, index: int, speech: Speech, config: Config, codec: str) -> None:
        self.media = Pipelines(config, codec)
        self.decoder = OpusDecoder(self.media.pcm_rate)
        self.offset = (index * 37) % speech.count
        self.packets = 0

    def step(self, frame: bytes) -> None:
        for packet in self.media.up.push(frame):
            self.packets += 1
            self.media.push_pcm(self.decoder.decode(packet))
        self.media.down.pop_frame()


SEGMENTS = 5


def _run(state: list[_FloorCall], payloads: list[bytes], frames: range) -> float:
    """Step every call through `frames`; the CPU seconds it took."""
    cpu0 = time.process_time()
    for k in frames:
        for call in state:
            call.step(payloads[(call.offset + k) % len(payloads)])
    return time.process_time() - cpu0


def measure(
    calls: int, seconds: float, speech: Speech, codec: str = "PCMU", payloads: list[bytes] | None = None
) -> dict[str, Any]:
    """Transcode `calls` calls of `seconds` each (the same call-seconds as the bridge carried), the
    phone leg in `codec` (its payloads: the speech's μ-law frames by default).

    Timed in SEGMENTS consecutive parts: the floor is their median, so one part slowed down by the
    machine (a VM's vCPU can lose tens of % of its speed for a while) does not move it; their spread
    shows how steady the machine was."""
    state = [_FloorCall(i, speech, bridge_config(), codec) for i in range(calls)]
    payloads = payloads if payloads is not None else list(speech.frames)
    frames = max(SEGMENTS, round(seconds * 50))
    bounds = [frames * i // SEGMENTS for i in range(SEGMENTS + 1)]
    wall0 = time.perf_counter()
    parts = [_run(state, payloads, range(a, b)) for a, b in zip(bounds, bounds[1:], strict=False)]
    cpu, call_seconds = sum(parts), calls * frames / 50
    per_part = [
        100.0 * part / (calls * (b - a) / 50) for part, a, b in zip(parts, bounds, bounds[1:], strict=False)
    ]
    return {
        "calls": calls,
        "call_seconds": call_seconds,
        "cpu_seconds": cpu,
        "wall_seconds": time.perf_counter() - wall0,
        "packets": sum(c.packets for c in state),
        # % of one core that one call's transcoding needs: the median part, and every part
        "pct_per_call": statistics.median(per_part),
        "pct_per_call_parts": per_part,
        "pipelines": state[0].media.describe() if state else None,
    }


def speed_check(speech: Speech) -> float:
    """A fixed small floor workload (5 calls, 4 s): its CPU % per call, run before and after a level,
    shows whether the machine itself got faster or slower in between (on a VM it can, by tens of %)."""
    return float(measure(5, 4.0, speech)["pct_per_call"])
