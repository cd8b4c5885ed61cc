"""Who may be dialled, and how often: the guard rails of an API that places phone calls.

Toll fraud through an open or leaked call API runs up bills of thousands within hours, mostly to
premium-rate and far international numbers. Every outbound call passes three checks: the number is
well formed, it is not a premium or international range the provider was not opened for and it
matches the provider's allow-list, and the provider is within its concurrency and per-minute caps.

A number is read before it is judged. A trunk dials ``00 44 20 ...``, ``011 44 20 ...`` (from North
America) and ``+44 20 ...`` alike, and ``1 415 ...`` or ``020 ...`` at home: judging the text as typed
let every form but ``+`` through. So each number is first brought to E.164 as the provider's home
country (``country``) dials it, and the rules and the allow-list see only that form; short numbers
(2-6 digits) stay extensions of a PBX.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass

# Up to 19 digits: an international prefix (0011 at most) and a 15-digit E.164 number; the digits
# that make the number are held to E.164's 15 once it is read.
NUMBER = re.compile(r"\+?[0-9]{2,19}")
E164 = re.compile(r"\+[1-9][0-9]{6,14}")
NANP_E164 = re.compile(r"\+1[2-9][0-9]{9}")
EXTENSION = re.compile(r"[0-9]{2,6}")
LOCAL = re.compile(r"[0-9]{7,10}")  # a subscriber number without its area code
# Default allow-lists when a provider names none: E.164 North America for Twilio, extensions for a
# PBX, any national/E.164 number for the rest (the premium checks below still apply). They are
# matched against the E.164 form (an extension as it is).
DEFAULT_DESTINATIONS = {
    "asterisk": (r"^[0-9]{2,6}$",),
    "twilio": (r"^\+1[2-9][0-9]{9}$",),
    "ringcentral": (r"^\+?1?[2-9][0-9]{9}$",),
    "generic": (r"^\+?[0-9]{2,15}$",),
}
# Home country by provider type: Twilio's and RingCentral's trunks dial as in the US; for a PBX or
# another trunk we cannot know, and the +1 home the bridge always assumed keeps configurations
# working (set ``country`` for one elsewhere: a wrong home is refused, never let through, for the
# national forms the NANP has no room for, e.g. a leading 0).
DEFAULT_COUNTRY = {"asterisk": "US", "twilio": "US", "ringcentral": "US", "generic": "US"}
# Premium-rate and shared-cost ranges that fraud goes for, as E.164 prefixes: NANP 900/976; UK 070
# (personal numbers), 09, 0871-0873; DE 0900, 0137; FR 089; IT 89x; ES 803/806/807/905; satellite
# and global services (+87x, +88x).
PREMIUM_PREFIXES = (
    "+1900",
    "+1976",
    "+4470",
    "+4490",
    "+4491",
    "+4498",
    "+44871",
    "+44872",
    "+44873",
    "+49900",
    "+49137",
    "+3389",
    "+3989",
    "+34803",
    "+34806",
    "+34807",
    "+34905",
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
# Area codes of the NANP countries other than the US (and its territories: PR 787/939, USVI 340,
# Guam 671, CNMI 670, AS 684) and Canada. They are dialled as +1 but billed as international, and
# several are the classic "one ring" fraud targets (FCC consumer advisory). Source: NANPA's list of
# NANP area codes by country (nationalnanpa.com), as assigned in 2024. Canada is not listed: US
# carriers rate and permit it with the US (Twilio's Geo permissions keep the two together).
NANP_ABROAD = {
    "242": "the Bahamas",
    "246": "Barbados",
    "264": "Anguilla",
    "268": "Antigua and Barbuda",
    "284": "the British Virgin Islands",
    "345": "the Cayman Islands",
    "441": "Bermuda",
    "473": "Grenada",
    "649": "the Turks and Caicos Islands",
    "658": "Jamaica",
    "664": "Montserrat",
    "721": "Sint Maarten",
    "758": "Saint Lucia",
    "767": "Dominica",
    "784": "Saint Vincent and the Grenadines",
    "809": "the Dominican Republic",
    "829": "the Dominican Republic",
    "849": "the Dominican Republic",
    "868": "Trinidad and Tobago",
    "869": "Saint Kitts and Nevis",
    "876": "Jamaica",
}


@dataclass(frozen=True)
class DiallingPlan:
    """How a country dials: its calling code, international prefixes and national trunk prefix.

    The defaults are the ITU-T recommendation most countries follow: ``00`` abroad, ``0`` before a
    national number. ``short_premium``: premium short codes dialled as they are (directory
    enquiries, 118 xxx in the UK), which would otherwise pass as extensions.
    """

    calling_code: str
    international: tuple[str, ...] = ("00",)
    trunk: str = "0"
    short_premium: str | None = None

    @property
    def nanp(self) -> bool:
        return self.calling_code == "1"

    @property
    def international_prefixes(self) -> tuple[str, ...]:
        """The country's own, and ``00`` everywhere: many trunks take it whatever their country."""
        return tuple(sorted({*self.international, "00"}, key=len, reverse=True))


# ISO 3166 alpha-2 -> dialling plan (ITU-T E.164 assigned codes and national numbering plans).
# settings.provider.COUNTRIES lists the same keys (a test keeps them equal).
DIALLING_PLANS = {
    "US": DiallingPlan("1", ("011",), "1"),
    "CA": DiallingPlan("1", ("011",), "1"),
    "GB": DiallingPlan("44", short_premium=r"118[0-9]{3}"),
    "DE": DiallingPlan("49", short_premium=r"118[0-9]{2,3}"),
    "FR": DiallingPlan("33", short_premium=r"118[0-9]{3}"),
    "IE": DiallingPlan("353", short_premium=r"118[0-9]{2}"),
    "NL": DiallingPlan("31"),
    "BE": DiallingPlan("32"),
    "CH": DiallingPlan("41"),
    "AT": DiallingPlan("43"),
    "SE": DiallingPlan("46"),
    "NZ": DiallingPlan("64"),
    "IN": DiallingPlan("91"),
    "ZA": DiallingPlan("27"),
    "AU": DiallingPlan("61", ("0011",)),
    "JP": DiallingPlan("81", ("010",)),
    # No trunk prefix: national numbers are dialled whole (Italy's leading 0 is part of the number).
    "ES": DiallingPlan("34", trunk=""),
    "IT": DiallingPlan("39", trunk=""),
    "PT": DiallingPlan("351", trunk=""),
    "DK": DiallingPlan("45", trunk=""),
    "NO": DiallingPlan("47", trunk=""),
    "MX": DiallingPlan("52", trunk=""),
}


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
class Destination:
    """A number as dialled, and what it is: ``e164`` (``number`` is E.164), ``extension`` (2-6
    digits) or ``local`` (a subscriber number without its area code; domestic, not convertible)."""

    dialled: str
    number: str
    kind: str

    def __str__(self) -> str:
        same = self.dialled == self.number
        return self.number if same else f"{self.number} (dialled as {self.dialled})"


def read_number(dialled: str, plan: DiallingPlan) -> Destination:
    """``dialled`` (already normalised) as ``plan``'s country dials it; 422 when it cannot be read."""
    if dialled.startswith("+"):
        return _e164(dialled, dialled)
    prefix = next((p for p in plan.international_prefixes if dialled.startswith(p)), None)
    if prefix is not None:
        return _e164(dialled, "+" + dialled[len(prefix) :])
    if EXTENSION.fullmatch(dialled):
        return Destination(dialled, dialled, "extension")
    if plan.nanp:
        return _nanp_national(dialled)
    if plan.trunk and dialled.startswith(plan.trunk):
        return _e164(dialled, f"+{plan.calling_code}{dialled[len(plan.trunk) :]}")
    if plan.trunk and LOCAL.fullmatch(dialled):
        return Destination(dialled, dialled, "local")
    if plan.trunk:
        raise Refused(
            422,
            f"'to' {dialled!r} is neither an extension (2-6 digits), a national number ({plan.trunk}...)"
            " nor a local one (7-10 digits); write numbers abroad as + and the country code",
        )
    return _e164(dialled, f"+{plan.calling_code}{dialled}")


def _nanp_national(dialled: str) -> Destination:
    """1 NPA NXX XXXX, NPA NXX XXXX, or NXX XXXX (seven-digit local dialling)."""
    if re.fullmatch(r"1[2-9][0-9]{9}", dialled):
        return _e164(dialled, "+" + dialled)
    if re.fullmatch(r"[2-9][0-9]{9}", dialled):
        return _e164(dialled, "+1" + dialled)
    if re.fullmatch(r"[2-9][0-9]{6}", dialled):
        return Destination(dialled, dialled, "local")
    raise Refused(
        422,
        f"'to' {dialled!r} is neither an extension (2-6 digits) nor a North American number"
        " (1 and 10 digits, or 10 digits); write numbers abroad as + and the country code",
    )


def _e164(dialled: str, number: str) -> Destination:
    if not E164.fullmatch(number):
        raise Refused(422, f"'to' {dialled!r} is not a full number: + (or 00), country code and number")
    if number.startswith("+1") and not NANP_E164.fullmatch(number):
        raise Refused(422, f"'to' {dialled!r} is not a North American number: +1 and 10 digits")
    return Destination(dialled, number, "e164")


@dataclass(frozen=True)
class DestinationPolicy:
    patterns: tuple[str, ...]
    allow_premium: bool = False
    country: str = "US"

    def check(self, number: str) -> str:
        """The number to dial (E.164, or an extension or local number as it is) if it may be dialled;
        raises Refused (422 or 403) with the reason. Premium and international ranges are named as
        such even when the allow-list would not have matched either: the reason is what to fix."""
        plan = DIALLING_PLANS[self.country]
        destination = read_number(normalise(number), plan)
        if not self.allow_premium:
            closed = _premium(destination, plan) or _international(destination, plan)
            if closed:
                raise Refused(403, f"destination {destination} is {closed} (allow_premium is off)")
        if not any(re.fullmatch(pattern, destination.number) for pattern in self.patterns):
            raise Refused(403, f"destination {destination} is not in this provider's allowed destinations")
        return destination.number


def _premium(destination: Destination, plan: DiallingPlan) -> str | None:
    number = destination.number
    if destination.kind == "extension":
        short = plan.short_premium is not None and re.fullmatch(plan.short_premium, number)
        return "a premium-rate short code" if short else None
    return "a premium-rate range" if number.startswith(PREMIUM_PREFIXES) else None


def _international(destination: Destination, plan: DiallingPlan) -> str | None:
    number = destination.number
    if destination.kind != "e164":
        return None
    if not number.startswith("+" + plan.calling_code):
        return "international"
    area = number[2:5]
    if plan.nanp and area in NANP_ABROAD:
        return f"international (+1 {area} is {NANP_ABROAD[area]}, not the US or Canada)"
    return None


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
