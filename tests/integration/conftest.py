"""Fixtures shared by the integration tests: the real agent and bridge processes, logs kept per module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.integration.bridge_proc import AgentProcess, start_agent


@pytest.fixture(scope="module")
def logdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bridge-logs")


@pytest.fixture(scope="module")
def agent(logdir: Path) -> Iterator[AgentProcess]:
    agent = start_agent(logdir)
    yield agent
    agent.proc.stop()
