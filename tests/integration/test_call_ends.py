"""How calls end: the agent goes away, the caller never ACKs, and several calls at once stay apart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed import audio, sipp
from testbed.bridge_proc import AgentProcess, BridgeProcess, http_json, start_bridge
from testbed.procs import in_background, wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.sipp,
]


@pytest.fixture(scope="module")
def bridge(logdir: Path, agent: AgentProcess) -> Iterator[BridgeProcess]:
    # A short T1 makes "64·T1 without ACK" 3.2 s instead of 32 s.
    bridge = start_bridge(logdir, agent.whip_url, env={"SIPBRIDGE_SIP_T1_MS": "50"})
    yield bridge
    bridge.proc.stop()


def test_agent_hanging_up_sends_bye_to_the_caller(
    bridge: BridgeProcess, agent: AgentProcess, tmp_path: Path
) -> None:
    before = {s["id"] for s in agent.sessions()}
    thread = in_background(
        lambda: sipp.run_scenario("uac_wait_for_bye", bridge.sip_target, workdir=tmp_path, timeout=30)
    )
    try:
        assert wait_until(lambda: any(c["state"] == "answered" for c in bridge.calls()), 10), bridge.log()
        (call,) = bridge.calls()
        (session,) = [s for s in agent.sessions() if s["id"] not in before]
        status, _ = http_json("DELETE", f"http://127.0.0.1:{agent.port}/whip/{session['id']}")
        assert status in (200, 204)
    finally:
        thread.join(30)
    thread.result().assert_success(calls=1)
    _, ended = bridge.call(call["id"])
    assert ended["state"] == "ended" and ended["end_reason"].startswith("agent ended the call"), ended


def test_no_ack_ends_the_call_with_bye_after_64_t1(bridge: BridgeProcess, tmp_path: Path) -> None:
    thread = in_background(
        lambda: sipp.run_scenario("uac_no_ack", bridge.sip_target, workdir=tmp_path, timeout=30)
    )
    try:
        assert wait_until(lambda: len(bridge.calls()) == 1, 10), bridge.log()
        (call,) = bridge.calls()
    finally:
        thread.join(30)
    result = thread.result()
    result.assert_success(calls=1)
    ok_count = result.messages().count("SIP/2.0 200 OK\r\n") + result.messages().count("SIP/2.0 200 OK\n")
    assert ok_count >= 5, "the 200 OK was not retransmitted while no ACK came"
    _, ended = bridge.call(call["id"])
    assert ended["end_reason"] == "no ACK for 200 OK", ended


def test_concurrent_calls_are_kept_apart_by_local_port(
    bridge: BridgeProcess, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    if audio.missing_tools("espeak-ng", "sox"):
        pytest.skip("espeak-ng and sox are needed to make test speech")
    speech = audio.make_speech("One two three four five six.", tmp_path / "s.wav")
    ulaw = audio.wav_to_ulaw_raw(speech, tmp_path / "s.ul")
    thread = in_background(
        lambda: sipp.run_scenario(
            "uac_pcmu_audio",
            bridge.sip_target,
            calls=3,
            limit=3,
            rate=20,
            hold_ms=3000,
            keys={"audio_file": ulaw},
            workdir=tmp_path / "sipp",
        )
    )
    try:
        assert wait_until(lambda: sum(c["state"] == "answered" for c in bridge.calls()) == 3, 10), (
            bridge.log()
        )
        assert wait_until(lambda: all(c["rtp"]["packets_in"] > 20 for c in bridge.calls()), 5)
        calls = bridge.calls()
        # sipp gives every call the same remote media port: only our local ports tell them apart.
        assert len({c["rtp"]["local_port"] for c in calls}) == 3
        assert len({c["rtp"]["remote"] for c in calls}) == 1
        assert all(c["agent"]["packets_received"] > 0 for c in calls)
    finally:
        thread.join(30)
    thread.result().assert_success(calls=3)
    assert wait_until(lambda: bridge.calls() == [], 5)


def test_serve_without_agent_url_uses_the_embedded_echo_agent(logdir: Path, tmp_path: Path) -> None:
    bridge = start_bridge(logdir, None)
    try:
        # The API answers a moment before the "ready" line is logged.
        assert wait_until(lambda: "embedded echo agent" in bridge.proc.stderr(), 5), bridge.log()
        thread = in_background(
            lambda: sipp.run_scenario("uac_pcmu_call", bridge.sip_target, hold_ms=1500, workdir=tmp_path)
        )
        assert wait_until(lambda: any(c["state"] == "answered" for c in bridge.calls()), 10), bridge.log()
        thread.join(30)
        thread.result().assert_success(calls=1)
    finally:
        bridge.proc.stop()
    assert bridge.proc.returncode == 0, bridge.log()


def test_calls_beyond_the_limit_get_503_with_retry_after(
    logdir: Path, agent: AgentProcess, tmp_path: Path
) -> None:
    bridge = start_bridge(logdir, agent.whip_url, env={"SIPBRIDGE_MAX_CALLS": "1"})
    try:
        thread = in_background(
            lambda: sipp.run_scenario(
                "uac_pcmu_call", bridge.sip_target, hold_ms=3000, workdir=tmp_path / "first"
            )
        )
        assert wait_until(lambda: any(c["state"] == "answered" for c in bridge.calls()), 10), bridge.log()
        health = http_json("GET", f"{bridge.api}/health")[1]
        assert health["load"] == 1.0 and health["max_calls"] == 1
        refused = sipp.run_scenario("uac_expect_503", bridge.sip_target, workdir=tmp_path / "second")
        refused.assert_success(calls=1)
        assert "Retry-After: 5" in refused.messages() and "call limit of 1 reached" in refused.messages()
        thread.join(30)
        thread.result().assert_success(calls=1)
        assert http_json("GET", f"{bridge.api}/health")[1]["calls_rejected_busy"] == 1
    finally:
        bridge.proc.stop()
