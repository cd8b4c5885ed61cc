"""Digest authentication from the server's side (RFC 3261 §22.4, RFC 7616, RFC 8760), sans-IO.

Used to admit inbound calls from a PBX or trunk that authenticates itself (Asterisk's
``outbound_auth``) instead of, or besides, coming from a known address.

Nonces are stateless: the time they were issued and an HMAC of it under a per-process secret, so a
flood of unauthenticated INVITEs leaves nothing behind. A nonce older than ``nonce_lifetime``, or
one this process did not issue (it restarted), is answered with a fresh challenge and
``stale=true`` when the answer was otherwise right. Nonce counts are not tracked, so a captured
answer can be replayed within the lifetime (keep it short); the source address checks and TLS are
the defence against that.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from .digest import DigestChallenge, DigestCredentials, DigestError, digest_response, parse_credentials
from .message import SipRequest

# Offered in the order given (RFC 8760 §2.4: the preferred first). MD5 alone by default: many
# deployed UAs (sipp 3.6 among them) answer only the first challenge, and only with MD5.
ALGORITHMS = ("MD5",)


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
        nonce_lifetime: float = 60.0,
        algorithms: tuple[str, ...] = ALGORITHMS,
        secret: bytes | None = None,
    ) -> None:
        self.realm = realm
        self._password_for = password_for
        self.nonce_lifetime = nonce_lifetime
        self.algorithms = algorithms
        self._secret = secret or secrets.token_bytes(32)

    def __repr__(self) -> str:
        return f"DigestVerifier(realm={self.realm!r}, algorithms={self.algorithms!r})"

    def challenges(self, now: float, stale: bool = False) -> list[tuple[str, str]]:
        """WWW-Authenticate headers for a 401: one per algorithm, all with the same new nonce."""
        nonce = self._nonce(now)
        tail = ", stale=true" if stale else ""
        return [
            (
                "WWW-Authenticate",
                f'Digest realm="{self.realm}", nonce="{nonce}", qop="auth", algorithm={algorithm}{tail}',
            )
            for algorithm in self.algorithms
        ]

    def check(self, request: SipRequest, now: float) -> Outcome:
        """Whether ``request`` carries a right answer to one of our challenges."""
        params = self._our_credentials(request)
        if params is None:
            return Challenge("no credentials for this realm")
        try:
            return self._verify(request, params, now)
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

    def _verify(self, request: SipRequest, params: dict[str, str], now: float) -> Outcome:
        username = params["username"]
        password = self._password_for(username)
        if password is None:
            return Forbidden(f"unknown user {username!r}")
        algorithm = (params.get("algorithm") or "MD5").strip().upper()
        if algorithm not in self.algorithms:
            return Forbidden(f"algorithm {algorithm} not offered")
        qop = params.get("qop")
        if qop is not None and qop != "auth":
            return Forbidden(f"qop {qop} not offered")
        challenge = DigestChallenge(
            realm=self.realm, nonce=params["nonce"], algorithm=algorithm, qop=(qop,) if qop else ()
        )
        expected = digest_response(
            challenge,
            DigestCredentials(username, password),
            request.method,
            params["uri"],
            cnonce=params.get("cnonce", ""),
            nc=int(params.get("nc", "0"), 16),
        )
        if not _same(expected, params.get("response", "").lower()):
            return Forbidden(f"wrong password for {username!r}")
        if not self._fresh(params["nonce"], now):
            return Challenge("nonce expired or not ours", stale=True)
        return Verified(username)

    def _nonce(self, now: float) -> str:
        stamp = f"{int(now):x}"
        return f"{stamp}.{self._mac(stamp)}"

    def _mac(self, stamp: str) -> str:
        return hmac.new(self._secret, stamp.encode(), hashlib.sha256).hexdigest()[:24]

    def _fresh(self, nonce: str, now: float) -> bool:
        stamp, _, mac = nonce.partition(".")
        if not _same(mac, self._mac(stamp)):
            return False
        try:
            issued = int(stamp, 16)
        except ValueError:
            return False
        return 0 <= now - issued <= self.nonce_lifetime


def _same(ours: str, theirs: str) -> bool:
    """Constant-time comparison that also takes text that is not ASCII (it is simply not equal)."""
    return hmac.compare_digest(ours.encode(), theirs.encode("utf-8", "surrogateescape"))
