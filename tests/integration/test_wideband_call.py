"""Wideband phones through the real bridge: baresip calling with G.722 only and with Opus only is
answered in that codec and hears its own speech back from the echo agent (Opus relayed both ways,
never transcoded); the band above 4 kHz that the phone sent reaches the agent, measured there against
the same speech sent as PCMU."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed import baresip
from testbed.bridge_proc import AgentProcess, BridgeProcess, start_bridge, watch_answered_call

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not baresip.available(), reason="baresip (Debian baresip-core) is not installed"),
]


@pytest.fixture(scope="module")
def bridge(logdir: Path, agent: AgentProcess) -> Iterator[BridgeProcess]:
    bridge = start_bridge(logdir, agent.whip_url)  # codecs unset: the widest offered is answered
    yield bridge
    bridge.proc.stop()
    assert bridge.proc.returncode == 0, bridge.log()


BAND: dict[str, float] = {}  # codec -> the agent's high_band_db of its call


@pytest.mark.parametrize(
    ("codec", "rtpmap"),
    [("PCMU", "a=rtpmap:0 PCMU/8000"), ("G722", "a=rtpmap:9 G722/8000"), ("OPUS", "opus/48000/2")],
    ids=["pcmu", "g722", "opus"],
)
def test_baresip_with_one_codec_hears_its_own_speech(
    bridge: BridgeProcess,
    agent: AgentProcess,
    wideband_speech: Path,
    tmp_path: Path,
    codec: str,
    rtpmap: str,
) -> None:
    views: list[dict[str, Any]] = []
    watcher = threading.Thread(target=watch_answered_call, args=(bridge, views))
    watcher.start()
    try:
        recording = baresip.run_call(
            f"sip:echo@{bridge.sip_target}", wideband_speech, tmp_path, seconds=8, codec=codec, sip_trace=True
        )
    finally:
        watcher.join(20)
    answer = recording.log_text().split("SIP/2.0 200 OK", 1)[-1]
    assert rtpmap in answer, recording.report()
    match = baresip.compare_recording_windowed(recording)
    print(f"baresip in {codec} through the bridge and the echo agent: {match}")
    assert match.median >= 0.9, f"{match}\n{recording.report()}\n{bridge.log()}"
    assert views, "the call never showed as answered in GET /calls"
    view = views[-1]
    assert view["codec"] == codec
    jitter = view["rtp"]["jitter_buffer"]
    assert view["rtp"]["packets_in"] > 100 and view["rtp"]["packets_out"] > 100
    assert jitter["packet_ms"] == 20 and jitter["played"] > 100, jitter
    BAND[codec] = agent.sessions()[-1]["high_band_db"]


def test_the_band_above_4_khz_reaches_the_agent_from_wideband_phones_only() -> None:
    """The agent's 4-7 kHz energy against its 0.3-3.4 kHz energy, per codec the phone sent in."""
    if set(BAND) != {"PCMU", "G722", "OPUS"}:
        pytest.skip(f"needs the three calls above (have {sorted(BAND)})")
    print(f"4-7 kHz against 0.3-3.4 kHz at the agent, dB: {BAND}")
    assert BAND["PCMU"] < -35  # G.711: the telephone band only
    assert BAND["G722"] > BAND["PCMU"] + 20 and BAND["OPUS"] > BAND["PCMU"] + 20
