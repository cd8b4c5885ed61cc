"""DTMF in SIP INFO bodies: application/dtmf-relay and application/dtmf, parsed and built."""

import pytest

from sipbridge.sip.dtmf_info import (
    DTMF,
    DTMF_RELAY,
    DtmfInfo,
    DtmfInfoError,
    build_dtmf_info,
    is_dtmf_content_type,
    parse_dtmf,
    parse_dtmf_info,
    parse_dtmf_relay,
)
from sipbridge.sip.errors import SipParseError


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"Signal=5\r\nDuration=160\r\n", DtmfInfo("5", 160)),
        (b"Signal=5\r\nDuration=160", DtmfInfo("5", 160)),
        (b"Signal=#\nDuration=250\n", DtmfInfo("#", 250)),
        (b"signal=*\r\nduration=100\r\n", DtmfInfo("*", 100)),
        (b"SIGNAL = 0 \r\n DURATION= 90\r\n", DtmfInfo("0", 90)),
        (b"Signal= #\r\n", DtmfInfo("#", None)),
        (b"Signal=\t9\t\r\n\r\n", DtmfInfo("9", None)),
        (b"\r\nSignal=a\r\nDuration=0\r\n", DtmfInfo("A", 0)),
        (b"Signal=D\r\nDuration=2000\r\n", DtmfInfo("D", 2000)),
        (b"Duration=160\r\nSignal=7\r\n", DtmfInfo("7", 160)),  # any order
        (b"Signal=10\r\nDuration=160\r\n", DtmfInfo("*", 160)),  # numeric codes of some phones
        (b"Signal=11\r\n", DtmfInfo("#", None)),
        (b"Signal=12\r\n", DtmfInfo("A", None)),
        (b"Signal=15\r\n", DtmfInfo("D", None)),
        (b"Signal=3\rDuration=60\r", DtmfInfo("3", 60)),  # bare CR line ends
        (b"Signal=1\r\nDuration=100\r\nX-Extra=whatever\r\njunk\r\n", DtmfInfo("1", 100)),
        ("Signal=2\r\nDuration=40\r\n", DtmfInfo("2", 40)),  # already text
    ],
)
def test_parse_dtmf_relay(body, expected):
    assert parse_dtmf_relay(body) == expected
    assert parse_dtmf_info("application/dtmf-relay", body) == expected


@pytest.mark.parametrize("body", [b"Signal=16\r\nDuration=160\r\n", b"Signal=!\r\n", b"Signal= ! \r\n"])
def test_hook_flash_is_not_a_digit(body):
    assert parse_dtmf_relay(body) is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "no Signal= line"),
        (b"Duration=160\r\n", "no Signal= line"),
        (b"Signal\r\n", "no Signal= line"),
        (b"Signal=\r\nDuration=160\r\n", "empty DTMF signal"),
        (b"Signal=55\r\n", "not a DTMF signal: '55'"),
        (b"Signal=E\r\n", "not a DTMF signal"),
        (b"Signal=17\r\n", "not a DTMF signal"),
        (b"Signal=-1\r\n", "not a DTMF signal"),
        (b"Signal=\xff\r\n", "not a DTMF signal"),
        (b"Signal=5\r\nDuration=abc\r\n", "Duration='abc' is not a number"),
        (b"Signal=5\r\nDuration=-10\r\n", "is not a number"),
        (b"Signal=5\r\nDuration=1.5\r\n", "is not a number"),
        (b"Signal=5\r\nDuration=\r\n", "is not a number"),
        (b"Signal=5\r\nSignal=6\r\n", "more than one Signal= line"),
        (b"Signal=5\r\n" + b"x" * 5000, "too long"),
    ],
)
def test_malformed_dtmf_relay_bodies(body, message):
    with pytest.raises(DtmfInfoError, match=message) as caught:
        parse_dtmf_relay(body)
    assert caught.value.status == 400


@pytest.mark.parametrize(
    ("body", "expected"),
    [(b"5", DtmfInfo("5")), (b"#\r\n", DtmfInfo("#")), (b" b ", DtmfInfo("B")), (b"11", DtmfInfo("#"))],
)
def test_parse_dtmf(body, expected):
    assert parse_dtmf(body) == expected
    assert parse_dtmf_info("application/dtmf", body) == expected


@pytest.mark.parametrize("body", [b"", b"\r\n", b"55", b"Signal=5", b"x"])
def test_malformed_dtmf_bodies(body):
    with pytest.raises(DtmfInfoError):
        parse_dtmf(body)


def test_dtmf_flash():
    assert parse_dtmf(b"!") is None


@pytest.mark.parametrize(
    "content_type",
    ["application/dtmf-relay", "Application/DTMF-Relay", " application/dtmf-relay ; charset=utf-8"],
)
def test_content_type_is_matched_loosely(content_type):
    assert is_dtmf_content_type(content_type)
    assert parse_dtmf_info(content_type, b"Signal=4\r\n") == DtmfInfo("4")


@pytest.mark.parametrize("content_type", ["application/sdp", "text/plain", "", "application/dtmf-relayx"])
def test_other_content_types_are_415(content_type):
    assert not is_dtmf_content_type(content_type)
    with pytest.raises(DtmfInfoError, match="unsupported INFO body type") as caught:
        parse_dtmf_info(content_type, b"Signal=4\r\n")
    assert caught.value.status == 415


def test_error_carries_what_to_answer():
    error = DtmfInfoError("x")
    assert isinstance(error, SipParseError) and isinstance(error, ValueError)
    assert (error.status, error.reason) == (400, "x")


def test_build_dtmf_relay():
    assert build_dtmf_info("5") == b"Signal=5\r\nDuration=250\r\n"
    assert build_dtmf_info("#", 160) == b"Signal=#\r\nDuration=160\r\n"
    assert build_dtmf_info("c", 100, DTMF_RELAY) == b"Signal=C\r\nDuration=100\r\n"


def test_build_dtmf():
    assert build_dtmf_info("*", content_type=DTMF) == b"*"
    assert build_dtmf_info("d", content_type="application/dtmf; x=y") == b"D"


@pytest.mark.parametrize("digit", "0123456789*#ABCD")
def test_build_then_parse_round_trip(digit):
    assert parse_dtmf_info(DTMF_RELAY, build_dtmf_info(digit, 120)) == DtmfInfo(digit, 120)
    assert parse_dtmf_info(DTMF, build_dtmf_info(digit, content_type=DTMF)) == DtmfInfo(digit)


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [(("",), {}), (("12",), {}), (("E",), {}), (("5", -1), {}), (("5",), {"content_type": "text/plain"})],
)
def test_build_rejects_bad_input(args, kwargs):
    with pytest.raises(ValueError):
        build_dtmf_info(*args, **kwargs)
