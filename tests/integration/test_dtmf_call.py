"""DTMF with real callers: sipp plays RFC 4733 events that reach the agent once each, in order; the
agent's digits are decoded by baresip from the RTP stream it hears."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from testbed import audio, baresip, sipp
from testbed.bridge_proc import AgentProcess, BridgeProcess, start_bridge
from testbed.procs import wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.sipp,
]

DIGITS = "0123456789*#ABCD"


def test_rfc4733_digits_reach_the_agent_in_order(
    logdir: Path, agent: AgentProcess, speech: Path, tmp_path: Path
) -> None:
    bridge: BridgeProcess = start_bridge(logdir, agent.whip_url)
    ulaw = audio.wav_to_ulaw_raw(speech, tmp_path / "speech.ul")
    before = {s["id"] for s in agent.sessions()}
    box: dict = {}
    caller = threading.Thread(
        target=lambda: box.setdefault(
            "result",
            sipp.run_scenario(
                "uac_pcmu_play_dtmf",
                bridge.sip_target,
                hold_ms=400 + 2 * 60 * (len(DIGITS) + 1) + 1500,
                keys={"audio_file": ulaw, "dtmf_digits": f"{DIGITS},60", "caller": "+15550009999"},
                workdir=tmp_path / "sipp",
                timeout=40,
            ),
        )
    )
    caller.start()
    try:
        assert wait_until(lambda: any(c["state"] == "answered" for c in bridge.calls()), 10), bridge.log()
        (call,) = bridge.calls()
        assert wait_until(lambda: bridge.call(call["id"])[1]["digits"] == DIGITS, 15), bridge.call(call["id"])
        session = next(s for s in agent.sessions() if s["id"] not in before)
        assert wait_until(lambda: _session(agent, session["id"])["dtmf_in"] == DIGITS, 5), _session(
            agent, session["id"]
        )
    finally:
        caller.join(40)
        bridge.proc.stop()
    box["result"].assert_success(calls=1)


@pytest.mark.parametrize(("capture", "digit"), [("5", "5"), ("pound", "#")])
def test_a_digit_from_sipps_rfc4733_capture_reaches_the_agent(
    logdir: Path, agent: AgentProcess, speech: Path, tmp_path: Path, capture: str, digit: str
) -> None:
    """sip-tester's own captures (play_pcap_audio: RTP headers as captured, the end packet three times)."""
    pcap = Path(f"/usr/share/sip-tester/dtmf_2833_{capture}.pcap")
    if not pcap.exists():
        pytest.skip(f"{pcap} is not installed")
    bridge: BridgeProcess = start_bridge(logdir, agent.whip_url)
    ulaw = audio.wav_to_ulaw_raw(speech, tmp_path / "speech.ul")
    before = {s["id"] for s in agent.sessions()}
    try:
        result = sipp.run_scenario(
            "uac_pcmu_dtmf_pcap",
            bridge.sip_target,
            hold_ms=1500,
            keys={"audio_file": ulaw, "dtmf_pcap": pcap, "caller": "+15550008888"},
            workdir=tmp_path / "sipp",
            timeout=30,
        )
        result.assert_success(calls=1)
        session = next(s for s in agent.sessions() if s["id"] not in before)
        assert wait_until(lambda: _session(agent, session["id"])["dtmf_in"] == digit, 5), _session(
            agent, session["id"]
        )
    finally:
        bridge.proc.stop()


def _session(agent: AgentProcess, session_id: str) -> dict:
    return next(s for s in agent.sessions() if s["id"] == session_id)


AGENT_DIGITS = "159#*0D"


@pytest.mark.skipif(not baresip.available(), reason="baresip is not installed")
def test_agent_digits_are_heard_by_a_real_caller(
    logdir: Path, agent: AgentProcess, speech: Path, tmp_path: Path
) -> None:
    """The agent dials digits (an IVR menu); baresip, the caller, decodes them from the RTP stream."""
    bridge: BridgeProcess = start_bridge(logdir, agent.whip_url)
    before = {s["id"] for s in agent.sessions()}
    box: dict = {}
    caller = threading.Thread(
        target=lambda: box.setdefault(
            "rec", baresip.run_call(f"sip:agent@{bridge.sip_target}", speech, tmp_path / "baresip", 6.0)
        )
    )
    caller.start()
    try:
        assert wait_until(lambda: any(c["state"] == "answered" for c in bridge.calls()), 10), bridge.log()
        (call,) = bridge.calls()
        session = next(s for s in agent.sessions() if s["id"] not in before)
        agent.send_events(session["id"], {"type": "dtmf", "digits": AGENT_DIGITS})

        def sent() -> str:  # the event reaches the bridge over the data channel a moment later
            return "".join(d["digit"] for d in bridge.call(call["id"])[1]["dtmf"] if d["from"] == "agent")

        assert wait_until(lambda: sent() == AGENT_DIGITS, 5), sent()
    finally:
        caller.join(30)
        bridge.proc.stop()
    rec = box["rec"]
    heard = "".join(baresip.digits_heard(rec))
    assert heard == AGENT_DIGITS, rec.report()
