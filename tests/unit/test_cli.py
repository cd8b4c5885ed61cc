"""Errors found once the bridge starts are logged in the configured format, like everything else."""

from __future__ import annotations

import json
import logging

import pytest

from sipbridge.cli import main


def test_a_call_records_file_that_cannot_be_appended_to_stops_the_start_with_a_json_line(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIPBRIDGE_CALL_RECORDS", "/proc/version")  # a file, but not one to append to
    argv = ["serve", "--sip-listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0", "--log-format", "json"]
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        code = main([*argv, "--rtp-ports", "41000-41003", "--agent", "http://127.0.0.1:9/whip"])
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    assert code == 2
    (line,) = [json.loads(line) for line in capfd.readouterr().err.splitlines()]
    assert line["level"] == "error" and line["logger"] == "sipbridge"
    assert line["message"].startswith("configuration error: call_records: cannot append to '/proc/version'")


def test_a_recordings_dir_that_cannot_be_written_stops_the_start(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIPBRIDGE_RECORD", "true")
    monkeypatch.setenv("SIPBRIDGE_RECORDINGS_DIR", "/proc/version/recordings")  # under a file
    argv = ["serve", "--sip-listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0", "--log-format", "json"]
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        code = main([*argv, "--rtp-ports", "41004-41007", "--agent", "http://127.0.0.1:9/whip"])
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    assert code == 2
    (line,) = [json.loads(line) for line in capfd.readouterr().err.splitlines()]
    assert line["message"] == (
        "configuration error: recordings_dir: cannot write to '/proc/version/recordings': Not a directory"
    )
