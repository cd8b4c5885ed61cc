"""Attacks on the bridge's media, connections and REST API, against the real process (issue 13):
RTP sprayed over the port range to take a call's audio, a flood of silent TLS connections, an
unauthenticated 10 MB body, and toll fraud through every way of dialling abroad. The bridge runs
with asyncio's slow-callback detection: a callback of 100 ms or more fails the test.
"""

from __future__ import annotations

import os
import resource
import socket
import ssl
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from testbed import attacker, rawsip
from testbed.attacker import Dialog, RtpPhone, RtpSprayer
from testbed.hostile_bridge import (
    API_KEY,
    MAX_CALL_DURATION,
    MAX_OUTBOUND,
    STRANGER,
    TRUNK,
    HostileBridge,
)
from testbed.procs import wait_until

pytestmark = [pytest.mark.integration]

TLS_FLOOD = 1500


@pytest.fixture(autouse=True)
def no_slow_callbacks(hostile: HostileBridge) -> Iterator[None]:
    since = hostile.log_size()
    yield
    assert hostile.slow_callbacks(since) == []


def test_an_rtp_sprayer_gets_none_of_a_calls_audio(hostile: HostileBridge) -> None:
    """A stranger sprays in-sequence RTP at every port of the range before the phone's first packet:
    it is never latched onto, gets nothing back, is not played to the agent; the phone gets it all."""
    bridge = hostile.bridge
    sprayer = RtpSprayer(STRANGER, "127.0.0.1", bridge.rtp_low, bridge.rtp_high).start()
    phone = RtpPhone(TRUNK)
    try:
        with rawsip.RawSipSocket(TRUNK) as trunk:
            dialog = Dialog(hostile.sip)
            answer = attacker.place_call(trunk, dialog, phone.address)
            view = wait_until(lambda: hostile.call_for(dialog.call_id), 5)
            assert view
            time.sleep(1.0)  # the spray has been at the call's port a while before the phone speaks
            phone.start((hostile.sip[0], attacker.answer_port(answer)))
            time.sleep(2.0)
            state = hostile.call(view["id"])
            hostile.api("DELETE", f"/calls/{view['id']}")
    finally:
        sprayer.stop()
        phone.stop()
    rtp = state["rtp"]
    assert sprayer.sent > 1000 and sprayer.received == 0
    assert rtp["foreign_in"] > 50, rtp
    assert rtp["remote"] == f"{phone.address[0]}:{phone.address[1]}"
    assert phone.received >= 100 and set(phone.sources) == {(hostile.sip[0], attacker.answer_port(answer))}
    # what the call took in is the phone's 50 packets a second (2 s of them), not the spray's on top
    assert rtp["packets_in"] <= 2.5 * 50


def _bridge_fds(hostile: HostileBridge) -> int:
    return len(os.listdir(f"/proc/{hostile.bridge.proc.pid}/fd"))


def _tcp_options(hostile: HostileBridge, source: str) -> int | None:
    """One OPTIONS over a new TCP connection from ``source``: the status of the answer."""
    with socket.create_connection(hostile.sip, timeout=3, source_address=(source, 0)) as connection:
        connection.sendall(Dialog(hostile.sip).request("OPTIONS", connection.getsockname()))
        data = connection.recv(65535)
    reply = rawsip.parse_reply(data, time.monotonic())
    return reply.status if reply else None


def test_silent_tls_connections_are_held_to_the_cap_and_a_trunk_still_gets_in(hostile: HostileBridge) -> None:
    """1,500 connections to the TLS port from one address that never start the handshake: at most
    the per-source cap of them is held (checked at accept, before any handshake); the trunk's TCP
    and its calls are served; a stranger elsewhere still completes a TLS handshake."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, TLS_FLOOD + 1024)), hard))
    baseline = _bridge_fds(hostile)
    flood: list[socket.socket] = []
    try:
        for _ in range(TLS_FLOOD):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((STRANGER, 0))
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", hostile.tls_port))
            flood.append(sock)
        time.sleep(1.0)
        held = wait_until(lambda: _bridge_fds(hostile) <= baseline + 40, 5)
        assert held, f"bridge fds {baseline} -> {_bridge_fds(hostile)}"
        assert _tcp_options(hostile, TRUNK) == 200
        with rawsip.RawSipSocket(TRUNK) as trunk:
            dialog = Dialog(hostile.sip)
            attacker.place_call(trunk, dialog, (TRUNK, 4000))
            view = wait_until(lambda: hostile.call_for(dialog.call_id), 5)
            assert view and view["state"] == "answered"
            hostile.api("DELETE", f"/calls/{view['id']}")
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        raw = socket.create_connection(
            ("127.0.0.1", hostile.tls_port), timeout=5, source_address=("127.0.0.6", 0)
        )
        with context.wrap_socket(raw) as tls:
            assert tls.version() is not None
    finally:
        for sock in flood:
            sock.close()


def _post_raw(hostile: HostileBridge, head: str, body_size: int) -> tuple[int, int, float]:
    """POST /calls with a body of ``body_size`` bytes sent as fast as the bridge takes it: the status,
    the bytes sent before the answer came, and how long it took."""
    started = time.monotonic()
    sent = 0
    with socket.create_connection(("127.0.0.1", hostile.bridge.api_port), timeout=10) as connection:
        connection.sendall(head.encode())
        connection.setblocking(False)
        chunk = b"x" * 65536
        answer = b""
        while not answer.endswith(b"\r\n\r\n") and b"\r\n\r\n" not in answer:
            if sent < body_size:
                try:
                    sent += connection.send(chunk[: body_size - sent])
                except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                    time.sleep(0.001)
            try:
                answer += connection.recv(65536)
            except BlockingIOError:
                time.sleep(0.001)
            if time.monotonic() - started > 10:
                break
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0
    return status, sent, time.monotonic() - started


def test_a_10_mb_body_without_a_key_gets_401_at_once(hostile: HostileBridge) -> None:
    size = 10 * 1024 * 1024
    head = (
        "POST /calls HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {size}\r\n\r\n"
    )
    status, sent, took = _post_raw(hostile, head, size)
    assert status == 401 and sent < size and took < 2.0, (status, sent, took)
    keyed = head.replace("Host:", f"Authorization: Bearer {API_KEY}\r\nHost:")
    status, sent, took = _post_raw(hostile, keyed, size)
    assert status == 413 and sent < size, (status, sent, took)


FRAUD = [
    ("00441234567890", "international"),
    ("011441234567890", "international"),
    ("0019005551234", "premium"),
    ("00882123456", "premium"),
    ("+18765551234", "international"),  # Jamaica: +1, but not the US
]


@pytest.mark.parametrize(("number", "why"), FRAUD)
def test_every_way_of_dialling_abroad_is_refused_with_its_reason(
    hostile: HostileBridge, number: str, why: str
) -> None:
    status, body = hostile.api("POST", "/calls", {"provider": "tw", "to": number})
    assert status == 403 and why in body["error"], body


def test_concurrent_dials_place_at_most_the_cap_and_durations_stay_within_the_limit(
    hostile: HostileBridge,
) -> None:
    """The trunk's address is a host name (resolved while the POST waits): 30 POSTs at once place at
    most max_outbound_calls; a max_duration beyond max_call_duration is refused."""
    status, body = hostile.api(
        "POST", "/calls", {"provider": "tw", "to": "+14155550123", "max_duration": MAX_CALL_DURATION + 1}
    )
    assert status == 422 and "max_call_duration" in body["error"], body

    def dial(_: int) -> tuple[int, dict]:
        return hostile.api("POST", "/calls", {"provider": "tw", "to": "+14155550123"})

    with ThreadPoolExecutor(30) as pool:
        results = list(pool.map(dial, range(30)))
    try:
        statuses = Counter(status for status, _ in results)
        assert statuses[201] == MAX_OUTBOUND and statuses[429] == 30 - MAX_OUTBOUND, statuses
        assert len([c for c in hostile.calls() if c["direction"] == "outbound"]) == MAX_OUTBOUND
    finally:
        for status, body in results:
            if status == 201:
                hostile.api("DELETE", f"/calls/{body['id']}")
