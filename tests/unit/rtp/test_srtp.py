"""SRTP on a call's phone stream, with real packets on loopback sockets."""

from __future__ import annotations

import asyncio
import base64
import secrets
import socket

import pylibsrtp
import pytest

from sipbridge.rtp.clock import FrameClock
from sipbridge.rtp.packet import build_rtp_header, parse_rtp
from sipbridge.rtp.ports import PortAllocator
from sipbridge.rtp.session import RtpSession
from sipbridge.rtp.srtp import PROFILES, Srtp
from sipbridge.sip.sdes import SUITES


def _key(suite: str) -> bytes:
    return secrets.token_bytes(sum(SUITES[suite]))


def _phone_session(suite: str, key: bytes, outbound: bool) -> pylibsrtp.Session:
    kind = pylibsrtp.Policy.SSRC_ANY_OUTBOUND if outbound else pylibsrtp.Policy.SSRC_ANY_INBOUND
    return pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=kind, srtp_profile=PROFILES[suite]))


@pytest.mark.parametrize("suite", list(SUITES))
async def test_packets_both_ways_are_protected_and_unprotected(suite):
    ours, theirs = _key(suite), _key(suite)
    phone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    phone.bind(("127.0.0.1", 0))
    phone.setblocking(False)
    heard: list[bytes] = []
    allocator = PortAllocator(43000, 43100)
    session, port = await allocator.open(
        "127.0.0.1", lambda: RtpSession(on_packet=lambda packet, at: heard.append(packet.payload))
    )
    session.srtp = Srtp(suite, base64.b64encode(ours).decode(), base64.b64encode(theirs).decode())
    session.configure(0, None, phone.getsockname())
    loop = asyncio.get_running_loop()
    try:
        session.start_sending(FrameClock(), lambda: b"\x55" * 160)
        async with asyncio.timeout(2):
            wire = [await loop.sock_recv(phone, 2048) for _ in range(3)]
        phone_in, phone_out = _phone_session(suite, ours, False), _phone_session(suite, theirs, True)
        packets = [parse_rtp(phone_in.unprotect(data)) for data in wire]
        assert all(p.payload == b"\x55" * 160 for p in packets)
        assert all(b"\x55" * 16 not in data for data in wire)  # encrypted on the wire
        protected = [
            phone_out.protect(build_rtp_header(0, 7 + i, 160 * i, 1234) + bytes([i]) * 160) for i in range(3)
        ]
        tampered = bytearray(protected[2])
        tampered[20] ^= 1
        for data in [protected[0], protected[1], bytes(tampered), protected[0]]:  # then a replay
            await loop.sock_sendto(phone, data, ("127.0.0.1", port))
        async with asyncio.timeout(2):
            while session.stats.packets_in + session.stats.srtp_auth_failures < 4:
                await asyncio.sleep(0.01)
    finally:
        session.close()
        allocator.release(port)
        phone.close()
    assert heard == [bytes([0]) * 160, bytes([1]) * 160]
    assert session.stats.srtp_auth_failures == 2 and session.stats.packets_in == 2


def test_a_plain_or_short_packet_is_an_auth_failure_not_a_crash():
    key = base64.b64encode(_key("AES_CM_128_HMAC_SHA1_80")).decode()
    session = RtpSession()
    session.srtp = Srtp("AES_CM_128_HMAC_SHA1_80", key, key)
    session.configure(0, None, ("127.0.0.1", 9))
    for data in [build_rtp_header(0, 1, 0, 1) + b"\xff" * 160, build_rtp_header(0, 2, 0, 1), b"\x80" * 5000]:
        session.receive(data, ("127.0.0.1", 9), 0.0)
    assert session.stats.packets_in == 0 and session.stats.srtp_auth_failures == 3
    assert key not in repr(session.srtp)
