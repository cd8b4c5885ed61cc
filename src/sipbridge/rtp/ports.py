"""RTP port allocation from the configured range: even ports, picked at random, and with each its
RTCP port (+ 1, RFC 3550 §11) bound together: a pair where either is taken by another process is
passed over.

In order, the next call's port was the last one's + 2: a stranger spraying just above it met the
next call before its phone did. At random, a call's port has to be found among all the free ones.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections.abc import Callable, Iterator
from functools import partial
from typing import TypeVar

P = TypeVar("P", bound=asyncio.DatagramProtocol)
Q = TypeVar("Q", bound=asyncio.DatagramProtocol)

# Random picks before the scan: with half the range in use, 8 all miss once in 256 calls.
RANDOM_PICKS = 8


def even_ports(low: int, high: int) -> range:
    """The even ports of [low, high]: one per call (RTP on the even port)."""
    return range(low + (low % 2), high + 1, 2)


class NoFreePort(Exception):
    """Every port of the RTP range is taken."""


class PortAllocator:
    def __init__(self, low: int, high: int) -> None:
        self._ports = list(even_ports(low, high)) or [low]
        self._in_use: set[int] = set()

    @property
    def in_use(self) -> int:
        return len(self._in_use)

    @property
    def capacity(self) -> int:
        return len(self._ports)

    async def open(self, host: str, factory: Callable[[], P]) -> tuple[P, int]:
        """Bind a UDP socket on a free port chosen at random; NoFreePort when the range is exhausted."""
        for port in self._candidates():
            if port in self._in_use:
                continue
            try:
                _, protocol = await _bind(host, port, factory)
            except OSError:
                continue  # taken by another process
            self._in_use.add(port)
            return protocol, port
        raise NoFreePort(f"no free RTP port in {self._ports[0]}-{self._ports[-1]}")

    async def open_pair(
        self, host: str, factory: Callable[[], P], companion: Callable[[P], Q]
    ) -> tuple[P, Q, int]:
        """Bind a free even port (``factory``) and the port above it (``companion``, given the first
        protocol) together, chosen at random; NoFreePort when no pair of the range is free."""
        for port in self._candidates():
            if port in self._in_use:
                continue
            try:
                transport, protocol = await _bind(host, port, factory)
            except OSError:
                continue
            try:
                _, second = await _bind(host, port + 1, partial(companion, protocol))
            except OSError:
                transport.close()  # the odd port is another process's: the pair is not ours
                continue
            self._in_use.add(port)
            return protocol, second, port
        raise NoFreePort(f"no free RTP port in {self._ports[0]}-{self._ports[-1]} (with its RTCP port + 1)")

    def _candidates(self) -> Iterator[int]:
        """A few random picks, then every port once from a random start (a full range ends in time)."""
        ports, count = self._ports, len(self._ports)
        if len(self._in_use) >= count:
            return
        for _ in range(RANDOM_PICKS):
            yield ports[secrets.randbelow(count)]
        start = secrets.randbelow(count)
        for offset in range(count):
            yield ports[(start + offset) % count]

    def release(self, port: int) -> None:
        self._in_use.discard(port)


async def _bind(host: str, port: int, factory: Callable[[], P]) -> tuple[asyncio.BaseTransport, P]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    loop = asyncio.get_running_loop()
    return await loop.create_datagram_endpoint(factory, local_addr=(host, port), family=family)
