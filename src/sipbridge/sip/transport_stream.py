"""The asyncio TCP and TLS transports for SIP (RFC 3261 §18.3): framed messages over connections.

One ``StreamTransport`` per protocol listens, keeps a table of open connections by remote address
(so responses and in-dialog requests reuse them) and opens new ones on demand. A connection that
sends something unframeable is closed; the listener and every other connection go on.

Connections we accept are held to an ``AcceptBudget`` (stream_limits.py) when the socket is accepted:
the TLS listener listens in plain TCP and starts the handshake (``loop.start_tls``) only for the
connections within the caps, so a flood of silent TLS connections costs no handshakes and no more
file descriptors than the caps allow. Each connection then has deadlines (handshake, first message,
a partial message, idle) that a byte now and then does not reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import ssl
import struct
from collections.abc import Callable
from typing import Any, cast

from .framing import PONG, FramingError, KeepAlive, StreamFramer
from .stream_limits import AcceptBudget, ConnectionPolicy, RareLog, Seat, StreamDeadlines
from .transport import Address
from .transport_listener import Listener, make_fd_room

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
LISTEN_BACKLOG = 512
# Timers fire up to the clock's resolution early; a deadline this close counts as reached.
_DEADLINE_SLACK_S = 0.001
MessageHandler = Callable[[bytes, "StreamConnection"], None]
# What happened to connections, as logged: "SIP TLS: 12 connection(s) refused (...)".
_REFUSED = "refused"
_TIMED_OUT = "closed at a deadline"
_HANDSHAKE_FAILED = "closed in the TLS handshake"
_UNFRAMEABLE = "closed for unframeable data"


class StreamConnection(asyncio.Protocol):
    """One TCP or TLS connection: a ``Flow`` for the UA core."""

    reliable = True

    def __init__(self, owner: StreamTransport, seat: Seat | None = None) -> None:
        self._owner = owner
        self.accepted = seat is not None  # accepted by our listener, which gave it its seat
        self.transport = owner.protocol
        self.remote: Address = ("", 0)
        self._raw: asyncio.Transport | None = None  # the socket's own transport
        self._stream: asyncio.Transport | None = None  # where messages go: the raw one, or TLS over it
        self._framer = StreamFramer()
        self._seat = seat
        self._deadlines: StreamDeadlines | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._held: list[bytes] = []  # decrypted before start_tls handed us the TLS transport
        self._finished = False
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        raw = cast(asyncio.Transport, transport)
        self._raw = raw
        peer = raw.get_extra_info("peername")
        self.remote = (peer[0], peer[1])
        self._owner.track(self)
        self._deadlines = StreamDeadlines(self._owner.policy, _now(), self.accepted)
        self._watch()
        if self.accepted and self._owner.server_ssl is not None:
            raw.pause_reading()  # the handshake reads first: start_tls takes the socket over
            self._owner.start_handshake(self, raw)
        else:
            self._ready(raw)

    def upgraded(self, tls: asyncio.Transport) -> None:
        """The TLS handshake is done: messages go over ``tls`` from now on."""
        if self.closed:
            tls.abort()
            return
        self._ready(tls)
        held, self._held = self._held, []
        for data in held:
            self.data_received(data)

    def _ready(self, stream: asyncio.Transport) -> None:
        self._stream = stream
        self._owner.attach(self)

    def data_received(self, data: bytes) -> None:
        if self._stream is None:
            self._held.append(data)
            return
        try:
            items = self._framer.feed(data)
        except FramingError as exc:
            self._owner.unframeable(self, exc.reason)
            self._received(exc.framed)
            self.close()
            return
        self._received(items)

    def _received(self, items: list[bytes | KeepAlive]) -> None:
        assert self._deadlines is not None
        pings = sum(1 for item in items if item is KeepAlive.PING)
        self._deadlines.received(_now(), len(items) - pings, pings, self._framer.partial)
        self._watch()  # a message begun brings the deadline closer
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
        self.finish()

    def finish(self) -> None:
        """The connection is gone (closed, lost, or its handshake failed): forget it, once."""
        self.closed = True
        if self._finished:
            return
        self._finished = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._owner.forget(self, self._seat)

    def _watch(self) -> None:
        """Have a timer fire by the deadline; one that fires later than needed is moved up."""
        assert self._deadlines is not None
        expiry = self._deadlines.expiry
        if self._timer is not None:
            if self._timer.when() <= expiry:
                return  # it fires in time and looks again then
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_at(expiry, self._check_deadline)

    def _check_deadline(self) -> None:
        self._timer = None
        if self.closed or self._deadlines is None:
            return
        if self._deadlines.expired(_now() + _DEADLINE_SLACK_S):
            self._owner.deadline_passed(self, self._deadlines.established)
            self.abort()
        else:
            self._watch()

    def send(self, data: bytes) -> None:
        if self._stream is not None and not self._stream.is_closing():
            assert self._deadlines is not None
            self._deadlines.sent(_now())
            self._stream.write(data)

    def close(self) -> None:
        """Close after what is written has gone out."""
        transport = self._stream or self._raw
        if transport is not None:
            transport.close()

    def abort(self) -> None:
        """Close at once: nothing more is sent or read, the socket is freed now."""
        self.closed = True
        transport = self._stream or self._raw
        if transport is not None:
            transport.abort()

    def __repr__(self) -> str:
        return f"StreamConnection({self.transport} {self.remote[0]}:{self.remote[1]})"


def _now() -> float:
    return asyncio.get_running_loop().time()


class StreamTransport:
    """A TCP or TLS listener and the connections it accepted or opened.

    ``budget`` holds the caps (shared by the TCP and TLS transports of one UA) and, in its
    ``policy``, the deadlines. Counters: ``refused`` (over the caps), ``timed_out`` (closed at a
    deadline), ``handshakes`` (TLS handshakes started) and ``handshakes_failed``.
    """

    def __init__(
        self,
        protocol: str,
        on_message: MessageHandler,
        server_ssl: ssl.SSLContext | None = None,
        client_ssl: ssl.SSLContext | None = None,
        budget: AcceptBudget | None = None,
    ) -> None:
        self.protocol = protocol
        self.on_message = on_message
        self.server_ssl = server_ssl
        self.client_ssl = client_ssl
        self.budget = budget or AcceptBudget(ConnectionPolicy())
        self.policy = self.budget.policy
        self.refused = 0
        self.timed_out = 0
        self.handshakes = 0
        self.handshakes_failed = 0
        self.connections: dict[Address, StreamConnection] = {}
        self._open: set[StreamConnection] = set()
        self._listener: Listener | None = None
        self._pending: dict[Address, asyncio.Task[StreamConnection]] = {}
        self._accepting: set[asyncio.Task[Any]] = set()  # connections being set up: transport, TLS
        self._rare = {kind: RareLog() for kind in (_REFUSED, _TIMED_OUT, _HANDSHAKE_FAILED, _UNFRAMEABLE)}

    async def listen(self, host: str, port: int) -> None:
        """Listen in plain TCP, also for TLS: the caps are applied before any handshake starts."""
        make_fd_room(self.policy.max_connections)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = Listener(
            self.take_accepted, socket.create_server((host, port), family=family, backlog=LISTEN_BACKLOG)
        )
        self._listener.start(asyncio.get_running_loop())

    @property
    def listening(self) -> bool:
        return self._listener is not None

    @property
    def local_address(self) -> Address:
        assert self._listener is not None
        host, port = self._listener.sock.getsockname()[:2]
        return host, port

    def take_accepted(self, sock: socket.socket, host: str) -> None:
        """A connection our listener just accepted from ``host``: within the caps it gets its seat and
        a transport; over them it is reset there and then (no transport, task or protocol made)."""
        seat = self.admit(host)
        if seat is None:
            _reset(sock)
            return
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        task = loop.create_task(loop.connect_accepted_socket(lambda: StreamConnection(self, seat), sock))
        self._accepting.add(task)
        task.add_done_callback(functools.partial(self._transport_made, seat, sock))

    def _transport_made(self, seat: Seat, sock: socket.socket, task: asyncio.Task[Any]) -> None:
        self._accepting.discard(task)
        if task.cancelled() or task.exception() is not None:  # the peer was gone already
            self.budget.release(seat)
            sock.close()

    # -- the connections' lives ----------------------------------------------------------------

    def admit(self, host: str) -> Seat | None:
        """A place for a connection just accepted from ``host``; None: it is aborted at once."""
        seat = self.budget.admit(host)
        if seat is None:
            self.refused += 1
            self._note(_REFUSED, f"over the connection caps, latest from {host}")
        return seat

    def track(self, connection: StreamConnection) -> None:
        self._open.add(connection)

    def attach(self, connection: StreamConnection) -> None:
        """Ready for messages (after the TLS handshake, for TLS): reachable by its address."""
        self.connections[connection.remote] = connection

    def forget(self, connection: StreamConnection, seat: Seat | None) -> None:
        self._open.discard(connection)
        if self.connections.get(connection.remote) is connection:
            del self.connections[connection.remote]
        if seat is not None:
            self.budget.release(seat)

    def deadline_passed(self, connection: StreamConnection, established: bool) -> None:
        self.timed_out += 1
        what = "idle" if established else "no complete message in time"
        self._note(_TIMED_OUT, f"latest {connection.remote[0]}:{connection.remote[1]}, {what}")

    def unframeable(self, connection: StreamConnection, reason: str) -> None:
        self._note(_UNFRAMEABLE, f"latest from {connection.remote[0]}:{connection.remote[1]}: {reason}")

    def _note(self, kind: str, detail: str) -> None:
        """One debug line per event; at info, a count now and then (a flood is not a line each)."""
        log.debug("SIP %s connection %s: %s", self.protocol, kind, detail)
        count = self._rare[kind].note(_now())
        if count:
            log.info("SIP %s: %d connection(s) %s (%s)", self.protocol, count, kind, detail)

    # -- TLS -----------------------------------------------------------------------------------

    def start_handshake(self, connection: StreamConnection, raw: asyncio.Transport) -> None:
        self.handshakes += 1
        task = asyncio.ensure_future(self._handshake(connection, raw))
        self._accepting.add(task)
        task.add_done_callback(self._accepting.discard)

    async def _handshake(self, connection: StreamConnection, raw: asyncio.Transport) -> None:
        assert self.server_ssl is not None
        loop = asyncio.get_running_loop()
        tls: asyncio.Transport | None = None
        try:
            tls = await loop.start_tls(
                raw,
                connection,
                self.server_ssl,
                server_side=True,
                ssl_handshake_timeout=self.policy.handshake_timeout,
                # A peer that never answers our close_notify does not hold its place for 30 s.
                ssl_shutdown_timeout=self.policy.handshake_timeout,
            )
        except Exception as exc:  # a failed or timed-out handshake, a peer gone: nobody to tell
            self.handshakes_failed += 1
            self._note(_HANDSHAKE_FAILED, f"latest {connection.remote[0]}: {exc!r:.200}")
        finally:
            if tls is None:  # mid-handshake, the socket's end never reaches the protocol
                connection.finish()
                raw.abort()
        if tls is not None:
            connection.upgraded(tls)

    # -- connections we open -------------------------------------------------------------------

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
            task = asyncio.ensure_future(self._open_to(remote, server_name))
            self._pending[remote] = task
            task.add_done_callback(lambda _: self._pending.pop(remote, None))
        return await asyncio.shield(task)

    async def _open_to(self, remote: Address, server_name: str | None) -> StreamConnection:
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
        if self._listener is not None:
            self._listener.close()
        for task in list(self._accepting):
            task.cancel()
        for connection in list(self._open):
            connection.close()


def _reset(sock: socket.socket) -> None:
    """Close with a reset (SO_LINGER 0): the peer learns at once, and no TIME_WAIT is left here."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
