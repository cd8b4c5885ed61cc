"""RFC 4028 session timers, sans-IO: negotiate the interval and refresher, then say when to act.

The UAS side only (we answer INVITEs): ``negotiate`` reads the request's Session-Expires, Min-SE and
Supported headers; ``SessionTimer`` is fed the clock and says when we must refresh (when we are the
refresher, at half the interval) or when the session has expired (the peer missed its refresh).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .errors import SipParseError
from .headers import parse_params, parse_uint
from .message import SipRequest, SipResponse

RFC_MIN_SE = 90


class SessionTooSmall(Exception):
    """The request asked for an interval below our minimum: answer 422 with ``Min-SE: min_se``."""

    def __init__(self, min_se: int) -> None:
        super().__init__(f"Session-Expires below our minimum of {min_se} s")
        self.min_se = min_se


@dataclass(frozen=True)
class SessionTimerTerms:
    interval: int
    refresher: str  # "uac" (the caller) or "uas" (us)
    peer_supports_timer: bool

    def session_expires_header(self) -> str:
        return f"{self.interval};refresher={self.refresher}"


def supports(message: SipRequest | SipResponse, option: str) -> bool:
    values = message.headers.get_all("Supported") + message.headers.get_all("Require")
    return any(value.strip().lower() == option for value in values)


def _delta_seconds(message: SipRequest | SipResponse, name: str) -> tuple[int, dict[str, str | None]] | None:
    value = message.headers.get(name)
    if value is None:
        return None
    number, _, params = value.strip().partition(";")
    try:
        seconds = parse_uint(number.strip(), 2**31, name)
    except SipParseError:
        raise SipParseError(f"malformed {name} header", 400) from None
    return seconds, parse_params(params) if params else {}


def negotiate(request: SipRequest, min_se: int, default_interval: int | None) -> SessionTimerTerms | None:
    """The terms of our 2xx to an INVITE or UPDATE (RFC 4028 §9), or None for no session timer.

    Raises ``SessionTooSmall`` for an interval below ``min_se`` (§8.1) and ``SipParseError`` for a
    malformed header.
    """
    peer_supports = supports(request, "timer")
    asked = _delta_seconds(request, "Session-Expires")
    their_min = _delta_seconds(request, "Min-SE")
    floor = max(min_se, their_min[0] if their_min else 0)
    if asked is None:
        if default_interval is None or not peer_supports:
            return None  # §9: without the UAC's support we could only refresh ourselves; we don't
        return SessionTimerTerms(max(default_interval, floor), "uac", True)
    interval, params = asked
    if interval < min_se:
        raise SessionTooSmall(min_se)
    refresher = (params.get("refresher") or "").lower()
    if refresher not in ("uac", "uas"):
        refresher = "uac" if peer_supports else "uas"
    return SessionTimerTerms(interval, refresher, peer_supports)


def terms_after_refresh(response: SipResponse, sent: SessionTimerTerms) -> SessionTimerTerms:
    """The terms the 2xx to our own refresh settles (``sent``: the terms our request asked for).

    In that transaction we are the UAC, so its ``refresher=uac`` means we go on refreshing:
    in ``SessionTimerTerms``, which names the roles of the caller's INVITE, that is "uas".
    """
    value = response.headers.get("Session-Expires")
    if value is None:
        return sent
    interval, _, params = value.partition(";")
    they_refresh = "refresher=uas" in params.replace(" ", "").lower()
    try:
        return SessionTimerTerms(max(1, int(interval.strip())), "uac" if they_refresh else "uas", True)
    except ValueError:
        return sent


class TimerAction(Enum):
    NONE = "none"
    REFRESH = "refresh"
    EXPIRED = "expired"


class SessionTimer:
    """When the next refresh is due (we refresh) or when the session expires (they refresh)."""

    def __init__(self, terms: SessionTimerTerms, now: float) -> None:
        self.terms = terms
        self.deadline = 0.0
        self.refreshed(terms, now)

    @property
    def we_refresh(self) -> bool:
        return self.terms.refresher == "uas"

    def refreshed(self, terms: SessionTimerTerms, now: float) -> None:
        """A refresh succeeded (either side's): start the interval again with ``terms``."""
        self.terms = terms
        interval = terms.interval
        if self.we_refresh:
            self.deadline = now + interval / 2
        else:
            # §10: the side that is not refreshing waits until the interval less a margin.
            self.deadline = now + interval - min(32, interval / 3)

    @property
    def next_deadline(self) -> float:
        return self.deadline

    def on_timer(self, now: float) -> TimerAction:
        if now < self.deadline:
            return TimerAction.NONE
        return TimerAction.REFRESH if self.we_refresh else TimerAction.EXPIRED
