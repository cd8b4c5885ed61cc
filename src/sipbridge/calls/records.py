"""Call records: one JSON line per ended call, appended to the ``call_records`` file as the call ends.

Each record is written with its own open-append-close, so it is in the file (flushed to the
kernel: a crash of the process loses nothing written) the moment the call has ended, and a rotated
file is simply started anew. No ``fsync``: that would stall the event loop for a disk flush per
call; only a power cut can lose what the kernel has not written yet.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .. import logs, metrics
from .call import Call

log = logging.getLogger(__name__)


class CallRecords:
    def __init__(self, path: str | None, redact: bool = True) -> None:
        """Raises OSError when ``path`` cannot be appended to (it is created if need be)."""
        self.path = Path(path) if path is not None else None
        self.redact = redact
        self.written = 0
        if self.path is not None:
            with self.path.open("a", encoding="utf-8"):
                pass

    def write(self, call: Call) -> None:
        """Append the record of ``call`` (which has ended); a failure is logged, never raised."""
        if self.path is None:
            return
        line = json.dumps(call_record(call, self.redact), separators=(",", ":"), default=str) + "\n"
        try:
            with self.path.open("a", encoding="utf-8") as out:
                out.write(line)
        except OSError as exc:
            metrics.call_record_failed()
            log.error(
                "call %s: record not written to %s: %s", call.id, self.path, exc, extra={"call_id": call.id}
            )
            return
        self.written += 1


def call_record(call: Call, redact: bool = True) -> dict[str, Any]:
    """What stays of a call once it is over; no transcripts, no digits (they may be PINs)."""
    user = logs.mask if redact else _same
    view = call.to_dict()
    agent = view["agent"] or {}
    rtp = view["rtp"] or {}
    counters = asdict(call.media_counters())
    return {
        "id": call.id,
        "sip_call_id": call.sip_call_id,
        "direction": call.direction,
        "provider": call.provider,
        "from": user(call.from_user) if call.from_user else call.from_user,
        "to": user(call.to_user) if call.to_user else call.to_user,
        "metadata": view["metadata"],
        "states": view["states"],
        "started_at": call.started_at,
        "answered_at": call.answered_at,
        "ended_at": call.ended_at,
        "setup_s": None if call.setup_s is None else round(call.setup_s, 3),
        "duration_s": round(call.ended_at - call.answered_at, 3) if call.ended_at and call.answered_at else 0,
        "end_reason": call.end_reason,
        "end_category": metrics.end_reason_category(call.end_reason),
        "codec": call.codec,
        "recording": view["recording"],  # its file in recordings_dir, once answered
        "srtp": view["srtp"],  # the suite only: never a key
        "worker": call.media_worker,  # which media worker held it: correlate with its restarts
        "dtmf_digits": len(call.activity.digits),
        "rtp": {
            **{k.removeprefix("rtp_"): v for k, v in counters.items() if k.startswith("rtp_")},
            "jitter_ms": rtp.get("jitter_buffer", {}).get("jitter_ms"),
            "remote": rtp.get("remote"),
            "srtp_auth_failures": rtp.get("srtp_auth_failures", 0),
        },
        "agent": {
            **{k.removeprefix("agent_"): v for k, v in counters.items() if k.startswith("agent_")},
            "reconnects": agent.get("reconnects", 0),
            "resume_status": agent.get("resume_status"),
            "playout_underruns": agent.get("playout_underruns", 0),
            "playout_dropped_ms": agent.get("playout_dropped_ms", 0),
            "barge_ins": agent.get("barge_ins", 0),
        },
    }


def _same(value: str) -> str:
    return value
