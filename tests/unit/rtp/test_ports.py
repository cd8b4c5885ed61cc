"""PortAllocator hands out the range's even ports at random, skipping ports in use here or elsewhere."""

from __future__ import annotations

import asyncio
import socket

import pytest

from sipbridge.rtp.ports import NoFreePort, PortAllocator
from sipbridge.rtp.session import RtpSession

LOW, HIGH = 42600, 42639  # 20 even ports


async def _fill(allocator: PortAllocator) -> list[tuple[RtpSession, int]]:
    opened = []
    while True:
        try:
            opened.append(await allocator.open("127.0.0.1", RtpSession))
        except NoFreePort:
            return opened


async def _close(allocator: PortAllocator, opened: list[tuple[RtpSession, int]]) -> None:
    for session, port in opened:
        session.close()
        allocator.release(port)
    await asyncio.sleep(0)  # the transports close their sockets on the next loop turn


async def test_every_even_port_is_used_in_an_unpredictable_order():
    orders = []
    for _ in range(2):
        allocator = PortAllocator(LOW, HIGH)
        opened = await _fill(allocator)
        orders.append([port for _, port in opened])
        assert allocator.in_use == allocator.capacity == 20
        await _close(allocator, opened)
    for order in orders:
        assert sorted(order) == list(range(LOW, HIGH + 1, 2))
        assert order != sorted(order)  # 1 chance in 20! to fail
    assert orders[0] != orders[1]


async def test_consecutive_calls_do_not_get_neighbouring_ports():
    allocator = PortAllocator(40000, 49999)
    opened = [await allocator.open("127.0.0.1", RtpSession) for _ in range(10)]
    ports = [port for _, port in opened]
    assert all(port % 2 == 0 for port in ports)
    assert sum(abs(b - a) == 2 for a, b in zip(ports, ports[1:], strict=False)) <= 1
    await _close(allocator, opened)


async def test_a_port_taken_by_another_process_is_skipped_then_no_free_port():
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", 42702))
    allocator = PortAllocator(42700, 42707)  # 42700, 42702, 42704, 42706
    try:
        opened = await _fill(allocator)
        assert sorted(port for _, port in opened) == [42700, 42704, 42706]
        with pytest.raises(NoFreePort, match="42700-42706"):
            await allocator.open("127.0.0.1", RtpSession)
        await _close(allocator, opened[:1])
        session, port = await allocator.open("127.0.0.1", RtpSession)  # a released port comes back
        assert port == opened[0][1]
        await _close(allocator, [*opened[1:], (session, port)])
    finally:
        taken.close()


async def test_a_pair_is_bound_together_and_one_whose_rtcp_port_is_taken_is_passed_over():
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", 42713))  # the RTCP port of 42712
    allocator = PortAllocator(42710, 42715)  # pairs 42710/11, 42712/13, 42714/15
    pairs = []
    try:
        for _ in range(2):
            rtp, rtcp, port = await allocator.open_pair("127.0.0.1", RtpSession, lambda _rtp: RtpSession())
            pairs.append((rtp, rtcp, port))
        assert sorted(port for _, _, port in pairs) == [42710, 42714]
        with pytest.raises(NoFreePort, match="RTCP port"):
            await allocator.open_pair("127.0.0.1", RtpSession, lambda _rtp: RtpSession())
        await asyncio.sleep(0)  # a transport closes its socket on the next loop turn
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with pytest.raises(OSError):  # 42712 was bound while trying, and let go again ...
            probe.bind(("127.0.0.1", 42711))  # ... while 42711, a pair's RTCP port, is held
        probe.bind(("127.0.0.1", 42712))
        probe.close()
    finally:
        taken.close()
        for rtp, rtcp, port in pairs:
            rtp.close()
            rtcp.close()
            allocator.release(port)
        await asyncio.sleep(0)
