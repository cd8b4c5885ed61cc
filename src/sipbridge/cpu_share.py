"""How busy a process has been lately: its CPU time over the last few seconds, as a share of a core.

A media worker samples ``time.process_time()`` (every thread of the process: the event loop and the
codec and WebRTC threads alike) with each heartbeat and reports the share, so placement can send a
new call to the least busy of equally loaded workers. Pure: the caller gives the time and the CPU
seconds, so tests need no clock and no load.
"""

from __future__ import annotations

from collections import deque

WINDOW_S = 3.0


class CpuShare:
    def __init__(self, window: float = WINDOW_S) -> None:
        self.window = window
        self._samples: deque[tuple[float, float]] = deque()

    def sample(self, now: float, cpu_s: float) -> float:
        """Note the process's total CPU seconds at ``now`` (monotonic); returns :attr:`percent`."""
        self._samples.append((now, cpu_s))
        # keep one sample at least a window old, so the share always spans the whole window
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window:
            self._samples.popleft()
        return self.percent

    @property
    def percent(self) -> float:
        """CPU used between the oldest kept sample and the newest, in % of one core (0 before two
        samples; above 100 when several threads ran at once)."""
        if len(self._samples) < 2:
            return 0.0
        (start, cpu_start), (end, cpu_end) = self._samples[0], self._samples[-1]
        if end <= start:
            return 0.0
        return max(0.0, 100.0 * (cpu_end - cpu_start) / (end - start))
