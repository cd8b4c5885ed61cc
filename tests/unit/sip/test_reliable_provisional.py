"""RFC 3262's pure parts: the RAck header, our reliable 18x's numbering and timing, and which of
the far end's reliable 18x a UAC PRACKs."""

from __future__ import annotations

import pytest

from sipbridge.sip.message import SipRequest, SipResponse, parse_message
from sipbridge.sip.reliable_provisional import (
    RAck,
    Reliability,
    ReliableReceiver,
    ReliableSender,
    requires_100rel,
    supports_100rel,
)
from sipbridge.sip.responses import make_response
from sipbridge.sip.transaction import Timers
from testbed.sip_recorder import request

TIMERS = Timers(t1=0.5, t2=4.0)


def invite(extra: str = "Require: 100rel\r\n") -> SipRequest:
    message = parse_message(request("INVITE", extra=extra))
    assert isinstance(message, SipRequest)
    return message


def prack(rack: str) -> SipRequest:
    message = parse_message(request("PRACK", to_tag="us", cseq=2, extra=f"RAck: {rack}\r\n"))
    assert isinstance(message, SipRequest)
    return message


def ringing(req: SipRequest) -> SipResponse:
    return make_response(req, 180, to_tag="us")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("776656 1 INVITE", RAck(776656, 1, "INVITE")),
        ("  5   314159 invite ", RAck(5, 314159, "INVITE")),
        ("5 1", None),
        ("x 1 INVITE", None),
        ("5 1 INVITE extra", None),
        ("99999999999 1 INVITE", None),
        ("", None),
        (None, None),
    ],
)
def test_rack_parses_rseq_cseq_and_method(value, expected):
    assert RAck.parse(value) == expected


def test_require_and_supported_name_the_option_tag_in_any_case():
    assert requires_100rel(invite("Require: timer, 100REL\r\n"))
    assert not requires_100rel(invite("Supported: 100rel\r\n"))
    assert supports_100rel(invite("Supported: timer, 100rel\r\n")) and supports_100rel(invite())
    assert not supports_100rel(invite(""))


def test_a_reliable_response_carries_require_and_rseq_one_up_each_time():
    req = invite()
    sender = ReliableSender(req, TIMERS, first_rseq=41)
    first = sender.stamp(ringing(req), now=0.0)
    assert (
        first is not None and first.headers.get("Require") == "100rel" and first.headers.get("RSeq") == "41"
    )
    assert sender.prack(prack("41 1 INVITE"))
    second = sender.stamp(make_response(req, 183, to_tag="us"), now=1.0)
    assert second is not None and second.headers.get("RSeq") == "42"


def test_the_first_rseq_is_random_within_the_rfc_range():
    starts = {
        int(ReliableSender(invite(), TIMERS).stamp(ringing(invite()), 0).headers.get("RSeq"))
        for _ in range(20)
    }
    assert len(starts) > 1 and all(1 <= rseq <= 2**31 - 1 for rseq in starts)


def test_no_second_reliable_response_before_the_first_is_pracked():
    req = invite()
    sender = ReliableSender(req, TIMERS, first_rseq=1)
    assert sender.stamp(ringing(req), 0.0) is not None
    assert sender.stamp(make_response(req, 183, to_tag="us"), 0.1) is None


def test_resent_at_t1_doubling_without_t2_cap_and_given_up_at_64_t1():
    req = invite()
    sender = ReliableSender(req, TIMERS, first_rseq=1)
    sender.stamp(ringing(req), now=0.0)
    sends = []
    while sender.next_deadline is not None:
        now = sender.next_deadline
        if sender.on_timer(now) is not None:
            sends.append(now)
    # T1 = 0.5: at 0.5, 1.5, 3.5, 7.5, 15.5 (gaps 1, 2, 4, 8: past T2 = 4), then 31.5 > 32 - 0.5.
    assert sends == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert sender.gave_up and sender.pending is None


def test_nothing_is_resent_before_its_time():
    req = invite()
    sender = ReliableSender(req, TIMERS, first_rseq=1)
    sender.stamp(ringing(req), now=10.0)
    assert sender.on_timer(10.4) is None and sender.next_deadline == 10.5


@pytest.mark.parametrize("rack", ["8 1 INVITE", "7 2 INVITE", "7 1 BYE", "rubbish"])
def test_a_prack_naming_another_response_does_not_match(rack):
    req = invite()
    sender = ReliableSender(req, TIMERS, first_rseq=7)
    sender.stamp(ringing(req), 0.0)
    assert not sender.prack(prack(rack)) and sender.pending is not None


def test_the_matching_prack_ends_the_resending_and_a_second_one_matches_nothing():
    req = invite()
    sender = ReliableSender(req, TIMERS, first_rseq=7)
    sender.stamp(ringing(req), 0.0)
    assert sender.prack(prack("7 1 INVITE"))
    assert sender.next_deadline is None and sender.on_timer(100.0) is None
    assert not sender.prack(prack("7 1 INVITE"))


def far_18x(
    status: int = 183, rseq: str | None = "100", tag: str = "far", require: str = "100rel"
) -> SipResponse:
    invite_sent = parse_message(request("INVITE"))
    assert isinstance(invite_sent, SipRequest)
    extra = [("Require", require)] if require else []
    if rseq is not None:
        extra.append(("RSeq", rseq))
    return make_response(invite_sent, status, to_tag=tag, extra=extra)


def test_a_uac_pracks_each_reliable_response_once_and_in_order():
    receiver = ReliableReceiver()
    assert receiver.judge(far_18x(rseq="100")) == (Reliability.NEW, RAck(100, 1, "INVITE"))
    assert receiver.judge(far_18x(rseq="100")) == (Reliability.STALE, None)  # a retransmission
    assert receiver.judge(far_18x(rseq="102")) == (Reliability.STALE, None)  # 101 is missing
    assert receiver.judge(far_18x(180, rseq="101")) == (Reliability.NEW, RAck(101, 1, "INVITE"))


def test_each_early_dialog_numbers_its_own_responses():
    receiver = ReliableReceiver()
    assert receiver.judge(far_18x(rseq="5", tag="a"))[0] is Reliability.NEW
    assert receiver.judge(far_18x(rseq="900", tag="b"))[0] is Reliability.NEW


@pytest.mark.parametrize(
    "response",
    [far_18x(require=""), far_18x(rseq=None), far_18x(rseq="x"), far_18x(tag=""), far_18x(status=100)],
)
def test_an_unreliable_provisional_response_is_passed_on_without_prack(response):
    assert ReliableReceiver().judge(response) == (Reliability.UNRELIABLE, None)
