"""What a call tells its observer and what the webhook bodies say; the Stripe-style signature."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from types import SimpleNamespace
from typing import Any

from sipbridge.calls.call import Call, CallState
from sipbridge.calls.webhooks.events import make_event
from sipbridge.calls.webhooks.signature import signature, verify
from sipbridge.media_session.messages import MediaStats, PhoneDigit
from sipbridge.metrics import MediaCounters

SECRET = "whsec-0123456789abcdef"


class Told:
    """An observer that keeps what calls told it."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def __call__(self, call: Call, kind: str, data: dict[str, Any]) -> None:
        self.events.append((call.id, kind, data))

    @property
    def kinds(self) -> list[str]:
        return [kind for _, kind, _ in self.events]


def _identified(call: Call) -> Call:
    call.from_user, call.to_user, call.provider = "+15550001111", "agent", "trunk"
    call.metadata = {"crm_id": "42"}
    call.sip_call_id = "abc@127.0.0.1"
    return call


def test_a_call_tells_ringing_answered_each_phone_digit_and_ended_in_order(make_manager, make_call):
    told = Told()
    call = _identified(make_call(make_manager(on_event=told)))
    session = SimpleNamespace(on_dtmf=None, on_offer=None, on_answer=None, on_failed=None)
    call.wire_dialog(session)  # type: ignore[arg-type]

    call.set_state(CallState.RINGING)
    call.set_state(CallState.CONNECTING)  # not an event of its own
    call.answered(time.monotonic())
    call.media.emit(PhoneDigit("5", "rfc4733", 1.0))
    session.on_dtmf("#")  # a SIP INFO digit
    call.mark_ended("caller hung up")
    call.mark_ended("again")  # once only

    assert told.kinds == ["ringing", "answered", "dtmf", "dtmf", "ended"]
    assert {call_id for call_id, _, _ in told.events} == {call.id}
    assert [data for _, kind, data in told.events if kind == "dtmf"] == [
        {"digit": "5", "via": "rfc4733"},
        {"digit": "#", "via": "sip-info"},
    ]
    assert call.activity.phone_digits() == "5#"  # the call's own record is as before


def test_an_observer_that_fails_never_keeps_a_call_from_ending(make_manager, make_call):
    def broken(call: Call, kind: str, data: dict[str, Any]) -> None:
        raise RuntimeError("receiver bug")

    manager = make_manager(on_event=broken)
    call = make_call(manager)
    call.set_state(CallState.RINGING)
    call.mark_ended("caller hung up")
    assert call.ended and call.id not in manager.active and manager.get(call.id) is not None


def test_every_body_carries_its_id_type_time_and_the_calls_identity(make_call):
    call = _identified(make_call())
    first = make_event(call, "ringing", {}, 1767607200.1234)
    second = make_event(call, "ringing", {}, 1767607200.5)
    assert first is not None and second is not None and first.id != second.id
    body = json.loads(first.body)
    assert body["id"] == first.id and first.id.startswith("evt_")
    assert body["type"] == first.type == "call.ringing"
    assert body["timestamp"] == 1767607200.123 and body["call_id"] == call.id == first.call_id
    assert body["call"] == {
        "id": call.id,
        "direction": "inbound",
        "from": "+15550001111",
        "to": "agent",
        "provider": "trunk",
        "metadata": {"crm_id": "42"},
        "sip_call_id": "abc@127.0.0.1",
    }
    assert make_event(call, "codec_changed", {}, 0.0) is None  # not a webhook


def test_the_ended_body_has_the_reason_durations_and_media_counters(make_call):
    call = _identified(make_call())
    call.media.snapshot = MediaStats(counters=MediaCounters(rtp_packets_received=150, agent_packets_sent=149))
    call.started_at = 1000.0
    call.answered(time.monotonic())
    call.setup_s, call.answered_at = 0.4, 1000.5
    call.mark_ended("caller hung up")
    call.ended_at = 1012.75

    event = make_event(call, "ended", {}, 1012.75)
    assert event is not None
    data = json.loads(event.body)["data"]
    assert data["end_reason"] == "caller hung up" and data["end_category"] == "remote_hangup"
    assert data["durations"] == {"setup_s": 0.4, "talk_s": 12.25, "total_s": 12.75}
    assert data["counters"]["rtp_packets_received"] == 150 and data["counters"]["agent_packets_sent"] == 149
    assert data["codec"] is None and data["dtmf_digits"] == 0


def test_a_call_never_answered_ends_with_no_talk_time(make_call):
    call = _identified(make_call())
    call.mark_ended("caller cancelled")
    event = make_event(call, "ended", {}, 0.0)
    assert event is not None
    durations = json.loads(event.body)["data"]["durations"]
    assert durations["setup_s"] is None and durations["talk_s"] == 0.0 and durations["total_s"] >= 0.0


def test_a_transfer_step_is_told_by_the_transfer_code_through_notify(make_manager, make_call):
    told = Told()
    call = _identified(make_call(make_manager(on_event=told)))
    call.notify("transfer", state="failed", reason="486 Busy Here", to="+14155550100", mode="refer")
    ((_, kind, data),) = told.events
    event = make_event(call, kind, data, 5.0)
    assert event is not None and event.type == "call.transfer"
    assert json.loads(event.body)["data"] == {
        "state": "failed",
        "reason": "486 Busy Here",
        "to": "+14155550100",
        "mode": "refer",
    }


def test_the_signature_is_hmac_sha256_of_time_dot_body() -> None:
    body = b'{"id":"evt_1","type":"call.ended"}'
    header = signature(SECRET, body, 1767607200)
    mac = hmac.new(SECRET.encode(), b"1767607200." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1767607200,v1={mac}"


def test_a_receiver_accepts_only_a_recent_signature_of_this_body_with_this_secret() -> None:
    body = b'{"id":"evt_1"}'
    header = signature(SECRET, body, 1000)
    assert verify(SECRET, body, header, now=1000.0)
    assert verify(SECRET, body, header, now=1299.0)
    assert not verify(SECRET, body, header, now=1301.0)  # a replay, five minutes on
    assert not verify(SECRET, body + b" ", header, now=1000.0)
    assert not verify("another-secret-0123456789", body, header, now=1000.0)
    forged_time = header.replace("t=1000", "t=1200")
    assert not verify(SECRET, body, forged_time, now=1200.0)
    for broken in ("", "t=1000", "v1=abc", "t=x,v1=abc", "t=1000,t=1001,v1=" + header.split("v1=")[1]):
        assert not verify(SECRET, body, broken, now=1000.0)
