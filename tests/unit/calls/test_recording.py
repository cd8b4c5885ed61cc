"""Which calls are recorded (POST /calls, then the provider's setting, then the global one), where
the file goes, how the call and its record show it, and the settings' checks."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from sipbridge.calls.recording import plan_recording, prepare_recordings_dir
from sipbridge.calls.records import CallRecords
from sipbridge.config import Config, load_config
from sipbridge.media_session.messages import OpenMedia
from sipbridge.settings.provider import ProviderConfig
from sipbridge.settings.values import ConfigError, HostPort


def config(**settings: Any) -> Config:
    return replace(Config(), **settings)


def _provider(name: str, record: bool | None) -> ProviderConfig:
    return ProviderConfig(name=name, type="generic", address=HostPort("127.0.0.1", 5099), record=record)


@pytest.mark.parametrize(
    ("global_record", "provider_record", "asked", "recorded"),
    [
        (False, None, None, False),
        (True, None, None, True),
        (True, False, None, False),  # the provider's own setting wins
        (False, True, None, True),
        (False, None, True, True),  # POST /calls wins over both
        (True, True, False, False),
    ],
)
def test_who_decides_whether_a_call_is_recorded(
    tmp_path: Path, global_record: bool, provider_record: bool | None, asked: bool | None, recorded: bool
) -> None:
    cfg = config(
        record=global_record, recordings_dir=str(tmp_path), providers=(_provider("pbx", provider_record),)
    )
    plan = plan_recording(cfg, "0123abcd", "pbx", asked)
    assert (plan is not None) == recorded
    if plan is not None:
        assert plan.file == "0123abcd.wav" and plan.format == "wav"
        assert plan.path == str(tmp_path.resolve() / "0123abcd.wav")


def test_another_providers_setting_does_not_count(tmp_path: Path) -> None:
    cfg = config(recordings_dir=str(tmp_path), providers=(_provider("pbx", True),))
    assert plan_recording(cfg, "id", "other") is None and plan_recording(cfg, "id", None) is None


async def test_the_call_asks_its_media_to_record_and_shows_the_file_once_answered(
    tmp_path: Path, make_manager, make_call
) -> None:
    records = tmp_path / "calls.jsonl"
    manager = make_manager(
        CallRecords(str(records)), record=True, recordings_dir=str(tmp_path), recording_format="ogg"
    )
    call = make_call(manager)
    assert await call.open_media()
    (opened,) = [c for c in call.media.commands if isinstance(c, OpenMedia)]
    assert opened.record_path == str(tmp_path.resolve() / f"{call.id}.ogg")
    assert call.to_dict()["recording"] is None  # not before the answer
    call.answered(0.0)
    assert call.to_dict()["recording"] == {"file": f"{call.id}.ogg", "format": "ogg"}
    call.mark_ended("caller hung up")
    (record,) = [json.loads(line) for line in records.read_text().splitlines()]
    assert record["recording"] == {"file": f"{call.id}.ogg", "format": "ogg"}


async def test_an_unrecorded_call_asks_for_no_file(make_manager, make_call) -> None:
    call = make_call(make_manager())
    assert await call.open_media()
    assert [c.record_path for c in call.media.commands if isinstance(c, OpenMedia)] == [None]


def test_record_needs_recordings_dir() -> None:
    with pytest.raises(ConfigError, match="record = true needs recordings_dir"):
        load_config(env={"SIPBRIDGE_RECORD": "true"})


def test_a_providers_record_needs_recordings_dir_too(tmp_path: Path) -> None:
    toml = tmp_path / "sipbridge.toml"
    toml.write_text('[providers.pbx]\ntype = "generic"\naddress = "127.0.0.1:5099"\nrecord = true\n')
    with pytest.raises(ConfigError, match="needs recordings_dir"):
        load_config(toml, env={})
    cfg = load_config(toml, env={"SIPBRIDGE_RECORDINGS_DIR": str(tmp_path / "rec")})
    assert cfg.providers[0].record is True and cfg.record is False


def test_recordings_dir_is_a_folder_not_a_file(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    with pytest.raises(ConfigError, match="recordings_dir: .* is a file, not a folder"):
        load_config(env={"SIPBRIDGE_RECORDINGS_DIR": str(tmp_path / "afile")})
    with pytest.raises(ConfigError, match="recording_format"):
        load_config(env={"SIPBRIDGE_RECORDING_FORMAT": "mp3"})


def test_recordings_dir_is_made_if_missing_and_must_be_writable(tmp_path: Path) -> None:
    made = prepare_recordings_dir(str(tmp_path / "a" / "b"))
    assert made.is_dir() and list(made.iterdir()) == []  # the write check leaves nothing behind
    (tmp_path / "afile").write_text("")
    with pytest.raises(OSError):
        prepare_recordings_dir(str(tmp_path / "afile" / "recordings"))
