"""One 20 ms tick for every call: the paced sending of all RTP streams from a single timer.

A timer per call costs an event-loop wakeup per call every 20 ms; one shared clock wakes once per
tick and sends every stream's frame. The schedule is monotonic (deadline += 20 ms, no drift); after a
stall of more than 100 ms it restarts from now and tells subscribers how many frames the stall ate,
so their RTP timestamps still follow real time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

FRAME_SECONDS = 0.020
MAX_LAG_SECONDS = 0.100

Tick = Callable[[int], None]  # called with the number of 20 ms frames since the last call (>= 1)


class FrameClock:
    def __init__(self) -> None:
        self._subscribers: dict[int, Tick] = {}
        self._task: asyncio.Task | None = None
        self.ticks = 0
        self.stalls = 0

    def subscribe(self, tick: Tick) -> int:
        token = id(tick)
        self._subscribers[token] = tick
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="rtp-frame-clock")
        return token

    def unsubscribe(self, token: int) -> None:
        self._subscribers.pop(token, None)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        frames = 1
        while self._subscribers:
            self._tick(frames)
            deadline += FRAME_SECONDS
            frames = 1
            lag = loop.time() - deadline
            if lag > MAX_LAG_SECONDS:
                frames += int(lag / FRAME_SECONDS)
                self.stalls += 1
                deadline = loop.time()
            await asyncio.sleep(max(0.0, deadline - loop.time()))
        self._task = None

    def _tick(self, frames: int) -> None:
        self.ticks += 1
        for tick in list(self._subscribers.values()):
            try:
                tick(frames)
            except Exception:  # one broken stream must not stop the others
                log.exception("RTP frame tick failed")
