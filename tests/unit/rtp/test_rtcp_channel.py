"""The RTCP socket of a call: reports to the phone's RTP port + 1, the phone's read (SRTCP when the
call is SRTP), strangers ignored; and the RTP side's extended sequence numbers for the report."""

from __future__ import annotations

import asyncio
import base64
import random
import secrets
import socket

from aiortc.rtp import RtcpByePacket, RtcpPacket, RtcpRrPacket, RtcpSrPacket

from sipbridge.rtp.packet import build_rtp_header
from sipbridge.rtp.rtcp import Reception, RtcpReporter, Sending
from sipbridge.rtp.rtcp_channel import RtcpChannel
from sipbridge.rtp.session import RtpSession
from sipbridge.rtp.srtp import Srtp

WALL = 1_800_000_000.0


def _key() -> str:
    return base64.b64encode(secrets.token_bytes(30)).decode()


async def _channel() -> tuple[RtcpChannel, socket.socket, int]:
    """Our channel on a free port, and the phone's RTCP socket (its RTP port + 1 is where we send)."""
    phone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    phone.bind(("127.0.0.1", 0))
    phone.setblocking(False)
    reporter = RtcpReporter(0x1111, "bridge@test", 8000, 0.0, random.Random(1))
    _, channel = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: RtcpChannel(reporter), local_addr=("127.0.0.1", 0)
    )
    channel.follow(("127.0.0.1", phone.getsockname()[1] - 1))
    assert channel.port is not None
    return channel, phone, channel.port


async def _read(sock: socket.socket) -> bytes:
    return await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 2048), 1)


async def test_reports_go_to_port_plus_one_with_srtcp_and_the_phone_s_come_back() -> None:
    channel, phone, port = await _channel()
    ours, theirs = _key(), _key()
    channel.srtp = Srtp("AES_CM_128_HMAC_SHA1_80", ours, theirs)
    phone_srtp = Srtp("AES_CM_128_HMAC_SHA1_80", theirs, ours)  # the phone's side of the same keys
    channel.tick(0.0, WALL, None, None)  # not due yet: nothing sent
    channel.tick(10.0, WALL, Sending(160, 5, 800), None)
    sr, _ = RtcpPacket.parse(phone_srtp.unprotect_rtcp(await _read(phone)))
    assert isinstance(sr, RtcpSrPacket) and sr.sender_info.packet_count == 5

    phone_reporter = RtcpReporter(0x2222, "phone@test", 8000, 0.0)
    seen = Reception(0x1111, 0, 99, 98, 16)
    rr = phone_srtp.protect_rtcp(phone_reporter.report(10.5, WALL + 0.5, None, seen))
    phone.sendto(rr, ("127.0.0.1", port))
    await asyncio.sleep(0.05)
    report = channel.reporter.phone_report
    assert report is not None and report.cumulative_lost == 2 and report.jitter_ms == 2.0
    phone.sendto(b"\x80\xc9\x00\x01" + bytes(20), ("127.0.0.1", port))  # not SRTCP: refused, counted
    await asyncio.sleep(0.05)
    assert channel.auth_failures == 1

    channel.close(11.0, WALL + 1, None, None)
    last = RtcpPacket.parse(phone_srtp.unprotect_rtcp(await _read(phone)))
    assert isinstance(last[0], RtcpRrPacket) and isinstance(last[-1], RtcpByePacket)
    phone.close()


async def test_reports_from_another_host_are_ignored() -> None:
    channel, phone, port = await _channel()
    channel.follow(("127.0.0.9", 4000))  # the phone is elsewhere: 127.0.0.1 is a stranger now
    stranger = RtcpReporter(0x3333, "x", 8000, 0.0).report(1.0, WALL, None, Reception(0x1111, 0, 9, 0, 0))
    phone.sendto(stranger, ("127.0.0.1", port))
    await asyncio.sleep(0.05)
    assert channel.foreign == 1 and channel.reporter.phone_report is None
    channel.close(2.0, WALL, None, None)
    phone.close()


def test_the_rtp_side_counts_extended_sequence_numbers_across_a_wrap() -> None:
    session = RtpSession()
    session.configure(0, None, ("127.0.0.1", 9))
    assert session.reception(0) is None
    for seq in (65533, 65534, 65535, 0, 1, 65530, 2):  # a wrap, and one old packet that moves nothing
        packet = build_rtp_header(0, seq, seq * 160, 0xABC, False) + bytes(160)
        session.receive(packet, ("127.0.0.1", 9), 0.0)
    got = session.reception(8)
    assert got is not None and (got.ssrc, got.first_sequence, got.highest_sequence) == (0xABC, 65533, 65538)
    assert got.received == 7 and got.jitter == 8
