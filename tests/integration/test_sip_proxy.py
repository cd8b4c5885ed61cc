"""The bridge behind kamailio, a real record-routing stateful proxy, over UDP and TLS.

A carrier's edge proxy (or a Kamailio in front of a PBX) record-routes: the bridge must copy the
Record-Route into its answers and send its own in-dialog requests (BYE) through the route set, and
over TLS present its certificate, verify the proxy's and reuse the connection.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed import audio, kamailio, sipp, tls_certs
from testbed.bridge_proc import AgentProcess, BridgeProcess, http_json, start_bridge
from testbed.procs import LOOPBACK, free_tcp_port, in_background, wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.sipp,
    pytest.mark.skipif(not kamailio.available(tls=True), reason="kamailio with TLS modules is not installed"),
]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tls_certs.TlsCerts:
    return tls_certs.make_certs(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def bridge(logdir: Path, agent: AgentProcess, certs: tls_certs.TlsCerts) -> Iterator[BridgeProcess]:
    tls_port = free_tcp_port()
    env = {
        "SIPBRIDGE_TLS_CERT_FILE": str(certs.chain),
        "SIPBRIDGE_TLS_KEY_FILE": str(certs.key),
        "SIPBRIDGE_TLS_CA_FILE": str(certs.ca_cert),
        "SIPBRIDGE_SIP_TLS_PORT": str(tls_port),
    }
    bridge = start_bridge(logdir, agent.whip_url, env=env)
    bridge.tls_port = tls_port  # type: ignore[attr-defined]
    yield bridge
    bridge.proc.stop()


def _proxy(bridge: BridgeProcess, transport: str, certs: tls_certs.TlsCerts, workdir: Path):  # noqa: ANN202
    port = bridge.tls_port if transport == "tls" else bridge.sip_port  # type: ignore[attr-defined]
    tls = {"tls": (certs.cert, certs.key), "ca_file": certs.ca_cert} if transport == "tls" else {}
    return kamailio.proxy((LOOPBACK, port), transport=transport, workdir=workdir, **tls)


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_call_with_audio_through_the_proxy(
    bridge: BridgeProcess, certs: tls_certs.TlsCerts, speech: Path, transport: str, tmp_path: Path
) -> None:
    """sipp -> kamailio -> bridge: set up, audio both ways, the caller's BYE routed through the proxy."""
    ulaw = audio.wav_to_ulaw_raw(speech, tmp_path / "speech.ul")
    with _proxy(bridge, transport, certs, tmp_path / "kam") as kam:
        caller = in_background(
            lambda: sipp.run_scenario(
                "uac_pcmu_audio",
                kam.address,
                hold_ms=2000,
                keys={"audio_file": ulaw, "caller": "+15550000001"},
                workdir=tmp_path / "sipp",
            )
        )
        try:
            assert wait_until(lambda: any(c["state"] == "answered" for c in bridge.calls()), 10), bridge.log()
            (call,) = bridge.calls()
            kam.wait_for_event("loose", "BYE", timeout=15)
        finally:
            caller.join(30)
    caller.result().assert_success(calls=1)
    sent = kam.events("sent", "INVITE")
    assert sent and sent[0].peer.startswith(f"{transport}:"), kam.report()
    assert [e.method for e in kam.events("loose")] == ["ACK", "BYE"], kam.report()
    assert wait_until(lambda: bridge.call(call["id"])[1]["state"] == "ended", 5)
    _, ended = bridge.call(call["id"])
    assert ended["end_reason"] == "caller hung up", ended
    assert ended["rtp"]["packets_in"] > 50 and ended["rtp"]["packets_out"] > 50, ended


@pytest.mark.parametrize("transport", ["udp", "tls"])
def test_bridge_bye_follows_the_route_set(
    bridge: BridgeProcess, agent: AgentProcess, certs: tls_certs.TlsCerts, transport: str, tmp_path: Path
) -> None:
    """The agent hangs up: the bridge's BYE goes to the proxy (Route headers), which relays it."""
    before = {s["id"] for s in agent.sessions()}
    with _proxy(bridge, transport, certs, tmp_path / "kam") as kam:
        caller = in_background(
            lambda: sipp.run_scenario("uac_wait_for_bye", kam.address, workdir=tmp_path / "sipp", timeout=30)
        )
        try:
            assert wait_until(lambda: _new_sessions(agent, before), 10), bridge.log()
            assert wait_until(lambda: any(c["state"] == "answered" for c in bridge.calls()), 10)
            (session,) = _new_sessions(agent, before)
            status, _ = http_json("DELETE", f"http://127.0.0.1:{agent.port}/whip/{session['id']}")
            assert status in (200, 204)
            bye = kam.wait_for_event("loose", "BYE")
        finally:
            caller.join(30)
    caller.result().assert_success(calls=1)
    assert bye is not None, kam.report()
    assert "Reason: SIP;cause=200" in caller.result().messages()


def _new_sessions(agent: AgentProcess, before: set[str]) -> list[dict]:
    return [s for s in agent.sessions() if s["id"] not in before]
