"""The configuration reference, docs/configuration.md, written from the declarations.

    python -m sipbridge.settings_doc > docs/configuration.md

tests/unit/test_settings_doc.py fails when the page and the declarations disagree.
"""

from __future__ import annotations

import sys

from .config import GROUPS
from .settings.declare import Declared, declared, shown_default
from .settings.provider import ProviderConfig, provider_env

COMMAND = "python -m sipbridge.settings_doc > docs/configuration.md"

INTRO = f"""\
# Configuration

<!-- Generated from the declarations in src/sipbridge/settings/ by `{COMMAND}`: edit those, not this. -->

Every setting of the bridge, as declared in `src/sipbridge/settings/`. Each comes, weakest first, from
its default, the TOML file given by `sipbridge serve --config FILE`, its environment variable, and its
command-line flag (the few that have one). A bad value stops the start with a message naming the
setting and where the value came from (`environment sip_listen: expected HOST:PORT, got 'x'`).

A list is a TOML array of strings, or comma-separated in the environment. An optional setting left
empty in the environment is unset. An example file, where to keep secrets, and what to set first:
[operations.md](operations.md#configuring).
"""


def page() -> str:
    parts = [INTRO]
    for group in GROUPS:
        parts.append(_section(group.__doc__ or "", [_entry(item) for item in declared(group)]))
    entries = [_provider_entry(item) for item in declared(ProviderConfig)]
    parts.append(_section(ProviderConfig.__doc__ or "", entries))
    return "\n".join(parts)


def _section(docstring: str, entries: list[str]) -> str:
    title, _, intro = docstring.strip().partition("\n")
    return f"## {title.strip()}\n\n{_unindent(intro)}\n\n" + "\n".join(entries)


def _entry(item: Declared) -> str:
    facts = [f"`{item.env}`"]
    if item.flag:
        facts.append(f"`{item.flag}`")
    if item.spec.table:
        short = item.name.removeprefix(item.spec.table + "_")
        facts.append(f"or `{short}` in `[{item.spec.table}]`")
    return _item(item, facts)


def _provider_entry(item: Declared) -> str:
    facts = [f"`{provider_env('<NAME>', item.name)}`"] if item.spec.env else []
    return _item(item, facts)


def _item(item: Declared, facts: list[str]) -> str:
    default = shown_default(item)
    shown = default if item.spec.shown_default or default in ("none", "required") else f"`{default}`"
    lines = [
        f"### `{item.name}`",
        "",
        " · ".join([*facts, f"default: {shown}", f"value: {item.spec.value.form}"]),
        "",
        _sentence(item.spec.help) + (f" {item.spec.more}" if item.spec.more else ""),
        "",
    ]
    return "\n".join(lines)


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")


def _unindent(text: str) -> str:
    return " ".join(line.strip() for line in text.strip().splitlines())


if __name__ == "__main__":
    sys.stdout.write(page())
