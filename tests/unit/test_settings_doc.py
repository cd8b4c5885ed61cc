"""docs/configuration.md is generated from the settings' declarations, and must say what they say."""

from __future__ import annotations

from pathlib import Path

import pytest

from sipbridge.cli import main
from sipbridge.config import SETTINGS, Config
from sipbridge.settings.declare import declared
from sipbridge.settings.provider import ProviderConfig
from sipbridge.settings_doc import COMMAND, page

PAGE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_the_configuration_page_is_what_the_declarations_generate() -> None:
    written = PAGE.read_text().splitlines() if PAGE.exists() else []
    wanted = page().splitlines()
    if written != wanted:
        pairs = enumerate(zip(written, wanted, strict=False))
        first = next((i for i, (old, new) in pairs if old != new), None)
        where = f"line {first + 1}: {wanted[first]!r}" if first is not None else "its length"
        pytest.fail(f"docs/configuration.md is out of date ({where}): run `PYTHONPATH=src {COMMAND}`")


def test_every_setting_and_provider_setting_is_on_the_page() -> None:
    text = page()
    for item in (*SETTINGS.values(), *declared(ProviderConfig)):
        assert f"### `{item.name}`" in text and item.spec.help
    assert all(f"`{item.env}`" in text for item in SETTINGS.values())


def test_every_config_field_is_a_declared_setting_but_the_provider_tables() -> None:
    names = set(Config.__dataclass_fields__) - {"providers"}
    assert names == set(SETTINGS)


def test_serve_flags_come_from_the_declarations(capsys) -> None:
    try:
        main(["serve", "--help"])
    except SystemExit:
        pass
    help_text = capsys.readouterr().out
    flags = [item for item in SETTINGS.values() if item.flag]
    assert {item.flag for item in flags} == {
        *("--sip-listen", "--api-listen", "--rtp-ports", "--workers", "--public-ip", "--agent"),
        *("--log-level", "--log-format"),
    }
    for item in flags:
        assert item.flag in help_text and item.env in help_text
