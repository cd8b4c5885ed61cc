"""RTP packet codec (RFC 3550 5.1): round trips, malformed input, RTCP demux."""

import struct

import pytest

from sipbridge.rtp.packet import (
    RtpPacket,
    RtpParseError,
    build_rtp_header,
    is_rtcp,
    parse_rtp,
)

MINIMAL = bytes.fromhex("80000001000000a0deadbeef") + b"\xff" * 160


def test_parse_minimal_pcmu_packet():
    packet = parse_rtp(MINIMAL)
    assert packet == RtpPacket(
        payload_type=0, sequence=1, timestamp=160, ssrc=0xDEADBEEF, payload=b"\xff" * 160
    )


def test_build_rtp_header_matches_parse():
    header = build_rtp_header(8, 65535, 2**32 - 1, 0x01020304, marker=True)
    assert len(header) == 12
    packet = parse_rtp(header + b"\xd5" * 160)
    assert (packet.payload_type, packet.sequence, packet.timestamp, packet.ssrc) == (
        8,
        65535,
        2**32 - 1,
        0x01020304,
    )
    assert packet.marker and not packet.padding and not packet.extension and packet.csrc == []


def test_build_rtp_header_wraps_sequence_and_timestamp():
    assert build_rtp_header(0, 65536 + 5, 2**32 + 7, 1) == build_rtp_header(0, 5, 7, 1)


@pytest.mark.parametrize("pt", [-1, 128])
def test_build_rtp_header_rejects_bad_payload_type(pt):
    with pytest.raises(ValueError):
        build_rtp_header(pt, 0, 0, 0)


def test_build_rtp_header_rejects_bad_ssrc():
    with pytest.raises(ValueError):
        build_rtp_header(0, 0, 0, 2**32)


FULL = RtpPacket(
    padding=True,
    extension=True,
    marker=True,
    payload_type=111,
    sequence=4242,
    timestamp=123456789,
    ssrc=0xCAFEBABE,
    csrc=[1, 2, 0xFFFFFFFF],
    extension_profile=0xBEDE,
    extension_data=b"\x10\x01\x00\x00",
    payload=b"opus-bytes",
    padding_size=4,
)


@pytest.mark.parametrize(
    "packet",
    [
        FULL,
        RtpPacket(payload_type=0, sequence=1, timestamp=2, ssrc=3, payload=b""),
        RtpPacket(payload_type=101, marker=True, payload=b"\x01\x0a\x00\xa0"),
        RtpPacket(padding=True, padding_size=1, payload=b"x"),
        RtpPacket(extension=True, extension_profile=0x1000, extension_data=b""),
        RtpPacket(csrc=list(range(15)), payload=b"\x00" * 3),
    ],
)
def test_round_trip(packet):
    data = packet.to_bytes()
    assert parse_rtp(data) == packet
    assert parse_rtp(data).to_bytes() == data


def test_full_packet_layout():
    data = FULL.to_bytes()
    assert data[0] == 0x80 | 0x20 | 0x10 | 3 and data[1] == 0x80 | 111
    assert len(data) == 12 + 3 * 4 + 4 + 4 + len(b"opus-bytes") + 4
    assert data[-4:] == b"\x00\x00\x00\x04"


def test_padding_without_size_pads_one_octet():
    data = RtpPacket(padding=True, payload=b"ab").to_bytes()
    assert data[-3:] == b"ab\x01"
    assert parse_rtp(data).payload == b"ab"


def test_parse_accepts_bytearray_and_memoryview():
    assert parse_rtp(bytearray(MINIMAL)) == parse_rtp(memoryview(MINIMAL)) == parse_rtp(MINIMAL)


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(RtpPacket(csrc=list(range(16))), id="16 csrc"),
        pytest.param(RtpPacket(extension=True, extension_data=b"abc"), id="ext not words"),
        pytest.param(RtpPacket(padding=True, padding_size=256), id="padding > 255"),
        pytest.param(RtpPacket(csrc=[2**32]), id="csrc range"),
        pytest.param(RtpPacket(payload_type=200), id="pt range"),
    ],
)
def test_to_bytes_rejects_unrepresentable(bad):
    with pytest.raises(ValueError):
        bad.to_bytes()


def header(first: int = 0x80, second: int = 0, rest: bytes = b"") -> bytes:
    return bytes([first, second]) + struct.pack("!HII", 1, 2, 3) + rest


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(MINIMAL[:11], id="11 bytes"),
        pytest.param(header(first=0x40), id="version 1"),
        pytest.param(header(first=0x00), id="version 0"),
        pytest.param(header(first=0xC0), id="version 3"),
        pytest.param(header(first=0x82, rest=b"\x00" * 7), id="csrc past end"),
        pytest.param(header(first=0x90, rest=b"\x00\x00"), id="ext header past end"),
        pytest.param(header(first=0x90, rest=b"\xbe\xde\x00\x02" + b"\x00" * 7), id="ext data past end"),
        pytest.param(header(first=0xA0, rest=b"ab\x00"), id="padding count 0"),
        pytest.param(header(first=0xA0, rest=b"ab\x04"), id="padding too big"),
        pytest.param(header(first=0xA0), id="padding bit, no octets"),
        pytest.param(header(first=0xB0, rest=b"\xbe\xde\x00\x01\x00\x00\x00\x02"), id="padding eats ext"),
    ],
)
def test_malformed_raises_parse_error(data):
    with pytest.raises(RtpParseError):
        parse_rtp(data)


def test_parse_error_is_value_error():
    assert issubclass(RtpParseError, ValueError)


def test_padding_may_fill_whole_payload():
    packet = parse_rtp(header(first=0xA0, rest=b"\x00\x00\x03"))
    assert packet.payload == b"" and packet.padding_size == 3


RTCP_SECOND_OCTETS = [192, 200, 201, 202, 203, 204, 205, 206, 207, 223]  # SR RR SDES BYE APP RTPFB PSFB XR
RTP_SECOND_OCTETS = [0, 8, 96, 101, 127, 0x80, 0x80 | 8, 0x80 | 96, 0x80 | 101, 224, 255]


@pytest.mark.parametrize("second", RTCP_SECOND_OCTETS)
def test_is_rtcp_true_for_rtcp_types(second):
    assert is_rtcp(bytes([0x80, second]) + b"\x00" * 6)


@pytest.mark.parametrize("second", RTP_SECOND_OCTETS)
def test_is_rtcp_false_for_rtp_payload_types(second):
    assert not is_rtcp(bytes([0x80, second]) + b"\x00" * 6)


def test_is_rtcp_rejects_short_and_wrong_version():
    assert not is_rtcp(b"")
    assert not is_rtcp(b"\x80")
    assert not is_rtcp(bytes([0x40, 200]))
