"""The asyncio TCP and TLS transports for SIP (RFC 3261 §18.3): framed messages over connections.

One ``StreamTransport`` per protocol listens, keeps a table of open connections by remote address
(so responses and in-dialog requests reuse them) and opens new ones on demand. A connection that
sends something unframeable is closed; the listener and every other connection go on.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import Counter
from collections.abc import Callable
from typing import cast

from .framing import PONG, FramingError, KeepAlive, StreamFramer
from .transport import Address

log = logging.getLogger(__name__)

IDLE_TIMEOUT_S = 300.0
CONNECT_TIMEOUT_S = 5.0
# Connections accepted from one address, and in all: a host that opens connections and sends
# nothing (or a TLS hello and no more) cannot run the process out of file descriptors.
MAX_PER_SOURCE = 32
MAX_ACCEPTED = 1000
MessageHandler = Callable[[bytes, "StreamConnection"], None]


class StreamConnection(asyncio.Protocol):
    """One TCP or TLS connection: a ``Flow`` for the UA core."""

    reliable = True

    def __init__(self, owner: StreamTransport, accepted: bool = False) -> None:
        self._owner = owner
        self.accepted = accepted
        self.transport = owner.protocol
        self.remote: Address = ("", 0)
        self._stream: asyncio.Transport | None = None
        self._framer = StreamFramer()
        self._idle: asyncio.TimerHandle | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._stream = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.remote = (peer[0], peer[1])
        if not self._owner.register(self):
            transport.close()
            return
        self._touch()

    def data_received(self, data: bytes) -> None:
        self._touch()
        try:
            items = self._framer.feed(data)
        except FramingError as exc:
            log.info("SIP %s from %s:%s closed: %s", self.transport, *self.remote, exc.reason)
            self._deliver(exc.framed)
            self.close()
            return
        self._deliver(items)

    def _deliver(self, items: list[bytes | KeepAlive]) -> None:
        for item in items:
            if item is KeepAlive.PING:
                self.send(PONG)
                continue
            try:
                self._owner.on_message(item, self)
            except Exception:  # one bad message must never stop the connection's reader
                log.exception(
                    "SIP message over %s from %s:%s could not be handled", self.transport, *self.remote
                )

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._idle is not None:
            self._idle.cancel()
        self._owner.unregister(self)

    def _touch(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        loop = asyncio.get_running_loop()
        self._idle = loop.call_later(self._owner.idle_timeout, self.close)

    def send(self, data: bytes) -> None:
        if self._stream is not None and not self._stream.is_closing():
            self._touch()
            self._stream.write(data)

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()

    def __repr__(self) -> str:
        return f"StreamConnection({self.transport} {self.remote[0]}:{self.remote[1]})"


class StreamTransport:
    """A TCP or TLS listener and the connections it accepted or opened."""

    def __init__(
        self,
        protocol: str,
        on_message: MessageHandler,
        server_ssl: ssl.SSLContext | None = None,
        client_ssl: ssl.SSLContext | None = None,
        idle_timeout: float = IDLE_TIMEOUT_S,
        max_per_source: int = MAX_PER_SOURCE,
        max_accepted: int = MAX_ACCEPTED,
    ) -> None:
        self.protocol = protocol
        self.on_message = on_message
        self.server_ssl = server_ssl
        self.client_ssl = client_ssl
        self.idle_timeout = idle_timeout
        self.max_per_source = max_per_source
        self.max_accepted = max_accepted
        self.refused = 0
        self._accepted: Counter[str] = Counter()
        self.connections: dict[Address, StreamConnection] = {}
        self._server: asyncio.Server | None = None
        self._pending: dict[Address, asyncio.Task[StreamConnection]] = {}

    async def listen(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: StreamConnection(self, accepted=True), host, port, ssl=self.server_ssl, reuse_address=True
        )

    @property
    def listening(self) -> bool:
        return self._server is not None

    @property
    def local_address(self) -> Address:
        assert self._server is not None and self._server.sockets
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    def register(self, connection: StreamConnection) -> bool:
        """Take a new connection into the table; False for an accepted one over the caps."""
        if connection.accepted:
            host = connection.remote[0]
            if self._accepted[host] >= self.max_per_source or self._accepted.total() >= self.max_accepted:
                self.refused += 1
                log.info("SIP %s connection from %s refused: too many open", self.protocol, host)
                return False
            self._accepted[host] += 1
        self.connections[connection.remote] = connection
        return True

    def unregister(self, connection: StreamConnection) -> None:
        if self.connections.get(connection.remote) is connection:
            del self.connections[connection.remote]
            if connection.accepted:
                host = connection.remote[0]
                self._accepted[host] -= 1
                if self._accepted[host] <= 0:
                    del self._accepted[host]

    def existing(self, remote: Address) -> StreamConnection | None:
        connection = self.connections.get(remote)
        return connection if connection is not None and not connection.closed else None

    async def connect(self, remote: Address, server_name: str | None = None) -> StreamConnection:
        """The open connection to ``remote``, or a new one (one attempt at a time per address)."""
        connection = self.existing(remote)
        if connection is not None:
            return connection
        task = self._pending.get(remote)
        if task is None:
            task = asyncio.ensure_future(self._open(remote, server_name))
            self._pending[remote] = task
            task.add_done_callback(lambda _: self._pending.pop(remote, None))
        return await asyncio.shield(task)

    async def _open(self, remote: Address, server_name: str | None) -> StreamConnection:
        loop = asyncio.get_running_loop()
        tls = self.client_ssl if self.protocol == "TLS" else None
        if self.protocol == "TLS" and tls is None:
            raise OSError("no TLS client context configured")
        kwargs = {"ssl": tls, "server_hostname": server_name or remote[0]} if tls else {}
        _, connection = await asyncio.wait_for(
            loop.create_connection(lambda: StreamConnection(self), remote[0], remote[1], **kwargs),
            CONNECT_TIMEOUT_S,
        )
        return connection

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections.values()):
            connection.close()
