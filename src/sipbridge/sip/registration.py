"""A REGISTER client for one binding (RFC 3261 §10.2), sans-IO.

``Registration`` is fed the clock and the final responses to the REGISTERs it hands out; the caller
sends each request through a client transaction (adding Via and User-Agent) and reports the outcome
with ``receive_response`` or ``timed_out``. Only one REGISTER is outstanding at a time; a response
to an older one (a different CSeq) is ignored. ``next_deadline`` / ``on_timer`` drive refreshes and
retries like the transaction classes.

Timing: a binding granted ``e`` seconds is refreshed after ``max(e / 2, e - 60)`` seconds, so a
refresh has at least a minute (a whole non-INVITE transaction timeout, 32 s, plus an authentication
round) before the binding lapses, and short bindings are refreshed half-way. A failure is retried
after 5 s doubling up to 300 s (``Backoff``), optionally jittered, and never sooner than a
Retry-After asks.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from .digest import DigestCredentials, DigestError, DigestSession, new_cnonce
from .errors import SipParseError
from .headers import parse_name_addr, parse_uint
from .message import Headers, SipRequest, SipResponse, generate_call_id, generate_tag
from .uri import parse_uri

REFRESH_MARGIN = 60.0
MAX_CHALLENGES = 4  # 401/407s answered in a row before giving up (a server stuck on stale=true)
_UINT32 = 2**32 - 1
_LEADING_DIGITS = re.compile(r"\s*([0-9]+)")


class RegistrationState(Enum):
    UNREGISTERED = "unregistered"
    REGISTERING = "registering"
    REGISTERED = "registered"  # also while a refresh is under way: the binding is still valid
    FAILED = "failed"  # ``last_error`` says why; a retry is scheduled
    UNREGISTERING = "unregistering"


@dataclass(frozen=True)
class Backoff:
    """Retry delays after consecutive failures: ``initial`` doubling up to ``maximum`` seconds."""

    initial: float = 5.0
    maximum: float = 300.0

    def delay(self, failures: int) -> float:
        return min(self.maximum, self.initial * 2 ** max(failures - 1, 0))


def refresh_delay(granted: float) -> float:
    """Seconds after a 2xx at which to refresh a binding granted ``granted`` seconds."""
    return max(granted / 2, granted - REFRESH_MARGIN)


def _no_jitter(delay: float) -> float:
    return delay


class Registration:
    """One binding of ``contact`` to ``aor`` at ``registrar``: one Call-ID, CSeq counting up (§10.2.4).

    ``outbound_proxy`` is not used here: it tells the caller where to send (see ``next_hop``).
    ``jitter`` maps a retry delay to the one used, e.g. ``lambda d: d * random.uniform(0.5, 1.0)``.
    """

    def __init__(
        self,
        registrar: str,
        aor: str,
        contact: str,
        *,
        expires: int = 300,
        credentials: DigestCredentials | None = None,
        outbound_proxy: str | None = None,
        new_call_id: Callable[[], str] | None = None,
        new_tag: Callable[[], str] = generate_tag,
        backoff: Backoff = Backoff(),
        jitter: Callable[[float], float] = _no_jitter,
        cnonce: Callable[[], str] = new_cnonce,
    ) -> None:
        for uri in (registrar, aor, contact, outbound_proxy):
            if uri is not None:
                parse_uri(uri)  # configuration errors surface here, not on the wire
        self.registrar = registrar
        self.aor = aor
        self.contact = contact
        self.expires = expires
        self.outbound_proxy = outbound_proxy
        self.backoff = backoff
        self.call_id = new_call_id() if new_call_id else generate_call_id(parse_uri(contact).host)
        self.from_tag = new_tag()
        self.cseq = 0
        self.state = RegistrationState.UNREGISTERED
        self.last_error: str | None = None
        self.granted_expires: int | None = None
        self.expires_at: float | None = None
        self._auth = DigestSession(credentials, cnonce) if credentials is not None else None
        self._jitter = jitter
        self._outstanding: SipRequest | None = None
        self._next_at: float | None = None
        self._failures = 0
        self._challenges = 0
        self._bound = False  # a 2xx may have left a binding at the registrar

    def __repr__(self) -> str:
        return f"Registration(aor={self.aor!r}, state={self.state.value!r}, last_error={self.last_error!r})"

    @property
    def next_hop(self) -> str:
        """The URI to resolve and send to: the outbound proxy when there is one, else the registrar."""
        return self.outbound_proxy or self.registrar

    @property
    def outstanding(self) -> SipRequest | None:
        """The REGISTER awaiting its final response, if any."""
        return self._outstanding

    @property
    def next_deadline(self) -> float | None:
        return None if self._outstanding is not None else self._next_at

    def start(self, now: float) -> list[SipRequest]:
        """Register now (also retries at once when failed); nothing when already registering or registered."""
        if self._outstanding is not None and self.state is not RegistrationState.UNREGISTERING:
            return []
        if self.state is RegistrationState.REGISTERED:
            return []
        self.state = RegistrationState.REGISTERING
        return [self._new_attempt()]

    def stop(self, now: float) -> list[SipRequest]:
        """Remove our binding (Expires: 0); UNREGISTERED at once when there can be none."""
        self._next_at = None
        if self.state in (RegistrationState.UNREGISTERED, RegistrationState.UNREGISTERING):
            return []
        if not self._bound and self._outstanding is None:
            self._unregistered()
            return []
        self.state = RegistrationState.UNREGISTERING
        return [self._new_attempt()]

    def on_timer(self, now: float) -> list[SipRequest]:
        """The refresh or retry when due."""
        deadline = self.next_deadline
        if deadline is None or now < deadline:
            return []
        self._next_at = None
        if self.state is RegistrationState.FAILED:
            self.state = RegistrationState.REGISTERING
        return [self._new_attempt()]

    def receive_response(self, response: SipResponse, now: float) -> list[SipRequest]:
        """The final response to the outstanding REGISTER; returns what to send now."""
        if response.status < 200 or not self._answers_outstanding(response):
            return []
        self._outstanding = None
        if response.status in (401, 407):
            return self._on_challenge(response, now)
        self._challenges = 0
        if self.state is RegistrationState.UNREGISTERING:
            self._unregistered(None if response.status < 300 else _describe(response))
        elif response.status < 300:
            self._on_success(response, now)
        elif response.status == 423:
            return self._on_interval_too_brief(response, now)
        else:
            self._fail(_describe(response), now, _retry_after(response))
        return []

    def timed_out(self, now: float, request: SipRequest | None = None) -> None:
        """The outstanding REGISTER (or ``request``, if still outstanding) got no final response."""
        outstanding = self._outstanding
        if outstanding is None or (request is not None and request.cseq[0] != outstanding.cseq[0]):
            return
        self._outstanding = None
        self._fail("no response from the registrar (timeout)", now)

    def _answers_outstanding(self, response: SipResponse) -> bool:
        if self._outstanding is None:
            return False
        try:
            number, method = response.cseq
            return number == self.cseq and method == "REGISTER" and response.call_id == self.call_id
        except SipParseError:
            return False

    def _on_challenge(self, response: SipResponse, now: float) -> list[SipRequest]:
        self._challenges += 1
        if self._auth is None:
            return self._fail("authentication required but no credentials configured", now)
        if self._challenges > MAX_CHALLENGES:
            return self._fail("authentication failed: too many challenges in a row", now)
        try:
            self._auth.on_challenge(response)
        except DigestError as exc:
            return self._fail(f"authentication failed: {exc}", now)
        return [self._send()]

    def _on_success(self, response: SipResponse, now: float) -> None:
        granted = self._granted_expires(response)
        if granted <= 0:
            self._fail("registrar granted no time to our binding", now)
            return
        self.state = RegistrationState.REGISTERED
        self.last_error = None
        self._failures = 0
        self._bound = True
        self.granted_expires = granted
        self.expires_at = now + granted
        self._next_at = now + refresh_delay(granted)

    def _on_interval_too_brief(self, response: SipResponse, now: float) -> list[SipRequest]:
        minimum = _uint(response.headers.get("Min-Expires"))
        if minimum is None or minimum <= self.expires:
            return self._fail("423 Interval Too Brief without a usable Min-Expires", now)
        self.expires = minimum  # kept for the refreshes too (§10.2.8)
        return [self._send()]

    def _granted_expires(self, response: SipResponse) -> int:
        """Our Contact's expires param; else the Expires header; else what we asked (§10.2.4).

        A registrar that rewrote our Contact (NAT fixing) cannot be matched: a lone Contact is
        taken to be ours.
        """
        ours = parse_uri(self.contact)
        contacts = []
        for value in response.headers.get_all("Contact"):
            try:
                contacts.append(parse_name_addr(value))
            except SipParseError:
                continue
        matching = [c for c in contacts if c.uri == ours] or (contacts if len(contacts) == 1 else [])
        for contact in matching:
            granted = _uint(contact.params.get("expires"))
            if granted is not None:
                return granted
        granted = _uint(response.headers.get("Expires"))
        return self.expires if granted is None else granted

    def _fail(self, reason: str, now: float, retry_after: int | None = None) -> list[SipRequest]:
        if self.state is RegistrationState.UNREGISTERING:
            self._unregistered(reason)  # the binding will lapse by itself: no retry
            return []
        self.state = RegistrationState.FAILED
        self.last_error = reason
        self._failures += 1
        delay = self._jitter(self.backoff.delay(self._failures))
        self._next_at = now + max(delay, retry_after or 0)
        return []

    def _unregistered(self, error: str | None = None) -> None:
        self.state = RegistrationState.UNREGISTERED
        self.last_error = error
        self._bound = False
        self._outstanding = None
        self._next_at = None
        self.granted_expires = self.expires_at = None
        self._challenges = 0
        self._failures = 0

    def _new_attempt(self) -> SipRequest:
        self._challenges = 0
        return self._send()

    def _send(self) -> SipRequest:
        expires = 0 if self.state is RegistrationState.UNREGISTERING else self.expires
        self.cseq += 1
        headers = Headers()
        headers.add("Max-Forwards", "70")
        headers.add("From", f"<{self.aor}>;tag={self.from_tag}")
        headers.add("To", f"<{self.aor}>")
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{self.cseq} REGISTER")
        headers.add("Contact", f"<{self.contact}>;expires={expires}")
        headers.add("Expires", str(expires))
        if self._auth is not None:
            for name, value in self._auth.authorization_headers("REGISTER", self.registrar):
                headers.add(name, value)
        self._outstanding = SipRequest("REGISTER", self.registrar, headers)
        return self._outstanding


def _describe(response: SipResponse) -> str:
    return f"{response.status} {response.reason}".strip()


def _uint(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return parse_uint(value, _UINT32, "expires")
    except SipParseError:
        return None


def _retry_after(response: SipResponse) -> int | None:
    match = _LEADING_DIGITS.match(response.headers.get("Retry-After") or "")
    return _uint(match.group(1)) if match else None
