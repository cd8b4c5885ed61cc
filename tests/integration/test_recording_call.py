"""A recorded call through the real bridge: baresip calls the echo agent with ``record = true``; the
file in recordings_dir decodes, is stereo, the caller's speech on the left and the agent's echo of it
on the right, later by the echo's delay; the call record and GET /calls/{id} name it, and GET
/calls/{id}/recording serves it with the API key only. PCMU recorded as WAV, Opus as Ogg/Opus."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from testbed import audio, baresip
from testbed.bridge_proc import AgentProcess, BridgeProcess, http_json, start_bridge
from testbed.procs import wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not baresip.available(), reason="baresip (Debian baresip-core) is not installed"),
]

KEY = "recording-integration-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def recording_bridge(
    logdir: Path, agent: AgentProcess, tmp_path: Path
) -> Iterator[Callable[[str], BridgeProcess]]:
    """A bridge that records every call in ``tmp_path/recordings`` (made by the bridge) in ``fmt``."""
    started: list[BridgeProcess] = []

    def start(fmt: str) -> BridgeProcess:
        env = {
            "SIPBRIDGE_RECORD": "true",
            "SIPBRIDGE_RECORDINGS_DIR": str(tmp_path / "recordings"),
            "SIPBRIDGE_RECORDING_FORMAT": fmt,
            "SIPBRIDGE_API_KEYS": KEY,
            "SIPBRIDGE_CALL_RECORDS": str(tmp_path / "calls.jsonl"),
        }
        started.append(start_bridge(logdir, agent.whip_url, env=env))
        return started[-1]

    yield start
    for bridge in started:
        bridge.proc.stop()
        assert bridge.proc.returncode == 0, bridge.log()


def read_recording(path: Path, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """The file's two channels as float in [-1, 1] at ``rate``, decoded by FFmpeg (PyAV)."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.channels == 2, stream.codec_context.layout
        resampler = av.AudioResampler(format="s16", layout="stereo", rate=rate)
        chunks = [
            out.to_ndarray().reshape(-1, 2)
            for frame in container.decode(stream)
            for out in resampler.resample(frame)
        ]
    chunks += [out.to_ndarray().reshape(-1, 2) for out in resampler.resample(None)]
    samples = np.concatenate(chunks).astype(np.float32) / 32768.0
    return samples[:, 0], samples[:, 1]


def _get(url: str, headers: dict[str, str]) -> tuple[int, bytes, dict[str, str]]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read(), {k.lower(): v for k, v in response.headers.items()}
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), {k.lower(): v for k, v in exc.headers.items()}


def _last_record(path: Path) -> dict[str, Any] | None:
    lines = path.read_text().splitlines() if path.exists() else []
    return json.loads(lines[-1]) if lines else None


@pytest.mark.parametrize(
    ("codec", "fmt", "rate"), [("PCMU", "wav", 8000), ("OPUS", "ogg", 16000)], ids=["pcmu-wav", "opus-ogg"]
)
def test_a_recorded_call_has_the_caller_left_and_the_agent_right(
    recording_bridge: Callable[[str], BridgeProcess],
    wideband_speech: Path,
    tmp_path: Path,
    codec: str,
    fmt: str,
    rate: int,
) -> None:
    bridge = recording_bridge(fmt)
    call = baresip.run_call(
        f"sip:echo@{bridge.sip_target}", wideband_speech, tmp_path / "baresip", seconds=8, codec=codec
    )
    assert call.established and call.sent is not None, call.report()
    record = wait_until(lambda: _last_record(tmp_path / "calls.jsonl"), 10)
    assert record, bridge.log()
    call_id = record["id"]
    assert record["codec"] == codec
    assert record["recording"] == {"file": f"{call_id}.{fmt}", "format": fmt}, record
    status, view = http_json("GET", f"{bridge.api}/calls/{call_id}", headers=AUTH)
    assert status == 200 and view["recording"] == record["recording"]
    path = tmp_path / "recordings" / f"{call_id}.{fmt}"

    left, right = read_recording(path, rate)
    print(f"{codec} as {fmt}: {len(left) / rate:.2f} s of stereo at {rate} Hz, {path.stat().st_size} bytes")
    assert 6.0 < len(left) / rate < 10.0
    sent, _ = audio.read_wav(call.sent, rate)
    caller = audio.compare_windowed(sent, left, rate)
    agent = audio.compare_windowed(sent, right, rate)
    echo = audio.compare(left, right, rate, max_lag_s=1.0)
    print(f"left (caller) against the speech baresip sent: {caller}")
    print(f"right (agent's echo) against it: {agent}")
    print(f"right against left (the echo's delay through the bridge and the agent): {echo}")
    assert caller.median >= 0.9 and agent.median >= 0.85, f"{caller}\n{agent}\n{bridge.log()}"
    delay = agent.overall.lag_seconds - caller.overall.lag_seconds
    assert 0.02 < delay < 0.5 and echo.lag_seconds == pytest.approx(delay, abs=0.01), (delay, echo)

    url = f"{bridge.api}/calls/{call_id}/recording"
    status, body, headers = _get(url, AUTH)
    assert status == 200 and body == path.read_bytes()
    assert headers["content-type"] == ("audio/wav" if fmt == "wav" else "audio/ogg")
    assert _get(url, {})[0] == 401
    assert _get(f"{bridge.api}/calls/nope/recording", AUTH)[0] == 404
