"""RTP port allocation from the configured range: even ports, one UDP socket per call."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import TypeVar

P = TypeVar("P", bound=asyncio.DatagramProtocol)


class NoFreePort(Exception):
    """Every port of the RTP range is taken."""


class PortAllocator:
    def __init__(self, low: int, high: int) -> None:
        first = low + (low % 2)
        self._ports = list(range(first, high + 1, 2)) or [low]
        self._in_use: set[int] = set()
        self._cursor = 0

    @property
    def in_use(self) -> int:
        return len(self._in_use)

    @property
    def capacity(self) -> int:
        return len(self._ports)

    async def open(self, host: str, factory: Callable[[], P]) -> tuple[P, int]:
        """Bind a UDP socket on the next free port; NoFreePort when the range is exhausted."""
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        for _ in range(len(self._ports)):
            port = self._ports[self._cursor]
            self._cursor = (self._cursor + 1) % len(self._ports)
            if port in self._in_use:
                continue
            try:
                _, protocol = await loop.create_datagram_endpoint(
                    factory, local_addr=(host, port), family=family
                )
            except OSError:
                continue  # taken by another process
            self._in_use.add(port)
            return protocol, port
        raise NoFreePort(f"no free RTP port in {self._ports[0]}-{self._ports[-1]}")

    def release(self, port: int) -> None:
        self._in_use.discard(port)
