"""Fuzz target: the SIP message parser (``parse_message``) and what the UAS does with a broken request.

Own error: ``SipParseError`` (with a 4xx/5xx ``status`` and a one-line ``reason``). A message that
parses has working typed accessors (they too raise only ``SipParseError``) and serialises to bytes
that parse again to the same message. ``extract_for_error_response`` never raises, and the response
built from what it salvaged serialises.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given
from tests.fuzz.corpus import SIP_SAMPLES, checked, fuzz_bytes, header_text, no_hang, sip_corpus

from sipbridge.sip.errors import SipParseError
from sipbridge.sip.message import SipRequest, SipResponse, extract_for_error_response, parse_message
from sipbridge.sip.responses import make_response
from sipbridge.sip.sdp import SdpError, parse_sdp

CORPUS = sip_corpus()
BASE = CORPUS[0].split(b"\r\n\r\n", 1)[0]


def exercise(data: bytes) -> None:
    with no_hang():
        try:
            message = parse_message(data)
        except SipParseError as exc:
            assert isinstance(exc.status, int) and 400 <= exc.status < 600, exc.status
            assert exc.reason and "\r" not in exc.reason and "\n" not in exc.reason
            broken = extract_for_error_response(data)
            assert broken is None or isinstance(broken, SipRequest)
            if broken is not None:
                make_response(broken, exc.status, to_tag="x").to_bytes()
            return
        use(message)


def use(message: SipRequest | SipResponse) -> None:
    """Every accessor answers (or raises SipParseError) and the message survives a round trip."""
    assert message.call_id and message.via
    _ = (message.cseq, message.from_, message.to, message.max_forwards, message.content_type)
    if isinstance(message, SipRequest):
        assert message.request_uri.scheme
        make_response(message, 200, to_tag="x").to_bytes()
    for name in ("Contact", "Route", "Record-Route", "Supported", "Require", "Allow"):
        message.headers.get_all(name)
    again = parse_message(message.to_bytes())
    assert again.to_bytes() == message.to_bytes()
    assert again.body == message.body
    if message.body.startswith(b"v=0"):  # a mangled offer in a message that parses: SdpError only
        checked(lambda: parse_sdp(message.body), SdpError)


@given(fuzz_bytes(CORPUS, max_random=1024))
@example(b"")
@example(b"\r\n\r\n")
@example(b"SIP/2.0 200 OK")
def test_parse_message(data):
    exercise(data)


@given(name=header_text(max_pieces=3), value=header_text())
def test_parse_message_with_structured_header(name, value):
    """A valid request with one more header line of random name and value built from SIP tokens."""
    head = BASE + b"\r\n" + f"{name}: {value}".encode("utf-8", "surrogateescape")
    exercise(head + b"\r\n\r\n")


@given(fuzz_bytes(CORPUS))
def test_extract_for_error_response_never_raises(data):
    broken = checked(lambda: extract_for_error_response(data))
    if broken is not None:
        make_response(broken, 400).to_bytes()


@pytest.mark.parametrize("index", range(len(SIP_SAMPLES)))
def test_every_truncation_point(index):
    """Every prefix of a valid message, as a datagram cut short anywhere would give it."""
    data = SIP_SAMPLES[index]
    for cut in range(len(data) + 1):
        exercise(data[:cut])
