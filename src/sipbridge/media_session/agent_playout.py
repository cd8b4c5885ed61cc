"""Agent → phone: the agent's PCM queued as G.711 and sent a frame per tick, just after it arrives.

Sans-IO and clock-fed: ``packet_arrived`` and ``audio`` take what the agent sends, ``next_frame``
gives each 20 ms tick its frame (comfort silence when none is queued) and says when the next tick
should run: just after the agent's next frame arrives, not up to 20 ms later at our own phase.
A barge-in (the agent stops speaking) drops what was queued for the caller: it is stale.
"""

from __future__ import annotations

import numpy as np

from ..media.pipeline import AgentToPhone
from ..rtp.arrival import ArrivalTiming

IDLE_VIEW = {  # before any codec was settled
    "playout_buffered_ms": 0,
    "playout_dropped_ms": 0,
    "playout_underruns": 0,
    "playout_wait_ms": 0.0,
    "barge_ins": 0,
    "barge_in_dropped_ms": 0,
}


class AgentPlayout:
    def __init__(self, codec: str, pcm_rate: int) -> None:
        self.codec = codec
        self._queue = AgentToPhone(codec, pcm_rate=pcm_rate)
        self._timing = ArrivalTiming()  # when the agent's frames come: we send just after
        self.barge_ins = 0
        self.barge_in_dropped_ms = 0

    def packet_arrived(self, sequence: int, now: float) -> None:
        self._timing.arrived(sequence, now)
        self._queue.keep_frames = self._timing.keep_frames

    def audio(self, pcm: np.ndarray) -> None:
        self._queue.push_pcm(pcm)

    def next_frame(self, scheduled: float | None, now: float) -> tuple[bytes, float | None]:
        """The frame for this tick, and when the next tick should be (None: at the clock's phase).

        ``scheduled`` is when the clock means to tick next: a frame that comes a little late is
        sent just after it arrives, not 20 ms later after a frame of silence.
        """
        frame = self._queue.pop_frame()
        at = None
        if scheduled is not None:
            at = self._timing.tick_at(scheduled, now, self._queue.queued_frames)
        return (frame if frame is not None else self._queue.silence()), at

    @property
    def silence(self) -> bytes:
        """What a tick with nothing queued sends: 20 ms of silence in the phone's codec."""
        return self._queue.silence()

    def barge_in(self) -> None:
        """The agent stopped speaking (interrupted): what it had queued for the caller is stale."""
        if self._queue.buffered_ms:
            self.barge_ins += 1
            self.barge_in_dropped_ms += int(self._queue.buffered_ms)
            self._queue.clear()

    @property
    def buffered_ms(self) -> float:
        return self._queue.buffered_ms

    def view(self) -> dict[str, float | int]:
        queue = self._queue
        return {
            "playout_buffered_ms": queue.buffered_ms,
            "playout_dropped_ms": queue.dropped_ms,
            "playout_underruns": queue.underruns,
            "playout_wait_ms": round(self._timing.wait_s * 1000, 1),
            "barge_ins": self.barge_ins,
            "barge_in_dropped_ms": self.barge_in_dropped_ms,
        }
