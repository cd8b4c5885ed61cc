"""The webhook queue and its retry schedule, without sockets or clocks: every step takes ``now``.

Events wait in one line in the order they happened and go out one at a time, so each call's events
arrive in order. The head is retried with exponential backoff and jitter while the events behind it
wait. An event has ``max_age`` (5 minutes) from the moment it happened, waiting included: then it is
given up (expired), so after a long outage the receiver gets what is recent, not a stale hour. The
line holds at most ``capacity`` events; when full, the oldest is dropped for the newest: a dead
receiver costs memory only up to that bound.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass
from enum import StrEnum

from .events import Event

CAPACITY = 1000
MAX_AGE_S = 300.0
FIRST_RETRY_S = 1.0
MAX_RETRY_S = 60.0
# 4xx answers worth a retry (timeout, conflict, too early, too many requests); any other 4xx says the
# receiver will not take this event, now or later.
RETRIED_4XX = frozenset({408, 409, 425, 429})


class Verdict(StrEnum):
    """What one attempt came to."""

    DELIVERED = "delivered"  # a 2xx
    REFUSED = "refused"  # a 3xx or 4xx the receiver means: no retry
    RETRY = "retry"  # a 5xx, a retried 4xx, no connection, no answer in time


class Fate(StrEnum):
    """What finally became of an event."""

    DELIVERED = "delivered"
    REFUSED = "refused"
    EXPIRED = "expired"  # not delivered within max_age
    DROPPED = "dropped"  # pushed out of a full line by a newer event


def verdict_of(status: int) -> Verdict:
    """The verdict of an HTTP answer (redirects are not followed: a 3xx is a URL to fix)."""
    if 200 <= status < 300:
        return Verdict.DELIVERED
    if status >= 500 or status in RETRIED_4XX:
        return Verdict.RETRY
    return Verdict.REFUSED


@dataclass(frozen=True)
class Backoff:
    """Exponential: the n-th retry waits between half and all of ``first·2^(n-1)``, at most ``cap``
    (jitter keeps many bridges from hammering a receiver that comes back all at the same instant)."""

    first: float = FIRST_RETRY_S
    cap: float = MAX_RETRY_S

    def ceiling(self, failures: int) -> float:
        return min(self.cap, self.first * 2 ** (failures - 1))

    def delay(self, failures: int, rng: random.Random) -> float:
        """Seconds before the next try, after ``failures`` failed tries (1 or more)."""
        ceiling = self.ceiling(failures)
        return ceiling / 2 + rng.random() * ceiling / 2


@dataclass
class Pending:
    """An event in the line: when it happened, when it may next be tried, how often it failed."""

    event: Event
    queued_at: float
    due: float
    failures: int = 0


class Outbox:
    def __init__(
        self,
        capacity: int = CAPACITY,
        max_age: float = MAX_AGE_S,
        backoff: Backoff | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.capacity = capacity
        self.max_age = max_age
        self.backoff = backoff or Backoff()
        self._rng = rng or random.Random()
        self._line: deque[Pending] = deque()

    def __len__(self) -> int:
        return len(self._line)

    def add(self, event: Event, now: float) -> Event | None:
        """Queue ``event``, to be tried at once when its turn comes; returns the oldest event when
        it had to be dropped to make room (the head, even while it is being sent)."""
        self._line.append(Pending(event, now, now))
        if len(self._line) > self.capacity:
            return self._line.popleft().event
        return None

    def expire(self, now: float) -> list[Event]:
        """Give up the events older than ``max_age`` (they are at the head: the line is in order)."""
        expired = []
        while self._line and now >= self._expires_at(self._line[0]):
            expired.append(self._line.popleft().event)
        return expired

    def due(self, now: float) -> Pending | None:
        """The head, when it is its time to be tried (call ``expire`` first)."""
        if self._line and self._line[0].due <= now:
            return self._line[0]
        return None

    def wake_at(self) -> float | None:
        """When the head is due or expires (None: nothing waits): the shell sleeps until then, or
        until an event is added."""
        if not self._line:
            return None
        head = self._line[0]
        return min(head.due, self._expires_at(head))

    def settle(
        self, pending: Pending, verdict: Verdict, now: float, retry_after: float | None = None
    ) -> Fate | None:
        """What an attempt on ``pending`` made of it: its fate, or None while it waits for its next try
        (or when it was dropped while being sent: its fate was told then). ``retry_after``: what the
        receiver asked for (a 429's or 503's ``Retry-After``), heeded up to the backoff's cap."""
        if not self._line or self._line[0] is not pending:
            return None
        if verdict is not Verdict.RETRY:
            self._line.popleft()
            return Fate.DELIVERED if verdict is Verdict.DELIVERED else Fate.REFUSED
        pending.failures += 1
        delay = self.backoff.delay(pending.failures, self._rng)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.backoff.cap))
        if now + delay >= self._expires_at(pending):
            self._line.popleft()
            return Fate.EXPIRED
        pending.due = now + delay
        return None

    def _expires_at(self, pending: Pending) -> float:
        return pending.queued_at + self.max_age
