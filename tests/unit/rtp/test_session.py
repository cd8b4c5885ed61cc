"""RtpSession on real loopback sockets: header fields, pacing, symmetric latching."""

from __future__ import annotations

import asyncio
import socket

from sipbridge.rtp.clock import FrameClock
from sipbridge.rtp.packet import build_rtp_header, parse_rtp
from sipbridge.rtp.ports import NoFreePort, PortAllocator
from sipbridge.rtp.session import RtpSession


def _peer() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


async def _recv_all(sock: socket.socket, count: int, timeout: float = 2.0) -> list[bytes]:
    loop = asyncio.get_running_loop()
    out = []
    async with asyncio.timeout(timeout):
        while len(out) < count:
            out.append(await loop.sock_recv(sock, 2048))
    return out


async def test_sender_paces_20ms_frames_with_consecutive_seq_and_timestamp():
    peer = _peer()
    allocator = PortAllocator(42000, 42100)
    session, port = await allocator.open("127.0.0.1", RtpSession)
    session.configure(8, None, peer.getsockname())
    started = asyncio.get_running_loop().time()
    session.start_sending(FrameClock(), lambda: b"\xd5" * 160)
    packets = [parse_rtp(p) for p in await _recv_all(peer, 10)]
    elapsed = asyncio.get_running_loop().time() - started
    session.close()
    allocator.release(port)
    peer.close()
    assert all(p.payload_type == 8 and len(p.payload) == 160 for p in packets)
    assert len({p.ssrc for p in packets}) == 1
    assert [(p.sequence - packets[0].sequence) & 0xFFFF for p in packets] == list(range(10))
    assert [(p.timestamp - packets[0].timestamp) & 0xFFFFFFFF for p in packets] == [
        160 * i for i in range(10)
    ]
    assert packets[0].marker and not any(p.marker for p in packets[1:])
    assert elapsed >= 0.17  # ten frames take nine 20 ms intervals


async def test_symmetric_rtp_latches_to_where_packets_come_from():
    """A phone behind NAT: its SDP names one port, its packets come from another of the signalling IP."""
    advertised, actual = _peer(), _peer()
    received: list[bytes] = []
    allocator = PortAllocator(42200, 42300)
    session, port = await allocator.open(
        "127.0.0.1", lambda: RtpSession(on_packet=lambda packet, at: received.append(packet.payload))
    )
    session.configure(0, 101, advertised.getsockname(), signalling=("127.0.0.1", 5060))
    actual.sendto(build_rtp_header(0, 1, 160, 1234) + b"\xff" * 160, ("127.0.0.1", port))
    await asyncio.sleep(0.05)
    assert received == [b"\xff" * 160]
    assert session.remote == actual.getsockname()
    session.configure(0, 101, advertised.getsockname(), ("127.0.0.1", 5060))  # the same SDP keeps the latch
    session.send_frame(b"\xff" * 160)
    assert len(await _recv_all(actual, 1)) == 1
    session.close()
    allocator.release(port)
    for sock in (advertised, actual):
        sock.close()


async def test_garbage_and_rtcp_are_ignored():
    received: list[bytes] = []
    session = RtpSession(on_packet=lambda packet, at: received.append(packet.payload))
    session.configure(0, None, None)
    session.datagram_received(b"\x00\x01", ("127.0.0.1", 1))
    session.datagram_received(b"\x80\xc8" + b"\x00" * 26, ("127.0.0.1", 1))  # RTCP SR
    session.datagram_received(build_rtp_header(18, 1, 1, 1) + b"x" * 20, ("127.0.0.1", 1))  # other PT
    assert received == [] and session.stats.invalid_in == 1


async def test_port_range_exhaustion_raises_no_free_port():
    allocator = PortAllocator(42400, 42403)
    first, p1 = await allocator.open("127.0.0.1", RtpSession)
    second, p2 = await allocator.open("127.0.0.1", RtpSession)
    assert {p1, p2} == {42400, 42402}
    try:
        await allocator.open("127.0.0.1", RtpSession)
        raise AssertionError("expected NoFreePort")
    except NoFreePort as exc:
        assert "42400-42402" in str(exc)
    first.close()
    allocator.release(p1)
    await asyncio.sleep(0)  # the transport closes its socket on the next loop turn
    third, p3 = await allocator.open("127.0.0.1", RtpSession)
    assert p3 == p1
    for s in (second, third):
        s.close()
