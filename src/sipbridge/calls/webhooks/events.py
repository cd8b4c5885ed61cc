"""What a webhook says: one JSON body per call event, made (and frozen) the moment it happens.

Every body: ``{"id": "evt_…", "type": "call.answered", "timestamp": 1767607200.123, "call_id": …,
"call": {"id", "direction", "from", "to", "provider", "metadata", "sip_call_id"}, "data": {…}}``;
``data`` is the type's own (see ``_DATA``). The call's numbers are not masked: the receiver is the
operator's own, and the point of the event is to say who called.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from ... import metrics

if TYPE_CHECKING:
    from ..call import Call

# Call.notify's kinds that make a webhook, and the event type each is sent as.
EVENT_TYPES = {
    "ringing": "call.ringing",
    "answered": "call.answered",
    "transfer": "call.transfer",
    "dtmf": "call.dtmf",
    "ended": "call.ended",
}


@dataclass(frozen=True)
class Event:
    """One event ready to send: its body is encoded once, when it happens, and never changes."""

    id: str
    type: str
    call_id: str
    body: bytes


def make_event(call: Call, kind: str, data: dict[str, Any], at: float) -> Event | None:
    """The event of ``call``'s ``kind`` (None for a kind webhooks do not carry); ``at``: unix time."""
    event_type = EVENT_TYPES.get(kind)
    if event_type is None:
        return None
    event_id = "evt_" + secrets.token_hex(12)
    body = {
        "id": event_id,
        "type": event_type,
        "timestamp": round(at, 3),
        "call_id": call.id,
        "call": identity(call),
        "data": _DATA[kind](call, data),
    }
    encoded = json.dumps(body, separators=(",", ":"), ensure_ascii=False, default=str).encode()
    return Event(event_id, event_type, call.id, encoded)


def identity(call: Call) -> dict[str, Any]:
    """Who calls whom, through which provider, with what metadata: on every event of the call."""
    return {
        "id": call.id,
        "direction": call.direction,
        "from": call.from_user,
        "to": call.to_user,
        "provider": call.provider,
        "metadata": dict(call.metadata),
        "sip_call_id": call.sip_call_id,
    }


def _ringing(call: Call, data: dict[str, Any]) -> dict[str, Any]:
    return {"state": call.state.value, "started_at": call.started_at}


def _answered(call: Call, data: dict[str, Any]) -> dict[str, Any]:
    return {"answered_at": call.answered_at, "setup_s": _rounded(call.setup_s), "codec": call.codec}


def _dtmf(call: Call, data: dict[str, Any]) -> dict[str, Any]:
    """A digit from the phone: ``digit`` and ``via`` (rfc4733 or sip-info)."""
    return dict(data)


def _transfer(call: Call, data: dict[str, Any]) -> dict[str, Any]:
    """A transfer's step: ``state`` (trying, ringing, answered, failed) and ``reason``, and whatever
    else the transfer tells (its target, its mode)."""
    return {"state": data.get("state"), "reason": data.get("reason"), **data}


def _ended(call: Call, data: dict[str, Any]) -> dict[str, Any]:
    """How it ended, how long each part took, what its media carried."""
    ended = call.ended_at or call.started_at
    talk = ended - call.answered_at if call.answered_at is not None else 0.0
    return {
        "end_reason": call.end_reason,
        "end_category": metrics.end_reason_category(call.end_reason),
        "started_at": call.started_at,
        "answered_at": call.answered_at,
        "ended_at": call.ended_at,
        "durations": {
            "setup_s": _rounded(call.setup_s),  # INVITE to 200 OK (inbound), placed to answered
            "talk_s": _rounded(max(0.0, talk)),
            "total_s": _rounded(max(0.0, ended - call.started_at)),
        },
        "codec": call.codec,
        "dtmf_digits": len(call.activity.phone_digits()),
        "counters": asdict(call.media_counters()),
    }


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)


_DATA: dict[str, Callable[[Call, dict[str, Any]], dict[str, Any]]] = {
    "ringing": _ringing,
    "answered": _answered,
    "transfer": _transfer,
    "dtmf": _dtmf,
    "ended": _ended,
}
