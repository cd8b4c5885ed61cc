"""Reliable provisional responses (RFC 3262, "100rel"), sans-IO: both ends of the PRACK handshake.

``ReliableSender`` is the UAS side of one INVITE: it numbers our reliable 18x (RSeq, random start),
says when to send the unacknowledged one again (T1, 2·T1, 4·T1 ... with no T2 cap, §3) and when to
give up (64·T1), and matches a PRACK's RAck to it. ``ReliableReceiver`` is the UAC side: which
reliable 18x from the far end are new and in order, so PRACKed once each (§4). Times are floats
from one monotonic clock, passed in.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import Enum

from .message import SipRequest, SipResponse
from .transaction import Timers

OPTION_TAG = "100rel"
MAX_RSEQ = 2**31 - 1  # §3: the first RSeq is chosen between 1 and 2**31 - 1


def _option_tags(message: SipRequest | SipResponse, header: str) -> set[str]:
    return {tag.strip().lower() for tag in message.headers.get_all(header) if tag.strip()}


def requires_100rel(message: SipRequest | SipResponse) -> bool:
    return OPTION_TAG in _option_tags(message, "Require")


def supports_100rel(message: SipRequest | SipResponse) -> bool:
    return OPTION_TAG in _option_tags(message, "Supported") or requires_100rel(message)


def _number(value: str | None) -> int | None:
    """An RSeq or CSeq number (1*DIGIT, at most 2**32 - 1), else None."""
    text = (value or "").strip()
    if not text.isdigit() or len(text) > 10 or int(text) > 2**32 - 1:
        return None
    return int(text)


@dataclass(frozen=True)
class RAck:
    """The RAck header (§7.2): which reliable provisional response a PRACK acknowledges."""

    rseq: int
    cseq: int
    method: str

    @classmethod
    def parse(cls, value: str | None) -> RAck | None:
        parts = (value or "").split()
        if len(parts) != 3:
            return None
        rseq, cseq = _number(parts[0]), _number(parts[1])
        if rseq is None or cseq is None:
            return None
        return cls(rseq, cseq, parts[2].upper())

    @classmethod
    def for_response(cls, response: SipResponse, rseq: int) -> RAck:
        number, method = response.cseq
        return cls(rseq, number, method)

    def __str__(self) -> str:
        return f"{self.rseq} {self.cseq} {self.method}"


class ReliableSender:
    """Our reliable provisional responses to one INVITE (§3), one unacknowledged at a time."""

    def __init__(self, invite: SipRequest, timers: Timers, first_rseq: int | None = None) -> None:
        self._cseq = invite.cseq[0]
        self._timers = timers
        self._rseq = (first_rseq if first_rseq is not None else random.randint(1, MAX_RSEQ)) - 1
        self.pending: SipResponse | None = None  # sent, not yet PRACKed
        self.gave_up = False
        self._interval = timers.t1
        self._next_at: float | None = None
        self._give_up_at: float | None = None

    @property
    def next_deadline(self) -> float | None:
        if self.pending is None or self._next_at is None or self._give_up_at is None:
            return None
        return min(self._next_at, self._give_up_at)

    def stamp(self, response: SipResponse, now: float) -> SipResponse | None:
        """Make ``response`` (a 101-199) reliable and pending: Require and the next RSeq. None
        while an earlier one waits for its PRACK: §3 allows no second one before it."""
        if self.pending is not None or self.gave_up:
            return None
        self._rseq += 1
        response.headers.set("Require", OPTION_TAG)
        response.headers.set("RSeq", str(self._rseq))
        self.pending = response
        self._interval = self._timers.t1
        self._next_at = now + self._interval
        self._give_up_at = now + self._timers.b
        return response

    def on_timer(self, now: float) -> SipResponse | None:
        """The pending response when it must go again now; sets ``gave_up`` 64·T1 after its first
        sending with no PRACK (the INVITE is then refused with a 5xx, §3)."""
        if self.pending is None or self._next_at is None or self._give_up_at is None:
            return None
        if now >= self._give_up_at:
            self.gave_up = True
            self.pending = None
            return None
        if now < self._next_at:
            return None
        self._interval *= 2  # doubles with no T2 cap, unlike other SIP retransmissions
        self._next_at = now + self._interval
        return self.pending

    def prack(self, prack: SipRequest) -> bool:
        """Whether ``prack`` acknowledges the pending response (its RAck names its RSeq and the
        INVITE's CSeq); if so that response is done. Any other PRACK gets 481 from the caller."""
        rack = RAck.parse(prack.headers.get("RAck"))
        if self.pending is None or rack is None:
            return False
        if rack != RAck(self._rseq, self._cseq, "INVITE"):
            return False
        self.pending = None
        return True

    def stop(self) -> None:
        """A final response went out: nothing more is sent reliably."""
        self.pending = None

    @property
    def has_pending_sdp(self) -> bool:
        return self.pending is not None and bool(self.pending.body)


class Reliability(Enum):
    """What a UAC does with a provisional response (§4)."""

    UNRELIABLE = "unreliable"  # an ordinary 1xx: to the application, no PRACK
    NEW = "new"  # the next reliable one of its early dialog: PRACK it, then to the application
    STALE = "stale"  # a retransmission or out of order: neither PRACKed nor processed further


class ReliableReceiver:
    """The reliable provisional responses to our INVITE, per early dialog (To tag): §4 keeps the
    RSeq of the last one received in order, and a response whose RSeq is not one higher is a
    retransmission (our PRACK's transaction already retransmits) or out of order: dropped."""

    def __init__(self) -> None:
        self._last_rseq: dict[str, int] = {}

    def judge(self, response: SipResponse) -> tuple[Reliability, RAck | None]:
        """The response's reliability and, for a NEW one, the RAck our PRACK carries."""
        tag = response.to.tag
        rseq = _number(response.headers.get("RSeq"))
        if not 100 < response.status < 200 or not requires_100rel(response) or not tag or rseq is None:
            return Reliability.UNRELIABLE, None
        last = self._last_rseq.get(tag)
        if last is not None and rseq != last + 1:
            return Reliability.STALE, None
        self._last_rseq[tag] = rseq
        return Reliability.NEW, RAck.for_response(response, rseq)
