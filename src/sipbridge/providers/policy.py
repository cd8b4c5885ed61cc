"""Who may be dialled, and how often: the guard rails of an API that places phone calls.

Toll fraud through an open or leaked call API runs up bills of thousands within hours, mostly to
premium-rate and far international numbers. Every outbound call passes three checks: the number is
well formed, it matches the provider's allow-list and is not a premium or international range the
provider was not opened for, and the provider is within its concurrency and per-minute caps.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass

NUMBER = re.compile(r"\+?[0-9]{2,15}")
# Default allow-lists when a provider names none: E.164 North America for Twilio, extensions for a
# PBX, any national/E.164 number for the rest (the premium checks below still apply).
DEFAULT_DESTINATIONS = {
    "asterisk": (r"^[0-9]{2,6}$",),
    "twilio": (r"^\+1[2-9][0-9]{9}$",),
    "ringcentral": (r"^\+?1?[2-9][0-9]{9}$",),
    "generic": (r"^\+?[0-9]{2,15}$",),
}
# Premium-rate and shared-cost ranges that fraud goes for, as E.164 prefixes (NANP 900/976,
# UK 09/0871-0873, DE 0900/0137, FR 089, ...) and satellite/global services (+87x, +88x).
PREMIUM_PREFIXES = (
    "+1900",
    "+1976",
    "+4490",
    "+4491",
    "+4498",
    "+44871",
    "+44872",
    "+44873",
    "+49900",
    "+49137",
    "+3389",
    "+3908",
    "+3489",
    "+870",
    "+871",
    "+872",
    "+873",
    "+874",
    "+881",
    "+882",
    "+883",
)
# National premium numbers dialled without a country code (NANP 1-900, 900).
NATIONAL_PREMIUM = re.compile(r"^1?(900|976)[0-9]{7}$")
HOME_COUNTRY_CODE = "+1"


class Refused(Exception):
    """A call the policy does not place; ``status`` is the HTTP answer (403, 422, 429)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def normalise(number: str) -> str:
    """Digits with an optional leading +, spaces, dashes, dots and brackets removed; 422 otherwise."""
    compact = re.sub(r"[\s\-.()]", "", number)
    if not NUMBER.fullmatch(compact):
        raise Refused(
            422, f"'to' must be a phone number or extension (digits, optional leading +), got {number!r}"
        )
    return compact


@dataclass(frozen=True)
class DestinationPolicy:
    patterns: tuple[str, ...]
    allow_premium: bool = False

    def check(self, number: str) -> str:
        """The normalised number if it may be dialled; raises Refused (422 or 403) with the reason."""
        number = normalise(number)
        if not any(re.fullmatch(pattern, number) for pattern in self.patterns):
            raise Refused(403, f"destination {number} is not in this provider's allowed destinations")
        if not self.allow_premium:
            if number.startswith(PREMIUM_PREFIXES) or NATIONAL_PREMIUM.match(number):
                raise Refused(403, f"destination {number} is a premium-rate range (allow_premium is off)")
            if number.startswith("+") and not number.startswith(HOME_COUNTRY_CODE):
                raise Refused(403, f"destination {number} is international (allow_premium is off)")
        return number


class AttemptLimiter:
    """At most ``per_minute`` call attempts in any 60 s window (time passed in, no clock inside)."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._attempts: deque[float] = deque()

    def allow(self, now: float) -> bool:
        while self._attempts and now - self._attempts[0] >= 60:
            self._attempts.popleft()
        if len(self._attempts) >= self.per_minute:
            return False
        self._attempts.append(now)
        return True

    def retry_after(self, now: float) -> int:
        return max(1, int(60 - (now - self._attempts[0])) + 1) if self._attempts else 1
