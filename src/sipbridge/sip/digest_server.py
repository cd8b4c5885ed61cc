"""Digest authentication from the server's side (RFC 3261 §22.4, RFC 7616, RFC 8760), sans-IO.

Used to admit inbound calls from a PBX or trunk that authenticates itself (Asterisk's
``outbound_auth``) instead of, or besides, coming from a known address.

An answer is bound to one request and one sender:

- its ``uri`` must be the Request-URI (RFC 3261 §19.1.4 equality), else 403;
- it must use qop=auth (always offered): an RFC 2069 answer has no nonce count, so a replay of it
  could not be told from the original; such answers get 403 (a new challenge would be answered the
  same way, forever);
- a nonce is the time it was issued, a random salt and an HMAC of both *and the source address*
  under a per-process secret: challenges stay stateless, so a flood of unauthenticated INVITEs leaves
  nothing behind. A nonce older than ``nonce_lifetime``, presented from another address, or issued by
  another process (we restarted) is answered with a fresh challenge and ``stale=true`` when the answer
  was otherwise right: a replay from elsewhere is never admitted, while a PBX whose address changed
  simply answers again;
- only a right answer creates state: the highest ``nc`` seen for its nonce. A later answer must
  count higher (a PBX reusing its nonce for its next INVITE does); a repeated or lower ``nc`` (the
  same header replayed with another Call-ID, say) gets a stale challenge, as OpenSIPS does, so a
  UA that merely reordered or reused its count recovers with one more round trip while the replay
  gets nothing it can use without the password. The table is bounded: entries go once their nonce
  expires, and beyond ``max_nonces`` the least recently used goes first; a nonce whose entry was
  forgotten early counts as stale, never as new.

Retransmissions of an admitted INVITE (same branch) match its server transaction in the UA core and
are never checked again, so a resent INVITE with the same ``nc`` does not break a call.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from .digest import DigestChallenge, DigestCredentials, DigestError, digest_response, parse_credentials
from .errors import SipParseError
from .message import SipRequest
from .uri import parse_uri

# Offered in the order given (RFC 8760 §2.4: the preferred first). MD5 alone by default: many
# deployed UAs (sipp 3.6 among them) answer only the first challenge, and only with MD5.
ALGORITHMS = ("MD5",)
# Long enough for a PBX to answer a challenge (it does so at once; a retransmission of an admitted
# INVITE never comes back here), short enough that little is remembered. OpenSIPS uses 30 s too.
NONCE_LIFETIME = 30.0
MAX_NONCES = 4096
_NONCE_COUNT = re.compile(r"[0-9a-fA-F]{8}")  # nc-value = 8LHEX (RFC 7616 §3.4)
_SHOWN = 64  # characters of a user name put in a reason (it is logged)


@dataclass(frozen=True)
class Verified:
    username: str


@dataclass(frozen=True)
class Challenge:
    """Answer 401 with fresh challenges; ``stale``: the credentials were right, the nonce was not."""

    reason: str
    stale: bool = False


@dataclass(frozen=True)
class Forbidden:
    reason: str


Outcome = Verified | Challenge | Forbidden


class DigestVerifier:
    """Checks the Authorization of requests against ``password_for(username)`` in one realm."""

    def __init__(
        self,
        realm: str,
        password_for: Callable[[str], str | None],
        *,
        nonce_lifetime: float = NONCE_LIFETIME,
        max_nonces: int = MAX_NONCES,
        algorithms: tuple[str, ...] = ALGORITHMS,
        secret: bytes | None = None,
    ) -> None:
        self.realm = realm
        self._password_for = password_for
        self.nonce_lifetime = nonce_lifetime
        self.algorithms = algorithms
        self._secret = secret or secrets.token_bytes(32)
        self._counts = NonceCounts(max_nonces)

    def __repr__(self) -> str:
        return f"DigestVerifier(realm={self.realm!r}, algorithms={self.algorithms!r})"

    @property
    def remembered(self) -> int:
        """How many nonces have a count kept (only rightly answered ones do)."""
        return len(self._counts)

    def challenges(self, source: str, now: float, stale: bool = False) -> list[tuple[str, str]]:
        """WWW-Authenticate headers for a 401 to ``source``: one per algorithm, all with one new nonce."""
        nonce = self._nonce(source, now)
        tail = ", stale=true" if stale else ""
        return [
            (
                "WWW-Authenticate",
                f'Digest realm="{self.realm}", nonce="{nonce}", qop="auth", algorithm={algorithm}{tail}',
            )
            for algorithm in self.algorithms
        ]

    def check(self, request: SipRequest, source: str, now: float) -> Outcome:
        """Whether ``request``, received from address ``source``, rightly answers one of our challenges."""
        params = self._our_credentials(request)
        if params is None:
            return Challenge("no credentials for this realm")
        try:
            return self._verify(request, params, source, now)
        except (DigestError, ValueError, KeyError) as exc:
            return Forbidden(f"malformed credentials: {exc}")

    def _our_credentials(self, request: SipRequest) -> dict[str, str] | None:
        for value in request.headers.get_all("Authorization"):
            try:
                params = parse_credentials(value)
            except DigestError:
                continue
            if params.get("realm") == self.realm:
                return params
        return None

    def _verify(self, request: SipRequest, params: dict[str, str], source: str, now: float) -> Outcome:
        username = params["username"]
        password = self._password_for(username)
        if password is None:
            return Forbidden(f"unknown user {username[:_SHOWN]!r}")
        algorithm = (params.get("algorithm") or "MD5").strip().upper()
        if algorithm not in self.algorithms:
            return Forbidden(f"algorithm {algorithm[:_SHOWN]} not offered")
        qop = params.get("qop")
        if qop != "auth":
            return Forbidden("qop=auth required" if qop is None else f"qop {qop[:_SHOWN]} not offered")
        nc = _nonce_count(params)
        if not _same_uri(params["uri"], request.uri):
            return Forbidden("uri is not the Request-URI")
        challenge = DigestChallenge(realm=self.realm, nonce=params["nonce"], algorithm=algorithm, qop=(qop,))
        expected = digest_response(
            challenge,
            DigestCredentials(username, password),
            request.method,
            params["uri"],
            cnonce=params["cnonce"],
            nc=nc,
        )
        if not _same(expected, params.get("response", "").lower()):
            return Forbidden(f"wrong password for {username[:_SHOWN]!r}")
        issued = self._issued(params["nonce"], source, now)
        if issued is None:
            return Challenge("nonce expired or not ours", stale=True)
        expires = issued / 1000 + self.nonce_lifetime
        refused = self._counts.use(params["nonce"], issued, nc, expires=expires, now=now)
        return Verified(username) if refused is None else Challenge(refused, stale=True)

    def _nonce(self, source: str, now: float) -> str:
        head = f"{int(now * 1000):x}.{secrets.token_hex(6)}"
        return f"{head}.{self._mac(head, source)}"

    def _mac(self, head: str, source: str) -> str:
        text = f"{head}|{_canonical(source)}".encode("utf-8", "surrogateescape")
        return hmac.new(self._secret, text, hashlib.sha256).hexdigest()[:24]

    def _issued(self, nonce: str, source: str, now: float) -> int | None:
        """When ``nonce`` was issued (ms), if we issued it to ``source`` within the lifetime."""
        head, _, mac = nonce.rpartition(".")
        if not _same(self._mac(head, source), mac):
            return None
        issued = int(head.partition(".")[0], 16)  # covered by the MAC: our own text
        return issued if 0 <= now - issued / 1000 <= self.nonce_lifetime else None


class NonceCounts:
    """The highest ``nc`` answered rightly per nonce, for at most ``limit`` nonces.

    Entries are kept least recently used first. One forgotten before its nonce expired raises a
    watermark: a nonce issued no later than it and without an entry may have been answered before,
    so it is stale rather than new.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("max_nonces must be at least 1")
        self.limit = limit
        self._entries: OrderedDict[str, _Count] = OrderedDict()
        self._forgotten_through = -1  # issue time (ms) of the newest nonce forgotten before it expired

    def __len__(self) -> int:
        return len(self._entries)

    def use(self, nonce: str, issued: int, nc: int, *, expires: float, now: float) -> str | None:
        """Record a right answer counting ``nc``: None when it is new, else why it is refused."""
        self._forget_expired(now)
        entry = self._entries.get(nonce)
        if entry is None and issued <= self._forgotten_through:
            return "nonce forgotten early (too many in use)"
        if entry is not None and nc <= entry.nc:
            return "nonce count not above the last one (a replay?)"
        self._entries[nonce] = _Count(nc, issued, expires)
        self._entries.move_to_end(nonce)
        while len(self._entries) > self.limit:
            self._forget_least_recent(now)
        return None

    def _forget_expired(self, now: float) -> None:
        """From the least recently used end, while expired (an answer counts only within its lifetime)."""
        while self._entries and next(iter(self._entries.values())).expires < now:
            self._entries.popitem(last=False)

    def _forget_least_recent(self, now: float) -> None:
        _, entry = self._entries.popitem(last=False)
        if entry.expires >= now:
            self._forgotten_through = max(self._forgotten_through, entry.issued)


@dataclass
class _Count:
    nc: int
    issued: int  # ms
    expires: float


def _nonce_count(params: dict[str, str]) -> int:
    text = params.get("nc")
    if text is None or not _NONCE_COUNT.fullmatch(text) or int(text, 16) == 0:
        raise DigestError("nc must be 8 hex digits, not zero")
    if not params.get("cnonce"):
        raise DigestError("qop=auth without cnonce")
    return int(text, 16)


def _same_uri(claimed: str, request_uri: str) -> bool:
    """The digest ``uri`` names the Request-URI: same text, or equal SIP URIs (RFC 3261 §19.1.4)."""
    if claimed == request_uri:
        return True
    try:
        return parse_uri(claimed) == parse_uri(request_uri)
    except SipParseError:
        return False


def _canonical(address: str) -> str:
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address


def _same(ours: str, theirs: str) -> bool:
    """Constant-time comparison that also takes text that is not ASCII (it is simply not equal)."""
    return hmac.compare_digest(ours.encode(), theirs.encode("utf-8", "surrogateescape"))
