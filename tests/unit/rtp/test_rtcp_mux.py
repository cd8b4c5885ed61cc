"""rtcp-mux (RFC 5761) on a call's RTP socket: the second octet tells RTCP from RTP, RTCP goes to
the RTCP reader (SRTCP unprotected there), never to the jitter buffer; our reports go out of the
RTP socket to the phone's RTP port itself."""

from __future__ import annotations

import asyncio
import base64
import random
import secrets
import socket

import pytest
from aiortc.rtp import RtcpByePacket, RtcpPacket, RtcpRrPacket, RtcpSrPacket

from sipbridge.rtp.packet import build_rtp_header
from sipbridge.rtp.rtcp import Reception, RtcpReporter, Sending
from sipbridge.rtp.rtcp_channel import RtcpChannel
from sipbridge.rtp.session import RtpSession
from sipbridge.rtp.srtp import Srtp

WALL = 1_800_000_000.0
PHONE = ("127.0.0.1", 4000)
SUITE = "AES_CM_128_HMAC_SHA1_80"


def _listening() -> tuple[RtpSession, list[int], list[bytes]]:
    """An RTP session whose jitter buffer side (``on_packet``) and RTCP side (``on_rtcp``) record."""
    played: list[int] = []
    rtcp: list[bytes] = []
    session = RtpSession(on_packet=lambda packet, at: played.append(packet.sequence))
    session.configure(0, None, PHONE)
    session.on_rtcp = lambda data, addr: rtcp.append(data)
    return session, played, rtcp


@pytest.mark.parametrize("second", [192, 200, 201, 202, 203, 204, 205, 206, 207, 223])
def test_a_second_octet_of_192_to_223_is_rtcp_and_never_played(second: int) -> None:
    session, played, rtcp = _listening()
    packet = bytes([0x80, second]) + bytes(26)
    session.receive(packet, PHONE, 0.0)
    assert rtcp == [packet] and played == [] and session.stats.packets_in == 0


@pytest.mark.parametrize(
    ("payload_type", "marker"), [(0, False), (0, True), (63, True), (72, False), (95, False), (96, True)]
)
def test_any_other_second_octet_is_rtp(payload_type: int, marker: bool) -> None:
    """PT 0 with or without the marker (0x00, 0x80), 63 marked (191), 72-95 unmarked, 96 marked (224)."""
    session, played, rtcp = _listening()
    session.configure(payload_type, None, PHONE)
    session.receive(build_rtp_header(payload_type, 7, 160, 0xABC, marker) + bytes(160), PHONE, 0.0)
    assert played == [7] and rtcp == [] and session.stats.packets_in == 1


def test_a_receiver_report_shorter_than_an_rtp_header_is_rtcp_and_garbage_is_invalid() -> None:
    session, played, rtcp = _listening()
    lone_rr = bytes(RtcpRrPacket(ssrc=0x2222))  # 8 octets: no report block
    session.receive(lone_rr, PHONE, 0.0)
    session.receive(b"\x40\xc8" + bytes(26), PHONE, 0.0)  # version 1 with an SR's type: not RTCP
    session.receive(b"\x80", PHONE, 0.0)
    assert rtcp == [lone_rr] and session.stats.invalid_in == 2 and played == []


def test_without_a_listener_rtcp_on_the_rtp_port_is_dropped_and_counted_as_such() -> None:
    session, played, _ = _listening()
    session.on_rtcp = None  # no a=rtcp-mux: RTCP belongs on port + 1
    session.receive(b"\x80\xc8" + bytes(26), PHONE, 0.0)
    assert played == [] and session.stats.packets_in == 0
    assert (session.stats.rtcp_in, session.stats.invalid_in) == (1, 0)


def _key() -> str:
    return base64.b64encode(secrets.token_bytes(30)).decode()


async def _read(sock: socket.socket) -> tuple[bytes, tuple]:
    return await asyncio.wait_for(asyncio.get_running_loop().sock_recvfrom(sock, 2048), 1)


async def test_muxed_srtcp_goes_both_ways_on_the_rtp_ports_and_rtp_still_plays() -> None:
    loop = asyncio.get_running_loop()
    phone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # the phone's one socket: RTP and RTCP
    phone.bind(("127.0.0.1", 0))
    phone.setblocking(False)
    at = phone.getsockname()
    played: list[int] = []
    rtp_transport, rtp = await loop.create_datagram_endpoint(
        lambda: RtpSession(on_packet=lambda packet, _: played.append(packet.sequence)),
        local_addr=("127.0.0.1", 0),
    )
    reporter = RtcpReporter(rtp.ssrc, "bridge@test", 8000, 0.0, random.Random(1))
    rtcp_transport, channel = await loop.create_datagram_endpoint(
        lambda: RtcpChannel(reporter), local_addr=("127.0.0.1", 0)
    )
    ours, theirs = _key(), _key()
    rtp.srtp = channel.srtp = Srtp(SUITE, ours, theirs)  # as MediaSession shares them
    phone_srtp = Srtp(SUITE, theirs, ours)
    rtp.configure(0, None, at)
    rtp.on_rtcp = channel.datagram_received
    channel.multiplex(rtp.send_rtcp)
    channel.follow(rtp.remote)
    rtp_port = rtp_transport.get_extra_info("sockname")[1]
    try:
        channel.tick(10.0, WALL, Sending(160, 5, 800), None)
        data, source = await _read(phone)
        (sr, _) = RtcpPacket.parse(phone_srtp.unprotect_rtcp(data))
        assert isinstance(sr, RtcpSrPacket) and source[1] == rtp_port  # from our RTP port, to its

        phone_reporter = RtcpReporter(0x2222, "phone@test", 8000, 0.0)
        rr = phone_reporter.report(10.5, WALL + 0.5, None, Reception(rtp.ssrc, 0, 99, 98, 16))
        phone.sendto(phone_srtp.protect_rtcp(rr), ("127.0.0.1", rtp_port))
        phone.sendto(
            phone_srtp.protect(build_rtp_header(0, 1, 160, 0x2222) + bytes(160)), ("127.0.0.1", rtp_port)
        )
        async with asyncio.timeout(1):
            while channel.reporter.phone_report is None or not played:
                await asyncio.sleep(0.01)
        assert channel.reporter.phone_report.cumulative_lost == 2 and played == [1]
        assert rtp.stats.packets_in == 1 and channel.auth_failures == 0 and rtp.stats.srtp_auth_failures == 0

        channel.close(11.0, WALL + 1, None, None)
        data, source = await _read(phone)
        last = RtcpPacket.parse(phone_srtp.unprotect_rtcp(data))
        assert isinstance(last[-1], RtcpByePacket) and source[1] == rtp_port
    finally:
        rtp_transport.close()
        rtcp_transport.close()
        phone.close()


async def test_a_channel_taken_off_mux_reports_to_port_plus_one_again() -> None:
    """A re-INVITE without a=rtcp-mux: RTCP back on our port + 1, to the phone's RTP port + 1."""
    phone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # the phone's RTCP socket
    phone.bind(("127.0.0.1", 0))
    phone.setblocking(False)
    phone_rtp = ("127.0.0.1", phone.getsockname()[1] - 1)
    transport, channel = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: RtcpChannel(RtcpReporter(1, "x", 8000, 0.0, random.Random(1))), local_addr=("127.0.0.1", 0)
    )
    muxed: list[tuple] = []
    try:
        channel.multiplex(lambda packet, to: muxed.append(to))
        channel.follow(phone_rtp)
        channel.tick(10.0, WALL, None, None)
        assert channel.muxed and muxed == [phone_rtp]  # out of the RTP socket, to the RTP port
        channel.multiplex(None)
        channel.follow(phone_rtp)
        channel.tick(20.0, WALL, None, None)
        data, source = await _read(phone)
        assert not channel.muxed and source[1] == channel.port and len(muxed) == 1
        assert isinstance(RtcpPacket.parse(data)[0], RtcpRrPacket)
    finally:
        transport.close()
        phone.close()
