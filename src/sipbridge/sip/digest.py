"""HTTP Digest authentication for SIP (RFC 3261 §22, RFC 2617, RFC 7616, RFC 8760), sans-IO.

``parse_challenge`` reads one WWW-Authenticate / Proxy-Authenticate value, ``challenges_from`` every
usable one of a 401/407 and ``choose_challenge`` the one to answer per realm. ``authorization_value``
computes an Authorization / Proxy-Authorization value; ``parse_credentials`` reads one.
``DigestSession`` keeps the last nonce of each realm, answers later requests with it pre-emptively
(nc counting up) and tells a stale nonce from rejected credentials. Passwords never appear in a
repr, and HA1 is never stored.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .headers import TOKEN, quote_display
from .message import SipRequest, SipResponse


class Authenticator(Protocol):
    """What answers a 401/407 to a request of ours (an outgoing INVITE, a BYE a trunk challenges)."""

    def authorize(self, request: SipRequest, challenge: SipResponse) -> bool:
        """Add the credentials ``challenge`` asks for to ``request``; False when it cannot (give up)."""
        ...


class DigestError(ValueError):
    """A challenge we cannot answer (unknown algorithm, missing nonce, malformed text...)."""


class AuthenticationRejected(DigestError):
    """The server challenged again a nonce we had answered: the credentials are wrong."""

    def __init__(self, realm: str) -> None:
        super().__init__(f"credentials rejected for realm {realm!r} (wrong username or password?)")
        self.realm = realm


_HASHES: dict[str, str] = {"MD5": "md5", "SHA-256": "sha256"}
if "sha512_256" in hashlib.algorithms_available:
    _HASHES["SHA-512-256"] = "sha512_256"
# Local preference when several algorithms are offered (RFC 8760 §2.4 allows a local policy).
_STRENGTH = {"MD5": 0, "SHA-256": 1, "SHA-512-256": 2}
_ALGORITHMS: dict[str, str] = {name.upper(): name for name in _HASHES} | {
    f"{name.upper()}-SESS": f"{name}-sess" for name in _HASHES
}
QOPS = ("auth", "auth-int")

_SCHEME = re.compile(rf"\s*({TOKEN})(?:\s+|$)")
# Possessive: backtracking into the whitespace made a value of many spaces and no end quadratic.
_PARAM = re.compile(rf'({TOKEN})\s*+=\s*+("(?:\\.|[^"\\])*+"|[^\s,"]*+)\s*+(?:,|$)', re.DOTALL)
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)


@dataclass(frozen=True)
class DigestChallenge:
    """One Digest challenge. ``algorithm`` is canonical ("MD5", "SHA-256-sess"...); ``qop`` holds the
    protections we support among those offered (empty: an RFC 2069 server without qop)."""

    realm: str
    nonce: str
    algorithm: str = "MD5"
    opaque: str | None = None
    qop: tuple[str, ...] = ()
    stale: bool = False
    proxy: bool = False
    algorithm_text: str | None = None  # as the server spelled it; echoed back, None when absent

    @property
    def header_name(self) -> str:
        """The header our answer goes in."""
        return "Proxy-Authorization" if self.proxy else "Authorization"

    @property
    def chosen_qop(self) -> str | None:
        """auth when offered (it does not hash the body), else auth-int, else None (RFC 2069)."""
        return next((qop for qop in QOPS if qop in self.qop), None)

    @property
    def base_algorithm(self) -> str:
        return self.algorithm.removesuffix("-sess")


@dataclass(frozen=True)
class DigestCredentials:
    """A username and password; ``realm`` (when set) restricts them to challenges of that realm."""

    username: str
    password: str = field(repr=False)
    realm: str | None = None


def parse_challenge(value: str, *, proxy: bool = False) -> DigestChallenge:
    """Parse one WWW-Authenticate (or, with ``proxy``, Proxy-Authenticate) header value.

    Raises ``DigestError`` saying why the challenge cannot be answered.
    """
    scheme = _SCHEME.match(value)
    if scheme is None:
        raise DigestError("malformed authentication challenge")
    if scheme.group(1).lower() != "digest":
        raise DigestError(f"unsupported authentication scheme {scheme.group(1)}")
    params = _parse_params(value, scheme.end())
    return _challenge(params, proxy)


def parse_credentials(value: str) -> dict[str, str]:
    """The parameters of one Digest Authorization / Proxy-Authorization value (names lower-cased).

    Raises ``DigestError`` for another scheme or malformed text.
    """
    scheme = _SCHEME.match(value)
    if scheme is None or scheme.group(1).lower() != "digest":
        raise DigestError("not Digest credentials")
    return _parse_params(value, scheme.end())


def _parse_params(value: str, pos: int) -> dict[str, str]:
    params: dict[str, str] = {}
    while (pos := _skip_separators(value, pos)) < len(value):
        match = _PARAM.match(value, pos)
        if match is None:
            raise DigestError(f"malformed Digest challenge parameter at {value[pos : pos + 20]!r}")
        name, raw = match.group(1).lower(), match.group(2)
        if name in params:
            raise DigestError(f"duplicate Digest challenge parameter {name}")
        params[name] = _QUOTED_PAIR.sub(r"\1", raw[1:-1]) if raw.startswith('"') else raw
        pos = match.end()
    return params


def _skip_separators(value: str, pos: int) -> int:
    """Past whitespace and empty list elements (``a=1, ,b=2``)."""
    while pos < len(value) and (value[pos].isspace() or value[pos] == ","):
        pos += 1
    return pos


def _challenge(params: dict[str, str], proxy: bool) -> DigestChallenge:
    realm, nonce = params.get("realm"), params.get("nonce")
    if realm is None:
        raise DigestError("Digest challenge without realm")
    if not nonce:
        raise DigestError("Digest challenge without nonce")
    # Echoed back as the server spelled it, less surrounding whitespace (a CR or LF would end the header).
    algorithm_text = None if "algorithm" not in params else params["algorithm"].strip()
    algorithm = _ALGORITHMS.get((algorithm_text or "MD5").upper())
    if algorithm is None:
        raise DigestError(f"unsupported Digest algorithm {algorithm_text}")
    qop = _parse_qop(params.get("qop"))
    if qop == () and algorithm.endswith("-sess"):
        raise DigestError(f"{algorithm} challenge without qop (a session algorithm needs a cnonce)")
    return DigestChallenge(
        realm=realm,
        nonce=nonce,
        algorithm=algorithm,
        opaque=params.get("opaque"),
        qop=qop,
        stale=params.get("stale", "").strip().lower() == "true",
        proxy=proxy,
        algorithm_text=algorithm_text,
    )


def _parse_qop(value: str | None) -> tuple[str, ...]:
    if value is None:
        return ()
    offered = {item.strip().lower() for item in value.split(",")}
    supported = tuple(qop for qop in QOPS if qop in offered)
    if not supported:
        raise DigestError(f"no supported qop in {value!r}")
    return supported


def challenges_from(response: SipResponse) -> list[DigestChallenge]:
    """Every challenge of a 401/407 we can answer, in header order; ``DigestError`` if there is none."""
    usable, problems = [], []
    for name, proxy in (("WWW-Authenticate", False), ("Proxy-Authenticate", True)):
        for value in response.headers.get_all(name):
            try:
                usable.append(parse_challenge(value, proxy=proxy))
            except DigestError as exc:
                problems.append(str(exc))
    if not usable:
        raise DigestError("no usable Digest challenge" + (f": {'; '.join(problems)}" if problems else ""))
    return usable


def choose_challenge(challenges: Sequence[DigestChallenge]) -> DigestChallenge:
    """The strongest algorithm offered (SHA-512-256 > SHA-256 > MD5); the first one among equals,
    since servers list their challenges by preference (RFC 8760 §2.4); ``max`` keeps the first."""
    if not challenges:
        raise DigestError("no Digest challenge to choose from")
    return max(challenges, key=lambda c: _STRENGTH[c.base_algorithm])


def choose_per_realm(challenges: Iterable[DigestChallenge]) -> list[DigestChallenge]:
    """One challenge per (header, realm): a request answers each realm once (RFC 3261 §22.3)."""
    groups: dict[tuple[bool, str], list[DigestChallenge]] = {}
    for challenge in challenges:
        groups.setdefault((challenge.proxy, challenge.realm), []).append(challenge)
    return [choose_challenge(group) for group in groups.values()]


def _hash(algorithm: str, text: str | bytes) -> str:
    # surrogateescape: a realm or nonce that was not UTF-8 on the wire is hashed as the bytes received.
    data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
    return hashlib.new(_HASHES[algorithm.removesuffix("-sess")], data).hexdigest()


def digest_response(
    challenge: DigestChallenge,
    credentials: DigestCredentials,
    method: str,
    uri: str,
    *,
    cnonce: str,
    nc: int,
    body: bytes = b"",
) -> str:
    """The ``response`` parameter (RFC 7616 §3.4.1; RFC 2069 form when the challenge has no qop)."""
    algorithm, qop = challenge.algorithm, challenge.chosen_qop
    ha1 = _hash(algorithm, f"{credentials.username}:{challenge.realm}:{credentials.password}")
    if algorithm.endswith("-sess"):
        ha1 = _hash(algorithm, f"{ha1}:{challenge.nonce}:{cnonce}")
    a2 = f"{method}:{uri}:{_hash(algorithm, body)}" if qop == "auth-int" else f"{method}:{uri}"
    ha2 = _hash(algorithm, a2)
    if qop is None:
        return _hash(algorithm, f"{ha1}:{challenge.nonce}:{ha2}")
    return _hash(algorithm, f"{ha1}:{challenge.nonce}:{nc:08x}:{cnonce}:{qop}:{ha2}")


def authorization_value(
    challenge: DigestChallenge,
    credentials: DigestCredentials,
    method: str,
    uri: str,
    *,
    cnonce: str,
    nc: int,
    body: bytes = b"",
) -> str:
    """The Authorization / Proxy-Authorization value answering ``challenge`` (RFC 3261 §22.4)."""
    response = digest_response(challenge, credentials, method, uri, cnonce=cnonce, nc=nc, body=body)
    parts = [
        f'username="{quote_display(credentials.username)}"',
        f'realm="{quote_display(challenge.realm)}"',
        f'nonce="{quote_display(challenge.nonce)}"',
        f'uri="{quote_display(uri)}"',
        f'response="{response}"',
    ]
    if challenge.algorithm_text is not None:
        parts.append(f"algorithm={challenge.algorithm_text}")
    if challenge.chosen_qop is not None:
        # qop and nc are tokens, unquoted in SIP's grammar (RFC 3261 §25.1 message-qop, nonce-count).
        parts += [f'cnonce="{quote_display(cnonce)}"', f"qop={challenge.chosen_qop}", f"nc={nc:08x}"]
    if challenge.opaque is not None:
        parts.append(f'opaque="{quote_display(challenge.opaque)}"')
    return "Digest " + ", ".join(parts)


@dataclass
class NonceUse:
    """A realm's current challenge and how many requests have answered it (the last ``nc``)."""

    challenge: DigestChallenge
    cnonce: str
    nc: int = 0


def is_rejection(challenge: DigestChallenge, previous: NonceUse | None) -> bool:
    """Does this new challenge mean our credentials were refused, rather than our nonce?

    Not when we had not answered this realm, nor when the server says ``stale``. Yes when it challenges
    the very nonce we answered. Also yes when we had answered a nonce fresh from a challenge (nc 1) and
    get a new nonce anyway: servers that hand out a new nonce with every 401 would otherwise be asked
    forever. A new nonce after a pre-emptive reuse (nc > 1) only says the old one ran out: retry.
    """
    if previous is None or previous.nc == 0 or challenge.stale:
        return False
    return challenge.nonce == previous.challenge.nonce or previous.nc == 1


def new_cnonce() -> str:
    return secrets.token_hex(8)


class DigestSession:
    """Answers the challenges of one set of credentials and reuses each realm's nonce afterwards.

    Feed every 401/407 to ``on_challenge``; put ``authorization_headers`` on every request (the
    retried one and the later ones: the last nonce is reused pre-emptively with nc counting up).
    Meant for requests sent one at a time, such as a registration's.
    """

    def __init__(self, credentials: DigestCredentials, cnonce: Callable[[], str] = new_cnonce) -> None:
        self.credentials = credentials
        self._new_cnonce = cnonce
        self._uses: dict[tuple[bool, str], NonceUse] = {}

    def __repr__(self) -> str:
        return f"DigestSession(username={self.credentials.username!r}, realms={self.realms!r})"

    @property
    def realms(self) -> list[str]:
        return [realm for _, realm in self._uses]

    def on_challenge(self, response: SipResponse) -> None:
        """Take the challenges of a 401/407 for the next request.

        Raises ``AuthenticationRejected`` when the server refused our answer (see ``is_rejection``),
        ``DigestError`` when no challenge can be answered with these credentials.
        """
        chosen = choose_per_realm(self._ours(challenges_from(response)))
        for challenge in chosen:
            if is_rejection(challenge, self._uses.get((challenge.proxy, challenge.realm))):
                raise AuthenticationRejected(challenge.realm)
        for challenge in chosen:
            self._uses[(challenge.proxy, challenge.realm)] = NonceUse(challenge, self._new_cnonce())

    def _ours(self, challenges: list[DigestChallenge]) -> list[DigestChallenge]:
        realm = self.credentials.realm
        if realm is None:
            return challenges
        matching = [c for c in challenges if c.realm == realm]
        if not matching:
            raise DigestError(f"no challenge for realm {realm!r}")
        return matching

    def authorization_headers(self, method: str, uri: str, body: bytes = b"") -> list[tuple[str, str]]:
        """(name, value) of each answer for a request about to be sent; empty before any challenge."""
        headers = []
        for use in self._uses.values():
            use.nc += 1
            value = authorization_value(
                use.challenge, self.credentials, method, uri, cnonce=use.cnonce, nc=use.nc, body=body
            )
            headers.append((use.challenge.header_name, value))
        return headers

    def forget(self) -> None:
        """Drop every nonce (the next request goes without credentials)."""
        self._uses.clear()
