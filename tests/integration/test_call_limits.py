"""Calls that must end by themselves: the phone stops sending RTP, the call runs too long, or the
agent does not answer while it rings."""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed import sipp
from testbed.bridge_proc import (
    AgentProcess,
    CallWatcher,
    LateWhipServer,
    SilentHttpServer,
    http_json,
    start_bridge,
)
from testbed.procs import wait_until
from testbed.sipp import traced

pytestmark = [
    pytest.mark.integration,
    pytest.mark.sipp,
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


def test_an_agent_that_never_answers_rings_until_the_agent_timeout_then_503(
    logdir: Path, tmp_path: Path
) -> None:
    """The inbound ring timeout: the caller hears ringing while the agent is dialled, and is never
    answered into silence; past agent_timeout it gets 503, and the call says why."""
    hanging_agent = SilentHttpServer()  # takes the WHIP request and never answers it
    bridge = start_bridge(logdir, hanging_agent.url, env={"SIPBRIDGE_AGENT_TIMEOUT": "2"})
    try:
        with CallWatcher(bridge, "sipp") as watcher:
            result = sipp.run_scenario("uac_expect_503", bridge.sip_target, workdir=tmp_path)
        result.assert_success(calls=1)
        received = [m for m in traced(result) if not m.sent]
        ringing = next(m for m in received if m.status == 180)
        refused = next(m for m in received if m.status == 503)
        assert refused.at - ringing.at >= 1.9  # rang until the deadline, not refused at once
        assert "agent unavailable" in (refused.header("Warning") or ""), refused.text
        assert len(watcher.ids) == 1
        call = bridge.call(watcher.ids[0])[1]
        assert call["state"] == "ended" and call["end_reason"] == "agent unavailable", call
        assert http_json("GET", f"{bridge.api}/health")[1]["rtp_ports_in_use"] == 0
    finally:
        bridge.proc.stop()
        hanging_agent.close()


def test_an_agent_answering_after_the_deadline_gets_its_session_deleted(logdir: Path, tmp_path: Path) -> None:
    """The agent answers the WHIP offer a second after agent_timeout: the caller has had its 503, the
    late answer does not bring the call back, and the session the agent made for it is deleted."""
    late_agent = LateWhipServer(delay=3.0)
    bridge = start_bridge(logdir, late_agent.url, env={"SIPBRIDGE_AGENT_TIMEOUT": "2"})
    try:
        with CallWatcher(bridge, "sipp") as watcher:
            result = sipp.run_scenario("uac_expect_503", bridge.sip_target, workdir=tmp_path)
        result.assert_success(calls=1)  # 503, and nothing else: no 200 OK ever
        refused = next(m for m in traced(result) if not m.sent and m.status == 503)
        assert "agent unavailable" in (refused.header("Warning") or ""), refused.text
        deleted = wait_until(lambda: late_agent.deleted == ["/whip/late-1"], 10)
        assert deleted, (late_agent.answered, late_agent.deleted, bridge.log())
        call = bridge.call(watcher.ids[0])[1]
        assert call["state"] == "ended" and call["end_reason"] == "agent unavailable", call
        assert bridge.calls() == [] and http_json("GET", f"{bridge.api}/health")[1]["rtp_ports_in_use"] == 0
    finally:
        bridge.proc.stop()
        late_agent.close()
    assert "came after" in bridge.log(), bridge.log()
