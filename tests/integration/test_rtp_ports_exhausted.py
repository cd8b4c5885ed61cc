"""The RTP port range runs out: the next caller gets 503 saying why, and the bridge goes on (the calls
up keep their audio, OPTIONS are answered, a new call gets through once a port is free)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sipbridge.media.g711 import ulaw_encode
from testbed import sipp
from testbed.bridge_proc import AgentProcess, BridgeProcess, http_json, start_bridge
from testbed.procs import in_background, wait_until
from testbed.sipp import traced

pytestmark = [
    pytest.mark.integration,
    pytest.mark.sipp,
]


def _health(bridge: BridgeProcess) -> dict[str, Any]:
    return http_json("GET", f"{bridge.api}/health")[1]


def _packets_in(bridge: BridgeProcess) -> dict[str, int]:
    return {c["id"]: (c["rtp"] or {}).get("packets_in", 0) for c in bridge.calls()}


def test_an_exhausted_rtp_range_refuses_with_503_and_the_bridge_goes_on(
    logdir: Path, agent: AgentProcess, tmp_path: Path
) -> None:
    tone = ulaw_encode((np.sin(np.arange(8000) * 2 * np.pi * 440 / 8000) * 6000).astype(np.int16))
    (tmp_path / "tone.ul").write_bytes(tone)
    keys = {"audio_file": tmp_path / "tone.ul"}
    bridge = start_bridge(logdir, agent.whip_url, rtp_ports=4)  # two even ports: room for two calls

    def call(hold_ms: int, name: str) -> sipp.SippResult:
        return sipp.run_scenario(
            "uac_pcmu_audio", bridge.sip_target, hold_ms=hold_ms, keys=keys, workdir=tmp_path / name
        )

    try:
        assert _health(bridge)["rtp_ports_total"] == 2
        short = in_background(lambda: call(5000, "short"))
        long = in_background(lambda: call(10000, "long"))
        assert wait_until(lambda: [c["state"] for c in bridge.calls()] == ["answered"] * 2, 10), bridge.log()
        assert _health(bridge)["rtp_ports_in_use"] == 2

        refused = sipp.run_scenario("uac_expect_503", bridge.sip_target, workdir=tmp_path / "refused")
        refused.assert_success(calls=1)
        answer = next(m for m in traced(refused) if not m.sent and m.status == 503)
        assert "no free RTP port" in (answer.header("Warning") or ""), answer.text
        sipp.run_scenario("uac_options", bridge.sip_target, workdir=tmp_path / "options").assert_success(1)
        health = _health(bridge)
        assert (health["calls_active"], health["rtp_ports_in_use"]) == (2, 2), health

        before = _packets_in(bridge)  # the calls up still get their audio through
        assert wait_until(lambda: all(n > before[i] + 25 for i, n in _packets_in(bridge).items()), 5)

        short.join(20)
        short.result().assert_success(calls=1)
        assert wait_until(lambda: _health(bridge)["rtp_ports_in_use"] == 1, 5), _health(bridge)
        call(1000, "after").assert_success(calls=1)  # a port is free again: the next caller gets in
        long.join(20)
        long.result().assert_success(calls=1)
        assert wait_until(lambda: _health(bridge)["rtp_ports_in_use"] == 0, 5), _health(bridge)
    finally:
        bridge.proc.stop()
    assert bridge.proc.returncode == 0, bridge.log()
    assert "rejected with 503: no free RTP port" in bridge.proc.stderr()
