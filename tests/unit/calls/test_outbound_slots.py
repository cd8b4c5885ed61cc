"""Places held for outbound calls being placed: counted by max_calls (inbound INVITEs too) and by the
provider's outbound count from the moment they are taken, given back once."""

from __future__ import annotations


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
