"""SRTP with SDES keys end to end: baresip calls the real bridge in RTP/SAVP and hears itself back."""

from __future__ import annotations

import re
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

CRYPTO = re.compile(r"a=crypto:\d+ (\S+) inline:([A-Za-z0-9+/=]+)")


@pytest.fixture(scope="module")
def bridge(logdir: Path, agent: AgentProcess) -> Iterator[BridgeProcess]:
    bridge = start_bridge(logdir, agent.whip_url)  # srtp = optional, the default
    yield bridge
    bridge.proc.stop()
    assert bridge.proc.returncode == 0, bridge.log()


def test_baresip_with_mandatory_srtp_hears_its_own_speech(
    bridge: BridgeProcess, speech: Path, tmp_path: Path
) -> None:
    views: list[dict[str, Any]] = []
    watcher = threading.Thread(target=watch_answered_call, args=(bridge, views))
    watcher.start()
    try:
        recording = baresip.run_call(
            f"sip:echo@{bridge.sip_target}",
            speech,
            tmp_path,
            seconds=8,
            extra_config="module\t\t\tsrtp.so\n",
            account_params=";mediaenc=srtp-mand",
            sip_trace=True,
        )
    finally:
        watcher.join(20)
    log = recording.log_text()
    assert "RTP/SAVP" in log and "a=crypto:" in log, recording.report()
    keys = [key for _, key in CRYPTO.findall(log)]
    assert len(set(keys)) >= 2, f"baresip's key and ours\n{recording.report()}"
    match = baresip.compare_recording_windowed(recording)
    print(f"baresip in SRTP through the bridge and the echo agent: {match}")
    assert match.median >= 0.9, f"{match}\n{recording.report()}\n{bridge.log()}"
    assert views, "the call never showed as answered in GET /calls"
    view = views[-1]
    assert view["srtp"] == {"suite": "AES_CM_128_HMAC_SHA1_80"}
    assert view["rtp"]["srtp_auth_failures"] == 0
    assert view["rtp"]["packets_in"] > 100 and view["rtp"]["packets_out"] > 100
    shown = f"{views}\n{bridge.log()}"
    for key in keys:
        assert key not in shown, "an SRTP key was shown in the API or the bridge's log"
