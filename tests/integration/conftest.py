"""Fixtures shared by the integration tests: the real agent and bridge processes, logs kept per module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed import audio, sipp
from testbed.bridge_proc import AgentProcess, start_agent
from testbed.hostile_bridge import HostileBridge, start_hostile_bridge


def pytest_runtest_setup(item: pytest.Item) -> None:
    """The sipp skip, for every module here: a test marked ``sipp`` (or in a module whose
    ``pytestmark`` has it) is skipped, saying why, on a machine without sipp."""
    if item.get_closest_marker("sipp") is not None and not sipp.available():
        pytest.skip("sipp (Debian sip-tester) is not installed (make system-deps)")


SPEECH_TEXT = (
    "Hello, this is a test call. Seven, four, one, nine. The quick brown fox jumps over the lazy dog."
)


@pytest.fixture(scope="module")
def logdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bridge-logs")


@pytest.fixture(scope="module")
def agent(logdir: Path) -> Iterator[AgentProcess]:
    agent = start_agent(logdir)
    yield agent
    agent.proc.stop()


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few seconds of espeak-ng speech as a WAV file (shared by the tests that place audio calls)."""
    if audio.missing_tools("espeak-ng", "sox"):
        pytest.skip("espeak-ng and sox are needed to make test speech")
    return audio.make_speech(SPEECH_TEXT, tmp_path_factory.mktemp("speech") / "speech.wav")


@pytest.fixture(scope="module")
def wideband_speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same speech at 48 kHz: espeak-ng's fricatives have energy up to 11 kHz (for wideband
    codecs)."""
    if audio.missing_tools("espeak-ng", "sox"):
        pytest.skip("espeak-ng and sox are needed to make test speech")
    return audio.make_speech(SPEECH_TEXT, tmp_path_factory.mktemp("speech") / "speech48k.wav", rate=48000)


@pytest.fixture(scope="module")
def hostile(
    logdir: Path, agent: AgentProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HostileBridge]:
    """The bridge the attack tests aim at (see hostile_bridge.py), one per test module."""
    bridge = start_hostile_bridge(logdir, agent.whip_url, tmp_path_factory.mktemp("hostile"))
    yield bridge
    bridge.bridge.proc.stop()
