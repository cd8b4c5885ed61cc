"""The settings' security rules: API keys that are not placeholders, and the start-up warnings
about settings that work but leave a door open."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, Protocol

from .values import ConfigError, Value, parse_list

MIN_KEY_LENGTH = 16
MIN_KEY_DISTINCT = 8


class ApiKeys(Value):
    """Bearer keys: a sanity check against placeholders and typos, not a strength meter (the message
    never shows the key: it is a secret)."""

    form = "a list of keys (comma-separated in the environment)"
    metavar = "KEY,..."

    def parse(self, raw: Any, name: str) -> tuple[str, ...]:
        keys = parse_list(raw, name)
        if isinstance(raw, str) and not keys:  # e.g. SIPBRIDGE_API_KEYS=" ": meant a key, got none
            raise ConfigError(f"{name}: only blanks where API keys were expected")
        for index, key in enumerate(keys, 1):
            problem = key_problem(key)
            if problem:
                hint = "make one with `openssl rand -hex 24`"
                raise ConfigError(f"{name}: API key {index} of {len(keys)} {problem} ({hint})")
        return keys


def key_problem(key: str) -> str | None:
    """What is wrong with an API key: 16+ visible ASCII characters (no blanks: a header cannot
    carry them reliably), at least 8 different ones, and not a shorter string repeated."""
    if not key or any(not "!" <= c <= "~" for c in key):
        return "holds blanks or characters other than visible ASCII"
    if len(key) < MIN_KEY_LENGTH:
        return f"must be at least {MIN_KEY_LENGTH} characters"
    if len(set(key)) < MIN_KEY_DISTINCT:
        return f"must hold at least {MIN_KEY_DISTINCT} different characters"
    if any(key[period:] == key[:-period] for period in range(1, len(key) // 2 + 1)):
        return "is a shorter string repeated"
    return None


class _Checked(Protocol):
    tls_verify: bool

    @property
    def secrets(self) -> tuple[str, ...]: ...


def security_warnings(config: _Checked, path: Path | None) -> list[str]:
    """Settings that work but leave a door open, for the operator to read at start-up."""
    warnings = []
    if path is not None and _readable_by_others(path) and _names_a_secret(path, config.secrets):
        warnings.append(
            f"config file {path} holds secrets and is readable by other users"
            f" (mode {path.stat().st_mode & 0o777:o}): chmod 600 it, or pass the secrets in the environment"
        )
    if not config.tls_verify:
        warnings.append(
            "tls_verify = false: the certificates of TLS peers we connect to are not checked,"
            " so anyone on the path can pose as a trunk"
        )
    return warnings


def _readable_by_others(path: Path) -> bool:
    try:
        return bool(path.stat().st_mode & 0o044)
    except OSError:
        return False


def _names_a_secret(path: Path, secrets: tuple[str, ...]) -> bool:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return False
    return any(secret in text for secret in secrets)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
