"""What an ended call leaves behind: its final view for the API, and nothing that keeps the call's
codecs, buffers and agent link alive (a soak of 1,000 calls grew 0.15-0.3 MiB a call without this)."""

from __future__ import annotations

import gc
import weakref
from types import SimpleNamespace

from sipbridge.calls.call import Call, CallSettings
from sipbridge.calls.manager import CallManager

SETTINGS = CallSettings(
    rtp_host="127.0.0.1",
    agent_timeout=1.0,
    ice_servers=(),
    opus_bitrate=32000,
    opus_application="audio",
)
CALLBACKS = ("on_cancel", "on_bye", "on_failed", "on_dtmf", "on_offer", "on_answer")


class _UnansweredCall(Call):
    """A call whose set-up ends at once without an answer (what run() does around it is real)."""

    async def _establish(self) -> None:
        return None


def _manager() -> CallManager:
    return CallManager(SETTINGS, ports=None, whip=None)  # type: ignore[arg-type]


def test_an_ended_call_is_kept_as_its_final_view_and_the_call_itself_is_let_go():
    manager = _manager()
    call = Call(None, SETTINGS, None, None, manager.clock, manager._call_ended)  # type: ignore[arg-type]
    manager.active[call.id] = call
    call.events.append({"type": "response", "text": "goodbye"})
    call._mark_ended("caller hung up")
    view, call_id, alive = call.to_dict(), call.id, weakref.ref(call)

    kept = manager.get(call_id)
    assert kept is not None and kept.to_dict() == view
    assert view["state"] == "ended" and view["end_reason"] == "caller hung up"
    assert call_id not in manager.active
    del call
    gc.collect()
    assert alive() is None


async def test_the_history_answers_a_late_hang_up_with_the_view():
    manager = _manager()
    call = Call(None, SETTINGS, None, None, manager.clock, manager._call_ended)  # type: ignore[arg-type]
    manager.active[call.id] = call
    call._mark_ended("caller hung up")
    again = await manager.hangup(call.id)
    assert again is not None and again.to_dict()["end_reason"] == "caller hung up"


async def test_once_over_the_call_is_unhooked_from_its_sip_session():
    """The UA keeps the session for 64·T1 after the 200 OK: it must not keep the call with it."""
    session = SimpleNamespace(**dict.fromkeys(CALLBACKS))
    call = _UnansweredCall(None, SETTINGS, None, None, None, lambda call: None)  # type: ignore[arg-type]
    call.session = session  # type: ignore[assignment]
    call._wire_dialog(session)  # type: ignore[arg-type]
    session.on_bye = session.on_cancel = lambda: call._finish_soon("caller hung up")
    assert all(getattr(session, name) is not None for name in CALLBACKS)

    await call.run()

    assert [name for name in CALLBACKS if getattr(session, name) is not None] == []
