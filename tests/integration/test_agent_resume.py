"""The agent link fails mid-call: the bridge redials with the resume token and the call goes on, or
hangs up with a clear reason when the agent does not come back."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from testbed import audio, sipp
from testbed.bridge_proc import AgentProcess, BridgeProcess, start_agent, start_bridge
from testbed.procs import in_background, wait_until
from testbed.sipp import traced

pytestmark = [
    pytest.mark.integration,
    pytest.mark.sipp,
]

FAST_FAILURE = {"SIPBRIDGE_AGENT_SILENCE_TIMEOUT": "1.5"}


def _answered_call(bridge: BridgeProcess) -> dict[str, Any]:
    assert wait_until(lambda: any(c["state"] == "answered" for c in bridge.calls()), 10), bridge.log()
    (call,) = bridge.calls()
    return call


def _view(bridge: BridgeProcess, call_id: str) -> dict[str, Any]:
    status, view = bridge.call(call_id)
    assert status == 200, view
    return view


def test_a_dropped_agent_link_is_resumed_and_the_call_goes_on(
    logdir: Path, agent: AgentProcess, speech: Path, tmp_path: Path
) -> None:
    ulaw = audio.wav_to_ulaw_raw(speech, tmp_path / "speech.ul")
    bridge = start_bridge(logdir, agent.whip_url, env=FAST_FAILURE)
    before = {s["id"] for s in agent.sessions()}
    thread = in_background(
        lambda: sipp.run_scenario(
            "uac_pcmu_audio", bridge.sip_target, hold_ms=12000, keys={"audio_file": ulaw}, workdir=tmp_path
        )
    )
    try:
        call = _answered_call(bridge)
        (first,) = [s for s in agent.sessions() if s["id"] not in before]
        assert wait_until(lambda: agent_session(agent, first["id"])["packets_in"] > 20, 5)
        agent.send_events(
            first["id"],
            {"type": "transcript", "text": "I need to chan", "final": False},
            {"type": "transcript", "text": "I need to change my booking", "final": True},
            {"type": "response", "text": "Sure, what is the booking number?"},
        )
        assert wait_until(lambda: len(_view(bridge, call["id"])["conversation"]) == 2, 5)
        out_before = _view(bridge, call["id"])["rtp"]["packets_out"]
        agent.drop(first["id"])

        assert wait_until(lambda: _view(bridge, call["id"])["agent"]["reconnects"] == 1, 10), bridge.log()
        view = _view(bridge, call["id"])
        assert view["state"] == "answered", view
        assert view["agent"]["resume_status"] == "resumed", view["agent"]
        links = [e for e in view["agent"]["events"] if e.get("type") == "link"]
        assert [e["state"] for e in links] == ["failed", "resumed"], links
        assert view["conversation"] == [  # what was said before the failure is kept
            {"from": "caller", "text": "I need to change my booking"},
            {"from": "agent", "text": "Sure, what is the booking number?"},
        ]
        # the phone leg never stopped: comfort silence went out while the agent was away
        assert view["rtp"]["packets_out"] - out_before >= 50, view["rtp"]

        second = next(s for s in agent.sessions() if s["id"] not in before | {first["id"]})
        assert second["conversation"] == first["conversation"] and second["resume_status"] == "resumed"
        # the caller's audio reaches the agent on the new link, and the agent's comes back
        assert wait_until(lambda: agent_session(agent, second["id"])["packets_in"] > 50, 5), second
        received = view["agent"]["packets_received"]
        assert wait_until(lambda: _view(bridge, call["id"])["agent"]["packets_received"] > received + 50, 5)
    finally:
        thread.join(40)
        bridge.proc.stop()
    thread.result().assert_success(calls=1)
    assert "agent link failed" in bridge.log() and "resumed" in bridge.log()


def agent_session(agent: AgentProcess, session_id: str) -> dict[str, Any]:
    return next(s for s in agent.sessions() if s["id"] == session_id)


def test_an_agent_that_does_not_come_back_ends_the_call_with_the_reason(logdir: Path, tmp_path: Path) -> None:
    doomed = start_agent(logdir)
    bridge = start_bridge(logdir, doomed.whip_url, env={**FAST_FAILURE, "SIPBRIDGE_AGENT_RESUME_WINDOW": "3"})
    thread = in_background(
        lambda: sipp.run_scenario("uac_wait_for_bye", bridge.sip_target, workdir=tmp_path, timeout=30)
    )
    try:
        call = _answered_call(bridge)
        killed_at = doomed.kill()
        thread.join(30)
        view = _view(bridge, call["id"])
    finally:
        thread.join(30)
        bridge.proc.stop()
        doomed.proc.stop()
    result = thread.result()
    result.assert_success(calls=1)
    assert view["state"] == "ended", view
    assert view["end_reason"].startswith("agent link failed (nothing from the agent for"), view["end_reason"]
    assert "was not recovered within 3 s: agent unreachable: connection refused" in view["end_reason"]
    bye = next(m for m in traced(result) if not m.sent and m.is_request and m.method == "BYE")
    assert "was not recovered within 3 s" in (bye.header("Reason") or ""), bye.text
    waited = bye.at - killed_at
    print(f"\nagent SIGKILLed -> BYE at the caller {waited:.2f} s (silence timeout 1.5 s, resume window 3 s)")


def test_an_agent_killed_and_restarted_on_its_port_takes_the_call_back(
    logdir: Path, speech: Path, tmp_path: Path
) -> None:
    """The agent process dies mid-call and its supervisor starts it again: the new process never issued
    the call's resume token (resume_status expired), so the call goes on with a new conversation."""
    ulaw = audio.wav_to_ulaw_raw(speech, tmp_path / "speech.ul")
    first = start_agent(logdir)
    bridge = start_bridge(logdir, first.whip_url, env={**FAST_FAILURE, "SIPBRIDGE_AGENT_RESUME_WINDOW": "15"})
    thread = in_background(
        lambda: sipp.run_scenario(
            "uac_pcmu_audio", bridge.sip_target, hold_ms=14000, keys={"audio_file": ulaw}, workdir=tmp_path
        )
    )
    second: AgentProcess | None = None
    try:
        call = _answered_call(bridge)
        killed_at = first.kill()
        second = start_agent(logdir, port=first.port)
        restarted_at = time.time()
        assert wait_until(lambda: _view(bridge, call["id"])["agent"]["reconnects"] == 1, 15), bridge.log()
        view = _view(bridge, call["id"])
        received = view["agent"]["packets_received"]
        assert wait_until(lambda: _view(bridge, call["id"])["agent"]["packets_received"] > received, 5)
        heard_at = time.time()
        assert view["state"] == "answered" and view["agent"]["resume_status"] == "expired", view["agent"]
        links = [e for e in view["agent"]["events"] if e.get("type") == "link"]
        assert [e["state"] for e in links] == ["failed", "reconnected"], links
        (session,) = second.sessions()  # one redial reached it, with the dead process's token
        assert session["resume_status"] == "expired"
        assert wait_until(lambda: agent_session(second, session["id"])["packets_in"] > 50, 5)
        assert wait_until(lambda: _view(bridge, call["id"])["agent"]["packets_received"] > received + 50, 5)
        thread.join(30)
        final = _view(bridge, call["id"])
    finally:
        thread.join(30)
        bridge.proc.stop()
        first.proc.stop()
        if second is not None:
            second.proc.stop()
    thread.result().assert_success(calls=1)
    assert final["end_reason"] == "caller hung up", final["end_reason"]
    failed_at, back_at = links[0]["at"], links[1]["at"]
    print(
        f"\nagent SIGKILLed, restarted on its port {restarted_at - killed_at:.2f} s later; link failed "
        f"{failed_at - killed_at:.2f} s after the kill, reconnected {back_at - killed_at:.2f} s, agent audio "
        f"at the bridge again by {heard_at - killed_at:.2f} s"
    )
