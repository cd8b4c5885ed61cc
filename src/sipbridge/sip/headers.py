"""SIP header names and the structured header values: Via, name-addr, CSeq, parameters."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import SipParseError
from .uri import SipUri, parse_uri

TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
TOKEN_RE = re.compile(TOKEN)
MAGIC_COOKIE = "z9hG4bK"

COMPACT_FORMS: dict[str, str] = {
    "i": "Call-ID",
    "m": "Contact",
    "e": "Content-Encoding",
    "l": "Content-Length",
    "c": "Content-Type",
    "f": "From",
    "s": "Subject",
    "k": "Supported",
    "t": "To",
    "v": "Via",
    "o": "Event",
    "r": "Refer-To",
    "b": "Referred-By",
    "u": "Allow-Events",
    "x": "Session-Expires",
    "a": "Accept-Contact",
    "j": "Reject-Contact",
    "d": "Request-Disposition",
    "y": "Identity",
    "n": "Identity-Info",
}

_KNOWN_NAMES = (
    "Accept Accept-Contact Accept-Encoding Accept-Language Accept-Resource-Priority Alert-Info Allow "
    "Allow-Events Authentication-Info Authorization Call-ID Call-Info Contact Content-Disposition "
    "Content-Encoding Content-Language Content-Length Content-Transfer-Encoding Content-Type CSeq Date "
    "Diversion Error-Info Event Expires From History-Info Identity Identity-Info In-Reply-To "
    "Max-Forwards MIME-Version Min-Expires Min-SE Organization P-Asserted-Identity "
    "P-Preferred-Identity Path Priority Privacy Proxy-Authenticate Proxy-Authorization Proxy-Require "
    "RAck Reason Record-Route Refer-To Referred-By Reject-Contact Remote-Party-ID Replaces Reply-To "
    "Request-Disposition Require Resource-Priority Retry-After Route RSeq Security-Client "
    "Security-Server Security-Verify Server Service-Route Session-Expires Subject Subscription-State "
    "Supported Target-Dialog Timestamp To Unsupported User-Agent Via Warning WWW-Authenticate"
).split()

_CANONICAL: dict[str, str] = {name.lower(): name for name in _KNOWN_NAMES} | COMPACT_FORMS

_QUOTED_DISPLAY = re.compile(r'"((?:\\.|[^"\\])*)"', re.DOTALL)
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)
_NEEDS_ESCAPE = re.compile(r'[\x00-\x08\x0b\x0c\x0e-\x1f\x7f"\\]')
# A quoted string or <...> left open runs to the end of the value: scanned once, not again from every
# later '"' or '<' (which made splitting quadratic: seconds for a 20 kB Contact of '\\"' pairs).
_LIST_SPLIT = re.compile(r'"(?:\\.|[^"\\])*+(?:"|\\?\Z)|<[^>]*+(?:>|\Z)|,', re.DOTALL)
_PARAM_SPLIT = re.compile(r'"(?:\\.|[^"\\])*+(?:"|\\?\Z)|;', re.DOTALL)
_PARAM_VALUE = re.compile(r'"(?:\\.|[^"\\])*"|[^\s";,]+')
_HOST = r"\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-_.]+"
_VIA = re.compile(
    rf"({TOKEN})\s*/\s*({TOKEN})\s*/\s*({TOKEN})\s+({_HOST})(?:\s*:\s*([0-9]{{1,5}}))?\s*(?:;(.*))?",
    re.IGNORECASE | re.DOTALL,
)
_CSEQ = re.compile(rf"([0-9]+)[ \t]+({TOKEN})")
_DIGITS = re.compile(r"[0-9]+")


def canonical_name(name: str) -> str:
    """The canonical spelling of a header name ("v" -> "Via", "cseq" -> "CSeq"); unknown names as given."""
    return _CANONICAL.get(name.lower(), name)


def split_header_values(value: str) -> list[str]:
    """Split a comma-separated header value, respecting quoted strings and <...>; drops empty items."""
    parts = value.split(",") if '"' not in value and "<" not in value else _split(value, _LIST_SPLIT, ",")
    return [stripped for part in parts if (stripped := part.strip())]


def _split(text: str, pattern: re.Pattern[str], separator: str) -> list[str]:
    """``text`` split at each ``separator`` that ``pattern`` finds outside what it skips whole
    (quoted strings; for header values also <...>)."""
    pieces, start = [], 0
    for match in pattern.finditer(text):
        if match.group() == separator:
            pieces.append(text[start : match.start()])
            start = match.end()
    pieces.append(text[start:])
    return pieces


def parse_params(text: str) -> dict[str, str | None]:
    """Parse generic parameters ``name[=value];...`` (the text after the first ``;``)."""
    pieces = _split(text, _PARAM_SPLIT, ";") if '"' in text else text.split(";")
    params: dict[str, str | None] = {}
    for piece in pieces:
        name, sep, value = piece.partition("=")
        name = name.strip()
        if not TOKEN_RE.fullmatch(name):
            raise SipParseError("malformed header parameter")
        if sep:
            value = value.strip()
            if not _PARAM_VALUE.fullmatch(value):
                raise SipParseError("malformed header parameter value")
            params[name.lower()] = value
        else:
            params[name.lower()] = None
    return params


def format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


@dataclass
class Via:
    """One Via header value (RFC 3261 §20.42)."""

    transport: str = "UDP"
    host: str = ""
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    protocol: str = "SIP/2.0"

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    def __str__(self) -> str:
        port = "" if self.port is None else f":{self.port}"
        return f"{self.protocol}/{self.transport} {self.host}{port}{format_params(self.params)}"


def parse_via(value: str) -> Via:
    match = _VIA.fullmatch(value.strip())
    if match is None:
        raise SipParseError("malformed Via header")
    name, version, transport, host, port, params = match.groups()
    if port is not None and int(port) > 65535:
        raise SipParseError("malformed Via port")
    return Via(
        transport.upper(),
        host,
        None if port is None else int(port),
        {} if params is None else parse_params(params),
        f"{name.upper()}/{version}",
    )


@dataclass
class NameAddr:
    """From, To, Contact, Route...: optional display name, URI, header parameters."""

    display: str | None
    uri: SipUri
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def with_tag(self, tag: str) -> NameAddr:
        return NameAddr(self.display, self.uri, {**self.params, "tag": tag})

    def __str__(self) -> str:
        text = f"<{self.uri}>{format_params(self.params)}"
        if self.display:
            return f'"{quote_display(self.display)}" {text}'
        return text


def quote_display(display: str) -> str:
    """Escape text for a quoted-string; CR and LF, which cannot be escaped, become spaces."""
    display = display.replace("\r", " ").replace("\n", " ")
    return _NEEDS_ESCAPE.sub(lambda m: "\\" + m.group(), display)


def reason_value(text: str, protocol: str = "SIP", cause: int = 200) -> str:
    """A Reason header's value (RFC 3326) with ``text`` quoted safely and cut to 200 characters."""
    quoted = text.replace("\\", "").replace('"', "'")[:200]
    return f'{protocol};cause={cause};text="{quoted}"'


def parse_name_addr(value: str) -> NameAddr:
    """Parse ``"Name" <uri>;params``, ``Name <uri>;params`` or a bare ``uri;params``.

    Parameters after a bare URI belong to the header (RFC 3261 §20.10). URIs of schemes other
    than sip/sips/tel are accepted here, kept opaque.
    """
    text = value.strip()
    if text.startswith('"'):
        match = _QUOTED_DISPLAY.match(text)
        if match is None:
            raise SipParseError("unterminated quoted string")
        rest = text[match.end() :].lstrip()
        if not rest.startswith("<"):
            raise SipParseError("malformed name-addr")
        return _bracketed(_QUOTED_PAIR.sub(r"\1", match.group(1)), rest)
    lt = text.find("<")
    if lt >= 0:
        display = text[:lt].strip()
        if '"' in display or ">" in display:
            raise SipParseError("malformed display name")
        return _bracketed(display or None, text[lt:])
    uri_text, sep, params = text.partition(";")
    uri_text = uri_text.rstrip()
    if "?" in uri_text or "," in uri_text:
        raise SipParseError("URI with '?' or ',' must be enclosed in <>")
    return NameAddr(None, parse_uri(uri_text, any_scheme=True), parse_params(params) if sep else {})


def _bracketed(display: str | None, text: str) -> NameAddr:
    gt = text.find(">")
    if gt < 0:
        raise SipParseError("missing '>' in name-addr")
    uri = parse_uri(text[1:gt].strip(), any_scheme=True)
    rest = text[gt + 1 :].strip()
    if not rest:
        return NameAddr(display, uri, {})
    if rest[0] != ";":
        raise SipParseError("malformed name-addr parameters")
    return NameAddr(display, uri, parse_params(rest[1:]))


def parse_cseq(value: str) -> tuple[int, str]:
    match = _CSEQ.fullmatch(value.strip(" \t"))
    if match is None:
        raise SipParseError("malformed CSeq header")
    return parse_uint(match.group(1), 2**31 - 1, "CSeq number"), match.group(2)


def parse_uint(text: str, limit: int, what: str) -> int:
    """Parse a non-negative decimal no greater than ``limit``; 400 naming ``what`` otherwise."""
    text = text.strip(" \t")
    if not _DIGITS.fullmatch(text):
        raise SipParseError(f"malformed {what}")
    digits = text.lstrip("0")
    if len(digits) > len(str(limit)) or (digits and int(digits) > limit):
        raise SipParseError(f"{what} out of range")
    return int(digits or "0")
