"""Speech through a lossy, jittery phone leg: baresip → impairing relay → bridge → echo agent → back.

The relay (tests/peers/impair.py) sits where the bridge's SDP points and drops and delays packets
in both directions with a fixed seed; what baresip hears must still correlate with what it said.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.integration.bridge_proc import AgentProcess, start_bridge
from tests.peers import baresip
from tests.peers.impair import ImpairingRelay, Impairment, bridge_env, bridge_rtp_ports

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not baresip.available(), reason="baresip is not installed"),
]

IMPAIRMENT = Impairment(loss=0.05, delay_ms=40, jitter_ms=40)


@pytest.mark.xfail(
    strict=True,
    reason="issue 6 not done: with the phone-side jitter buffer and G.711 concealment the figure went "
    "from 0.30 to 0.50 correlation; the rest (the agent leg's pacing, echo through both impaired legs) "
    "is still to be found",
)
def test_speech_survives_5_percent_loss_and_40_ms_jitter(
    logdir: Path, agent: AgentProcess, speech: Path, tmp_path: Path
) -> None:
    bridge = start_bridge(logdir, agent.whip_url, rtp_ports=2, env=bridge_env())
    try:
        ports = bridge_rtp_ports(bridge.rtp_low, bridge.rtp_high)
        with ImpairingRelay.mirror(ports, to_target=IMPAIRMENT, to_caller=IMPAIRMENT, seed=7) as relay:
            recording = baresip.run_call(
                f"sip:echo@{bridge.sip_target}", speech, tmp_path, seconds=12, caller="+15551230003"
            )
            stats = relay.stats()
        match = baresip.compare_recording(recording)
        print(f"impaired leg (5 % loss, 40 ± 40 ms each way): {match}; relay {stats}")
        assert match.correlation >= 0.6, f"{match}\n{stats}\n{recording.report()}\n{bridge.log()}"
    finally:
        bridge.proc.stop()
