"""The first look at every SIP request, before it is parsed: per-source rate limits and scanners.

A SIP port on a public address is scanned within minutes (SIPVicious' ``friendly-scanner``, sipcli,
...) and flooded. This gate is consulted for each request's raw bytes and source address and says
whether to handle it, answer ``503`` with ``Retry-After`` (the first request over a source's limit
in each retry interval) or drop it without a word. It is pure: the caller passes the time, and it
never parses more than the method and the User-Agent line, so a flood costs a dictionary lookup per
datagram. The table of sources is bounded: the least recently seen source is forgotten first.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum


class Verdict(Enum):
    HANDLE = "handle"
    REJECT = "reject"  # over the limit: answer 503 with Retry-After
    FORBID = "forbid"  # a scanner, when scanners are to be told: 403
    DROP = "drop"  # no answer at all


# User-Agent (or From display name) of well-known SIP scanners and war-dialers.
DEFAULT_SCANNER_SIGNATURES = (
    "friendly-scanner",
    "sipvicious",
    "sipcli",
    "sip-scan",
    "sipscan",
    "iwar",
    "sivus",
    "sundayddr",
    "vaxsipuseragent",
    "smap",
)


@dataclass
class _Bucket:
    tokens: float
    stamp: float
    rejected_at: float | None = None


class SourceLimiter:
    """A token bucket per source address: ``rate`` requests a second, bursts of ``burst``.

    Over the limit, the first request in each ``retry_after`` seconds gets REJECT (its sender is told
    when to come back) and the rest DROP, so a flood is answered at most once a second per source.
    """

    def __init__(self, rate: float, burst: float, retry_after: int = 5, max_sources: int = 10000) -> None:
        if rate <= 0 or burst < 1 or max_sources < 1:
            raise ValueError("rate must be positive, burst at least 1, max_sources at least 1")
        self.rate = rate
        self.burst = burst
        self.retry_after = retry_after
        self.max_sources = max_sources
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def check(self, source: str, now: float) -> Verdict:
        bucket = self._buckets.get(source)
        if bucket is None:
            bucket = self._buckets[source] = _Bucket(self.burst, now)
            if len(self._buckets) > self.max_sources:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(source)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate)
            bucket.stamp = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return Verdict.HANDLE
        if bucket.rejected_at is None or now - bucket.rejected_at >= self.retry_after:
            bucket.rejected_at = now
            return Verdict.REJECT
        return Verdict.DROP


def scanner_pattern(signatures: Iterable[str]) -> re.Pattern[bytes] | None:
    """A pattern that finds any of ``signatures`` in a User-Agent or From header line (any case)."""
    words = [re.escape(s.strip().lower().encode()) for s in signatures if s.strip()]
    if not words:
        return None
    names = rb"user-agent|from|f"
    return re.compile(rb"(?im)^(?:" + names + rb")[ \t]*:[^\r\n]*?(?:" + b"|".join(words) + rb")")


_HEAD_END = b"\r\n\r\n"
_FOLD = re.compile(rb"\r?\n[ \t]+")


@dataclass
class GateCounts:
    rejected: int = 0
    dropped: int = 0
    scanners: int = 0


class RequestGate:
    """Per-source limit and scanner check for one SIP endpoint.

    ``trusted(ip)`` names sources that are never limited (configured trunks); it is asked only about
    a source over its limit, and its answer is remembered for ``TRUST_TTL_S``. ``scanner_verdict``
    is what a scanner's request gets: DROP (no answer, the default) or FORBID.
    """

    TRUST_TTL_S = 5.0
    TRUST_CACHE_SIZE = 1024

    def __init__(
        self,
        limiter: SourceLimiter | None,
        scanners: re.Pattern[bytes] | None,
        trusted: Callable[[str], bool] = lambda ip: False,
        scanner_verdict: Verdict = Verdict.DROP,
    ) -> None:
        self.limiter = limiter
        self.scanners = scanners
        self.trusted = trusted
        self.scanner_verdict = scanner_verdict
        self.counts = GateCounts()
        self._trust: dict[str, tuple[bool, float]] = {}

    def check(self, data: bytes, source: str, now: float) -> Verdict:
        """Everything a source sends counts against its rate (requests, ACKs, responses, garbage):
        an ACK or a response costs a parse too, and a flood of them stalls the loop as well."""
        if self.limiter is not None:
            verdict = self.limiter.check(source, now)
            if verdict is not Verdict.HANDLE and not self._is_trusted(source, now):
                if verdict is Verdict.DROP:
                    self.counts.dropped += 1
                else:
                    self.counts.rejected += 1
                return verdict
        if self.scanners is not None and not data.startswith(b"SIP/") and self._names_scanner(data):
            self.counts.scanners += 1
            return self.scanner_verdict
        return Verdict.HANDLE

    def _names_scanner(self, data: bytes) -> bool:
        """The scanner pattern over the header lines, unfolded first: ``User-Agent:`` with the name
        on a continuation line (RFC 3261 §7.3.1 folding) is the same header."""
        assert self.scanners is not None
        end = data.find(_HEAD_END)
        head = data if end < 0 else data[:end]
        if b"\n " in head or b"\n\t" in head:
            head = _FOLD.sub(b" ", head)
        return self.scanners.search(head) is not None

    def _is_trusted(self, source: str, now: float) -> bool:
        known = self._trust.get(source)
        if known is not None and known[1] > now:
            return known[0]
        if len(self._trust) >= self.TRUST_CACHE_SIZE:
            self._trust.clear()
        trusted = self.trusted(source)
        self._trust[source] = (trusted, now + self.TRUST_TTL_S)
        return trusted


@dataclass(frozen=True)
class Screening:
    """What the application makes of a new request from outside any dialog, before it is served.

    ``drop``: no answer at all. ``status``: refuse it with that status (``warning`` and ``headers``,
    e.g. a 401's challenges, go on the response). Otherwise it is served; ``admitted_as`` names what
    let it in (a trunk), for the call to carry.
    """

    drop: bool = False
    status: int | None = None
    warning: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    admitted_as: str | None = None


ADMIT = Screening()
