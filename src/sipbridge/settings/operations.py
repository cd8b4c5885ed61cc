"""The declarations of the operations settings: logs, health, stopping, call records, recordings."""

from __future__ import annotations

from dataclasses import dataclass

from .declare import setting
from .values import Between, Choice, Flag, Folder, NewFile

LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class OperationSettings:
    """Operations

    Logs, health, stopping, call records and recordings.
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
    record: bool = setting(
        False,
        Flag(),
        "record every call: both sides to one stereo file in recordings_dir, caller left, agent right",
        more="From the answer on, written as the call goes (a crash loses at most the last second or"
        ' two). A provider\'s own `record` wins for its calls, and `POST /calls` may say `"record":'
        " true` or `false` for the call it places. Recording laws differ (one-party or all-party"
        " consent): telling the caller, and asking where the law wants it, is the operator's duty."
        " See [operations.md](operations.md#recordings).",
    )
    recordings_dir: str | None = setting(
        None,
        Folder(),
        "folder of the call recordings, one file per call named by its call id (`<id>.wav`)",
        more="Made at start-up if missing; the bridge does not start if it cannot write there. Needed"
        " when any call may be recorded. Nothing is ever deleted: keeping and removing the files is"
        " the operator's job.",
    )
    recording_format: str = setting(
        "wav",
        Choice(("wav", "ogg")),
        "`wav` (16-bit PCM) or `ogg` (Ogg/Opus, 32 kbit/s)",
        more="`wav` costs the least CPU (0.015 s per minute of call against 0.13-0.14 s for `ogg`, by"
        " `bench.micro.recording_cost`: about 1 % of a call's own CPU against 10-13 %) and 1.9 MB a"
        " minute at 8 kHz (G.711), 3.8 MB at 16 kHz (G.722, Opus); `ogg` is about 0.2 MB a minute.",
    )
