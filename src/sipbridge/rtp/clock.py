"""One 20 ms clock for every call: the paced work of all RTP streams from a single task.

A timer per call costs an event-loop wakeup per call every 20 ms; the shared clock wakes at most once
per slot (2 ms by default) that has subscribers and runs all of that slot's ticks (so at most ten
wakeups per 20 ms, however many calls; each costs 60 us and more on a VM, so wider slots trade a
little latency for CPU). A subscriber ticks every 20 ms at slot 0 unless ``align`` moves its next
tick: the phone-side playout asks for the moment its jitter buffer's next frame falls due, so no
frame waits up to a whole 20 ms for the next tick.

The schedule is monotonic (due += 20 ms, no drift). A subscriber that fell behind by up to 100 ms
ticks back to back until it has caught up; one more than 100 ms behind (the loop stalled) is put back
on schedule with a single tick that says how many frames the stall ate, so its RTP timestamps still
follow real time.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

FRAME_SECONDS = 0.020
SLOT_SECONDS = 0.002
MAX_LAG_SECONDS = 0.100
_EPSILON = 1e-6

Tick = Callable[[int], None]  # called with the number of 20 ms frames since the last call (>= 1)


@dataclass(slots=True)
class _Subscriber:
    tick: Tick
    due: float  # loop time of its next tick, always on the 2 ms slot grid
    last: float = -math.inf  # loop time of its last tick


def slot_ceil(at: float, base: float, slot: float = SLOT_SECONDS) -> float:
    """The first time of the slot grid that starts at ``base`` that is not before ``at``."""
    return base + math.ceil((at - base) / slot - _EPSILON) * slot


def aligned_due(at: float, last: float, base: float, slot: float = SLOT_SECONDS) -> float | None:
    """When a subscriber that last ticked at ``last`` and wants its next tick at ``at`` ticks.

    On the slot grid, never before ``at`` and never sooner than half a frame after the last tick (an
    overdue tick is one, not a burst); None (leave the schedule as it is) if ``at`` is more than two
    frames away.
    """
    due = slot_ceil(at, base, slot)
    if due > last + 2 * FRAME_SECONDS + _EPSILON:
        return None
    return max(due, slot_ceil(last + FRAME_SECONDS / 2, base, slot))


class FrameClock:
    def __init__(self, slot_seconds: float = SLOT_SECONDS) -> None:
        if not 0 < slot_seconds <= FRAME_SECONDS or round(FRAME_SECONDS / slot_seconds, 9) % 1:
            raise ValueError(f"a slot must divide 20 ms, not {slot_seconds * 1000:g} ms")
        self.slot = slot_seconds
        self._subscribers: dict[int, _Subscriber] = {}
        self._task: asyncio.Task | None = None
        self._base = 0.0  # loop time of slot 0 of the grid
        self.wakeups = 0  # wakeups that ran ticks
        self.stalls = 0

    def subscribe(self, tick: Tick) -> int:
        token = id(tick)
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._task is None or self._task.done():
            self._base = now
            # Shared by every call: not in the context (a call's log id) of the call that started it.
            self._task = loop.create_task(self._run(), name="rtp-frame-clock", context=contextvars.Context())
        # The next slot-0 time, or the one that began less than a slot ago (it runs at once).
        cycles = math.ceil((now - self._base - self.slot) / FRAME_SECONDS)
        self._subscribers[token] = _Subscriber(tick, self._base + cycles * FRAME_SECONDS)
        return token

    def unsubscribe(self, token: int) -> None:
        self._subscribers.pop(token, None)

    def next_tick(self, token: int) -> float | None:
        """When this subscriber ticks next (loop time)."""
        sub = self._subscribers.get(token)
        return None if sub is None else sub.due

    def align(self, token: int, at: float) -> None:
        """Tick this subscriber next at ``at`` (loop time; see ``aligned_due``), then every 20 ms."""
        sub = self._subscribers.get(token)
        if sub is not None and (due := aligned_due(at, sub.last, self._base, self.slot)) is not None:
            sub.due = due  # a due before now runs at the next wakeup

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._subscribers:
            now = loop.time()
            due = min(sub.due for sub in self._subscribers.values())
            if due > now + _EPSILON:
                await asyncio.sleep(due - now)
                continue
            self._tick_due(now)
        self._task = None

    def _tick_due(self, now: float) -> None:
        self.wakeups += 1
        stalled = False
        for sub in [s for s in self._subscribers.values() if s.due <= now + _EPSILON]:
            frames = 1
            sub.last = now
            sub.due += FRAME_SECONDS
            lag = now - sub.due
            if lag > MAX_LAG_SECONDS:
                missed = math.ceil(lag / FRAME_SECONDS)
                frames += missed
                sub.due += missed * FRAME_SECONDS
                stalled = True
            try:
                sub.tick(frames)
            except Exception:  # one broken stream must not stop the others
                log.exception("RTP frame tick failed")
        self.stalls += stalled
