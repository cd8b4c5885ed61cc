"""SIP messages (RFC 3261 §7, §18.3, §20): the model, sans-IO parsing and serialising, identifiers."""

from __future__ import annotations

import re
import secrets
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache

from .errors import SipParseError
from .headers import (
    MAGIC_COOKIE,
    TOKEN_RE,
    NameAddr,
    Via,
    canonical_name,
    parse_cseq,
    parse_name_addr,
    parse_uint,
    parse_via,
    split_header_values,
)
from .uri import SipUri, parse_uri

SIP_VERSION = "SIP/2.0"
LIST_HEADERS = frozenset(
    "via contact route record-route allow supported require proxy-require unsupported accept "
    "accept-encoding accept-language allow-events content-encoding content-language path "
    "service-route warning call-info alert-info error-info in-reply-to".split()
)
SINGLE_HEADERS = ("From", "To", "Call-ID", "CSeq", "Max-Forwards", "Content-Length")
REQUIRED_HEADERS = ("To", "From", "Call-ID", "CSeq", "Via")
_ERROR_RESPONSE_HEADERS = frozenset({"from", "to", "call-id", "cseq", "timestamp"})

_HEAD_END = re.compile(rb"\r?\n\r?\n")
_FOLD = re.compile(r"\r?\n[ \t]+")
_NEWLINE = re.compile(r"\r?\n")
_VERSION = re.compile(r"SIP/[0-9]+\.[0-9]+", re.IGNORECASE)
_STATUS_CODE = re.compile(r"[1-6][0-9][0-9]")
_WHITESPACE = re.compile(r"\s")
_DELTA_SECONDS = re.compile(r"\s*([0-9]+)")
_UINT32 = 2**32 - 1
_SCALAR_LIMITS = (("Max-Forwards", 255), ("Expires", _UINT32))


@lru_cache(maxsize=1024)
def _key(name: str) -> str:
    return canonical_name(name).lower()


class Headers:
    """Ordered multi-map of header fields; names are case-insensitive and stored canonically."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str, str]] = []
        for name, value in items:
            self.add(name, value)

    def get(self, name: str, default: str | None = None) -> str | None:
        key = _key(name)
        for k, _, value in self._items:
            if k == key:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``; list-valued headers are also split at their commas."""
        key = _key(name)
        values = [value for k, _, value in self._items if k == key]
        if key not in LIST_HEADERS:
            return values
        return [item for value in values for item in _split_list(key, value)]

    def add(self, name: str, value: str) -> None:
        canonical = canonical_name(name)
        self._items.append((canonical.lower(), canonical, value))

    def add_first(self, name: str, value: str) -> None:
        """Put a field before all others (a Via a transport adds)."""
        canonical = canonical_name(name)
        self._items.insert(0, (canonical.lower(), canonical, value))

    def set(self, name: str, value: str) -> None:
        """Replace every occurrence of ``name`` by one value, at the place of the first."""
        canonical = canonical_name(name)
        key = canonical.lower()
        index = next((i for i, item in enumerate(self._items) if item[0] == key), len(self._items))
        self.remove(name)
        self._items.insert(index, (key, canonical, value))

    def remove(self, name: str) -> None:
        key = _key(name)
        self._items = [item for item in self._items if item[0] != key]

    def count(self, name: str) -> int:
        key = _key(name)
        return sum(1 for k, _, _ in self._items if k == key)

    def items(self) -> list[tuple[str, str]]:
        return [(name, value) for _, name, value in self._items]

    def copy(self) -> Headers:
        clone = Headers()
        clone._items = list(self._items)
        return clone

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = _key(name)
        return any(k == key for k, _, _ in self._items)

    def __iter__(self) -> Iterator[str]:
        return (name for _, name, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(k, v) for k, _, v in self._items] == [(k, v) for k, _, v in other._items]

    def __repr__(self) -> str:
        return f"Headers({self.items()!r})"

    @classmethod
    def _from_parsed(cls, items: list[tuple[str, str]]) -> Headers:
        headers = cls()
        headers._items = [(_key(name), canonical_name(name), value) for name, value in items]
        return headers


def _split_list(key: str, value: str) -> list[str]:
    if key == "contact" and value.strip() == "*":
        return ["*"]
    return split_header_values(value)


class _MessageFields:
    """What requests and responses share: typed accessors and the wire form, below a start line
    of their own (RFC 3261 §7.1 Request-Line, §7.2 Status-Line)."""

    headers: Headers
    body: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.headers, Headers):
            self.headers = Headers(self.headers)

    @property
    def start_line(self) -> str:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        return _serialise(self.start_line, self.headers, self.body)

    def _required(self, name: str) -> str:
        value = self.headers.get(name)
        if value is None:
            raise SipParseError(f"missing {name} header")
        return value

    @property
    def call_id(self) -> str:
        return self._required("Call-ID")

    @property
    def cseq(self) -> tuple[int, str]:
        return parse_cseq(self._required("CSeq"))

    @property
    def via(self) -> list[Via]:
        return [parse_via(value) for value in self.headers.get_all("Via")]

    @property
    def from_(self) -> NameAddr:
        return parse_name_addr(self._required("From"))

    @property
    def to(self) -> NameAddr:
        return parse_name_addr(self._required("To"))

    @property
    def max_forwards(self) -> int | None:
        value = self.headers.get("Max-Forwards")
        return None if value is None else parse_uint(value, 255, "Max-Forwards")

    @property
    def content_type(self) -> str | None:
        return self.headers.get("Content-Type")


@dataclass
class SipRequest(_MessageFields):
    method: str
    uri: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = SIP_VERSION

    @property
    def start_line(self) -> str:
        return f"{self.method} {self.uri} {self.version}"

    @property
    def request_uri(self) -> SipUri:
        return parse_uri(self.uri)


@dataclass
class SipResponse(_MessageFields):
    status: int
    reason: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = SIP_VERSION

    @property
    def start_line(self) -> str:
        return f"{self.version} {self.status} {self.reason}"


def _serialise(start_line: str, headers: Headers, body: bytes) -> bytes:
    length = f"Content-Length: {len(body)}"
    lines = [start_line]
    for key, name, value in headers._items:
        if key != "content-length":
            lines.append(f"{name}: {value}")
        elif length:
            lines.append(length)
            length = ""
    if length:
        lines.append(length)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape") + body


def parse_message(data: bytes) -> SipRequest | SipResponse:
    """Parse one complete SIP message (a UDP datagram or a framed TCP message).

    Raises ``SipParseError`` (and nothing else) with the status a UAS should answer with.
    """
    head, rest = _split_head(data)
    lines = _head_lines(head)
    headers = Headers._from_parsed(_header_fields(lines[1:]))
    message = _parse_start_line(lines[0], headers)
    _validate(message)
    message.body = _body(headers, rest)
    return message


def _split_head(data: bytes) -> tuple[bytes, bytes]:
    data = data.lstrip(b"\r\n")
    if not data:
        raise SipParseError("empty message")
    match = _HEAD_END.search(data)
    if match is None:
        return data.rstrip(b"\r\n"), b""
    return data[: match.start()], data[match.end() :]


def _head_lines(head: bytes) -> list[str]:
    text = head.decode("utf-8", "surrogateescape")
    return _NEWLINE.split(_FOLD.sub(" ", text))


def _header_fields(lines: list[str]) -> list[tuple[str, str]]:
    fields = []
    for line in lines:
        name, sep, value = line.partition(":")
        name = name.rstrip(" \t")
        if not sep or not TOKEN_RE.fullmatch(name):
            raise SipParseError("malformed header line")
        fields.append((name, value.strip(" \t")))
    return fields


def _parse_start_line(line: str, headers: Headers) -> SipRequest | SipResponse:
    if line[:4].upper() == "SIP/":
        version, _, rest = line.partition(" ")
        _check_version(version)
        code, _, reason = rest.partition(" ")
        if not _STATUS_CODE.fullmatch(code):
            raise SipParseError("malformed status code")
        return SipResponse(int(code), reason, headers)
    parts = line.split(" ")
    if len(parts) != 3 or not all(parts):
        raise SipParseError("malformed Request-Line")
    method, uri, version = parts
    if not TOKEN_RE.fullmatch(method):
        raise SipParseError("malformed method")
    _check_version(version)
    if parse_uri(uri).headers:
        raise SipParseError("headers not allowed in Request-URI")
    return SipRequest(method, uri, headers)


def _check_version(version: str) -> None:
    if version.upper() == SIP_VERSION:
        return
    if _VERSION.fullmatch(version):
        raise SipParseError("Version Not Supported", 505)
    raise SipParseError("malformed SIP version")


def _validate(message: SipRequest | SipResponse) -> None:
    headers = message.headers
    counts = Counter(key for key, _, _ in headers._items)
    for name in SINGLE_HEADERS:
        if counts[name.lower()] > 1:
            raise SipParseError(f"duplicate {name} header")
    for name in REQUIRED_HEADERS:
        if not counts[name.lower()]:
            raise SipParseError(f"missing {name} header")
    _validate_fields(message, headers)


def _validate_fields(message: SipRequest | SipResponse, headers: Headers) -> None:
    call_id = message.call_id
    if not call_id or _WHITESPACE.search(call_id):
        raise SipParseError("malformed Call-ID header")
    _, method = message.cseq
    if isinstance(message, SipRequest) and method != message.method:
        raise SipParseError("CSeq method does not match")
    if not message.via:
        raise SipParseError("missing Via header")
    parse_name_addr(message._required("From"))
    parse_name_addr(message._required("To"))
    for contact in headers.get_all("Contact"):
        if contact != "*":
            parse_name_addr(contact)
    for name, limit in _SCALAR_LIMITS:
        value = headers.get(name)
        if value is not None:
            parse_uint(value, limit, name)
    retry_after = headers.get("Retry-After")
    if retry_after is not None:
        match = _DELTA_SECONDS.match(retry_after)
        parse_uint(match.group(1) if match else retry_after, _UINT32, "Retry-After")


def _body(headers: Headers, rest: bytes) -> bytes:
    value = headers.get("Content-Length")
    if value is None:
        return rest
    length = parse_uint(value, 2**31 - 1, "Content-Length")
    if length > len(rest):
        raise SipParseError("Content-Length larger than message")
    return rest[:length]


def extract_for_error_response(data: bytes) -> SipRequest | None:
    """Leniently pick out what a response to a broken request needs (Via, From, To, Call-ID, CSeq).

    Returns None when the bytes are not a request or carry no Via (then drop them). Header
    values are kept raw: ``.via`` etc. may still raise on the result.
    """
    try:
        head, _ = _split_head(data)
    except SipParseError:
        return None
    lines = _head_lines(head)
    start = lines[0].split(" ")
    if not TOKEN_RE.fullmatch(start[0]):
        return None
    headers = Headers()
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        key, value = _key(name.strip(" \t")), value.strip(" \t")
        if key == "via":
            for via in filter(None, map(_salvage_via, split_header_values(value))):
                headers.add("Via", via)
        elif sep and key in _ERROR_RESPONSE_HEADERS and value:
            headers.add(name.strip(" \t"), value)
    if "Via" not in headers:
        return None
    return SipRequest(start[0], start[1] if len(start) > 1 else "", headers)


def _salvage_via(value: str) -> str | None:
    """The Via value as is if it parses, else without its empty parameters if that parses."""
    for candidate in (value, ";".join(part for part in value.split(";") if part.strip())):
        try:
            parse_via(candidate)
        except SipParseError:
            continue
        return candidate
    return None


def generate_tag() -> str:
    return secrets.token_hex(8)


def generate_branch() -> str:
    return MAGIC_COOKIE + secrets.token_hex(12)


def generate_call_id(host: str) -> str:
    return f"{secrets.token_hex(16)}@{host}"
