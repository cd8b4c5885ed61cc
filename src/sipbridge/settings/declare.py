"""How a setting is declared: once, as a dataclass field whose metadata says the rest.

The field gives the name, the type and the default; ``setting(...)`` adds the kind of value (its
parsing, checks and form), the help text, and whether it has a ``sipbridge serve`` flag, may come
from the environment, or is a secret. Everything else is derived from these declarations: the
``Config`` class, reading TOML, the environment and the flags, the ``--help`` text and
``docs/configuration.md``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .values import Value

ENV_PREFIX = "SIPBRIDGE_"
REQUIRED = dataclasses.MISSING


@dataclass(frozen=True)
class Setting:
    value: Value
    help: str  # one line: ``--help``, and the first sentence of the reference entry
    more: str = ""  # the rest of the reference entry
    flag: bool = False  # a ``sipbridge serve --name-with-dashes`` flag
    env: bool = True  # may come from the environment (a provider's: only its secrets)
    secret: bool = False  # never shown: not in repr, not in logs
    shown_default: str | None = None  # the default in words, when its value does not say it
    table: str | None = None  # also written ``[table] rest`` in TOML (api_listen: ``[api] listen``)


def setting(default: Any, value: Value, help: str, **more: Any) -> Any:
    """A field declaring a setting; ``default`` may be ``REQUIRED``."""
    spec = Setting(value, help, **more)
    metadata = {"setting": spec}
    if default is REQUIRED:
        return dataclasses.field(repr=not spec.secret, metadata=metadata)
    return dataclasses.field(default=default, repr=not spec.secret, metadata=metadata)


@dataclass(frozen=True)
class Declared:
    """One declared setting: its field's name and default with its ``Setting``."""

    name: str
    default: Any  # REQUIRED when it has none
    spec: Setting

    @property
    def optional(self) -> bool:
        """None is a value (unset): an empty value in the environment means None."""
        return self.default is None

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def flag(self) -> str | None:
        return "--" + self.name.replace("_", "-") if self.spec.flag else None

    @property
    def toml(self) -> str:
        if self.spec.table:
            return f"{self.name} or [{self.spec.table}] {self.name.removeprefix(self.spec.table + '_')}"
        return self.name

    def parse(self, raw: Any, label: str) -> Any:
        """The value of ``raw`` (an empty one is None for an optional setting); errors start with
        ``label``, which names the setting and where the value came from."""
        if self.optional and (raw is None or raw == ""):
            return None
        return self.spec.value.parse(raw, label)


def declared(cls: type) -> tuple[Declared, ...]:
    """The settings a dataclass declares, in the order written (its bases' first)."""
    return tuple(
        Declared(f.name, f.default, f.metadata["setting"])
        for f in dataclasses.fields(cls)
        if "setting" in f.metadata
    )


def shown_default(item: Declared) -> str:
    """The default as the reference page and ``--help`` write it."""
    if item.spec.shown_default is not None:
        return item.spec.shown_default
    value = item.default
    if value is REQUIRED:
        return "required"
    if value is None or value == ():
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return ", ".join(map(str, value))
    return str(value)
