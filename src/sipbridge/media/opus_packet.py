"""What an Opus packet says about itself: its duration, from the TOC byte (RFC 6716 §3.1).

The phone leg relays Opus without decoding it, yet the jitter buffer and the pacing need each
packet's length in time; the first byte (and, for code 3, the second) tells it.
"""

from __future__ import annotations

CLOCK_RATE = 48000
MAX_PACKET_SAMPLES = 5760  # 120 ms, the longest packet RFC 6716 allows


def frame_samples(toc: int) -> int:
    """Samples at 48 kHz of one frame of a packet with this TOC byte."""
    config = toc >> 3
    if config < 12:  # SILK: 10, 20, 40, 60 ms
        return (480, 960, 1920, 2880)[config & 3]
    if config < 16:  # hybrid: 10, 20 ms
        return (480, 960)[config & 1]
    return (120, 240, 480, 960)[config & 3]  # CELT: 2.5, 5, 10, 20 ms


def packet_samples(payload: bytes) -> int:
    """The duration of an Opus packet in 48 kHz samples; 0 for one that is malformed or too long."""
    if not payload:
        return 0
    toc = payload[0]
    code = toc & 3
    if code == 0:
        frames = 1
    elif code in (1, 2):
        frames = 2
    elif len(payload) < 2:
        return 0
    else:
        frames = payload[1] & 0x3F
    samples = frames * frame_samples(toc)
    return samples if 0 < samples <= MAX_PACKET_SAMPLES else 0
