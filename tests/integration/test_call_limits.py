"""Calls that must end by themselves: the phone stops sending RTP, or the call runs too long."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.integration.bridge_proc import AgentProcess, start_bridge
from tests.peers import sipp
from tests.peers.procs import wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not sipp.available(), reason="sipp (Debian sip-tester) is not installed"),
]


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({"SIPBRIDGE_RTP_TIMEOUT": "2"}, "no RTP from the phone for 2 s"),
        ({"SIPBRIDGE_MAX_CALL_DURATION": "2", "SIPBRIDGE_RTP_TIMEOUT": "0"}, "maximum duration reached"),
    ],
)
def test_call_is_ended_with_bye_and_reason(
    logdir: Path, agent: AgentProcess, env: dict[str, str], reason: str, tmp_path: Path
) -> None:
    """The caller (sipp, sending no RTP at all) waits for the bridge's BYE, which says why."""
    bridge = start_bridge(logdir, agent.whip_url, env=env)
    try:
        result = sipp.run_scenario("uac_wait_for_bye", bridge.sip_target, workdir=tmp_path, timeout=30)
        result.assert_success(calls=1)
        assert f'text="{reason}"' in result.messages(), result.messages()[-1500:]
        assert wait_until(lambda: bridge.calls() == [], 5)
    finally:
        bridge.proc.stop()
    assert reason in bridge.log()
