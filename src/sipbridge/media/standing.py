"""A backlog that stands: what a playout queue kept after every pop for a second in a row.

A burst, a late packet or audio queued before the call was answered would otherwise delay all that
follows for the rest of the call (the queue drains only as fast as it fills). Both agent → phone
queues (decoded PCM, relayed Opus) ask this after each pop how much stood the whole time.
"""

from __future__ import annotations

STANDING_POPS = 50  # 1 s of 20 ms pops: a backlog never drawn on for that long is dropped


class StandingBacklog:
    def __init__(self, pops: int = STANDING_POPS) -> None:
        self.pops = pops
        self._count = 0  # pops in a row that left something queued ...
        self._least = 0  # ... and the least they left

    def popped(self, left: int) -> int | None:
        """A pop left ``left`` queued (any unit); after ``pops`` pops in a row, the least they all
        left (what stood the whole time: the caller drops it), else None."""
        self._least = left if self._count == 0 else min(self._least, left)
        self._count += 1
        if self._count < self.pops:
            return None
        self._count = 0
        return self._least

    def reset(self) -> None:
        """The queue ran dry or was cleared: the count starts again."""
        self._count = 0
