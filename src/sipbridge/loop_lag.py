"""How late the event loop runs a timer: the first sign of a bridge too busy for its calls.

Every call's audio is paced by 20 ms ticks on the one event loop; when the loop is late, every call
hears it. A task sleeps a quarter second at a time and notes how much later than asked it woke up;
the largest lag of the last ten seconds is what ``/health`` and ``/metrics`` report.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections import deque

INTERVAL_S = 0.25
WINDOW_S = 10.0


class LoopLag:
    def __init__(self, interval: float = INTERVAL_S, window: float = WINDOW_S) -> None:
        self.interval = interval
        self._lags: deque[float] = deque(maxlen=max(1, round(window / interval)))
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run(), name="loop-lag", context=contextvars.Context())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            self._lags.append(max(0.0, loop.time() - due))

    @property
    def recent_max(self) -> float:
        """The largest lag of the last window, in seconds (0 before any measurement)."""
        return max(self._lags, default=0.0)
