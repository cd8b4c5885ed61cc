"""The outgoing media track of the agent link: pre-encoded Opus.

The outgoing track hands aiortc ``av.Packet`` objects, which its RTP sender packs as they are
(``encoder.pack``): no re-encoding, no executor hop, no per-packet audio-level scan.
"""

from __future__ import annotations

import asyncio
import fractions
from collections import deque

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

OPUS_CLOCK_RATE = 48000
OPUS_SAMPLES_PER_PACKET = 960  # 20 ms at 48 kHz
OPUS_TIME_BASE = fractions.Fraction(1, OPUS_CLOCK_RATE)
DEFAULT_QUEUE_PACKETS = 10


class OpusPacketTrack(MediaStreamTrack):
    """An audio track fed with ready-made Opus payloads (mono, 20 ms each).

    ``push`` never blocks: the queue keeps the newest ``max_packets`` payloads and drops the oldest,
    so a stalled sender costs at most that much latency. Timestamps advance by each packet's
    length: 960 (20 ms) unless ``push`` says otherwise (a phone's relayed Opus of 10 to 60 ms).
    """

    kind = "audio"

    def __init__(self, max_packets: int = DEFAULT_QUEUE_PACKETS) -> None:
        super().__init__()
        self._queue: deque[tuple[bytes, int]] = deque(maxlen=max_packets)
        self._ready = asyncio.Event()
        self._pts = 0
        self.sent = 0
        self.dropped = 0

    def push(self, payload: bytes, samples: int | None = None) -> None:
        if self.readyState != "live":
            return
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1
        self._queue.append((payload, samples or OPUS_SAMPLES_PER_PACKET))
        self._ready.set()

    async def recv(self) -> av.Packet:
        while not self._queue:
            if self.readyState != "live":
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        if self.readyState != "live":
            raise MediaStreamError
        payload, samples = self._queue.popleft()
        packet = av.Packet(payload)
        packet.pts = self._pts
        packet.time_base = OPUS_TIME_BASE
        self._pts += samples
        self.sent += 1
        return packet

    def stop(self) -> None:
        super().stop()
        self._queue.clear()
        self._ready.set()
