"""An INVITE flood from one hostile host while a call is up: the call goes on untouched, the flood
is refused at the configured rate and then ignored, and no flood INVITE becomes a call.

The figures (20 calls, 5,000 INVITEs/s for 10 s, frame loss of the running calls) come from the
benchmark, `python -m bench.load.flood`; this test runs a short flood and checks the behaviour.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from testbed import audio, sipp
from testbed.bridge_proc import (
    AgentProcess,
    BridgeProcess,
    CallWatcher,
    http_json,
    start_bridge,
    trunk_config,
)
from testbed.procs import in_background, wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.sipp,
]

FLOOD_RATE = 5000
FLOOD_S = 3.0


def test_a_call_goes_on_untouched_through_an_invite_flood(
    logdir: Path, agent: AgentProcess, speech: Path, tmp_path: Path
) -> None:
    ulaw = audio.wav_to_ulaw_raw(speech, tmp_path / "speech.ul")
    config = trunk_config(tmp_path)  # the call comes from a trunk; the flood from a stranger
    bridge = start_bridge(logdir, agent.whip_url, "--config", str(config))
    try:
        with CallWatcher(bridge, "sipp") as watcher:
            caller = in_background(
                lambda: sipp.run_scenario(
                    "uac_pcmu_audio",
                    bridge.sip_target,
                    hold_ms=int((FLOOD_S + 5) * 1000),
                    keys={"audio_file": ulaw},
                    workdir=tmp_path / "caller",
                )
            )
            assert wait_until(lambda: _answered(bridge, watcher) is not None, 10), bridge.log()
            call_id = watcher.ids[0]
            assert wait_until(lambda: _view(bridge, call_id)["rtp"]["packets_in"] > 50, 5)
            before, started = _view(bridge, call_id), time.monotonic()
            flood = _flood(bridge.sip_target, tmp_path)
            after, elapsed = _view(bridge, call_id), time.monotonic() - started
            health = http_json("GET", f"{bridge.api}/health")[1]
        caller.join(30)
    finally:
        bridge.proc.stop()
    caller.result().assert_success(calls=1)

    # no flood INVITE became a call, and the flooder heard at most the limit's worth of refusals
    assert health["calls_total"] == 1 and watcher.ids == [call_id]
    replies = flood["replies"]
    assert set(replies) <= {"403", "503"}, replies
    assert replies.get("503", 0) <= 1 and 0 < replies.get("403", 0) <= 60 + 20 * (FLOOD_S + 1), replies
    assert flood["sent"] >= 0.9 * FLOOD_RATE * FLOOD_S, flood

    # the call's media went on both ways through the flood
    frames = 50 * elapsed
    jitter = {
        k: after["rtp"]["jitter_buffer"][k] - before["rtp"]["jitter_buffer"][k] for k in ("played", "lost")
    }
    sent_to_agent = after["agent"]["packets_sent"] - before["agent"]["packets_sent"]
    heard_from_agent = after["agent"]["packets_received"] - before["agent"]["packets_received"]
    sent_to_phone = after["rtp"]["packets_out"] - before["rtp"]["packets_out"]
    print(
        f"flood {flood['sent']} INVITEs in {flood['seconds']} s, replies {replies}; during it the call "
        f"played {jitter['played']} phone frames ({jitter['lost']} lost), sent {sent_to_agent} to the agent, "
        f"heard {heard_from_agent} from it and sent {sent_to_phone} to the phone, of {frames:.0f} due"
    )
    assert jitter["lost"] == 0, jitter
    for count in (jitter["played"], sent_to_agent, heard_from_agent, sent_to_phone):
        assert count >= 0.95 * frames, (count, frames)


def _flood(target: str, tmp_path: Path) -> dict[str, Any]:
    """The flooder in its own process, as a hostile host would be."""
    out = tmp_path / "flood.json"
    argv = [sys.executable, "-m", "testbed.flood", target, "--source", "127.0.0.2"]
    argv += ["--rate", str(FLOOD_RATE), "--seconds", str(FLOOD_S), "--out", str(out)]
    subprocess.run(argv, check=True, timeout=FLOOD_S + 30, cwd=Path(__file__).resolve().parents[2])
    return json.loads(out.read_text())


def _view(bridge: BridgeProcess, call_id: str) -> dict[str, Any]:
    status, view = bridge.call(call_id)
    assert status == 200, view
    return view


def _answered(bridge: BridgeProcess, watcher: CallWatcher) -> dict[str, Any] | None:
    if not watcher.ids:
        return None
    view = _view(bridge, watcher.ids[0])
    return view if view["state"] == "answered" else None
