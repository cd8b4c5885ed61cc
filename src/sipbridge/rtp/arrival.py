"""When a 20 ms packet stream's frames arrive on our clock, so that a sender can tick just after them.

The audio we send the phone comes from the agent's stream, which runs on the agent's clock: if our
20 ms send tick falls among the agent's arrivals, a frame that comes a little late misses its tick
(the phone gets silence) and the next tick finds two (one waits, as a 20 ms slip, until the
playout queue drops it). Ticking ``margin`` after the latest arrival of each cycle avoids both, and
is the least delay that does.

Timing model (sans-IO: sequence numbers and times in, a due time out), like the phone-side jitter
buffer's: ``d = arrival - sequence * 20 ms`` (the sequence extended past its wrap) is a frame's
transit time plus a constant. Its minimum over the last one to two windows is the on-time
reference, and its range above that the spread (the leg's jitter, a sender's bunching). Frame ``k``
is due at ``reference + k * 20 ms + spread + margin``. The spread starts at ``initial_ms``, rises at
once and falls by at most ``fall_ms_per_s``; a transit change of more than ``resync_ms`` (a new
stream, a sequence jump) starts the reference over and keeps the spread. ``tick_at`` tells a sender
where to move its ticks: seldom, since the phone hears every move.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

FRAME_SECONDS = 0.020
_SEQ_MOD = 1 << 16


@dataclass(frozen=True, slots=True)
class ArrivalConfig:
    margin_ms: float = 2.0  # after the latest arrival expected in a cycle
    initial_ms: float = 8.0  # the spread assumed until measured: a late frame at the start is no gap
    window_s: float = 1.0
    fall_ms_per_s: float = 2.0
    max_spread_ms: float = 200.0
    resync_ms: float = 1000.0
    settle_packets: int = 5  # packets of a stream before its ticks are first placed
    slack_ms: float = 10.0  # ticks this much later than needed move earlier, ...
    step_ms: float = 2.0  # ... this much at a time, ...
    step_every_s: float = 1.0  # ... at most this often


class ArrivalTiming:
    """The arrival timing of one 20 ms stream: ``arrived(sequence, now)`` per packet, ``due(after)``."""

    def __init__(self, config: ArrivalConfig | None = None) -> None:
        self.config = cfg = config or ArrivalConfig()
        self._margin = cfg.margin_ms / 1000
        self._max_spread = cfg.max_spread_ms / 1000
        self._fall = cfg.fall_ms_per_s / 1000
        self._spread = cfg.initial_ms / 1000  # kept when the stream starts over
        self._step = cfg.step_ms / 1000
        self._slack = cfg.slack_ms / 1000
        self._stepped_at = -math.inf
        self._restart()

    def _restart(self) -> None:
        self._high: int | None = None  # extended sequence number of the newest packet
        self._packets = 0
        self._placed = False  # the ticks were placed for this stream (then they only step)
        self._ref = math.inf  # the on-time reference: min of d over the last one to two windows
        self._min_cur = self._min_prev = math.inf
        self._peak_cur = self._peak_prev = 0.0  # d - reference, largest in each window
        self._window_start = 0.0
        self._spread_at = 0.0

    @property
    def wait_s(self) -> float:
        """How long after its on-time arrival a frame is sent: the spread plus the margin."""
        return self._spread + self._margin

    @property
    def keep_frames(self) -> int:
        """Whole frames a playout queue must keep standing to send each one ``wait_s`` after it is due."""
        return int(self.wait_s // FRAME_SECONDS)

    def arrived(self, sequence: int, now: float) -> None:
        """One packet of the stream arrived at ``now`` (seconds, the clock ``due`` answers on)."""
        if self._high is None:
            self._high = sequence
        else:
            delta = (sequence - self._high) & 0xFFFF
            seq = self._high + (delta - _SEQ_MOD if delta >= 0x8000 else delta)
            self._high = max(self._high, seq)
            sequence = seq
        self._packets += 1
        d = now - sequence * FRAME_SECONDS
        if not math.isfinite(self._ref) or abs(d - self._ref) > self.config.resync_ms / 1000:
            self._restart()
            self._high, self._packets = sequence, 1
            self._ref = self._min_cur = d
            self._window_start = self._spread_at = now
            return
        self._roll_window(d, now)
        self._ref = min(self._min_cur, self._min_prev)
        self._peak_cur = max(self._peak_cur, d - self._ref)
        self._respread(now)

    def _roll_window(self, d: float, now: float) -> None:
        if now - self._window_start < self.config.window_s:
            self._min_cur = min(self._min_cur, d)
            return
        stale = now - self._window_start >= 2 * self.config.window_s
        self._min_prev = math.inf if stale else self._min_cur
        self._peak_prev = 0.0 if stale else self._peak_cur
        self._min_cur, self._peak_cur = d, 0.0
        self._window_start = now

    def _respread(self, now: float) -> None:
        wanted = max(self._peak_cur, self._peak_prev)
        floor = self._spread - self._fall * (now - self._spread_at)
        self._spread = min(self._max_spread, max(wanted, floor, 0.0))
        self._spread_at = now

    def frame_due(self, queued: int = 0) -> float | None:
        """When the next frame to send is due: the oldest of ``queued`` frames still waiting, or (0)
        the one after the newest; ``wait_s`` after its on-time arrival. None before any packet."""
        if self._high is None:
            return None
        return self._ref + (self._high + 1 - queued) * FRAME_SECONDS + self.wait_s

    def tick_at(self, scheduled: float, now: float, queued: int) -> float | None:
        """Where a sender whose next tick is ``scheduled`` should tick instead; None: leave it.

        ``queued``: whole frames still waiting to be sent; the next tick sends the oldest of them, or
        the next frame to come (``frame_due``). Every move of a sender's ticks is a step in the
        timing of the stream it sends, which the phone's jitter buffer sees (a tick moved earlier
        adds to the phone's delay, one moved later may find its buffer empty), so they move as
        seldom as they can: placed once, ``settle_packets`` into a stream; later at once when a
        frame would come after its tick (the leg's jitter grew, or the agent's clock runs slower
        than ours); earlier only when they come ``slack_ms`` later than needed (the spread fell,
        the agent's clock runs faster), ``step_ms`` at a time and at most every ``step_every_s``.
        """
        wanted = self.frame_due(queued)
        if wanted is None or self._packets < self.config.settle_packets:
            return None
        if not self._placed:
            self._placed = True
            return wanted
        if wanted - scheduled >= self._margin:  # the frame would come after its tick, margin and all
            return wanted
        if scheduled - wanted >= self._slack and now - self._stepped_at >= self.config.step_every_s:
            self._stepped_at = now
            return scheduled - self._step
        return None
