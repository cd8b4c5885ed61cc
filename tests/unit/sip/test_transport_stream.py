"""The UA core over real TCP and TLS sockets on loopback: framing, connection reuse, bad streams."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sipbridge.sip.message import SipResponse, parse_message
from sipbridge.sip.stream_limits import ConnectionPolicy
from sipbridge.sip.transaction import Timers
from sipbridge.sip.useragent import UserAgent
from testbed.tls_certs import make_certs


def options(transport: str, port: int, branch: str = "z9hG4bKt1", padding: int = 0) -> bytes:
    return (
        "OPTIONS sip:bridge@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} 127.0.0.1:{port};branch={branch}\r\n"
        "Max-Forwards: 70\r\nTo: <sip:bridge@127.0.0.1>\r\nFrom: <sip:a@127.0.0.1>;tag=f1\r\n"
        f"Call-ID: {branch}@127.0.0.1\r\nCSeq: 1 OPTIONS\r\n"
        + (f"X-Padding: {'x' * padding}\r\n" if padding else "")
        + "Content-Length: 0\r\n\r\n"
    ).encode()


async def read_response(reader: asyncio.StreamReader) -> SipResponse:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
    message = parse_message(head)
    assert isinstance(message, SipResponse)
    return message


@pytest.fixture
async def ua() -> AsyncIterator[UserAgent]:
    agent = UserAgent(timers=Timers(t1=0.01, t2=0.04, t4=0.05))
    await agent.start("127.0.0.1", 0)
    yield agent
    agent.close()


async def test_options_over_tcp_in_pieces_is_answered_on_the_same_connection(ua):
    reader, writer = await asyncio.open_connection("127.0.0.1", ua.transport.listen_port("TCP"))
    port = writer.get_extra_info("sockname")[1]
    data = b"\r\n" + options("TCP", port)
    for i in range(0, len(data), 7):
        writer.write(data[i : i + 7])
        await writer.drain()
    response = await read_response(reader)
    assert response.status == 200 and response.via[0].transport == "TCP"
    writer.write(b"\r\n\r\n")  # RFC 5626 ping
    assert await asyncio.wait_for(reader.readexactly(2), 2) == b"\r\n"
    writer.close()


async def test_a_bad_stream_is_closed_and_others_go_on(ua):
    good_reader, good = await asyncio.open_connection("127.0.0.1", ua.transport.listen_port("TCP"))
    bad_reader, bad = await asyncio.open_connection("127.0.0.1", ua.transport.listen_port("TCP"))
    bad.write(options("TCP", 1).replace(b"Content-Length: 0\r\n", b""))  # mandatory on streams
    assert await asyncio.wait_for(bad_reader.read(), 2) == b""  # closed by the server
    good.write(options("TCP", good.get_extra_info("sockname")[1], branch="z9hG4bKt2"))
    assert (await read_response(good_reader)).status == 200
    good.close()


async def test_two_messages_in_one_segment_get_two_answers(ua):
    reader, writer = await asyncio.open_connection("127.0.0.1", ua.transport.listen_port("TCP"))
    writer.write(options("TCP", 1, branch="z9hG4bKa") + options("TCP", 1, branch="z9hG4bKb"))
    first, second = await read_response(reader), await read_response(reader)
    assert {first.via[0].branch, second.via[0].branch} == {"z9hG4bKa", "z9hG4bKb"}
    writer.close()


async def test_options_over_tls_with_a_generated_certificate(tmp_path: Path):
    certs = make_certs(tmp_path)
    agent = UserAgent(tls_server=certs.server_context(), tls_client=certs.client_context())
    await agent.start("127.0.0.1", 0, tls_port=0)
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1",
            agent.transport.listen_port("TLS"),
            ssl=certs.client_context(),
            server_hostname="127.0.0.1",
        )
        writer.write(options("TLS", writer.get_extra_info("sockname")[1]))
        response = await read_response(reader)
        assert response.status == 200 and response.via[0].transport == "TLS"
        writer.close()
        # Plain TCP on the SIP port stays plain when TLS is configured too.
        reader, writer = await asyncio.open_connection("127.0.0.1", agent.transport.listen_port("TCP"))
        writer.write(options("TCP", writer.get_extra_info("sockname")[1], branch="z9hG4bKplain"))
        assert (await read_response(reader)).status == 200
        writer.close()
    finally:
        agent.close()


async def test_our_tls_client_verifies_the_server_certificate(tmp_path: Path):
    """A server whose certificate our CA did not sign is refused: no request goes out."""
    ours, theirs = make_certs(tmp_path / "ours"), make_certs(tmp_path / "theirs")
    seen: list[bytes] = []

    async def server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.read(100))
        writer.close()

    foreign = await asyncio.start_server(server, "127.0.0.1", 0, ssl=theirs.server_context())
    agent = UserAgent(tls_server=ours.server_context(), tls_client=ours.client_context())
    await agent.start("127.0.0.1", 0, tls_port=0)
    try:
        request = parse_message(options("TLS", 1))
        request.headers.remove("Via")
        port = foreign.sockets[0].getsockname()[1]
        assert await agent.send_request(request, ("127.0.0.1", port), "TLS") is None
        assert not any(seen)
    finally:
        agent.close()
        foreign.close()


async def test_request_too_big_for_udp_goes_over_tcp(ua):
    """§18.1.1: within 200 bytes of the MTU, a request we send switches to TCP."""
    received: list[bytes] = []

    async def server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        received.append(head)
        request = parse_message(head)
        ok = (
            f"SIP/2.0 200 OK\r\nVia: {request.headers.get('Via')}\r\n"
            f"To: {request.headers.get('To')};tag=x\r\n"
            f"From: {request.headers.get('From')}\r\nCall-ID: {request.call_id}\r\n"
            f"CSeq: {request.headers.get('CSeq')}\r\nContent-Length: 0\r\n\r\n"
        )
        writer.write(ok.encode())
        await writer.drain()

    peer = await asyncio.start_server(server, "127.0.0.1", 0)
    try:
        request = parse_message(options("UDP", 1, padding=1400))
        request.headers.remove("Via")
        port = peer.sockets[0].getsockname()[1]
        response = await asyncio.wait_for(ua.send_request(request, ("127.0.0.1", port)), 3)
        assert response is not None and response.status == 200
        assert b"SIP/2.0/TCP" in received[0]
    finally:
        peer.close()


async def test_connections_from_one_host_are_capped_and_the_rest_go_on():
    ua = UserAgent(timers=Timers(t1=0.01, t2=0.04, t4=0.05))
    await ua.start("127.0.0.1", 0, connections=ConnectionPolicy(max_per_source=3))
    try:
        port = ua.transport.listen_port("TCP")
        opened = []
        for _ in range(5):  # established by the kernel before the bridge accepts (and judges) each
            sock = socket.create_connection(("127.0.0.1", port))
            opened.append(await asyncio.open_connection(sock=sock))
        over = [await _reset_or_closed(reader) for reader, _ in opened[3:]]
        assert over == [True, True] and ua.transport.connections_refused == 2  # closed at once, nothing said
        reader, writer = opened[0]
        writer.write(options("TCP", writer.get_extra_info("sockname")[1]))
        assert (await read_response(reader)).status == 200  # those within the cap are served
        for _, writer in opened:
            writer.close()
        await asyncio.sleep(0.05)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)  # room again once they close
        writer.write(options("TCP", writer.get_extra_info("sockname")[1], branch="z9hG4bKt9"))
        assert (await read_response(reader)).status == 200
        writer.close()
    finally:
        ua.close()


async def _reset_or_closed(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(1), 2) == b""
    except ConnectionResetError:
        return True
