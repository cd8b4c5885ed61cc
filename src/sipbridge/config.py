"""All settings in one typed place: defaults < TOML file < SIPBRIDGE_* environment < CLI flags.

Each setting is declared once, in the groups of ``settings/`` (name, type, default, kind of value,
help, flag); ``Config`` is their union, and everything here is derived from the declarations.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .settings.declare import Declared, declared
from .settings.limits import LimitSettings
from .settings.media import AgentSettings, MediaSettings
from .settings.operations import OperationSettings
from .settings.provider import ProviderConfig, parse_provider
from .settings.security import is_loopback
from .settings.sip import SipSettings
from .settings.values import ConfigError
from .settings.webhooks import WebhookSettings

# In the order of the reference page (docs/configuration.md).
GROUPS = (SipSettings, MediaSettings, AgentSettings, LimitSettings, OperationSettings, WebhookSettings)


@dataclass(frozen=True)
class Config(*reversed(GROUPS)):  # type: ignore[misc]  # a dataclass lists its last base's fields first
    # The [providers.NAME] tables: settings of their own (settings/provider.py).
    providers: tuple[ProviderConfig, ...] = ()

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every configured credential: never to be logged, whatever the format."""
        values = (
            *self.api_keys,
            self.agent_token,
            self.webhook_secret,
            *(p.password for p in self.providers),
            *(p.inbound_password for p in self.providers),
        )
        return tuple(v for v in values if v)


SETTINGS: dict[str, Declared] = {item.name: item for item in declared(Config)}


def load_config(
    path: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Build the effective configuration; raises ConfigError naming the bad setting and its source."""
    env = os.environ if env is None else env
    merged: dict[str, Any] = {}
    if path is not None:
        merged.update(_from_toml(path, env))
    merged.update(_from_env(env))
    merged.update(_convert({k: v for k, v in (overrides or {}).items() if v is not None}, "option"))
    config = Config(**merged)
    _check(config)
    return config


def _convert(values: Mapping[str, Any], source: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, raw in values.items():
        if key not in SETTINGS:
            raise ConfigError(f"{source}: unknown setting {key!r}")
        out[key] = SETTINGS[key].parse(raw, f"{source} {key}")
    return out


def _from_toml(path: Path, env: Mapping[str, str]) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    source = f"config file {path}:"
    providers = data.pop("providers", {})
    if not isinstance(providers, dict):
        raise ConfigError(f"{source} [providers.NAME] must be tables")
    out = _convert(_flatten_tables(data, source), source)
    if providers:
        out["providers"] = tuple(
            parse_provider(name, table, source, env) for name, table in providers.items()
        )
    return out


def _flatten_tables(data: dict[str, Any], source: str) -> dict[str, Any]:
    """``[api] listen`` as ``api_listen``: the tables some settings may be written in."""
    tables = {item.spec.table for item in SETTINGS.values() if item.spec.table}
    for table in tables:
        values = data.pop(table, {})
        if not isinstance(values, dict):
            raise ConfigError(f"{source} [{table}] must be a table")
        for key, value in values.items():
            name = f"{table}_{key}"
            if name not in SETTINGS or SETTINGS[name].spec.table != table:
                raise ConfigError(f"{source} unknown setting '{table}.{key}'")
            data[name] = value
    return data


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    values = {item.name: env[item.env] for item in SETTINGS.values() if item.env in env}
    return _convert(values, "environment")


def _check(config: Config) -> None:
    """Rules that span settings."""
    if config.sip_t2_ms < config.sip_t1_ms:
        raise ConfigError("sip_t2_ms must not be below sip_t1_ms")
    if (config.tls_cert_file is None) != (config.tls_key_file is None):
        raise ConfigError("tls_cert_file and tls_key_file must be set together")
    if config.opus_fec and config.opus_application == "lowdelay":
        raise ConfigError(
            "opus_fec needs opus_application voip or audio:"
            " lowdelay codes CELT only, which has no in-band FEC"
        )
    if config.session_expires < config.session_min_se:
        raise ConfigError("session_expires must not be below session_min_se")
    if config.sip_trunk_connections >= config.sip_max_connections:
        raise ConfigError("sip_trunk_connections must be below sip_max_connections (the rest is for others)")
    usernames = [p.inbound_username for p in config.providers if p.inbound_username]
    if len(usernames) != len(set(usernames)):
        raise ConfigError("providers: each inbound_username must be unique (it says which trunk calls)")
    if config.recordings_dir is None and (config.record or any(p.record for p in config.providers)):
        raise ConfigError("record = true needs recordings_dir: the folder the recordings go to")
    if not config.api_keys and not is_loopback(config.api_listen.host):
        raise ConfigError(
            f"api_listen {config.api_listen} is reachable from other hosts but no API keys are set:"
            " set [api] keys (SIPBRIDGE_API_KEYS), or listen on 127.0.0.1"
        )
