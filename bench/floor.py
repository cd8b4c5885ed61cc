"""The transcoding floor: the CPU the media work alone costs, for a given number of call-seconds.

Per call and 20 ms frame, exactly what a bridged call must compute at the least, through the
project's own public media API (whatever resampler sits behind it):

- phone -> agent: ``PhoneToAgent.push(160 bytes of μ-law)`` (G.711 decode, 8 -> 48 kHz, Opus encode
  with the bridge's bitrate, application and FEC), and
- agent -> phone: ``OpusDecoder.decode`` of each packet that came out (standing in for the agent's
  reply: same size, same content), ``AgentToPhone.push_pcm48`` (48 -> 8 kHz, G.711 encode) and
  ``pop_frame()``.

It leaves out everything else a call costs: sockets, RTP, SRTP, ICE/DTLS, aiortc, asyncio, SIP. The
calls are stepped frame by frame in turn (call 1 frame 1, call 2 frame 1, ...), as a bridge serving
them all interleaves them, and the CPU time of the whole process is measured around the loop
(``time.process_time``: every thread, user + system), while nothing else runs in this process.
"""

from __future__ import annotations

import time

from sipbridge.config import ConfigError, load_config
from sipbridge.media.opus import OpusDecoder
from sipbridge.media.pipeline import AgentToPhone, PhoneToAgent

from .speech import Speech


def bridge_media_settings() -> dict[str, int | str]:
    """Opus settings the bridge will use (its defaults, or SIPBRIDGE_* from the environment)."""
    try:
        config = load_config()
    except ConfigError:
        config = load_config(env={})
    return {"opus_bitrate": config.opus_bitrate, "opus_application": config.opus_application}


class _FloorCall:
    def __init__(self, index: int, speech: Speech, settings: dict[str, int | str]) -> None:
        self.up = PhoneToAgent(
            "PCMU", opus_bitrate=int(settings["opus_bitrate"]), application=str(settings["opus_application"])
        )
        self.down = AgentToPhone("PCMU")
        self.decoder = OpusDecoder(48000)
        self.offset = (index * 37) % speech.count
        self.packets = 0

    def step(self, frame: bytes) -> None:
        for packet in self.up.push(frame):
            self.packets += 1
            self.down.push_pcm48(self.decoder.decode(packet))
        self.down.pop_frame()


def measure(calls: int, seconds: float, speech: Speech) -> dict[str, float | int | dict]:
    """Transcode `calls` calls of `seconds` each (the same call-seconds as the bridge carried)."""
    settings = bridge_media_settings()
    state = [_FloorCall(i, speech, settings) for i in range(calls)]
    frames = max(1, round(seconds * 50))
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for k in range(frames):
        for call in state:
            call.step(speech.frames[(call.offset + k) % speech.count])
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    call_seconds = calls * frames / 50
    return {
        "calls": calls,
        "call_seconds": call_seconds,
        "cpu_seconds": cpu,
        "wall_seconds": wall,
        "packets": sum(c.packets for c in state),
        # % of one core that one call's transcoding needs
        "pct_per_call": 100.0 * cpu / call_seconds,
        "settings": settings,
    }
