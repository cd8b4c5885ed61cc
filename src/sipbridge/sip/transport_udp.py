"""The UDP transport for SIP: bytes in, bytes out, nothing else; read in batches.

asyncio's datagram transport reads one datagram per turn of the event loop. Under a flood (thousands
of ACKs or INVITEs a second from one stranger, each dropped by the rate limit in microseconds) the
socket's queue then grows faster than it is read, and a trunk's OPTIONS waits behind the flood for
hundreds of milliseconds, or is dropped when the queue is full. So the socket is read here, up to
``READ_BATCH`` datagrams each time it is readable; sends go straight out, and wait (a bounded
queue) only when the kernel's buffer is full.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import deque
from collections.abc import Callable

log = logging.getLogger(__name__)

Address = tuple[str, int]
# Room for a burst while the loop is busy (capped by net.core.rmem_max).
RECEIVE_BUFFER = 4 * 1024 * 1024
READ_BATCH = 64
MAX_DATAGRAM = 65535
SEND_QUEUE = 1024  # datagrams waiting for the kernel's buffer; beyond that they are dropped


class UdpTransport:
    def __init__(self, sock: socket.socket, on_datagram: Callable[[bytes, Address], None]) -> None:
        self._sock = sock
        self._on_datagram = on_datagram
        self._loop = asyncio.get_running_loop()
        self._waiting: deque[tuple[bytes, Address]] = deque()
        self._closed = False
        self.dropped_sends = 0

    @classmethod
    async def open(cls, host: str, port: int, on_datagram: Callable[[bytes, Address], None]) -> UdpTransport:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
        transport = cls(sock, on_datagram)
        transport._loop.add_reader(sock.fileno(), transport._readable)
        return transport

    def _readable(self) -> None:
        for _ in range(READ_BATCH):
            try:
                data, addr = self._sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # an ICMP error for an earlier send, reported on this socket
                log.debug("SIP UDP socket error: %s", exc)
                continue
            try:
                self._on_datagram(data, (addr[0], addr[1]))
            except Exception:  # one bad datagram must never stop the listener
                log.exception("SIP datagram from %s:%s could not be handled", addr[0], addr[1])

    @property
    def local_address(self) -> Address:
        host, port = self._sock.getsockname()[:2]
        return host, port

    def send(self, data: bytes, addr: Address) -> None:
        if self._closed:
            return
        if self._waiting:
            self._queue(data, addr)
            return
        try:
            self._sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            self._queue(data, addr)
            self._loop.add_writer(self._sock.fileno(), self._writable)
        except OSError as exc:  # unreachable, too big: UDP gives no more than that
            log.debug("SIP datagram to %s:%s not sent: %s", addr[0], addr[1], exc)

    def _queue(self, data: bytes, addr: Address) -> None:
        if len(self._waiting) >= SEND_QUEUE:
            self.dropped_sends += 1
            return
        self._waiting.append((data, addr))

    def _writable(self) -> None:
        while self._waiting:
            data, addr = self._waiting[0]
            try:
                self._sock.sendto(data, addr)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("SIP datagram to %s:%s not sent: %s", addr[0], addr[1], exc)
            self._waiting.popleft()
        self._loop.remove_writer(self._sock.fileno())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self._sock.fileno())
        if self._waiting:
            self._loop.remove_writer(self._sock.fileno())
        self._sock.close()
