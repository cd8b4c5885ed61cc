"""SDP (RFC 4566): the session description, parsed and serialised. The audio offer/answer of
RFC 3264 built on it is in ``sdp_answer.py``."""

from __future__ import annotations

import re
from dataclasses import dataclass, field


class SdpError(ValueError):
    """Malformed or unusable SDP."""


STATIC_PAYLOAD_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("PCMU", 8000, 1),
    3: ("GSM", 8000, 1),
    4: ("G723", 8000, 1),
    8: ("PCMA", 8000, 1),
    9: ("G722", 8000, 1),
    13: ("CN", 8000, 1),
    18: ("G729", 8000, 1),
}
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")

_NEWLINE = re.compile(r"\r?\n")
_LINE = re.compile(r"([a-z])=(.*)", re.DOTALL)
_UINT = re.compile(r"[0-9]{1,20}")
_PORT = re.compile(r"([0-9]{1,5})(?:/[0-9]{1,5})?")
_RTPMAP = re.compile(r"([0-9]{1,3})\s+([^/\s]+)/([0-9]{1,9})(?:/([0-9]{1,3}))?\s*")
_FMTP = re.compile(r"([0-9]{1,3})\s+(.*)", re.DOTALL)
_ATTRIBUTE_NAME = re.compile(r"[^\s:]+")
_PTIME = re.compile(r"([0-9]{1,6})(?:\.[0-9]*)?")
_SESSION_ORDER = "vosiuepcbtrzka"
_MEDIA_ORDER = "micbka"

Attribute = tuple[str, str | None]


@dataclass
class Origin:
    """The o= line."""

    username: str = "-"
    sess_id: int = 0
    sess_version: int = 0
    nettype: str = "IN"
    addrtype: str = "IP4"
    address: str = "0.0.0.0"

    def __str__(self) -> str:
        fields = (self.username, self.sess_id, self.sess_version, self.nettype, self.addrtype, self.address)
        return " ".join(map(str, fields))


@dataclass
class MediaDescription:
    """One m= section. ``connection`` is the address of a media-level c= line."""

    media: str
    port: int
    proto: str
    formats: list[str]
    connection: str | None = None
    attributes: list[Attribute] = field(default_factory=list)
    extra: list[tuple[str, str]] = field(default_factory=list)

    def rtpmap(self) -> dict[int, tuple[str, int, int]]:
        """Payload type -> (encoding name upper-cased, clock rate, channels), static types included."""
        result = {
            pt: STATIC_PAYLOAD_TYPES[pt] for pt in int_formats(self.formats) if pt in STATIC_PAYLOAD_TYPES
        }
        for value in self._values("rtpmap"):
            match = _RTPMAP.fullmatch(value)
            if match:
                pt, name, rate, channels = match.groups()
                result[int(pt)] = (name.upper(), int(rate), int(channels) if channels else 1)
        return result

    def fmtp(self) -> dict[int, str]:
        result = {}
        for value in self._values("fmtp"):
            match = _FMTP.fullmatch(value)
            if match:
                result[int(match.group(1))] = match.group(2).strip()
        return result

    @property
    def direction(self) -> str:
        return explicit_direction(self.attributes) or "sendrecv"

    @property
    def ptime(self) -> int | None:
        return ptime_of(self.attributes)

    def _values(self, name: str) -> list[str]:
        return [value for key, value in self.attributes if key == name and value is not None]

    def lines(self) -> list[tuple[str, str]]:
        formats = "".join(f" {fmt}" for fmt in self.formats)
        lines = [("m", f"{self.media} {self.port} {self.proto}{formats}")]
        if self.connection is not None:
            lines.append(("c", _connection_line(self.connection)))
        lines += self.extra
        lines += _attribute_lines(self.attributes)
        return _ordered(lines, _MEDIA_ORDER)


@dataclass
class SessionDescription:
    version: int
    origin: Origin
    session_name: str
    connection: str | None
    timing: str
    attributes: list[Attribute] = field(default_factory=list)
    media: list[MediaDescription] = field(default_factory=list)
    extra: list[tuple[str, str]] = field(default_factory=list)

    def connection_address(self, media: MediaDescription) -> str | None:
        """The media-level c= address, else the session-level one."""
        return media.connection if media.connection is not None else self.connection

    def __str__(self) -> str:
        lines = [("v", str(self.version)), ("o", str(self.origin)), ("s", self.session_name or " ")]
        if self.connection is not None:
            lines.append(("c", _connection_line(self.connection)))
        lines.append(("t", self.timing))
        lines += self.extra
        lines += _attribute_lines(self.attributes)
        lines = _ordered(lines, _SESSION_ORDER)
        for media in self.media:
            lines += media.lines()
        return "".join(f"{kind}={value}\r\n" for kind, value in lines)

    def to_bytes(self) -> bytes:
        return str(self).encode("utf-8", "surrogateescape")


def explicit_direction(attributes: list[Attribute]) -> str | None:
    found = [name for name, value in attributes if value is None and name in DIRECTIONS]
    return found[-1] if found else None


def ptime_of(attributes: list[Attribute]) -> int | None:
    for name, value in attributes:
        if name == "ptime" and value is not None:
            match = _PTIME.fullmatch(value.strip())
            if match and int(match.group(1)) > 0:
                return int(match.group(1))
    return None


def int_formats(formats: list[str]) -> list[int]:
    return [int(fmt) for fmt in formats if _UINT.fullmatch(fmt) and len(fmt) <= 3]


def _connection_line(address: str) -> str:
    return f"IN {'IP6' if ':' in address else 'IP4'} {address}"


def _attribute_lines(attributes: list[Attribute]) -> list[tuple[str, str]]:
    return [("a", name if value is None else f"{name}:{value}") for name, value in attributes]


def _ordered(lines: list[tuple[str, str]], order: str) -> list[tuple[str, str]]:
    last = len(order) - 1
    return sorted(lines, key=lambda line: order.find(line[0]) if line[0] in order else last)


def parse_sdp(text: bytes | str) -> SessionDescription:
    """Parse an SDP body; raises ``SdpError`` (and nothing else) when it is malformed."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "surrogateescape")
    lines = [line.rstrip() for line in _NEWLINE.split(text) if line.strip()]
    if not lines or lines[0] != "v=0":
        raise SdpError("SDP must start with v=0")
    session = SessionDescription(0, Origin(), "-", None, "0 0")
    media: MediaDescription | None = None
    seen: set[str] = set()
    for line in lines[1:]:
        match = _LINE.fullmatch(line)
        if match is None:
            raise SdpError("malformed SDP line")
        kind, value = match.groups()
        if kind == "m":
            media = _parse_media(value)
            session.media.append(media)
        elif media is not None:
            _media_line(media, kind, value)
        else:
            _session_line(session, kind, value, seen)
        seen.add(kind)
    if "o" not in seen:
        raise SdpError("missing o= line")
    return session


def _session_line(session: SessionDescription, kind: str, value: str, seen: set[str]) -> None:
    if kind == "o":
        session.origin = _parse_origin(value)
    elif kind == "s":
        session.session_name = value
    elif kind == "c":
        session.connection = _parse_connection(value)
    elif kind == "t" and "t" not in seen:
        session.timing = value
    elif kind == "a":
        session.attributes.append(_parse_attribute(value))
    elif kind != "v":
        session.extra.append((kind, value))


def _media_line(media: MediaDescription, kind: str, value: str) -> None:
    if kind == "c":
        media.connection = _parse_connection(value)
    elif kind == "a":
        media.attributes.append(_parse_attribute(value))
    else:
        media.extra.append((kind, value))


def _parse_origin(value: str) -> Origin:
    parts = value.split()
    if len(parts) != 6 or not _UINT.fullmatch(parts[1]) or not _UINT.fullmatch(parts[2]):
        raise SdpError("malformed o= line")
    return Origin(parts[0], int(parts[1]), int(parts[2]), parts[3], parts[4], parts[5])


def _parse_connection(value: str) -> str:
    parts = value.split()
    address = parts[2].split("/", 1)[0] if len(parts) == 3 else ""
    if not address or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise SdpError("malformed c= line")
    return address


def _parse_media(value: str) -> MediaDescription:
    parts = value.split()
    if len(parts) < 3:
        raise SdpError("malformed m= line")
    port = _PORT.fullmatch(parts[1])
    if port is None or int(port.group(1)) > 65535:
        raise SdpError("malformed m= port")
    return MediaDescription(parts[0], int(port.group(1)), parts[2], parts[3:])


def _parse_attribute(value: str) -> Attribute:
    name, sep, rest = value.partition(":")
    if not _ATTRIBUTE_NAME.fullmatch(name):
        raise SdpError("malformed a= line")
    return name, rest if sep else None
