"""SIP, SIPS and tel URIs (RFC 3261 §19.1, RFC 3966): parsing, serialising, comparing."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote

from .errors import SipParseError

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
_BAD_CHARS = re.compile(r'[\x00-\x20\x7f<>"]')
_HOSTNAME = re.compile(r"[A-Za-z0-9\-_.]+")
_IPV6_REF = re.compile(r"\[[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*\]")
_PORT = re.compile(r"[0-9]{1,5}")
_TEL_NUMBER = re.compile(r"[0-9A-Za-z*#+\-.()%]+")
_ALWAYS_COMPARED = ("user", "ttl", "method", "maddr", "transport")

SIP_SCHEMES = frozenset({"sip", "sips", "tel"})


@dataclass(eq=False)
class SipUri:
    """A parsed URI. ``host`` keeps IPv6 brackets; ``params`` keys are lowercased.

    For a ``tel:`` URI the number is in ``user`` and ``host`` is empty. A URI of another
    scheme (only accepted inside name-addr headers) keeps its text in ``opaque``.
    """

    scheme: str = "sip"
    user: str | None = None
    password: str | None = None
    host: str = ""
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    opaque: str | None = None

    @property
    def host_port(self) -> tuple[str, int]:
        """``(host, port)`` as a socket address: IPv6 brackets removed, default port filled in."""
        if self.port is not None:
            port = self.port
        elif self.scheme == "sips" or (self.params.get("transport") or "").lower() == "tls":
            port = 5061
        else:
            port = 5060
        return self.host.strip("[]"), port

    @property
    def is_sip(self) -> bool:
        return self.scheme in ("sip", "sips")

    def __str__(self) -> str:
        if self.opaque is not None:
            return f"{self.scheme}:{self.opaque}"
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(self.user)
            if self.password is not None:
                out += [":", self.password]
            if self.scheme != "tel":
                out.append("@")
        out.append(self.host)
        if self.port is not None:
            out += [":", str(self.port)]
        out += [f";{k}" if v is None else f";{k}={v}" for k, v in self.params.items()]
        if self.headers:
            out += ["?", "&".join(f"{k}={v}" for k, v in self.headers.items())]
        return "".join(out)

    def __eq__(self, other: object) -> bool:
        """URI equality per RFC 3261 §19.1.4 (user part compared unescaped)."""
        if not isinstance(other, SipUri):
            return NotImplemented
        if self.scheme != other.scheme or self.opaque != other.opaque:
            return False
        if _unq(self.user) != _unq(other.user) or _unq(self.password) != _unq(other.password):
            return False
        if self.host.lower() != other.host.lower() or self.port != other.port:
            return False
        return _params_equal(self.params, other.params) and _headers_equal(self.headers, other.headers)


def parse_uri(text: str, *, any_scheme: bool = False) -> SipUri:
    """Parse a sip:, sips: or tel: URI.

    Raises ``SipParseError`` with status 416 for other schemes (unless ``any_scheme``, which
    returns them opaque) and 400 for malformed text.
    """
    match = _SCHEME.match(text)
    if match is None:
        raise SipParseError("malformed URI")
    scheme = match.group(1).lower()
    rest = text[match.end() :]
    if not rest or _BAD_CHARS.search(rest):
        raise SipParseError("malformed URI")
    if scheme in ("sip", "sips"):
        return _parse_sip(scheme, rest)
    if scheme == "tel":
        return _parse_tel(rest)
    if any_scheme:
        return SipUri(scheme=scheme, opaque=rest)
    raise SipParseError("Unsupported URI Scheme", 416)


def _parse_sip(scheme: str, rest: str) -> SipUri:
    user = password = None
    at = rest.find("@")
    if at >= 0:
        user, sep, pw = rest[:at].partition(":")
        password = pw if sep else None
        if not user:
            raise SipParseError("malformed URI user part")
        rest = rest[at + 1 :]
    rest, has_headers, headers = rest.partition("?")
    hostport, has_params, params = rest.partition(";")
    host, port = _parse_hostport(hostport)
    return SipUri(
        scheme,
        user,
        password,
        host,
        port,
        _parse_uri_params(params) if has_params else {},
        _parse_uri_headers(headers) if has_headers else {},
    )


def _parse_tel(rest: str) -> SipUri:
    number, sep, params = rest.partition(";")
    if not _TEL_NUMBER.fullmatch(number):
        raise SipParseError("malformed tel URI")
    return SipUri("tel", number, None, "", None, _parse_uri_params(params) if sep else {})


def _parse_hostport(text: str) -> tuple[str, int | None]:
    if text.startswith("["):
        end = text.find("]") + 1
        host, after = text[:end], text[end:]
        if not end or not _IPV6_REF.fullmatch(host):
            raise SipParseError("malformed IPv6 reference")
    else:
        host, sep, port = text.partition(":")
        after = ":" + port if sep else ""
        if not _HOSTNAME.fullmatch(host):
            raise SipParseError("malformed URI host")
    if not after:
        return host, None
    port_text = after[1:]
    if after[0] != ":" or not _PORT.fullmatch(port_text) or int(port_text) > 65535:
        raise SipParseError("malformed URI port")
    return host, int(port_text)


def _parse_uri_params(text: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    for piece in text.split(";"):
        name, sep, value = piece.partition("=")
        if not name:
            raise SipParseError("malformed URI parameter")
        params[name.lower()] = value if sep else None
    return params


def _parse_uri_headers(text: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for piece in text.split("&"):
        name, _, value = piece.partition("=")
        if not name:
            raise SipParseError("malformed URI header")
        headers[name] = value
    return headers


def _unq(text: str | None) -> str | None:
    return None if text is None else unquote(text)


def _params_equal(a: dict[str, str | None], b: dict[str, str | None]) -> bool:
    for name in _ALWAYS_COMPARED:
        if (name in a or name in b) and _lower_unq(a.get(name)) != _lower_unq(b.get(name)):
            return False
    return all(_lower_unq(a[k]) == _lower_unq(b[k]) for k in a.keys() & b.keys())


def _headers_equal(a: dict[str, str], b: dict[str, str]) -> bool:
    return {k.lower(): unquote(v) for k, v in a.items()} == {k.lower(): unquote(v) for k, v in b.items()}


def _lower_unq(text: str | None) -> str | None:
    return None if text is None else unquote(text).lower()
