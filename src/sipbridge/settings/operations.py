"""The declarations of the operations settings: logs, health, stopping, call records."""

from __future__ import annotations

from dataclasses import dataclass

from .declare import setting
from .values import Between, Choice, Flag, NewFile

LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class OperationSettings:
    """Operations

    Logs, health, stopping and call records.
    """

    log_level: str = setting("info", Choice(LOG_LEVELS), "the least severe log lines written", flag=True)
    log_format: str = setting(
        "text",
        Choice(("text", "json")),
        "log lines as text or JSON",
        more="`text`: a line for a person at a terminal; `json`: one object per line for a log pipeline"
        " (`time`, `level`, `logger`, `message`, `call_id`, `exception`).",
        flag=True,
    )
    log_redact: bool = setting(
        True,
        Flag(),
        "phone numbers and SIP user names in logs and call records keep only their last digits",
        more="The last 2–4 characters (`+*******0123`); credentials are redacted whatever this says.",
    )
    degraded_load: float = setting(
        0.8,
        Between(0.01, 1.0),
        "/health says degraded from this share of max_calls (or of the RTP ports) in use",
        more="And also after a 0.5 s stall of the event loop.",
    )
    drain_grace: float = setting(
        30.0,
        Between(0.0, 86400.0, "seconds"),
        "on SIGTERM, seconds running calls may go on before they are ended with BYE (0: at once)",
    )
    call_records: str | None = setting(
        None,
        NewFile(),
        "file that gets one JSON line per ended call",
        more="Its folder must exist.",
    )
