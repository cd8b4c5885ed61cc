"""Inbound admission against the real bridge: trunks by address, a PBX by digest, strangers refused or
ignored, a real scanner (SIPVicious) finding nothing, and a source over its rate told once, then
ignored. Other loopback addresses (127.0.0.2, 127.0.0.3) stand for other hosts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from testbed import rawsip, sipp
from testbed.bridge_proc import (
    AgentProcess,
    BridgeProcess,
    CallWatcher,
    http_json,
    start_bridge,
    trunk_config,
)
from testbed.procs import LOOPBACK, in_background, wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.sipp,
]

TRUNK_HOST = "127.0.0.2"
STRANGER = LOOPBACK
PBX_PASSWORD = "pbx-secret-42"
PBX = """
[providers.pbx]
type = "asterisk"
address = "127.0.0.1:5998"
inbound_username = "asterisk"
"""
SVMAP = Path(sys.executable).parent / "sipvicious_svmap"


def _bridge(logdir: Path, agent: AgentProcess, tmp_path: Path, extra: str = "", **env: str) -> BridgeProcess:
    """A trunk at TRUNK_HOST, and ``extra`` providers."""
    path = trunk_config(tmp_path, TRUNK_HOST, extra)
    secrets = {"SIPBRIDGE_PROVIDER_PBX_INBOUND_PASSWORD": PBX_PASSWORD}
    return start_bridge(logdir, agent.whip_url, "--config", str(path), env={**secrets, **env})


@pytest.fixture
def trunk_bridge(logdir: Path, agent: AgentProcess, tmp_path: Path):  # noqa: ANN201
    bridge = _bridge(logdir, agent, tmp_path)
    yield bridge
    bridge.proc.stop()


@pytest.fixture
def pbx_bridge(logdir: Path, agent: AgentProcess, tmp_path: Path):  # noqa: ANN201
    bridge = _bridge(logdir, agent, tmp_path, PBX)
    yield bridge
    bridge.proc.stop()


def _target(bridge: BridgeProcess) -> tuple[str, int]:
    return (LOOPBACK, bridge.sip_port)


def _providers_of_calls(bridge: BridgeProcess, watcher: CallWatcher) -> list[str | None]:
    return [bridge.call(call_id)[1]["provider"] for call_id in watcher.ids]


def test_a_trunk_calls_in_from_its_address_and_a_stranger_gets_403(
    trunk_bridge: BridgeProcess, tmp_path: Path
) -> None:
    bridge = trunk_bridge
    with CallWatcher(bridge, "sipp") as watcher:
        result = sipp.run_scenario(
            "uac_pcmu_call", bridge.sip_target, local_ip=TRUNK_HOST, hold_ms=500, workdir=tmp_path / "trunk"
        )
        result.assert_success(calls=1)
        assert wait_until(lambda: len(watcher.ids) == 1, 3)
    assert _providers_of_calls(bridge, watcher) == ["trunk"]

    with rawsip.RawSipSocket(STRANGER) as stranger:
        stranger.send(rawsip.request("INVITE", _target(bridge), stranger.address), _target(bridge))
        (refusal,) = stranger.wait_for(1)
        assert stranger.quiet_for(0.3) == [refusal]  # no 100 Trying before it
    assert refusal.status == 403 and "matches no trunk" in refusal.headers["warning"]
    assert bridge.calls() == []


def test_a_pbx_is_challenged_and_admitted_by_its_credentials(
    pbx_bridge: BridgeProcess, tmp_path: Path
) -> None:
    """With an inbound_username configured, INVITEs from unlisted sources are challenged (MD5 by
    default: sipp, like many deployed UAs, answers only the first challenge, and only MD5)."""
    bridge = pbx_bridge
    with CallWatcher(bridge, "sipp") as watcher:
        result = sipp.run_scenario(
            "uac_invite_auth",
            bridge.sip_target,
            # sipp's [authentication] credentials; its digest uri is the bare host unless told the
            # Request-URI (which the bridge requires the answer to name, as Asterisk's does)
            extra_args=["-au", "asterisk", "-ap", PBX_PASSWORD, "-auth_uri", f"service@{bridge.sip_target}"],
            hold_ms=500,
            workdir=tmp_path / "pbx",
        )
        result.assert_success(calls=1)
        assert wait_until(lambda: len(watcher.ids) == 1, 3)
    assert _providers_of_calls(bridge, watcher) == ["pbx"]
    assert "SIP/2.0 401 Unauthorized" in result.messages()

    wrong = sipp.run_scenario(
        "uac_invite_auth",
        bridge.sip_target,
        extra_args=["-au", "asterisk", "-ap", "guess", "-auth_uri", f"service@{bridge.sip_target}"],
        workdir=tmp_path / "wrong",
    )
    assert wrong.failed == 1 and "SIP/2.0 403 Forbidden" in wrong.messages(), wrong.report()
    assert "Warning: 399" in wrong.messages() and "authentication failed" in wrong.messages()
    assert PBX_PASSWORD not in bridge.proc.tail(400)


def test_strangers_get_no_answer_at_all_when_so_configured(
    logdir: Path, agent: AgentProcess, tmp_path: Path
) -> None:
    bridge = _bridge(logdir, agent, tmp_path, SIPBRIDGE_UNKNOWN_SOURCE_ACTION="drop")
    try:
        with rawsip.RawSipSocket(STRANGER) as stranger, rawsip.RawSipSocket(TRUNK_HOST) as trunk:
            for method in ("INVITE", "OPTIONS", "REGISTER"):
                stranger.send(rawsip.request(method, _target(bridge), stranger.address), _target(bridge))
            trunk.send(rawsip.request("OPTIONS", _target(bridge), trunk.address), _target(bridge))
            assert [r.status for r in trunk.wait_for(1)] == [200]
            assert stranger.quiet_for(0.5) == []
        assert bridge.calls() == []
    finally:
        bridge.proc.stop()


@pytest.mark.skipif(not SVMAP.exists(), reason="sipvicious is not installed")
def test_sipvicious_svmap_finds_nothing(logdir: Path, agent: AgentProcess, tmp_path: Path) -> None:
    """A real scanner (SIPVicious 0.3.4, User-Agent friendly-scanner) gets no answer; with scanner
    blocking off, the same scan finds the bridge, so the scan itself does reach it."""
    svmap = [str(SVMAP), LOOPBACK, "-p"]
    env = {**os.environ, "HOME": str(tmp_path)}  # it keeps its sessions under ~/.sipvicious

    def scan(bridge: BridgeProcess) -> str:
        done = subprocess.run(
            [*svmap, str(bridge.sip_port)], capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env
        )
        return done.stdout + done.stderr

    for action, finds in (("drop", False), ("allow", True)):
        bridge = start_bridge(logdir, agent.whip_url, env={"SIPBRIDGE_SCANNER_ACTION": action})
        try:
            output = scan(bridge)
        finally:
            bridge.proc.stop()
        assert (f"{LOOPBACK}:{bridge.sip_port}" in output) is finds, output
        assert ("found nothing" in output) is not finds, output


def test_a_source_over_its_rate_gets_one_503_then_silence_and_others_are_served(
    logdir: Path, agent: AgentProcess, tmp_path: Path
) -> None:
    bridge = start_bridge(
        logdir, agent.whip_url, env={"SIPBRIDGE_SIP_RATE_LIMIT": "5", "SIPBRIDGE_SIP_RATE_BURST": "20"}
    )
    try:
        with rawsip.RawSipSocket("127.0.0.3") as flooder, rawsip.RawSipSocket(LOOPBACK) as caller:
            for _ in range(300):
                flooder.send(rawsip.request("OPTIONS", _target(bridge), flooder.address), _target(bridge))
            replies = flooder.quiet_for(1.0)
            caller.send(rawsip.request("OPTIONS", _target(bridge), caller.address), _target(bridge))
            assert [r.status for r in caller.wait_for(1)] == [200]
        statuses = [r.status for r in replies]
        # the burst and what the rate refilled while the 300 went out, then one 503, then nothing
        assert 20 <= statuses.count(200) <= 30 and statuses.count(503) == 1, statuses
        assert len(statuses) == statuses.count(200) + 1
        assert next(r for r in replies if r.status == 503).headers["retry-after"] == "5"
        status, health = http_json("GET", f"{bridge.api}/health")
        assert status == 200
    finally:
        bridge.proc.stop()


def test_one_stranger_cannot_take_more_than_its_share_of_calls(
    logdir: Path, agent: AgentProcess, tmp_path: Path
) -> None:
    """Open admission (no provider restricts inbound calls), max_calls_per_source = 1."""
    bridge = start_bridge(logdir, agent.whip_url, env={"SIPBRIDGE_MAX_CALLS_PER_SOURCE": "1"})
    try:
        with CallWatcher(bridge, "sipp") as watcher:
            holder = in_background(
                lambda: sipp.run_scenario(
                    "uac_pcmu_call", bridge.sip_target, hold_ms=3000, workdir=tmp_path / "first"
                )
            )
            assert wait_until(lambda: len(watcher.ids) == 1, 5)
        with rawsip.RawSipSocket(LOOPBACK) as same, rawsip.RawSipSocket("127.0.0.3") as other:
            same.send(rawsip.request("INVITE", _target(bridge), same.address), _target(bridge))
            other.send(rawsip.request("INVITE", _target(bridge), other.address), _target(bridge))
            refused = [r for r in same.wait_for(2) if r.status >= 200]
            assert [r.status for r in other.wait_for(1)][:1] == [100]  # another host is served
        assert refused[0].status == 503 and "are up already" in refused[0].headers["warning"]
        assert "retry-after" in refused[0].headers
        holder.join(20)
        holder.result().assert_success(calls=1)  # the first call was not disturbed
    finally:
        bridge.proc.stop()
