"""SDP (RFC 4566) parsing and serialising, and the audio offer/answer of RFC 3264."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .resolver import is_ip
from .sdes import RTP_PROFILES, SRTP_PROFILES, Crypto, is_secure, no_usable_stream, offered_cryptos


class SdpError(ValueError):
    """Malformed or unusable SDP."""


class NotAcceptableHere(SdpError):
    """A well-formed offer we cannot take (answer 488 Not Acceptable Here); ``end_reason`` names why
    in a call's end reason."""

    end_reason = "offer not acceptable"


class NoCommonCodec(NotAcceptableHere):
    """The offer has no audio stream we can take."""

    end_reason = "codec mismatch"


class MediaHostName(NotAcceptableHere):
    """The media address is a host name, not an IP address (as SBCs require: sending RTP to a name
    would mean a DNS lookup the caller chose, for every packet or at least every call)."""

    end_reason = "media address not an IP address"


STATIC_PAYLOAD_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("PCMU", 8000, 1),
    3: ("GSM", 8000, 1),
    4: ("G723", 8000, 1),
    8: ("PCMA", 8000, 1),
    9: ("G722", 8000, 1),
    13: ("CN", 8000, 1),
    18: ("G729", 8000, 1),
}
_STATIC_BY_NAME = {name: pt for pt, (name, _, _) in STATIC_PAYLOAD_TYPES.items()}
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
_ANSWER_DIRECTION = {"sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}
ANY_PROFILE = RTP_PROFILES | SRTP_PROFILES
_NOT_CODECS = frozenset({"TELEPHONE-EVENT", "CN"})

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
            pt: STATIC_PAYLOAD_TYPES[pt] for pt in _int_formats(self.formats) if pt in STATIC_PAYLOAD_TYPES
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
        return _ptime(self.attributes)

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


def _ptime(attributes: list[Attribute]) -> int | None:
    for name, value in attributes:
        if name == "ptime" and value is not None:
            match = _PTIME.fullmatch(value.strip())
            if match and int(match.group(1)) > 0:
                return int(match.group(1))
    return None


def _int_formats(formats: list[str]) -> list[int]:
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


@dataclass
class AudioAnswer:
    """The outcome of negotiating an audio offer: what we send and where, and how we answer."""

    payload_type: int
    codec: str
    clock_rate: int
    dtmf_payload_type: int | None
    remote_addr: tuple[str, int]
    ptime: int = 20
    direction: str = "sendrecv"
    media_index: int = 0
    proto: str = "RTP/AVP"
    crypto: Crypto | None = None  # SRTP: our key (in our SDP; what we send is protected with it)
    peer_crypto: Crypto | None = None  # SRTP: the peer's key (what we receive is protected with it)


def negotiate_audio(
    offer: SessionDescription,
    supported: tuple[str, ...] = ("PCMU", "PCMA"),
    profiles: frozenset[str] = RTP_PROFILES,
) -> AudioAnswer:
    """Pick the first codec, in the offer's order, that we support, on the first usable audio stream
    of one of ``profiles`` (an RTP/SAVP one needs a crypto line we can use)."""
    wanted = {name.upper() for name in supported}
    offered: list[str] = []
    refused_profiles: list[str] = []
    for index, media in enumerate(offer.media):
        if media.media != "audio" or media.port == 0:
            continue
        if media.proto.upper() not in profiles or (
            is_secure(media.proto) and not offered_cryptos(media.attributes)
        ):
            refused_profiles.append(media.proto)
            continue
        rtpmap = media.rtpmap()
        names = [rtpmap[pt][0] if pt in rtpmap else str(pt) for pt in _int_formats(media.formats)]
        offered = list(dict.fromkeys(offered + [name for name in names if name not in _NOT_CODECS]))
        choice = _pick_codec(media, rtpmap, wanted)
        if choice is not None:
            return _answer_for(offer, index, media, rtpmap, choice)
    if not offered:
        raise NoCommonCodec(no_usable_stream(refused_profiles, profiles))
    raise NoCommonCodec(f"no common codec: offered {', '.join(offered)}; supported {', '.join(supported)}")


def _pick_codec(
    media: MediaDescription, rtpmap: dict[int, tuple[str, int, int]], wanted: set[str]
) -> int | None:
    for pt in _int_formats(media.formats):
        name, _, channels = rtpmap.get(pt, ("", 0, 0))
        if name in wanted and channels == 1:
            return pt
    return None


def _pick_dtmf(media: MediaDescription, rtpmap: dict[int, tuple[str, int, int]]) -> int | None:
    for pt in _int_formats(media.formats):
        if rtpmap.get(pt, ("", 0, 0))[:2] == ("TELEPHONE-EVENT", 8000):
            return pt
    return None


def _answer_for(
    offer: SessionDescription,
    index: int,
    media: MediaDescription,
    rtpmap: dict[int, tuple[str, int, int]],
    pt: int,
) -> AudioAnswer:
    address = offer.connection_address(media)
    if address is None:
        raise SdpError("no connection address for the audio stream")
    if not is_ip(address):
        raise MediaHostName(f"media address {address[:64]!r} is a host name: an IP address is required")
    direction = explicit_direction(media.attributes) or explicit_direction(offer.attributes) or "sendrecv"
    return AudioAnswer(
        payload_type=pt,
        codec=rtpmap[pt][0],
        clock_rate=rtpmap[pt][1],
        dtmf_payload_type=_pick_dtmf(media, rtpmap),
        remote_addr=(address, media.port),
        ptime=media.ptime or _ptime(offer.attributes) or 20,
        direction=_ANSWER_DIRECTION.get(direction, "sendrecv"),
        media_index=index,
        proto=media.proto,
    )


def build_answer(
    offer: SessionDescription,
    answer: AudioAnswer,
    *,
    local_ip: str,
    local_port: int,
    session_id: int,
    session_version: int = 1,
    username: str = "sipbridge",
) -> bytes:
    """The SDP answer: the chosen audio stream, and every other offered stream rejected (port 0)."""
    media = [
        _audio_media(offered.proto, local_port, answer)
        if index == answer.media_index
        else MediaDescription(offered.media, 0, offered.proto, list(offered.formats))
        for index, offered in enumerate(offer.media)
    ]
    return _session(local_ip, session_id, session_version, username, media).to_bytes()


def build_offer(
    *,
    local_ip: str,
    local_port: int,
    session_id: int,
    codecs: tuple[str, ...] = ("PCMU", "PCMA"),
    dtmf_payload_type: int | None = 101,
    session_version: int = 1,
    username: str = "sipbridge",
    proto: str = "RTP/AVP",
    extra: tuple[Attribute, ...] = (),
) -> bytes:
    """An SDP offer for one sendrecv audio stream with static-payload codecs and telephone-event
    (``extra``: more attributes, such as an RTP/SAVP stream's crypto lines)."""
    unknown = [name for name in codecs if name.upper() not in _STATIC_BY_NAME]
    if unknown or not codecs:
        raise SdpError(f"cannot offer codecs {unknown or codecs}")
    pts = [_STATIC_BY_NAME[name.upper()] for name in codecs]
    attributes = [_rtpmap_attribute(pt, *STATIC_PAYLOAD_TYPES[pt][:2]) for pt in pts]
    attributes += _dtmf_attributes(dtmf_payload_type) + [("ptime", "20"), ("sendrecv", None), *extra]
    formats = [str(pt) for pt in pts] + ([str(dtmf_payload_type)] if dtmf_payload_type is not None else [])
    media = MediaDescription("audio", local_port, proto, formats, None, attributes)
    return _session(local_ip, session_id, session_version, username, [media]).to_bytes()


def _audio_media(proto: str, port: int, answer: AudioAnswer) -> MediaDescription:
    dtmf = answer.dtmf_payload_type
    formats = [str(answer.payload_type)] + ([str(dtmf)] if dtmf is not None else [])
    attributes = [_rtpmap_attribute(answer.payload_type, answer.codec, answer.clock_rate)]
    attributes += _dtmf_attributes(dtmf) + [
        ("ptime", str(_answer_ptime(answer.ptime))),
        (answer.direction, None),
        *([answer.crypto.attribute()] if answer.crypto else []),
    ]
    return MediaDescription("audio", port, proto, formats, None, attributes)


def _answer_ptime(offered: int) -> int:
    """The packet time we ask to receive: the caller's own (10 to 60 ms, whole 10s), else 20.

    We play phone packets of any of those lengths, so a trunk set to 30 ms is not made to change;
    what we send is always 20 ms.
    """
    return offered if offered in (10, 20, 30, 40, 50, 60) else 20


def _rtpmap_attribute(pt: int, name: str, rate: int) -> Attribute:
    return "rtpmap", f"{pt} {name}/{rate}"


def _dtmf_attributes(pt: int | None) -> list[Attribute]:
    if pt is None:
        return []
    return [("rtpmap", f"{pt} telephone-event/8000"), ("fmtp", f"{pt} 0-16")]


def _session(
    local_ip: str, session_id: int, version: int, username: str, media: list[MediaDescription]
) -> SessionDescription:
    addrtype = "IP6" if ":" in local_ip else "IP4"
    origin = Origin(username, session_id, version, "IN", addrtype, local_ip)
    return SessionDescription(0, origin, "sipbridge", local_ip, "0 0", [], media)
