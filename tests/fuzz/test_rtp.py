"""Fuzz target: the RTP packet parser (``parse_rtp``) and the RTP/RTCP demultiplexer (``is_rtcp``).

Own error: ``RtpParseError`` for ``parse_rtp``, on any bytes-like input. RTCP packets are not parsed,
only told apart from RTP (RFC 5761): ``is_rtcp`` answers a bool for any input and never raises. A
packet that parses serialises to a packet that parses to the same fields.
"""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st
from tests.fuzz.corpus import checked, fuzz_bytes

from sipbridge.rtp.packet import RtpPacket, RtpParseError, is_rtcp, parse_rtp

RTP_SAMPLES = [
    RtpPacket(payload_type=0, sequence=1, timestamp=160, ssrc=0x1234, payload=b"\xff" * 160).to_bytes(),
    RtpPacket(
        marker=True,
        payload_type=101,
        sequence=65535,
        timestamp=2**32 - 1,
        ssrc=7,
        payload=b"\x05\x8a\x03\x20",
    ).to_bytes(),
    RtpPacket(
        padding=True,
        extension=True,
        payload_type=8,
        csrc=[1, 2, 3],
        extension_profile=0xBEDE,
        extension_data=b"\x10\xff\x00\x00",
        payload=b"\xd5" * 20,
        padding_size=4,
    ).to_bytes(),
    # RTCP: a receiver report and an SDES, as a phone sends them on the same port (RFC 5761).
    bytes.fromhex("81c90007000012340000567800000000000000000000000000000000000000000000"),
    bytes.fromhex("81ca000300001234010561626364000000"),
]


@given(fuzz_bytes(RTP_SAMPLES, max_random=64), st.sampled_from([bytes, bytearray, memoryview]))
@example(b"\xa0" + bytes(11), bytes)
@example(b"\x9f" + bytes(11), bytes)
def test_parse_rtp(data, kind):
    packet = checked(lambda: parse_rtp(kind(data)), RtpParseError)
    rtcp = checked(lambda: is_rtcp(kind(data)))
    assert isinstance(rtcp, bool)
    if packet is None:
        return
    again = parse_rtp(packet.to_bytes())
    assert (again.payload, again.csrc, again.extension_data) == (
        packet.payload,
        packet.csrc,
        packet.extension_data,
    )
    assert (again.sequence, again.timestamp, again.ssrc, again.marker, again.payload_type) == (
        packet.sequence,
        packet.timestamp,
        packet.ssrc,
        packet.marker,
        packet.payload_type,
    )


@given(st.binary(max_size=300))
@example(b"\xa0" + bytes(10) + b"\x01")
def test_random_version_2_packets_round_trip(data):
    """Random bytes made RTP version 2 (so the deeper checks are reached): a packet that parses
    serialises to one that parses to the very same packet."""
    data = bytes([0x80 | (data[0] & 0x3F)]) + data[1:] if data else data
    packet = checked(lambda: parse_rtp(data), RtpParseError)
    if packet is not None:
        assert parse_rtp(packet.to_bytes()) == packet
