"""PJSIP (pjsua2) as the phone: an independent SIP and media stack, the one inside many desk phones
and SBCs, calling the bridge with speech from a WAV file (testbed/pjsua_phone.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed import audio, pjsua_phone
from testbed.bridge_proc import start_bridge

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
