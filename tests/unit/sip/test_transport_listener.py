"""Connection caps and deadlines over real sockets on loopback: silent TLS, slow loris, trunks' places.

Small caps and timeouts so each test runs in about a second.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sipbridge.sip.message import SipResponse, parse_message
from sipbridge.sip.stream_limits import AcceptBudget, ConnectionPolicy
from sipbridge.sip.transaction import Timers
from sipbridge.sip.transport_stream import StreamConnection, StreamTransport
from sipbridge.sip.useragent import UserAgent
from testbed.tls_certs import TlsCerts, make_certs

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def options(port: int, branch: str = "z9hG4bKc1") -> bytes:
    return (
        "OPTIONS sip:bridge@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/TCP 127.0.0.1:{port};branch={branch}\r\n"
        "Max-Forwards: 70\r\nTo: <sip:bridge@127.0.0.1>\r\nFrom: <sip:a@127.0.0.1>;tag=f1\r\n"
        f"Call-ID: {branch}@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ).encode()


async def connect(port: int, local: str = "127.0.0.1") -> Streams:
    """A connection established before the listener looks at it (the kernel completes the TCP
    handshake): one the listener refuses is reset once accepted, not failed at connect."""
    sock = socket.create_connection(("127.0.0.1", port), source_address=(local, 0))
    return await asyncio.open_connection(sock=sock)


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    """The server closed (or reset) the connection within ``seconds``; False if it is still open."""
    try:
        return await asyncio.wait_for(reader.read(1), seconds) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


async def answered(streams: Streams, branch: str) -> bool:
    reader, writer = streams
    writer.write(options(writer.get_extra_info("sockname")[1], branch))
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
    message = parse_message(head)
    return isinstance(message, SipResponse) and message.status == 200


def close_all(opened: list[Streams]) -> None:
    for _, writer in opened:
        writer.close()


class Listener:
    """A bare ``StreamTransport`` on loopback that records the messages it frames."""

    def __init__(self, policy: ConnectionPolicy, certs: TlsCerts | None = None) -> None:
        self.messages: list[bytes] = []
        server_ssl = certs.server_context() if certs is not None else None
        self.stream = StreamTransport(
            "TLS" if certs else "TCP", self.on_message, server_ssl, budget=AcceptBudget(policy)
        )

    def on_message(self, data: bytes, connection: StreamConnection) -> None:
        self.messages.append(data)

    async def open(self, count: int, local: str = "127.0.0.1") -> list[Streams]:
        """``count`` connections, each established before the listener looks at it (the kernel
        completes the handshake): one the listener refuses is reset once it has been accepted."""
        port = self.stream.local_address[1]
        return [await connect(port, local) for _ in range(count)]


@pytest.fixture
async def certs(tmp_path: Path) -> TlsCerts:
    return make_certs(tmp_path)


@pytest.fixture
async def listeners() -> AsyncIterator[list[Listener]]:
    made: list[Listener] = []
    yield made
    for listener in made:
        listener.stream.close()


async def listening(
    made: list[Listener], policy: ConnectionPolicy, certs: TlsCerts | None = None
) -> Listener:
    listener = Listener(policy, certs)
    await listener.stream.listen("127.0.0.1", 0)
    made.append(listener)
    return listener


async def test_silent_tls_connections_over_the_cap_are_closed_before_any_handshake(listeners, certs, caplog):
    caplog.set_level(logging.INFO, logger="sipbridge")
    policy = ConnectionPolicy(max_per_source=5, handshake_timeout=5.0)
    listener = await listening(listeners, policy, certs)
    fds = len(os.listdir("/proc/self/fd"))
    opened = await listener.open(40)  # raw TCP to the TLS port: no ClientHello, nothing at all
    closed = [await closed_within(reader, 0.2) for reader, _ in opened[5:]]
    assert all(closed) and listener.stream.refused == 35
    assert not any([await closed_within(reader, 0.1) for reader, _ in opened[:5]])  # held, waiting
    assert listener.stream.handshakes == 5  # none for those refused
    assert listener.stream.budget.open == 5
    # Our side holds 5 sockets for the 40 (the other 40 are the clients' own, in this process).
    assert len(os.listdir("/proc/self/fd")) - fds - len(opened) <= 5
    refusals = [r for r in caplog.records if r.levelno >= logging.INFO and "refused" in r.getMessage()]
    assert len(refusals) == 1  # a flood is not a line per connection
    close_all(opened)


async def test_a_silent_tls_connection_is_closed_at_the_handshake_deadline(listeners, certs):
    listener = await listening(listeners, ConnectionPolicy(handshake_timeout=0.3), certs)
    (reader, writer), *_ = await listener.open(1)
    started = time.monotonic()
    assert await closed_within(reader, 3)
    assert 0.25 < time.monotonic() - started < 2
    await asyncio.sleep(0.05)
    assert listener.stream.handshakes_failed == 1 and listener.stream.budget.open == 0
    writer.close()


async def test_a_tls_connection_that_never_sends_a_message_is_closed(listeners, certs):
    policy = ConnectionPolicy(first_message_timeout=0.4)
    listener = await listening(listeners, policy, certs)
    port = listener.stream.local_address[1]
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=certs.client_context(), server_hostname="127.0.0.1"
    )  # the handshake completes, then nothing
    assert await closed_within(reader, 3)
    await asyncio.sleep(0.05)
    assert listener.stream.timed_out == 1 and listener.stream.budget.open == 0
    writer.close()


async def test_a_tls_message_is_framed_after_the_handshake(listeners, certs):
    listener = await listening(listeners, ConnectionPolicy(first_message_timeout=2), certs)
    port = listener.stream.local_address[1]
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=certs.client_context(), server_hostname="127.0.0.1"
    )
    writer.write(options(1) + b"\r\n\r\n")
    assert await asyncio.wait_for(reader.readexactly(2), 2) == b"\r\n"  # the ping's pong, over TLS
    assert listener.messages == [options(1)]
    writer.close()


async def test_a_silent_tcp_connection_is_closed_at_the_first_message_deadline(listeners):
    listener = await listening(listeners, ConnectionPolicy(first_message_timeout=0.3))
    (reader, writer), *_ = await listener.open(1)
    started = time.monotonic()
    assert await closed_within(reader, 3)
    assert 0.25 < time.monotonic() - started < 2
    await asyncio.sleep(0.05)
    assert listener.stream.timed_out == 1 and listener.stream.budget.open == 0
    writer.close()


async def trickle(writer: asyncio.StreamWriter, data: bytes, every: float) -> None:
    for i in range(len(data)):
        if writer.is_closing():
            return
        writer.write(data[i : i + 1])
        await asyncio.sleep(every)


async def test_a_slow_loris_is_closed_at_its_deadline_whatever_it_trickles(listeners):
    listener = await listening(listeners, ConnectionPolicy(first_message_timeout=0.5))
    (reader, writer), *_ = await listener.open(1)
    started = time.monotonic()
    sender = asyncio.ensure_future(trickle(writer, options(1), 0.1))  # a byte every 0.1 s
    assert await closed_within(reader, 3)
    assert time.monotonic() - started < 1.5 and listener.messages == []
    sender.cancel()
    writer.close()


async def test_once_established_a_message_begun_must_still_arrive_whole_in_time(listeners):
    policy = ConnectionPolicy(first_message_timeout=0.5, idle_timeout=30)
    listener = await listening(listeners, policy)
    (reader, writer), *_ = await listener.open(1)
    writer.write(options(1))
    await asyncio.sleep(0.6)  # past the first-message deadline: established, so quiet is fine
    assert not await closed_within(reader, 0.1)
    sender = asyncio.ensure_future(trickle(writer, options(2), 0.1))
    assert await closed_within(reader, 3)
    assert listener.messages == [options(1)]
    sender.cancel()
    writer.close()


async def test_keep_alives_count_only_once_a_message_came(listeners):
    policy = ConnectionPolicy(first_message_timeout=0.4, idle_timeout=0.4)
    listener = await listening(listeners, policy)
    (quiet_reader, quiet), (reader, writer) = await listener.open(2)
    writer.write(options(1))
    for _ in range(6):  # 1.2 s of pings every 0.2 s, on both
        quiet.write(b"\r\n\r\n")
        writer.write(b"\r\n\r\n")
        await asyncio.sleep(0.2)
    assert await closed_within(quiet_reader, 0.1)  # pings from a stranger that never spoke SIP
    assert await asyncio.wait_for(reader.read(100), 1)  # the other got its pongs and is open
    assert not writer.is_closing() and listener.stream.timed_out == 1
    close_all([(quiet_reader, quiet), (reader, writer)])


@pytest.fixture
async def guarded_ua() -> AsyncIterator[UserAgent]:
    """A UA whose 6 connection places keep 2 for the trunk at 127.0.0.2."""
    policy = ConnectionPolicy(
        max_connections=6, max_per_source=10, trunk_reserve=2, trusted=lambda ip: ip == "127.0.0.2"
    )
    agent = UserAgent(timers=Timers(t1=0.01, t2=0.04, t4=0.05))
    await agent.start("127.0.0.1", 0, connections=policy)
    yield agent
    agent.close()


async def test_a_trunk_still_gets_a_connection_when_strangers_filled_theirs(guarded_ua):
    port = guarded_ua.transport.listen_port("TCP")
    strangers = [await connect(port) for _ in range(8)]
    refused = [await closed_within(reader, 0.2) for reader, _ in strangers]
    assert refused == [False] * 4 + [True] * 4 and guarded_ua.transport.connections_refused == 4
    trunk = [await connect(port, "127.0.0.2") for _ in range(3)]
    assert await answered(trunk[0], "z9hG4bKtrunk1") and await answered(trunk[1], "z9hG4bKtrunk2")
    assert await closed_within(trunk[2][0], 0.5)  # the total holds for trunks too
    assert await answered(strangers[0], "z9hG4bKstranger")
    close_all(strangers + trunk)


async def test_connections_we_open_are_never_refused(listeners):
    listener = await listening(listeners, ConnectionPolicy(max_connections=2, trunk_reserve=0))
    filled = await listener.open(3)
    assert await closed_within(filled[2][0], 0.5)
    peer_messages: list[bytes] = []

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer_messages.append(await reader.readuntil(b"\r\n\r\n"))

    server = await asyncio.start_server(peer, "127.0.0.1", 0)
    try:
        connection = await listener.stream.connect(server.sockets[0].getsockname()[:2])
        connection.send(options(1))
        await asyncio.sleep(0.1)
        assert peer_messages == [options(1)] and listener.stream.refused == 1
    finally:
        server.close()
        close_all(filled)
