"""Connection caps and deadlines, sans-IO: who gets a place at accept, and when a connection must close."""

from __future__ import annotations

from sipbridge.sip.framing import StreamFramer
from sipbridge.sip.stream_limits import AcceptBudget, ConnectionPolicy, RareLog, StreamDeadlines

POLICY = ConnectionPolicy(
    max_connections=10,
    max_per_source=3,
    trunk_reserve=4,
    first_message_timeout=10.0,
    idle_timeout=300.0,
    trusted=lambda ip: ip.startswith("192.0.2."),
)


def test_a_stranger_is_held_to_its_per_source_cap():
    budget = AcceptBudget(POLICY)
    seats = [budget.admit("198.51.100.1") for _ in range(4)]
    assert [seat is not None for seat in seats] == [True, True, True, False]
    assert budget.admit("198.51.100.2") is not None  # another address has its own
    first = seats[0]
    assert first is not None
    budget.release(first)
    assert budget.admit("198.51.100.1") is not None  # a place freed is a place again


def test_strangers_together_stop_short_of_the_trunks_reserve():
    budget = AcceptBudget(POLICY)
    admitted = sum(budget.admit(f"198.51.100.{i}") is not None for i in range(20))
    assert admitted == 6  # 10 in all, 4 kept for trunks
    trunk = [budget.admit("192.0.2.1") for _ in range(5)]
    assert [seat is not None for seat in trunk] == [True, True, True, True, False]  # the total holds
    assert budget.open == 10


def test_a_trusted_source_has_no_per_source_cap_but_the_total():
    budget = AcceptBudget(POLICY)
    seats = [budget.admit("192.0.2.7") for _ in range(12)]
    assert sum(seat is not None for seat in seats) == 10
    assert budget.admit("198.51.100.1") is None  # the trunks filled it: the total is the total
    for seat in seats[:3]:
        assert seat is not None
        budget.release(seat)
    assert budget.admit("198.51.100.1") is not None


def test_strangers_gone_give_their_places_back():
    budget = AcceptBudget(POLICY)
    seats = [budget.admit(f"198.51.100.{i}") for i in range(6)]
    assert budget.admit("198.51.100.9") is None
    for seat in seats:
        assert seat is not None
        budget.release(seat)
    assert budget.open == 0
    assert sum(budget.admit(f"198.51.100.{i}") is not None for i in range(6)) == 6


def test_an_accepted_connection_owes_a_first_message():
    deadlines = StreamDeadlines(POLICY, now=100.0, accepted=True)
    assert deadlines.expiry == 110.0
    deadlines.received(105.0, messages=0, pings=2, partial=False)  # keep-alives alone do not count
    deadlines.sent(105.0)
    assert deadlines.expiry == 110.0 and not deadlines.established
    deadlines.received(109.0, messages=1, pings=0, partial=False)
    assert deadlines.established and deadlines.expiry == 409.0


def test_bytes_trickling_in_do_not_put_the_deadline_off():
    deadlines = StreamDeadlines(POLICY, now=0.0, accepted=True)
    deadlines.received(1.0, messages=1, pings=0, partial=False)
    for tick in range(20):  # one byte every half second: never a whole message
        deadlines.received(2.0 + tick / 2, messages=0, pings=0, partial=True)
    assert deadlines.expiry == 12.0  # the message begun at 2.0 had until 12.0
    assert deadlines.expired(12.0) and not deadlines.expired(11.9)


def test_a_message_completed_starts_the_next_ones_clock_afresh():
    deadlines = StreamDeadlines(POLICY, now=0.0, accepted=True)
    deadlines.received(1.0, messages=0, pings=0, partial=True)
    deadlines.received(8.0, messages=1, pings=0, partial=True)  # one done, the next begun
    assert deadlines.expiry == 18.0
    deadlines.received(9.0, messages=1, pings=0, partial=False)
    assert deadlines.expiry == 309.0


def test_once_established_keep_alives_and_what_we_send_keep_it_open():
    deadlines = StreamDeadlines(POLICY, now=0.0, accepted=True)
    deadlines.received(1.0, messages=1, pings=0, partial=False)
    deadlines.received(200.0, messages=0, pings=1, partial=False)
    assert deadlines.expiry == 500.0
    deadlines.sent(400.0)
    assert deadlines.expiry == 700.0


def test_a_connection_we_opened_starts_established():
    deadlines = StreamDeadlines(POLICY, now=0.0, accepted=False)
    assert deadlines.established and deadlines.expiry == 300.0


def test_a_lone_crlf_is_not_a_partial_message():
    framer = StreamFramer()
    assert framer.feed(b"\r\n") == [] and not framer.partial  # a pong, or half a ping
    assert framer.feed(b"\r") == [] and not framer.partial
    framer.feed(b"\n")
    assert not framer.partial and framer.buffered == 0
    framer.feed(b"OPT")
    assert framer.partial


def test_a_rare_log_reports_a_count_once_per_interval():
    rare = RareLog(interval=10.0)
    reports = [rare.note(t / 10) for t in range(250)]  # ten events a second for 25 s
    assert [count for count in reports if count] == [1, 100, 100]
