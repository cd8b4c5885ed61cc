"""Call records and the drain, on the CallManager without sockets."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from sipbridge.calls.call import Call
from sipbridge.calls.manager import CallManager
from sipbridge.calls.records import CallRecords
from sipbridge.media_session.messages import MediaStats
from sipbridge.metrics import MediaCounters
from sipbridge.sip.sdp_answer import AudioAnswer


@pytest.fixture
def _manager(make_manager):
    return lambda records=None: make_manager(records=records, max_calls=10)


@pytest.fixture
def _call(make_call):
    def make(manager: CallManager, caller: str = "+14155550123", callee: str = "1001") -> Call:
        call = make_call(manager)
        call.from_user, call.to_user, call.provider = caller, callee, "pbx"
        call.apply_media(AudioAnswer(0, "PCMU", 8000, 101, ("127.0.0.1", 4000)))
        call.media.snapshot = MediaStats(counters=MediaCounters(rtp_packets_received=250))
        call.activity.digits_in("7", "phone", "rfc4733", 0.0)
        return call

    return make


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_each_ended_call_is_recorded_once_with_numbers_masked(tmp_path: Path, _manager, _call) -> None:
    path = tmp_path / "calls.jsonl"
    manager = _manager(CallRecords(str(path), redact=True))
    first, second = _call(manager), _call(manager, caller="alice")
    first.mark_ended("caller hung up")
    first.mark_ended("caller hung up")  # a second end changes nothing
    second.mark_ended("agent link failed (ICE failed) and was not recovered within 20 s: refused")
    one, two = _records(path)
    assert one["id"] == first.id and two["id"] == second.id
    assert one["from"] == "+*******0123" and one["to"] == "**01" and two["from"] == "***ce"
    assert one["end_reason"] == "caller hung up" and one["end_category"] == "remote_hangup"
    assert two["end_category"] == "agent_link_failed"
    assert one["direction"] == "inbound" and one["provider"] == "pbx" and one["codec"] == "PCMU"
    assert one["worker"] is None  # in-process media in this test; the worker's index otherwise
    assert one["rtp"]["packets_received"] == 250 and one["agent"]["reconnects"] == 0
    assert [s["state"] for s in one["states"]] == ["ended"] and one["ended_at"] >= one["started_at"]
    assert one["dtmf_digits"] == 1 and "7" not in json.dumps(one["rtp"])  # digits may be a PIN
    assert "conversation" not in one


def test_numbers_are_kept_when_redaction_is_off(tmp_path: Path, _manager, _call) -> None:
    path = tmp_path / "calls.jsonl"
    manager = _manager(CallRecords(str(path), redact=False))
    _call(manager).mark_ended("busy")
    assert _records(path)[0]["from"] == "+14155550123"


def test_a_record_that_cannot_be_written_is_logged_and_the_call_still_ends(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, _manager, _call
) -> None:
    path = tmp_path / "calls.jsonl"
    records = CallRecords(str(path))
    manager = _manager(records)
    path.unlink()
    path.mkdir()  # appending to it now fails
    call = _call(manager)
    call.mark_ended("caller hung up")
    assert call.id not in manager.active and call.state.value == "ended"
    assert "record not written" in caplog.text and records.written == 0


def test_a_records_path_that_cannot_be_opened_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        CallRecords(str(tmp_path / "missing" / "calls.jsonl"))


async def test_drain_refuses_new_invites_and_waits_for_the_calls(_manager, _call) -> None:
    manager = _manager()
    call = _call(manager)
    manager.start_draining(retry_after=12)

    class Session:
        def reject(self, status: int, **kwargs: object) -> None:
            self.refused = (status, kwargs)

    session = Session()
    assert manager.handle_invite(session) is None  # type: ignore[arg-type]
    assert session.refused == (503, {"warning": "draining: the bridge is shutting down", "retry_after": 12})
    waiting = asyncio.ensure_future(manager.drained(5.0, asyncio.Event()))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    call.mark_ended("caller hung up")
    assert await asyncio.wait_for(waiting, 1) is True


async def test_drain_gives_up_at_the_grace_or_when_hurried(_manager, _call) -> None:
    manager = _manager()
    _call(manager)
    assert await manager.drained(0.05, asyncio.Event()) is False
    hurry = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, hurry.set)
    assert await asyncio.wait_for(manager.drained(60, hurry), 1) is False
