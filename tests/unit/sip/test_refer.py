"""Blind transfer by REFER: the Refer-To we write, and the progress read from NOTIFY sipfrags."""

import pytest

from sipbridge.sip.message import Headers, SipRequest
from sipbridge.sip.refer import (
    TransferTargetError,
    answer_notify,
    progress,
    refer_to,
    sipfrag_status,
    target_host,
)


def notify(body: bytes, event: str = "refer;id=93", state: str = "active;expires=60") -> SipRequest:
    headers = Headers(
        [
            ("Via", "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1"),
            ("From", "<sip:a@127.0.0.1>;tag=1"),
            ("To", "<sip:b@127.0.0.1>;tag=2"),
            ("Call-ID", "c1"),
            ("CSeq", "2 NOTIFY"),
            ("Event", event),
            ("Subscription-State", state),
        ]
    )
    return SipRequest("NOTIFY", "sip:b@127.0.0.1", headers, body)


def test_a_number_goes_to_the_phone_sides_host_a_uri_as_it_is():
    assert refer_to("+14155550100", "pbx.example.com") == "<sip:+14155550100@pbx.example.com>"
    assert refer_to(" sip:desk@pbx.example.com ", "x") == "<sip:desk@pbx.example.com>"
    for bad in ("desk", "sip:a b@x", "tel:+1415", "+1415<>", ""):
        with pytest.raises(TransferTargetError):
            refer_to(bad, "pbx")


def test_the_host_of_a_uri_target():
    assert target_host("sip:desk@PBX.example.com:5060;transport=tcp") == "pbx.example.com"
    assert target_host("sips:[::1]:5061") == "::1"
    assert target_host("+14155550100") is None


@pytest.mark.parametrize(
    ("body", "status", "state"),
    [
        (b"SIP/2.0 100 Trying\r\n", 100, "trying"),
        (b"SIP/2.0 180 Ringing", 180, "ringing"),
        (b"SIP/2.0 200 OK\r\nContact: <sip:x>\r\n", 200, "answered"),
        (b"SIP/2.0 486 Busy Here", 486, "failed"),
        (b"garbage", None, "trying"),
        (b"", None, "trying"),
    ],
)
def test_sipfrag_progress(body, status, state):
    assert sipfrag_status(body) == status and progress(status) == state


def test_a_refer_notify_is_answered_200_with_its_progress():
    response, status, over = answer_notify(notify(b"SIP/2.0 200 OK", state="terminated;reason=noresource"))
    assert (response.status, status, over) == (200, 200, True)
    assert answer_notify(notify(b"SIP/2.0 180 Ringing"))[1:] == (180, False)
    assert answer_notify(notify(b"", event="presence")) is None
