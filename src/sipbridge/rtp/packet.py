"""RTP packets (RFC 3550 section 5.1): parse, serialise, and RTP/RTCP demultiplexing.

``parse_rtp`` raises only ``RtpParseError`` (a ``ValueError``) for any malformed
bytes-like input; ``build_rtp_header`` is the fast path for sending: the fixed
12-byte header in one ``struct`` call.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import ClassVar

RTP_VERSION = 2
HEADER_SIZE = 12
_HEADER = struct.Struct("!BBHII")
_EXT_HEADER = struct.Struct("!HH")


class RtpParseError(ValueError):
    """The datagram is not a well-formed RTP packet."""


@dataclass(slots=True)
class RtpPacket:
    """One RTP packet. ``padding_size`` counts the padding octets, the count octet included."""

    VERSION: ClassVar[int] = RTP_VERSION

    padding: bool = False
    extension: bool = False
    marker: bool = False
    payload_type: int = 0
    sequence: int = 0
    timestamp: int = 0
    ssrc: int = 0
    csrc: list[int] = field(default_factory=list)
    extension_profile: int = 0
    extension_data: bytes = b""
    payload: bytes = b""
    padding_size: int = 0

    def to_bytes(self) -> bytes:
        """Serialise; with ``padding`` set, appends ``max(1, padding_size)`` padding octets."""
        if len(self.csrc) > 15:
            raise ValueError("at most 15 CSRCs")
        first = (RTP_VERSION << 6) | (self.padding << 5) | (self.extension << 4) | len(self.csrc)
        parts = [
            _pack_header(first, self.payload_type, self.marker, self.sequence, self.timestamp, self.ssrc)
        ]
        parts.extend(_pack_u32(c) for c in self.csrc)
        if self.extension:
            parts.append(self._extension_bytes())
        parts.append(bytes(self.payload))
        if self.padding:
            parts.append(_padding(self.padding_size))
        return b"".join(parts)

    def _extension_bytes(self) -> bytes:
        words, rest = divmod(len(self.extension_data), 4)
        if rest or words > 0xFFFF:
            raise ValueError("extension_data must be a multiple of 4 bytes, at most 262140")
        return _EXT_HEADER.pack(self.extension_profile, words) + bytes(self.extension_data)


def _pack_header(first: int, pt: int, marker: bool, seq: int, ts: int, ssrc: int) -> bytes:
    if not 0 <= pt <= 127:
        raise ValueError(f"payload type {pt} out of range 0-127")
    try:
        return _HEADER.pack(first, pt | (0x80 if marker else 0), seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc)
    except struct.error as exc:
        raise ValueError(f"bad RTP header field: {exc}") from None


def _pack_u32(value: int) -> bytes:
    try:
        return value.to_bytes(4, "big")
    except OverflowError:
        raise ValueError(f"CSRC {value} out of 32-bit range") from None


def _padding(size: int) -> bytes:
    size = max(1, size)
    if size > 255:
        raise ValueError("padding_size must be at most 255")
    return bytes(size - 1) + bytes((size,))


def build_rtp_header(pt: int, seq: int, ts: int, ssrc: int, marker: bool = False) -> bytes:
    """The 12-byte RTP header (no CSRC, extension or padding); seq and ts wrap modulo 2**16 / 2**32."""
    return _pack_header(0x80, pt, marker, seq, ts, ssrc)


def is_rtcp(data: bytes) -> bool:
    """RFC 5761 demux: version 2 and second octet 192-223 (RTCP types SR 200 ... XR 207)."""
    return len(data) >= 2 and data[0] >> 6 == RTP_VERSION and 192 <= data[1] <= 223


def parse_rtp(data: bytes) -> RtpPacket:
    """Parse one RTP datagram; raises ``RtpParseError`` if it is malformed."""
    if len(data) < HEADER_SIZE:
        raise RtpParseError(f"packet too short: {len(data)} bytes")
    first, second, seq, ts, ssrc = _HEADER.unpack_from(data)
    if first >> 6 != RTP_VERSION:
        raise RtpParseError(f"RTP version {first >> 6}, expected 2")
    offset = HEADER_SIZE + 4 * (first & 0x0F)
    end = _payload_end(data, first & 0x20, offset)
    csrc = list(struct.unpack_from(f"!{first & 0x0F}I", data, HEADER_SIZE)) if first & 0x0F else []
    profile, ext_data, offset = _parse_extension(data, offset, end) if first & 0x10 else (0, b"", offset)
    return RtpPacket(
        padding=bool(first & 0x20),
        extension=bool(first & 0x10),
        marker=bool(second & 0x80),
        payload_type=second & 0x7F,
        sequence=seq,
        timestamp=ts,
        ssrc=ssrc,
        csrc=csrc,
        extension_profile=profile,
        extension_data=ext_data,
        payload=bytes(data[offset:end]),
        padding_size=len(data) - end,
    )


def _payload_end(data: bytes, padded: int, header_end: int) -> int:
    if header_end > len(data):
        raise RtpParseError("CSRC list runs past the end of the packet")
    if not padded:
        return len(data)
    count = data[-1]
    if count == 0 or count > len(data) - header_end:
        raise RtpParseError(f"bad padding count {count}")
    return len(data) - count


def _parse_extension(data: bytes, offset: int, end: int) -> tuple[int, bytes, int]:
    if offset + 4 > end:
        raise RtpParseError("extension header runs past the end of the packet")
    profile, words = _EXT_HEADER.unpack_from(data, offset)
    start = offset + 4
    stop = start + 4 * words
    if stop > end:
        raise RtpParseError("extension runs past the end of the packet")
    return profile, bytes(data[start:stop]), stop
