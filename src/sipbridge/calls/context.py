"""What the agent is told about its call, and the SIP headers that may cross into and out of it.

The first message on the ``events`` channel is the call's context (``call_event``): who calls whom,
on which trunk, the SIP headers the ``forward_headers`` setting names (a PBX's or CRM's ``X-``
headers, ``User-to-User``) and the metadata of ``POST /calls``. Pure: the headers come in as
(name, value) pairs, the rules are the settings'.

Never forwarded whatever the setting says: credentials (``Authorization``, ``Proxy-Authorization``
and anything named like a secret). Values are cut to ``MAX_VALUE`` characters, control characters
dropped, at most ``MAX_HEADERS`` headers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..sip.headers import TOKEN_RE  # RFC 3261 token: what a header name is

if TYPE_CHECKING:
    from ..config import Config

DEFAULT_FORWARD = ("X-", "User-to-User")
MAX_HEADERS = 32
MAX_VALUE = 256
MAX_UUI = 1024  # User-to-User carries hex-encoded ISDN UUI, up to 129 octets and its parameters
MAX_OUTGOING = 16
_CREDENTIALS = re.compile(r"authorization|authenticat|cookie|password|secret|token|credential", re.I)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
REASON_MAX = 200


class HeaderError(ValueError):
    """A header ``POST /calls`` may not send (its message says which and why)."""


def forward_rules(config: Config, provider: str | None) -> tuple[str, ...]:
    """The ``forward_headers`` setting a call follows: its provider's, else the global one."""
    own = next((p.forward_headers for p in config.providers if p.name == provider), None)
    return own if own is not None else config.forward_headers


def wanted(name: str, rules: Iterable[str]) -> bool:
    """Whether ``name`` is named by ``rules`` (a name, or a prefix ending in ``-``), case-insensitive,
    and is not a credential."""
    lowered = name.lower()
    if _CREDENTIALS.search(lowered):
        return False
    for rule in rules:
        rule = rule.lower()
        if rule.endswith("-"):  # a prefix: names that go on after it
            if lowered.startswith(rule) and len(lowered) > len(rule):
                return True
        elif lowered == rule:
            return True
    return False


def forwarded_headers(headers: Iterable[tuple[str, str]], rules: Iterable[str]) -> dict[str, str]:
    """The headers of an INVITE the agent is told (repeated ones joined with ``, ``)."""
    rules = tuple(rules)
    out: dict[str, str] = {}
    for name, value in headers:
        if not wanted(name, rules):
            continue
        if name not in out and len(out) >= MAX_HEADERS:
            continue
        clean = _CONTROL.sub("", value).strip()
        out[name] = f"{out[name]}, {clean}" if name in out else clean
        out[name] = out[name][: _value_cap(name)]
    return out


def outgoing_headers(headers: dict[str, Any]) -> list[tuple[str, str]]:
    """``POST /calls``'s ``headers``, checked: only ``X-`` headers and ``User-to-User``, names that are
    tokens, string values without CR, LF or other control characters, within the caps."""
    if len(headers) > MAX_OUTGOING:
        raise HeaderError(f"at most {MAX_OUTGOING} headers")
    checked = []
    for name, value in headers.items():
        if not isinstance(name, str) or not TOKEN_RE.fullmatch(name):
            raise HeaderError(f"header name {str(name)[:40]!r} is not a SIP header name")
        if not (name.lower().startswith("x-") and len(name) > 2) and name.lower() != "user-to-user":
            raise HeaderError(f"header {name!r}: only X- headers and User-to-User may be sent")
        if _CREDENTIALS.search(name):
            raise HeaderError(f"header {name!r}: credentials are not sent this way")
        if not isinstance(value, str) or _CONTROL.search(value):
            raise HeaderError(f"header {name!r}: the value must be text without CR, LF or control characters")
        if len(value) > _value_cap(name):
            raise HeaderError(f"header {name!r}: values up to {_value_cap(name)} characters")
        checked.append((name, value.strip()))
    return checked


def call_event(
    call_id: str,
    direction: str,
    caller: str,
    callee: str,
    provider: str | None,
    headers: dict[str, str],
    metadata: dict[str, str],
) -> dict[str, Any]:
    """The ``{"type": "call", ...}`` message the agent gets first on ``events``."""
    return {
        "type": "call",
        "id": call_id,
        "direction": direction,
        "from": caller,
        "to": callee,
        "provider": provider,
        "headers": dict(headers),
        "metadata": dict(metadata),
    }


def hangup_reason(event: dict[str, Any]) -> str:
    """The end reason of a ``{"type": "hangup", "reason": ...}`` from the agent."""
    reason = event.get("reason")
    text = _CONTROL.sub(" ", reason).strip()[:REASON_MAX] if isinstance(reason, str) else ""
    return f"agent hung up: {text}" if text else "agent hung up"


def _value_cap(name: str) -> int:
    return MAX_UUI if name.lower() == "user-to-user" else MAX_VALUE
