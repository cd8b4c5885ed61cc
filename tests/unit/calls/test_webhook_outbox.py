"""The webhook outbox, driven by a clock we hold: the backoff schedule, the five-minute limit, one
line in order, drop-oldest when full, and what each HTTP answer makes of an event."""

from __future__ import annotations

import random

import pytest

from sipbridge import metrics
from sipbridge.calls.webhooks.events import Event
from sipbridge.calls.webhooks.outbox import MAX_AGE_S, Backoff, Fate, Outbox, Verdict, verdict_of


def _event(n: int) -> Event:
    return Event(f"evt_{n}", "call.dtmf", "call-1", b'{"n": %d}' % n)


def _ids(outbox: Outbox, now: float) -> list[str]:
    """The events of the line in order, as they would go out were every attempt delivered."""
    sent = []
    while (pending := outbox.due(now)) is not None:
        sent.append(pending.event.id)
        assert outbox.settle(pending, Verdict.DELIVERED, now) is Fate.DELIVERED
    return sent


def test_a_failing_event_is_retried_with_growing_jittered_delays_for_five_minutes() -> None:
    outbox = Outbox(rng=random.Random(7))
    outbox.add(_event(1), now=0.0)
    tries: list[float] = []
    now, fate = 0.0, None
    while fate is None:
        pending = outbox.due(now)
        assert pending is not None
        assert not tries or outbox.due(now - 0.001) is None  # not a moment before its time
        tries.append(now)
        fate = outbox.settle(pending, Verdict.RETRY, now)
        if fate is None:
            now = outbox.wake_at() or 0.0
    gaps = [b - a for a, b in zip(tries, tries[1:], strict=False)]
    ceilings = [min(60.0, 2.0 ** (n - 1)) for n in range(1, len(gaps) + 1)]
    print("tries at", [round(t, 1) for t in tries])
    assert fate is Fate.EXPIRED and len(outbox) == 0
    assert all(c / 2 <= gap <= c for gap, c in zip(gaps, ceilings, strict=True)), (gaps, ceilings)
    assert tries[-1] < MAX_AGE_S and 9 <= len(tries) <= 14  # 1, 2, 4 ... 60, 60 s: ten-odd tries


def test_the_backoff_doubles_up_to_its_cap_and_jitters_within_the_upper_half() -> None:
    backoff = Backoff(first=1.0, cap=60.0)
    assert [backoff.ceiling(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    delays = [backoff.delay(5, random.Random(seed)) for seed in range(50)]
    assert all(8.0 <= d <= 16.0 for d in delays) and len(set(delays)) == 50  # spread, not one instant


def test_the_receivers_retry_after_is_heeded_up_to_the_cap() -> None:
    outbox = Outbox(rng=random.Random(1))
    outbox.add(_event(1), now=0.0)
    pending = outbox.due(0.0)
    assert pending is not None
    assert outbox.settle(pending, Verdict.RETRY, 0.0, retry_after=30.0) is None
    assert outbox.wake_at() == pytest.approx(30.0)
    assert outbox.due(29.9) is None and outbox.due(30.0) is pending
    outbox.settle(pending, Verdict.RETRY, 30.0, retry_after=3600.0)
    assert outbox.wake_at() == pytest.approx(90.0)  # a day's Retry-After is held to the 60 s cap


def test_events_go_out_one_at_a_time_in_order_and_a_failing_head_holds_the_rest() -> None:
    outbox = Outbox(rng=random.Random(2))
    for n in range(1, 4):
        outbox.add(_event(n), now=0.0)
    head = outbox.due(0.0)
    assert head is not None and head.event.id == "evt_1"
    assert outbox.settle(head, Verdict.RETRY, 0.0) is None
    assert outbox.due(0.1) is None  # evt_2 waits behind evt_1, whose retry is not due yet
    retry_at = outbox.wake_at()
    assert retry_at is not None and 0.5 <= retry_at <= 1.0
    assert _ids(outbox, retry_at) == ["evt_1", "evt_2", "evt_3"]
    assert outbox.wake_at() is None


def test_a_full_line_drops_its_oldest_for_the_newest() -> None:
    outbox = Outbox(capacity=3)
    dropped = [outbox.add(_event(n), now=float(n)) for n in range(1, 6)]
    assert [e.id if e else None for e in dropped] == [None, None, None, "evt_1", "evt_2"]
    assert len(outbox) == 3
    assert _ids(outbox, 10.0) == ["evt_3", "evt_4", "evt_5"]


def test_an_event_dropped_while_being_sent_is_not_settled_twice() -> None:
    outbox = Outbox(capacity=1)
    outbox.add(_event(1), now=0.0)
    sending = outbox.due(0.0)
    assert sending is not None
    assert outbox.add(_event(2), now=0.1) == sending.event  # its POST is out; its fate was told now
    assert outbox.settle(sending, Verdict.DELIVERED, 0.2) is None
    assert _ids(outbox, 0.2) == ["evt_2"]


def test_events_that_waited_five_minutes_behind_a_failing_head_expire_untried() -> None:
    outbox = Outbox(rng=random.Random(3))
    outbox.add(_event(1), now=0.0)
    outbox.add(_event(2), now=100.0)
    outbox.add(_event(3), now=350.0)
    assert [e.id for e in outbox.expire(299.9)] == []
    assert [e.id for e in outbox.expire(400.0)] == ["evt_1", "evt_2"]
    assert _ids(outbox, 400.0) == ["evt_3"]


def test_a_refusal_is_final_and_lets_the_next_event_go_at_once() -> None:
    outbox = Outbox()
    outbox.add(_event(1), now=0.0)
    outbox.add(_event(2), now=0.0)
    head = outbox.due(0.0)
    assert head is not None and outbox.settle(head, Verdict.REFUSED, 0.0) is Fate.REFUSED
    assert _ids(outbox, 0.0) == ["evt_2"]


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, Verdict.DELIVERED),
        (202, Verdict.DELIVERED),
        (204, Verdict.DELIVERED),
        (500, Verdict.RETRY),
        (502, Verdict.RETRY),
        (503, Verdict.RETRY),
        (408, Verdict.RETRY),
        (429, Verdict.RETRY),
        (400, Verdict.REFUSED),
        (401, Verdict.REFUSED),
        (404, Verdict.REFUSED),
        (410, Verdict.REFUSED),
        (301, Verdict.REFUSED),
    ],
)
def test_what_each_answer_means(status: int, verdict: Verdict) -> None:
    assert verdict_of(status) is verdict


def test_metrics_label_every_fate_the_outbox_gives() -> None:
    assert set(metrics.WEBHOOK_FATES) == {fate.value for fate in Fate}
