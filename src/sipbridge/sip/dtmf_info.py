"""DTMF carried in SIP INFO requests: ``application/dtmf-relay`` and ``application/dtmf`` bodies.

``application/dtmf-relay`` (Cisco's, the common one) is lines of ``Name=value``::

    Signal=5
    Duration=160

with the duration in milliseconds. ``application/dtmf`` is just the digit. Parsing is tolerant of
case, blank lines, whitespace around names and values, unknown lines, ``a``-``d`` for ``A``-``D``
and the numeric codes ``10``-``15`` some phones send for ``*``, ``#`` and ``A``-``D``. A hook flash
(``16`` or ``!``) is valid but not a digit: it parses to ``None``, to be answered 200 and ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import SipParseError
from .message import SipRequest, SipResponse
from .responses import make_response, refusal

DTMF_RELAY = "application/dtmf-relay"
DTMF = "application/dtmf"
CONTENT_TYPES = (DTMF_RELAY, DTMF)
DIGITS = "0123456789*#ABCD"
FLASH = ("16", "!")
DEFAULT_DURATION_MS = 250

_NEWLINE = re.compile(r"\r\n|\r|\n")
_DURATION = re.compile(r"[0-9]{1,9}")
_MAX_BODY = 4096


class DtmfInfoError(SipParseError):
    """A DTMF INFO body that cannot be understood; ``status`` is what to answer the INFO with."""


@dataclass(frozen=True, slots=True)
class DtmfInfo:
    """A digit from an INFO request; ``duration_ms`` is ``None`` when the body gives none."""

    digit: str
    duration_ms: int | None = None


def is_dtmf_content_type(content_type: str) -> bool:
    return _media_type(content_type) in CONTENT_TYPES


def parse_dtmf_info(content_type: str, body: bytes | str) -> DtmfInfo | None:
    """The digit of an INFO body of either type; ``None`` for a hook flash.

    Raises ``DtmfInfoError``: status 415 for another content type, 400 for a malformed body.
    """
    media_type = _media_type(content_type)
    if media_type == DTMF_RELAY:
        return parse_dtmf_relay(body)
    if media_type == DTMF:
        return parse_dtmf(body)
    raise DtmfInfoError(f"unsupported INFO body type {content_type.strip()!r}", status=415)


def parse_dtmf_relay(body: bytes | str) -> DtmfInfo | None:
    """An ``application/dtmf-relay`` body: a ``Signal=`` line and an optional ``Duration=`` line."""
    fields: dict[str, str] = {}
    for line in _NEWLINE.split(_text(body)):
        name, sep, value = line.partition("=")
        name = name.strip().lower()
        if not sep or name not in ("signal", "duration"):
            continue
        if name in fields:
            raise DtmfInfoError(f"dtmf-relay body has more than one {name.capitalize()}= line")
        fields[name] = value.strip()
    if "signal" not in fields:
        raise DtmfInfoError("dtmf-relay body has no Signal= line")
    digit = _digit(fields["signal"])
    if digit is None:
        return None
    duration = fields.get("duration")
    if duration is None:
        return DtmfInfo(digit)
    if not _DURATION.fullmatch(duration):
        raise DtmfInfoError(f"dtmf-relay Duration={duration!r} is not a number of milliseconds")
    return DtmfInfo(digit, int(duration))


def parse_dtmf(body: bytes | str) -> DtmfInfo | None:
    """An ``application/dtmf`` body: the digit alone."""
    return _wrap(_digit(_text(body).strip()))


def build_dtmf_info(
    digit: str, duration_ms: int = DEFAULT_DURATION_MS, content_type: str = DTMF_RELAY
) -> bytes:
    """The body of an INFO carrying ``digit`` (send it with Content-Type ``content_type``)."""
    if len(digit) != 1 or digit.upper() not in DIGITS:
        raise ValueError(f"not a DTMF digit: {digit!r}")
    media_type = _media_type(content_type)
    if media_type == DTMF:
        return digit.upper().encode()
    if media_type != DTMF_RELAY:
        raise ValueError(f"content type must be {DTMF_RELAY} or {DTMF}, not {content_type!r}")
    if not 0 <= duration_ms <= 999_999_999:
        raise ValueError(f"duration {duration_ms} ms out of range")
    return f"Signal={digit.upper()}\r\nDuration={duration_ms}\r\n".encode()


def _wrap(digit: str | None) -> DtmfInfo | None:
    return None if digit is None else DtmfInfo(digit)


def _digit(signal: str) -> str | None:
    """A Signal value as a digit; ``None`` for a flash."""
    value = signal.strip()
    if value in FLASH:
        return None
    if len(value) == 1 and value.upper() in DIGITS:
        return value.upper()
    if value.isascii() and value.isdigit() and 10 <= int(value) <= 15:
        return DIGITS[int(value)]
    if not value:
        raise DtmfInfoError("empty DTMF signal")
    raise DtmfInfoError(f"not a DTMF signal: {value[:20]!r}")


def _text(body: bytes | str) -> str:
    if len(body) > _MAX_BODY:
        raise DtmfInfoError(f"DTMF body of {len(body)} octets is too long")
    return body.decode("utf-8", "replace") if isinstance(body, bytes) else body


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def answer_info(request: SipRequest, host: str) -> tuple[SipResponse, str | None]:
    """The answer to an INFO in a call and the digit it carries (None: none, or refused): 200, or
    415 with Accept for another body type, or the parse error's status with a Warning from ``host``."""
    try:
        info = parse_dtmf_info(request.headers.get("Content-Type") or "", request.body)
    except DtmfInfoError as exc:
        extra = [("Accept", f"{DTMF_RELAY}, {DTMF}")] if exc.status == 415 else None
        return refusal(request, exc.status, host=host, warning=exc.reason, extra=extra), None
    return make_response(request, 200), info.digit if info is not None else None
