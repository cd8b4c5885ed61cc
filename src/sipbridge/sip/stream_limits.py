"""Who may hold a SIP connection open, and for how long (TCP and TLS, RFC 3261 §18.3), sans-IO.

A host that opens connections and sends nothing, a TLS hello and no more, or a byte now and then
must not run the process out of file descriptors nor crowd out the trunks. So connections we accept
are counted by source address *at accept*, before any TLS handshake, and each one has deadlines
that only complete units reset: a SIP message or a CRLFCRLF keep-alive, never a single byte.
Times are the event loop's clock, passed in.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field


def _nobody(ip: str) -> bool:
    return False


@dataclass(frozen=True)
class ConnectionPolicy:
    """Caps and deadlines for connections accepted over TCP and TLS (one budget for both)."""

    # Accepted connections open at once, TCP and TLS together; connections we open are not counted.
    max_connections: int = 1000
    # From one address that ``trusted`` does not name.
    max_per_source: int = 32
    # Of ``max_connections``, the ones strangers may never take: kept for trunks' addresses.
    trunk_reserve: int = 100
    # A TLS handshake must be done this long after accept.
    handshake_timeout: float = 5.0
    # The first complete SIP message must arrive this long after accept; a message once begun
    # must arrive whole within it too (a sender trickling bytes is cut off).
    first_message_timeout: float = 10.0
    # Nothing complete received or sent for this long: the connection is closed.
    idle_timeout: float = 300.0
    # Trunks' addresses (a provider's inbound_cidrs or registrar): not held to the stranger caps.
    trusted: Callable[[str], bool] = field(default=_nobody, compare=False)


@dataclass(frozen=True)
class Seat:
    """One accepted connection's place in an ``AcceptBudget``; give it back with ``release``."""

    host: str
    trusted: bool


class AcceptBudget:
    """Accepted connections still open, by source, held to a ``ConnectionPolicy``'s caps.

    A trusted source may take any free place up to ``max_connections``; strangers together stop
    ``trunk_reserve`` short of it, and each stranger address at ``max_per_source``.
    """

    def __init__(self, policy: ConnectionPolicy) -> None:
        self.policy = policy
        self._strangers: Counter[str] = Counter()
        self._stranger_total = 0
        self._trusted_total = 0

    @property
    def open(self) -> int:
        return self._stranger_total + self._trusted_total

    def admit(self, host: str) -> Seat | None:
        """A place for a new connection from ``host``; None: refuse it."""
        policy = self.policy
        if self.open >= policy.max_connections:
            return None
        if policy.trusted(host):
            self._trusted_total += 1
            return Seat(host, True)
        if (
            self._strangers[host] >= policy.max_per_source
            or self._stranger_total >= policy.max_connections - policy.trunk_reserve
        ):
            return None
        self._strangers[host] += 1
        self._stranger_total += 1
        return Seat(host, False)

    def release(self, seat: Seat) -> None:
        if seat.trusted:
            self._trusted_total -= 1
            return
        self._stranger_total -= 1
        self._strangers[seat.host] -= 1
        if self._strangers[seat.host] <= 0:
            del self._strangers[seat.host]


class StreamDeadlines:
    """When one connection must be closed, from the complete units it received and what we sent.

    A connection we accepted owes us a first SIP message within ``first_message_timeout``
    (keep-alives do not count: anyone can send those); after that it may stay quiet for
    ``idle_timeout``. A partial message must complete within ``first_message_timeout`` of its
    first byte. Connections we opened start established.
    """

    def __init__(self, policy: ConnectionPolicy, now: float, accepted: bool) -> None:
        self._idle = policy.idle_timeout
        self._message = policy.first_message_timeout
        self.established = not accepted
        self._quiet_until = now + (self._message if accepted else self._idle)
        self._partial_since: float | None = None

    def received(self, now: float, messages: int, pings: int, partial: bool) -> None:
        """``messages`` and ``pings`` completed by this read; ``partial``: part of one is left over."""
        if messages:
            self.established = True
        if messages or (pings and self.established):
            self._quiet_until = max(self._quiet_until, now + self._idle)
        if not partial:
            self._partial_since = None
        elif self._partial_since is None or messages or pings:
            self._partial_since = now

    def sent(self, now: float) -> None:
        if self.established:
            self._quiet_until = max(self._quiet_until, now + self._idle)

    @property
    def expiry(self) -> float:
        if self._partial_since is None:
            return self._quiet_until
        return min(self._quiet_until, self._partial_since + self._message)

    def expired(self, now: float) -> bool:
        return now >= self.expiry


class RareLog:
    """Events to report at most once per ``interval``: a flood gets one line now and then, not one each."""

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self._next = float("-inf")
        self._pending = 0

    def note(self, now: float) -> int:
        """Count one event; the number to report now (those since the last report), or 0: stay quiet."""
        self._pending += 1
        if now < self._next:
            return 0
        self._next = now + self.interval
        count, self._pending = self._pending, 0
        return count
