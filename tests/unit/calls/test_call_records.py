"""Call records and the drain, on the CallManager without sockets."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from sipbridge.calls.call import Call, CallSettings
from sipbridge.calls.manager import CallManager
from sipbridge.calls.records import CallRecords
from sipbridge.rtp.ports import PortAllocator
from sipbridge.rtp.session import RtpSession

SETTINGS = CallSettings(
    rtp_host="127.0.0.1", agent_timeout=1.0, ice_servers=(), opus_bitrate=32000, opus_application="audio"
)


def _manager(records: CallRecords | None = None) -> CallManager:
    return CallManager(SETTINGS, PortAllocator(40000, 40009), None, 10, records=records)  # type: ignore[arg-type]


def _call(manager: CallManager, caller: str = "+14155550123", callee: str = "1001") -> Call:
    call = Call(None, SETTINGS, manager.ports, None, manager.clock, manager._call_ended)  # type: ignore[arg-type]
    call.from_user, call.to_user, call.provider, call.codec = caller, callee, "pbx", "PCMU"
    call.rtp = RtpSession()
    call.rtp.stats.packets_in = 250
    call.digits.append({"digit": "7", "from": "phone", "via": "rfc4733", "at": 0.0})
    manager.active[call.id] = call
    return call


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_each_ended_call_is_recorded_once_with_numbers_masked(tmp_path: Path) -> None:
    path = tmp_path / "calls.jsonl"
    manager = _manager(CallRecords(str(path), redact=True))
    first, second = _call(manager), _call(manager, caller="alice")
    first._mark_ended("caller hung up")
    first._mark_ended("caller hung up")  # a second end changes nothing
    second._mark_ended("agent link failed (ICE failed) and was not recovered within 20 s: refused")
    one, two = _records(path)
    assert one["id"] == first.id and two["id"] == second.id
    assert one["from"] == "+*******0123" and one["to"] == "**01" and two["from"] == "***ce"
    assert one["end_reason"] == "caller hung up" and one["end_category"] == "remote_hangup"
    assert two["end_category"] == "agent_link_failed"
    assert one["direction"] == "inbound" and one["provider"] == "pbx" and one["codec"] == "PCMU"
    assert one["rtp"]["packets_received"] == 250 and one["agent"]["reconnects"] == 0
    assert [s["state"] for s in one["states"]] == ["ended"] and one["ended_at"] >= one["started_at"]
    assert one["dtmf_digits"] == 1 and "7" not in json.dumps(one["rtp"])  # digits may be a PIN
    assert "conversation" not in one


def test_numbers_are_kept_when_redaction_is_off(tmp_path: Path) -> None:
    path = tmp_path / "calls.jsonl"
    manager = _manager(CallRecords(str(path), redact=False))
    _call(manager)._mark_ended("busy")
    assert _records(path)[0]["from"] == "+14155550123"


def test_a_record_that_cannot_be_written_is_logged_and_the_call_still_ends(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "calls.jsonl"
    records = CallRecords(str(path))
    manager = _manager(records)
    path.unlink()
    path.mkdir()  # appending to it now fails
    call = _call(manager)
    call._mark_ended("caller hung up")
    assert call.id not in manager.active and call.state.value == "ended"
    assert "record not written" in caplog.text and records.written == 0


def test_a_records_path_that_cannot_be_opened_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        CallRecords(str(tmp_path / "missing" / "calls.jsonl"))


async def test_drain_refuses_new_invites_and_waits_for_the_calls() -> None:
    manager = _manager()
    call = _call(manager)
    manager._idle.clear()
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
    call._mark_ended("caller hung up")
    assert await asyncio.wait_for(waiting, 1) is True


async def test_drain_gives_up_at_the_grace_or_when_hurried() -> None:
    manager = _manager()
    _call(manager)
    manager._idle.clear()
    assert await manager.drained(0.05, asyncio.Event()) is False
    hurry = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, hurry.set)
    assert await asyncio.wait_for(manager.drained(60, hurry), 1) is False
