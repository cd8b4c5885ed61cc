"""A provider the bridge registers to (RingCentral-style): kamailio as the real registrar and proxy.

The bridge registers through the outbound proxy with digest credentials, refreshes before expiry,
takes inbound calls that the registrar routes to its binding, shows the state in GET /providers,
and un-registers when it stops.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from testbed import kamailio, sipp
from testbed.bridge_proc import AgentProcess, BridgeProcess, start_bridge
from testbed.procs import wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.sipp,
    pytest.mark.skipif(not kamailio.available(), reason="kamailio is not installed"),
]

USER, PASSWORD, DOMAIN = "bridge", "reg-secret-42", "sipbridge.test"


def _config(tmp_path: Path, port: int, password: str = PASSWORD) -> Path:
    path = tmp_path / "sipbridge.toml"
    path.write_text(
        f"""
[providers.rc]
type = "ringcentral"
address = "{DOMAIN}:5060"
domain = "{DOMAIN}"
outbound_proxy = "127.0.0.1:{port}"
username = "{USER}"
auth_username = "{USER}"
password = "{password}"
register = true
register_expires = 10
"""
    )
    return path


def _provider(bridge: BridgeProcess) -> dict:
    with urllib.request.urlopen(f"{bridge.api}/providers", timeout=5) as response:
        (provider,) = json.loads(response.read())["providers"]
    return provider


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_registers_refreshes_takes_calls_and_unregisters(
    logdir: Path, agent: AgentProcess, algorithm: str, tmp_path: Path
) -> None:
    with kamailio.registrar(USER, PASSWORD, DOMAIN, algorithm=algorithm, workdir=tmp_path / "kam") as reg:
        bridge = start_bridge(logdir, agent.whip_url, "--config", str(_config(tmp_path, reg.port)))
        try:
            assert wait_until(lambda: _provider(bridge)["status"] == "registered", 10), (
                _provider(bridge),
                reg.report() if hasattr(reg, "report") else "",
            )
            (binding,) = reg.locations()
            assert binding.aor == USER and f":{bridge.sip_port}" in binding.contact
            assert PASSWORD not in bridge.log()
            # Refreshed at half the 10 s granted: a second REGISTER with the same Call-ID, higher CSeq.
            first_cseq = binding.cseq
            assert wait_until(lambda: reg.locations() and reg.locations()[0].cseq > first_cseq, 9)
            assert reg.locations()[0].call_id == binding.call_id
            # An inbound call to the AOR reaches the bridge through the registrar's lookup.
            result = sipp.run_scenario(
                "uac_pcmu_call", reg.address, service=USER, hold_ms=500, workdir=tmp_path / "caller"
            )
            result.assert_success(calls=1)
        finally:
            bridge.proc.stop()
        assert bridge.proc.returncode == 0, bridge.log()
        assert wait_until(lambda: reg.locations() == [], 3), reg.locations()  # un-registered


def test_wrong_password_shows_as_failed_with_the_reason(
    logdir: Path, agent: AgentProcess, tmp_path: Path
) -> None:
    with kamailio.registrar(USER, PASSWORD, DOMAIN, workdir=tmp_path / "kam") as reg:
        config = _config(tmp_path, reg.port, password="not-the-password")
        bridge = start_bridge(logdir, agent.whip_url, "--config", str(config))
        try:
            assert wait_until(lambda: _provider(bridge)["status"] == "failed", 10), _provider(bridge)
            provider = _provider(bridge)
            assert "403" in provider["last_error"] or "rejected" in provider["last_error"], provider
            assert reg.locations() == []
        finally:
            bridge.proc.stop()
