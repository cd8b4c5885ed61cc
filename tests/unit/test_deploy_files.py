"""The Dockerfile and the systemd unit agree with the code: ports, entry point, pinned versions.

Docker is not available where the tests run, so the Dockerfile is read, not built; the unit is
checked with ``systemd-analyze verify`` when that exists.
"""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from sipbridge.config import Config

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "systemd" / "sipbridge.service"


def _dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) per instruction, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def _instructions(name: str) -> list[str]:
    return [args for instruction, args in _dockerfile() if instruction == name]


def test_the_image_is_built_from_a_pinned_python_that_the_project_supports() -> None:
    (base,) = _instructions("FROM")
    match = re.fullmatch(r"python:(\d+)\.(\d+)\.(\d+)-slim-\w+", base)
    assert match, f"pin the base image to an exact Python release: {base}"
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    low = tuple(int(x) for x in requires.removeprefix(">=").split("."))
    assert tuple(int(x) for x in match.groups()[:2]) >= low


def test_dependencies_come_from_the_lock_file() -> None:
    installs = [run for run in _instructions("RUN") if "pip install" in run]
    assert installs and all("--constraint requirements.lock" in run for run in installs), installs
    copied = " ".join(_instructions("COPY"))
    assert "requirements.lock" in copied and "src" in copied


def test_exposed_ports_are_the_defaults() -> None:
    config = Config()
    exposed = set(" ".join(_instructions("EXPOSE")).split())
    expected = {
        f"{config.sip_listen.port}/udp",
        f"{config.sip_listen.port}/tcp",
        f"{config.sip_tls_port}/tcp",
        f"{config.api_listen.port}/tcp",
        f"{config.rtp_ports.low}-{config.rtp_ports.high}/udp",
    }
    assert exposed == expected


def test_the_entry_point_is_the_project_script_and_the_health_check_its_api() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    (entry,) = _instructions("ENTRYPOINT")
    assert entry == '["sipbridge"]' and "sipbridge" in scripts
    (health,) = _instructions("HEALTHCHECK")
    assert f"127.0.0.1:{Config().api_listen.port}/health" in health
    assert _instructions("USER") == ["sipbridge"]


def test_the_docker_context_leaves_out_the_venv_and_git() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    return parser


def test_the_systemd_unit_runs_the_bridge_as_its_own_user_and_stops_it_with_sigterm() -> None:
    service = _unit()["Service"]
    argv = service["ExecStart"].split()
    assert argv[0].endswith("/bin/sipbridge") and argv[1] == "serve"
    assert argv[argv.index("--config") + 1].startswith("/etc/sipbridge/")
    assert service["User"] == "sipbridge" and service["KillSignal"] == "SIGTERM"
    assert int(service["LimitNOFILE"]) >= 4 * Config().max_calls  # RTP and ICE sockets per call
    assert "AF_NETLINK" in service["RestrictAddressFamilies"]  # interface discovery for ICE
    assert _unit()["Install"]["WantedBy"] == "multi-user.target"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    unit = tmp_path / "sipbridge.service"
    # verify needs the binary to exist: point ExecStart at a stand-in with the same arguments
    stand_in = shutil.which("true")
    assert stand_in
    text = UNIT.read_text().replace("/opt/sipbridge/.venv/bin/sipbridge", stand_in)
    unit.write_text(text.replace("WorkingDirectory=/opt/sipbridge", f"WorkingDirectory={tmp_path}"))
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=30
    )
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if str(unit) in line or "sipbridge.service" in line
    ]
    assert not problems, "\n".join(problems)
