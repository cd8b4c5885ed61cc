"""The whole path with real peers: sipp and baresip call the real bridge process on loopback."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed import audio, baresip, sipp
from testbed.bridge_proc import (
    AgentProcess,
    BridgeProcess,
    SilentHttpServer,
    http_json,
    start_bridge,
)
from testbed.procs import free_tcp_port, wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.sipp,
]

SPEECH = "Hello, this is a test call. Seven, four, one, nine. The quick brown fox jumps over the lazy dog."


@pytest.fixture(scope="module")
def bridge(logdir: Path, agent: AgentProcess) -> Iterator[BridgeProcess]:
    bridge = start_bridge(logdir, agent.whip_url)
    yield bridge
    bridge.proc.stop()
    assert bridge.proc.returncode == 0, bridge.log()


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if audio.missing_tools("espeak-ng", "sox"):
        pytest.skip("espeak-ng and sox are needed to make test speech")
    folder = tmp_path_factory.mktemp("speech")
    return audio.make_speech(SPEECH, folder / "speech.wav")


def test_options_is_answered_with_allow(bridge: BridgeProcess, tmp_path: Path) -> None:
    result = sipp.run_scenario("uac_options", bridge.sip_target, workdir=tmp_path)
    result.assert_success(calls=1)
    assert "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS" in result.messages()


def test_sipp_call_with_audio_shows_in_api_and_cleans_up(
    bridge: BridgeProcess, agent: AgentProcess, speech: Path, tmp_path: Path
) -> None:
    ulaw = audio.wav_to_ulaw_raw(speech, tmp_path / "speech.ul")
    sessions_before = {s["id"] for s in agent.sessions()}
    outcome: dict[str, sipp.SippResult] = {}

    def place_call() -> None:
        outcome["result"] = sipp.run_scenario(
            "uac_pcmu_audio",
            bridge.sip_target,
            hold_ms=3000,
            keys={"audio_file": ulaw, "caller": "+15551230001"},
            workdir=tmp_path / "sipp",
        )

    caller = threading.Thread(target=place_call)
    caller.start()
    try:
        assert wait_until(lambda: any(c["state"] == "answered" for c in bridge.calls()), 10), bridge.log()
        (live,) = bridge.calls()
        assert live["from"] == "+15551230001" and live["direction"] == "inbound"
        assert live["codec"] == "PCMU" and live["answered_at"] >= live["started_at"]
        assert wait_until(lambda: bridge.call(live["id"])[1]["rtp"]["packets_in"] > 50, 5)
    finally:
        caller.join(30)
    outcome["result"].assert_success(calls=1)

    assert wait_until(lambda: bridge.calls() == [], 5), bridge.calls()
    status, ended = bridge.call(live["id"])
    assert status == 200 and ended["state"] == "ended" and ended["end_reason"] == "caller hung up"
    assert ended["rtp"]["packets_in"] > 100 and ended["rtp"]["packets_out"] > 100

    new_sessions = [s for s in agent.sessions() if s["id"] not in sessions_before]
    assert len(new_sessions) == 1
    assert new_sessions[0]["resource_id"] == "+15551230001"
    assert wait_until(lambda: _session(agent, new_sessions[0]["id"])["deleted"], 5)
    assert new_sessions[0]["packets_in"] > 0 or _session(agent, new_sessions[0]["id"])["packets_in"] > 0


def _session(agent: AgentProcess, session_id: str) -> dict:
    return next(s for s in agent.sessions() if s["id"] == session_id)


def test_unknown_call_id_is_404_with_json_error(bridge: BridgeProcess) -> None:
    status, body = bridge.call("does-not-exist")
    assert status == 404 and "does-not-exist" in body["error"]


def test_health(bridge: BridgeProcess) -> None:
    status, body = http_json("GET", f"{bridge.api}/health")
    assert status == 200 and body["status"] == "ok"


def test_g729_only_offer_gets_488(bridge: BridgeProcess, tmp_path: Path) -> None:
    result = sipp.run_scenario("uac_g729_only", bridge.sip_target, workdir=tmp_path)
    result.assert_success(calls=1)
    assert "no common codec" in result.messages()


def test_agent_down_gives_503(logdir: Path, tmp_path: Path) -> None:
    dead_agent = f"http://127.0.0.1:{free_tcp_port()}/whip"
    bridge = start_bridge(logdir, dead_agent)
    try:
        result = sipp.run_scenario("uac_expect_503", bridge.sip_target, workdir=tmp_path)
        result.assert_success(calls=1)
        assert "agent unavailable" in result.messages()
        assert bridge.calls() == []
        assert http_json("GET", f"{bridge.api}/health")[1]["rtp_ports_in_use"] == 0
    finally:
        bridge.proc.stop()


def test_cancel_while_agent_is_slow_gives_487(logdir: Path, tmp_path: Path) -> None:
    hanging_agent = SilentHttpServer()
    bridge = start_bridge(logdir, hanging_agent.url)
    try:
        result = sipp.run_scenario("uac_cancel", bridge.sip_target, workdir=tmp_path)
        result.assert_success(calls=1)
        assert wait_until(lambda: bridge.calls() == [], 5)
        ports_in_use = lambda: http_json("GET", f"{bridge.api}/health")[1]["rtp_ports_in_use"]  # noqa: E731
        assert wait_until(lambda: ports_in_use() == 0, 5)
    finally:
        bridge.proc.stop()
        hanging_agent.close()


@pytest.mark.skipif(not baresip.available(), reason="baresip (Debian baresip-core) is not installed")
def test_baresip_hears_its_own_speech_through_the_agent(
    bridge: BridgeProcess, speech: Path, tmp_path: Path
) -> None:
    recording = baresip.run_call(
        f"sip:echo@{bridge.sip_target}", speech, tmp_path, seconds=12, caller="+15551230002"
    )
    match = baresip.compare_recording_windowed(recording)
    print(f"baresip through the bridge and the echo agent: {match}")
    assert_clean_round_trip(match, recording, bridge)


@pytest.mark.skipif(not baresip.available(), reason="baresip (Debian baresip-core) is not installed")
def test_a_caller_sending_30_ms_packets_is_heard_as_well(
    bridge: BridgeProcess, speech: Path, tmp_path: Path
) -> None:
    """ptime 30: the jitter buffer and concealment follow the phone's packet size (we still send 20 ms)."""
    seen: list[int] = []
    watcher = threading.Thread(target=_watch_packet_ms, args=(bridge, seen))
    watcher.start()
    try:
        recording = baresip.run_call(
            f"sip:echo@{bridge.sip_target}",
            speech,
            tmp_path,
            seconds=12,
            account_params=";ptime=30",
            sip_trace=True,
        )
    finally:
        watcher.join(20)
    assert "a=ptime:30" in recording.log_text()
    assert seen and set(seen) == {30}, seen
    match = baresip.compare_recording_windowed(recording)
    print(f"baresip with ptime 30 through the bridge and the echo agent: {match}")
    assert_clean_round_trip(match, recording, bridge)


def assert_clean_round_trip(
    match: audio.WindowedMatch, recording: baresip.CallRecording, bridge: BridgeProcess
) -> None:
    """Every second of the speech came back nearly as sent, at one delay or, at most once, another.

    One move is allowed: this machine stalls now and then, baresip and the bridge together for 15 to
    30 ms (seen in packet captures of both streams), and baresip's own playout then keeps a frame
    more. The single-lag figure halves at such a move; a bridge that slips by itself moves the delay
    again and again (a send tick among the agent's arrivals did: +20 ms, then -20 ms a second later).
    """
    assert recording.sent is not None
    sent, _ = audio.read_wav(recording.sent, 8000)
    every_window = audio.compare_windowed(sent, sent, 8000).windows
    details = f"{match}\n{recording.report()}\n{bridge.log()}"
    assert match.windows == every_window, f"not all of the speech came back\n{details}"
    assert match.median >= 0.95 and match.delay_moves <= 1, details


def _watch_packet_ms(bridge: BridgeProcess, seen: list[int]) -> None:
    """The packet duration the bridge's jitter buffer follows, sampled while the call is up."""
    if not wait_until(lambda: any(c["state"] == "answered" for c in bridge.calls()), 15):
        return
    for _ in range(20):
        calls = bridge.calls()
        if not calls:
            return
        buffer = (calls[0].get("rtp") or {}).get("jitter_buffer") or {}
        if buffer.get("played", 0) > 25:
            seen.append(buffer["packet_ms"])
        time.sleep(0.25)
