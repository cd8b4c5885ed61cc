"""PJSIP (pjsua2) as the phone: an independent SIP and media stack, the one inside many desk phones
and SBCs, calling the bridge with speech from a WAV file (testbed/pjsua_phone.py)."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from testbed import audio, pjsua_phone
from testbed.bridge_proc import CallWatcher, start_bridge

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not pjsua_phone.available(), reason="needs pjsua2 (pip: pjsua2-python)"),
    pytest.mark.skipif(bool(audio.missing_tools("espeak-ng", "sox")), reason="needs espeak-ng and sox"),
]

TEXT = "The quick brown fox jumps over the lazy dog while the bridge carries every word back."


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return audio.make_speech(TEXT, tmp_path_factory.mktemp("speech") / "speech.wav")


def test_a_pjsip_call_in_pcmu_echoes_the_callers_speech(tmp_path: Path, speech: Path) -> None:
    bridge = start_bridge(tmp_path, None)  # the embedded echo agent
    try:
        call = pjsua_phone.run_call(f"sip:agent@{bridge.sip_target}", speech, tmp_path / "call", seconds=5)
    finally:
        bridge.proc.stop()
    report = call.report
    assert call.answered and report["status"] == 200, (report, call.log.read_text()[-3000:])
    assert (report["codec"], report["clock_rate"], report["proto"]) == ("PCMU", 8000, "RTP/AVP")
    assert report["rtcp"]["rx_packets"] > 200 and report["rtcp"]["rx_loss"] == 0, report
    # second by second: PJSIP's adaptive jitter buffer moves its delay by whole frames in a call
    match = audio.compare_files_windowed(speech, call.recorded)
    assert match.median >= 0.9, match


def test_a_pjsip_call_in_g722_is_answered_wideband_and_echoes_the_speech(tmp_path: Path) -> None:
    """PJSIP offering G.722 only (16 kHz speech in, the echo agent's reply back through the bridge)."""
    speech16 = audio.make_speech(TEXT, tmp_path / "speech16.wav", rate=16000)
    bridge = start_bridge(tmp_path, None)
    try:
        call = pjsua_phone.run_call(
            f"sip:agent@{bridge.sip_target}", speech16, tmp_path / "call", seconds=5,
            codec="G722/16000/1", clock_rate=16000,
        )  # fmt: skip
    finally:
        bridge.proc.stop()
    report = call.report
    assert call.answered and report["status"] == 200, (report, call.log.read_text()[-3000:])
    assert (report["codec"], report["clock_rate"]) == ("G722", 16000), report
    assert report["rtcp"]["rx_packets"] > 200 and report["rtcp"]["rx_loss"] == 0, report
    match = audio.compare_files_windowed(speech16, call.recorded)
    assert match.median >= 0.9, match


def test_pjsip_with_mandatory_srtp_is_answered_in_rtp_savp_and_hears_itself(
    tmp_path: Path, speech: Path
) -> None:
    """PJSIP's own SRTP (SDES) against the bridge's: RTP/SAVP both ways, the suite shown, no key."""
    bridge = start_bridge(tmp_path, None)
    try:
        with CallWatcher(bridge, "pjsua") as watcher:
            call = pjsua_phone.run_call(
                f"sip:agent@{bridge.sip_target}", speech, tmp_path / "call", seconds=5, srtp="mandatory"
            )
        status, view = bridge.call(watcher.ids[0])
    finally:
        bridge.proc.stop()
    assert call.answered and call.report["proto"] == "RTP/SAVP", (call.report, call.log.read_text()[-3000:])
    assert status == 200 and view["srtp"]["suite"].startswith(("AES_CM_128", "AEAD_AES")), view
    assert "inline" not in json.dumps(view) and view["rtp"]["srtp_auth_failures"] == 0, view
    match = audio.compare_files_windowed(speech, call.recorded)
    assert match.median >= 0.9, match


def test_a_bridge_that_requires_srtp_refuses_pjsips_plain_rtp_and_takes_its_srtp(
    tmp_path: Path, speech: Path
) -> None:
    bridge = start_bridge(tmp_path, None, env={"SIPBRIDGE_SRTP": "required"})
    try:
        plain = pjsua_phone.run_call(f"sip:agent@{bridge.sip_target}", speech, tmp_path / "plain", seconds=2)
        secure = pjsua_phone.run_call(
            f"sip:agent@{bridge.sip_target}", speech, tmp_path / "srtp", seconds=2, srtp="mandatory"
        )
    finally:
        bridge.proc.stop()
    assert not plain.answered and plain.report["status"] == 488, plain.report
    assert secure.answered and secure.report["proto"] == "RTP/SAVP", secure.report


@pytest.mark.parametrize(
    ("srtp", "mux"),
    [("off", False), ("mandatory", False), ("off", True), ("mandatory", True)],
    ids=["plain", "srtp", "plain-mux", "srtp-mux"],
)
def test_rtcp_reports_cross_both_ways_with_pjsip(tmp_path: Path, speech: Path, srtp: str, mux: bool) -> None:
    """Our SR/RR reach PJSIP (its stream statistics count them and measure the round trip) and its
    reports reach us (the call's view: the round trip and the loss it sees), SRTCP with SRTP. With
    a=rtcp-mux offered (RFC 5761) both go on the RTP ports: PJSIP sends its RTCP to our RTP port."""
    bridge = start_bridge(tmp_path, None)
    try:
        with CallWatcher(bridge, "pjsua") as watcher:
            call = pjsua_phone.run_call(
                f"sip:agent@{bridge.sip_target}",
                speech,
                tmp_path / "call",
                seconds=12,
                srtp=srtp,
                rtcp_mux=mux,
            )
        status, view = bridge.call(watcher.ids[0])
        with urllib.request.urlopen(f"{bridge.api}/metrics", timeout=5) as response:
            scraped = response.read().decode()
    finally:
        bridge.proc.stop()
    rtcp = call.report["rtcp"]
    assert call.answered and rtcp["reports_received"] >= 1, (call.report, call.log.read_text()[-2000:])
    assert rtcp["rtt_ms"] is not None and rtcp["rtt_ms"] < 1000, rtcp
    ours = view["rtp"]["rtcp"]
    assert status == 200 and ours["reports_sent"] >= 1 and ours["reports_received"] >= 1, ours
    assert ours["invalid"] == 0 and ours["phone_fraction_lost"] == 0, ours
    assert ours["round_trip_ms"] is not None and 0 <= ours["round_trip_ms"] < 1000, ours
    assert "sipbridge_call_phone_round_trip_seconds_count 1.0" in scraped
    assert "sipbridge_call_phone_reported_loss_ratio_count 1.0" in scraped
    # where PJSIP's RTCP came: to our RTP port itself with mux (read there), to port + 1 without
    assert ours["mux"] is mux and view["rtp"]["invalid_in"] == 0, view["rtp"]
    assert ours["on_rtp_port"] >= ours["reports_received"] if mux else ours["on_rtp_port"] == 0, ours
