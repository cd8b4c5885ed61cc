"""Log output on stderr: text or one JSON object per line, with the call id on every line logged for a
call, and phone numbers and credentials redacted.

Any layer may import this module (it imports nothing of sipbridge). A call's lines carry its id in
one of two ways: code that knows the call logs through :func:`call_logger` (or ``extra={"call_id":
...}``), and everything run in the call's own tasks (started with :func:`call_context`) gets the id
from a context variable. That variable is only believed inside a task: plain callbacks (a socket's
``datagram_received``, a timer) run in whatever context their transport or timer was created in,
which may be a call long over.

Redaction: credentials (Authorization headers, bearer tokens, passwords, the configured secrets
themselves) are always replaced by ``[redacted]``; phone numbers and SIP user names keep only their
last digits unless ``log_redact`` is off.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime

CALL_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("sipbridge_call_id", default=None)
REDACTED = "[redacted]"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_MIN_SECRET = 4  # shorter configured "secrets" would redact ordinary words
MAX_LINE = 32768  # characters of one log line (a traceback included); the rest is cut, not scanned

_redact_numbers = True  # set by setup(); what redact_user() does


def call_context(call_id: str) -> contextvars.Context:
    """A context for a task run on behalf of call ``call_id`` (``create_task(..., context=...)``)."""
    context = contextvars.copy_context()
    context.run(CALL_ID.set, call_id)
    return context


def call_logger(logger: logging.Logger, call_id: str) -> logging.LoggerAdapter:
    """``logger`` with the call id on every line, wherever the line is logged from."""
    return logging.LoggerAdapter(logger, {"call_id": call_id})


def current_call_id() -> str | None:
    """The call the running task works for; None outside a task (see the module docstring)."""
    try:
        if asyncio.current_task() is None:
            return None
    except RuntimeError:  # no event loop in this thread
        return None
    return CALL_ID.get()


# -- redaction ---------------------------------------------------------------------------------


def mask(value: str) -> str:
    """A number or user name with only its end kept: +14155550123 -> +*******0123, 1001 -> **01."""
    plus = "+" if value.startswith("+") else ""
    body = value[len(plus) :]
    keep = 4 if len(body) >= 8 else 2 if len(body) >= 4 else 0
    return plus + "*" * (len(body) - keep) + body[len(body) - keep :]


def redact_user(value: str | None) -> str | None:
    """A phone number or SIP user as it may be logged or recorded (masked unless log_redact is off)."""
    return mask(value) if value and _redact_numbers else value


_CREDENTIALS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?im)\b((?:proxy-)?authorization)(\s*[:=]\s*)[^\r\n]*"), rf"\1\2{REDACTED}"),
    (
        re.compile(r"""(?i)(['"](?:proxy-)?authorization['"]\s{0,16}[,:]\s{0,16})(['"]).{0,4096}?\2"""),
        rf"\1\2{REDACTED}\2",
    ),
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+"), rf"\1 {REDACTED}"),
    (
        re.compile(
            r"""(?i)\b(password|passwd|pwd|secret|api[_-]?keys?|[a-z]*[_-]?token|nonce|response)"""
            r"""(["']?\s*[:=]\s*["']?)[^\s"',;&}\]]+"""
        ),
        rf"\1\2{REDACTED}",
    ),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]{0,31}://[^/\s:@]{1,256}:)[^@/\s]{1,256}@"), rf"\1{REDACTED}@"),
)
# Every pattern here meets text from the network (a user name in a refusal, codec names in a 488):
# each must run in time linear in the line. The user part is bounded: unbounded, every "sip:" of a
# 60 KB line of them scanned to the end (4.8 s, with the event loop stopped).
_SIP_USER = re.compile(r"""(?i)\b(sips?:)([^@\s;>,"'<]{1,128})@""")
_TEL = re.compile(r"(?i)\b(tel:)(\+?[0-9][0-9().-]{2,})")
_NUMBER = re.compile(r"(?<![\w./#@+-])(\+\d{6,15}|\d{7,15})(?![\w.@])")


class Redactor:
    """Takes credentials (always) and phone numbers (when ``numbers``) out of a log line."""

    def __init__(self, numbers: bool = True, secrets: Iterable[str | None] = ()) -> None:
        self.numbers = numbers
        self.secrets = sorted({s for s in secrets if s and len(s) >= _MIN_SECRET}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        if len(text) > MAX_LINE:
            text = text[:MAX_LINE] + f" [{len(text) - MAX_LINE} characters cut]"
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        for pattern, replacement in _CREDENTIALS:
            text = pattern.sub(replacement, text)
        text = _SIP_USER.sub(self._sip_user, text)
        if self.numbers:
            text = _TEL.sub(lambda m: m.group(1) + mask(m.group(2)), text)
            text = _NUMBER.sub(lambda m: mask(m.group(1)), text)
        return text

    def _sip_user(self, match: re.Match[str]) -> str:
        user, colon, password = match.group(2).partition(":")  # sip:user:password@host (RFC 3261 §19.1)
        user = mask(user) if self.numbers else user
        return f"{match.group(1)}{user}{colon}{REDACTED if colon else ''}@"


# -- formatting --------------------------------------------------------------------------------


class CallIdFilter(logging.Filter):
    """Gives every record a ``call_id`` attribute: its own ``extra``, the task's call, or None."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "call_id", None) is None:
            record.call_id = current_call_id()
        return True


class TextFormatter(logging.Formatter):
    """The classic line, plus ``[call ID]`` when the call's id is not in the message already."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__(TEXT_FORMAT)
        self.redactor = redactor

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        line = super().formatMessage(record)
        call_id = getattr(record, "call_id", None)
        return f"{line} [call {call_id}]" if call_id and call_id not in record.message else line

    def format(self, record: logging.LogRecord) -> str:
        return self.redactor(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, call_id, exception."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, str] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")[:-6] + "Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": self.redactor(record.getMessage()),
        }
        call_id = getattr(record, "call_id", None)
        if call_id:
            entry["call_id"] = str(call_id)
        if record.exc_info:
            entry["exception"] = self.redactor(self.formatException(record.exc_info))
        if record.stack_info:
            entry["stack"] = self.redactor(self.formatStack(record.stack_info))
        return json.dumps(entry)


def setup(level: str, fmt: str = "text", redact: bool = True, secrets: Iterable[str | None] = ()) -> None:
    """Send every logger's records to stderr in ``fmt`` ("text" or "json"), redacted."""
    global _redact_numbers
    _redact_numbers = redact
    redactor = Redactor(numbers=redact, secrets=secrets)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(redactor) if fmt == "json" else TextFormatter(redactor))
    handler.addFilter(CallIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
    for noisy in ("aioice", "aiortc"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
