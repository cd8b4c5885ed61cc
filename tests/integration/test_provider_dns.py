"""A provider named by a domain: the bridge finds its servers by NAPTR and SRV (RFC 3263) from a tiny
DNS server on 127.0.0.1, and moves on to the next server on a 503, when nobody listens there, or
when one never responds."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed import sipp
from testbed.bridge_proc import AgentProcess, BridgeProcess, start_bridge
from testbed.dns_server import DnsServer
from testbed.procs import free_port_block, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.sipp]

KEY = "test-key-0123456789abcdef"
NAMES = ("first", "refuses", "backup", "closed", "tcp", "silent", "backup2")  # the far ends, a port each


@pytest.fixture(scope="module")
def ports() -> dict[str, int]:
    base = free_port_block(len(NAMES))
    return {name: base + index for index, name in enumerate(NAMES)}


def zone(ports: dict[str, int]) -> dict[str, list[tuple[str, str]]]:
    return {
        # trunk.test: NAPTR → SRV → the UAS at "first"
        "trunk.test.": [("NAPTR", '10 50 "s" "SIP+D2U" "" _sip._udp.trunk.test.')],
        "_sip._udp.trunk.test.": [("SRV", f"10 10 {ports['first']} uas.trunk.test.")],
        # busy.test: no NAPTR; the priority-10 server answers 503, the priority-20 one takes the call
        "busy.test.": [("A", "127.0.0.1")],
        "_sip._udp.busy.test.": [
            ("SRV", f"10 10 {ports['refuses']} uas.trunk.test."),
            ("SRV", f"20 10 {ports['backup']} uas.trunk.test."),
        ],
        # closed.test over TCP: nobody listens on the priority-10 port
        "closed.test.": [("NAPTR", '10 50 "s" "SIP+D2T" "" _sip._tcp.closed.test.')],
        "_sip._tcp.closed.test.": [
            ("SRV", f"10 10 {ports['closed']} uas.trunk.test."),
            ("SRV", f"20 10 {ports['tcp']} uas.trunk.test."),
        ],
        # silent.test over UDP: the priority-10 server takes the INVITE and never responds
        "_sip._udp.silent.test.": [
            ("SRV", f"10 10 {ports['silent']} uas.trunk.test."),
            ("SRV", f"20 10 {ports['backup2']} uas.trunk.test."),
        ],
        "uas.trunk.test.": [("A", "127.0.0.1")],
    }


@pytest.fixture(scope="module")
def dns(ports: dict[str, int]) -> Iterator[DnsServer]:
    with DnsServer(zone(ports)) as server:
        yield server


@pytest.fixture(scope="module")
def bridge(
    logdir: Path, agent: AgentProcess, dns: DnsServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BridgeProcess]:
    config = tmp_path_factory.mktemp("config") / "sipbridge.toml"
    providers = "".join(
        f'[providers.{name}]\ntype = "generic"\naddress = "{domain}"\n{more}'
        "destinations = ['^1[0-9]{3}$']\nring_timeout = 20\n\n"
        for name, domain, more in [
            ("trunk", "trunk.test", ""),
            ("busy", "busy.test", 'transport = "udp"\n'),
            ("closed", "closed.test", ""),
            ("silent", "silent.test", 'transport = "udp"\nfailover_timeout = 1.5\n'),
        ]
    )
    config.write_text(f'dns_servers = ["{dns.address}"]\n\n[api]\nkeys = ["{KEY}"]\n\n{providers}')
    bridge = start_bridge(logdir, agent.whip_url, "--config", str(config))
    yield bridge
    bridge.proc.stop()


def api(bridge: BridgeProcess, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    return bridge.request(method, path, body, key=KEY)


def call_through(bridge: BridgeProcess, provider: str) -> dict:
    """Place a call to 1001 through ``provider`` and wait for its end."""
    status, call = api(bridge, "POST", "/calls", {"provider": provider, "to": "1001"})
    assert status == 201, call
    view = lambda: api(bridge, "GET", f"/calls/{call['id']}")[1]  # noqa: E731
    assert wait_until(lambda: view()["state"] == "ended", 15), view()
    return view()


def answer(port: int, workdir: Path, transport: str | None = None):  # noqa: ANN201
    """A sipp UAS that answers one call and hangs up after a second."""
    return sipp.sipp_uas(
        "uas_answer_then_bye", port=port, hold_ms=1000, calls=1, workdir=workdir, transport=transport
    )


def test_the_call_reaches_the_server_the_srv_record_names(
    bridge: BridgeProcess, dns: DnsServer, ports: dict[str, int], tmp_path: Path
) -> None:
    with answer(ports["first"], tmp_path) as far:
        ended = call_through(bridge, "trunk")
        far.result().assert_success(calls=1)
    assert ended["answered_at"] and ended["end_reason"] == "far end hung up", ended
    assert ("trunk.test.", "NAPTR") in dns.queries and ("_sip._udp.trunk.test.", "SRV") in dns.queries


def test_a_503_from_the_first_server_sends_the_call_to_the_next(
    bridge: BridgeProcess, ports: dict[str, int], tmp_path: Path
) -> None:
    keys = {"status": "503", "reason": "Service Unavailable"}
    refuses = ports["refuses"]
    with (
        sipp.sipp_uas("uas_reject", port=refuses, keys=keys, calls=1, workdir=tmp_path / "a") as busy,
        answer(ports["backup"], tmp_path / "b") as backup,
    ):
        ended = call_through(bridge, "busy")
        busy.result().assert_success(calls=1)
        backup.result().assert_success(calls=1)
    assert ended["answered_at"] and ended["end_reason"] == "far end hung up", ended


def test_nobody_listening_at_the_first_server_sends_the_call_to_the_next(
    bridge: BridgeProcess, ports: dict[str, int], tmp_path: Path
) -> None:
    with answer(ports["tcp"], tmp_path, transport="tcp") as far:
        ended = call_through(bridge, "closed")
        far.result().assert_success(calls=1)
    assert ended["answered_at"] and ended["end_reason"] == "far end hung up", ended


def test_a_server_that_never_responds_over_udp_is_given_up_for_the_next(
    bridge: BridgeProcess, ports: dict[str, int], tmp_path: Path
) -> None:
    """Over UDP nothing says a server is gone: after failover_timeout without even a 100 Trying the
    next one is tried (Timer B's 32 s would outlast the ring timeout)."""
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", ports["silent"]))
    silent.settimeout(0.2)
    try:
        with answer(ports["backup2"], tmp_path) as far:
            started = time.monotonic()
            ended = call_through(bridge, "silent")
            far.result().assert_success(calls=1)
        heard = []
        with contextlib.suppress(TimeoutError):
            while True:
                heard.append(silent.recv(65535))
    finally:
        silent.close()
    assert ended["answered_at"] and ended["end_reason"] == "far end hung up", ended
    invites = [m for m in heard if m.startswith(b"INVITE ")]
    assert invites and len(invites) <= 4, heard  # T1 retransmissions, then nothing more: given up
    assert not any(m.startswith(b"CANCEL ") for m in heard)  # nothing to CANCEL without a 1xx
    print(f"silent server given up: answered by the next {time.monotonic() - started:.1f} s after dialling")
