"""The CallManager without sockets.

What an ended call leaves behind: its final view for the API, and nothing that keeps the call's
codecs, buffers and agent link alive (a soak of 1,000 calls grew 0.15-0.3 MiB a call without this).
Places held for outbound calls being placed: counted by max_calls (inbound INVITEs too) and by the
provider's outbound count from the moment they are taken, given back once."""

from __future__ import annotations

import gc
import weakref
from types import SimpleNamespace

from sipbridge.calls.call import Call
from sipbridge.calls.inbound import InboundLeg

CALLBACKS = ("on_cancel", "on_bye", "on_failed", "on_dtmf", "on_offer", "on_answer")


def test_an_ended_call_is_kept_as_its_final_view_and_the_call_itself_is_let_go(make_manager, make_call):
    manager = make_manager()
    call = make_call(manager)
    call.activity.agent_event({"type": "response", "text": "goodbye"})
    call.mark_ended("caller hung up")
    view, call_id, alive = call.to_dict(), call.id, weakref.ref(call)

    kept = manager.get(call_id)
    assert kept is not None and kept.to_dict() == view
    assert view["state"] == "ended" and view["end_reason"] == "caller hung up"
    assert view["conversation"] == [{"from": "agent", "text": "goodbye"}]
    assert call_id not in manager.active
    del call
    gc.collect()
    assert alive() is None


async def test_the_history_answers_a_late_hang_up_with_the_view(make_manager, make_call):
    manager = make_manager()
    call = make_call(manager)
    call.mark_ended("caller hung up")
    again = await manager.hangup(call.id)
    assert again is not None and again.to_dict()["end_reason"] == "caller hung up"


class _UnansweredLeg(InboundLeg):
    """An inbound leg whose set-up ends at once without an answer (what run() does around it is real)."""

    def identify(self, call: Call) -> None:
        session = self.session
        session.on_bye = session.on_cancel = lambda: call.finish_soon("caller hung up")

    async def establish(self, call: Call) -> None:
        return None


async def test_once_over_the_call_is_unhooked_from_its_sip_session(make_call):
    """The UA keeps the session for 64·T1 after the 200 OK: it must not keep the call with it."""
    session = SimpleNamespace(**dict.fromkeys(CALLBACKS))
    call = make_call(leg=_UnansweredLeg(session))  # type: ignore[arg-type]
    call.wire_dialog(session)  # type: ignore[arg-type]
    assert all(getattr(session, name) is not None for name in CALLBACKS)

    await call.run()

    assert [name for name in CALLBACKS if getattr(session, name) is not None] == []
    assert call.media.closed


class Session:
    admitted_as = None
    source = ("192.0.2.1", 5060)

    def reject(self, status: int, **kwargs: object) -> None:
        self.refused = (status, kwargs)


def test_held_places_count_against_max_calls_and_the_provider(make_manager) -> None:
    manager = make_manager(max_calls=2)
    first, second = manager.reserve_outbound("trunk"), manager.reserve_outbound("other")
    assert first is not None and second is not None
    assert manager.calls_in_use == 2 and manager.outbound_active("trunk") == 1
    assert manager.reserve_outbound("trunk") is None and manager.rejected_busy == 1
    session = Session()
    assert manager.handle_invite(session) is None  # type: ignore[arg-type]
    assert session.refused[0] == 503 and "call limit of 2" in str(session.refused[1]["warning"])
    first.release()
    first.release()  # once only
    assert manager.calls_in_use == 1 and manager.outbound_active("trunk") == 0
    assert manager.reserve_outbound("trunk") is not None


async def test_a_call_whose_media_worker_failed_ends_with_that_reason(make_manager, make_call):
    import asyncio

    from sipbridge.media_session.messages import MediaFailed

    manager = make_manager()
    call = make_call(manager)
    call.media.emit(MediaFailed("media worker closed its channel"))
    for _ in range(5):
        await asyncio.sleep(0)
    assert call.end_reason == "media worker failed" and call.leg.signalling_ended == ["media worker failed"]
    assert manager.get(call.id).to_dict()["state"] == "ended"


async def test_a_call_s_view_names_the_media_worker_holding_it(make_call):
    from sipbridge.media_session.messages import MediaOpened

    in_process, on_worker = make_call(), make_call()
    on_worker.media.opened = MediaOpened(40002, worker=1)
    assert await in_process.open_media() and await on_worker.open_media()
    assert in_process.to_dict()["worker"] is None
    assert on_worker.to_dict()["worker"] == 1 and on_worker.rtp_port == 40002
