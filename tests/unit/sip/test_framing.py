"""SIP over TCP/TLS framing (RFC 3261 §18.3, RFC 5626 keep-alives): every split point, every limit."""

import pytest

from sipbridge.sip.framing import PONG, FramingError, KeepAlive, StreamFramer
from sipbridge.sip.message import SipRequest, SipResponse, parse_message

PING = KeepAlive.PING

SDP = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\n\r\nc=IN IP4 192.0.2.1\r\n"  # a blank line inside

INVITE = (
    b"INVITE sip:bob@192.0.2.4 SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK74bf9\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: <sip:bob@192.0.2.4>\r\n"
    b"From: <sip:alice@192.0.2.1>;tag=9fxced76sl\r\n"
    b"Call-ID: 3848276298220188511@192.0.2.1\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Content-Type: application/sdp\r\n"
    b"content-LENGTH: " + str(len(SDP)).encode() + b"\r\n\r\n" + SDP
)

OK = (
    b"SIP/2.0 200 OK\r\n"
    b"v: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK74bf9\r\n"
    b"t: <sip:bob@192.0.2.4>;tag=8321234356\r\n"
    b"f: <sip:alice@192.0.2.1>;tag=9fxced76sl\r\n"
    b"i: 3848276298220188511@192.0.2.1\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"L : 5\r\n\r\n"
    b"hello"
)

BYE = (
    b"BYE sip:bob@192.0.2.4 SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bKbye\r\n"
    b"To: <sip:bob@192.0.2.4>;tag=8321234356\r\n"
    b"From: <sip:alice@192.0.2.1>;tag=9fxced76sl\r\n"
    b"Call-ID: 3848276298220188511@192.0.2.1\r\n"
    b"CSeq: 2 BYE\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def _feed_all(framer: StreamFramer, chunks) -> list:
    out = []
    for chunk in chunks:
        out.extend(framer.feed(chunk))
    return out


def test_one_message_is_returned_whole_and_parses():
    (data,) = StreamFramer().feed(INVITE)
    assert data == INVITE
    message = parse_message(data)
    assert isinstance(message, SipRequest) and message.body == SDP


def test_many_messages_in_one_chunk():
    framer = StreamFramer()
    assert framer.feed(INVITE + OK + BYE + INVITE) == [INVITE, OK, BYE, INVITE]
    assert framer.buffered == 0
    assert isinstance(parse_message(OK), SipResponse)


STREAM = b"\r\n" + INVITE + b"\r\n\r\n" + OK
EXPECTED = [INVITE, PING, OK]


@pytest.mark.parametrize("offset", range(len(STREAM) + 1))
def test_two_messages_and_a_ping_split_at_every_offset(offset):
    framer = StreamFramer()
    assert _feed_all(framer, [STREAM[:offset], STREAM[offset:]]) == EXPECTED
    assert framer.buffered == 0


def test_byte_by_byte():
    framer = StreamFramer()
    stream = STREAM + BYE + b"\r\n" + INVITE
    assert _feed_all(framer, [stream[i : i + 1] for i in range(len(stream))]) == [*EXPECTED, BYE, INVITE]


def test_message_is_returned_as_soon_as_its_last_body_byte_arrives():
    framer = StreamFramer()
    assert framer.feed(OK[:-1]) == []
    assert framer.buffered == len(OK) - 1
    assert framer.feed(OK[-1:]) == [OK]


def test_blank_line_inside_the_body_is_body():
    framer = StreamFramer()
    assert framer.feed(INVITE[: -len(SDP) + 30]) == []
    assert framer.feed(INVITE[-len(SDP) + 30 :] + BYE) == [INVITE, BYE]


def test_leading_crlfs_are_skipped():
    assert StreamFramer().feed(b"\r\n" + BYE) == [BYE]
    assert StreamFramer().feed(b"\n\r" + BYE) == [BYE]


def test_ping_is_reported_once_and_a_lone_crlf_is_held():
    framer = StreamFramer()
    assert framer.feed(b"\r\n") == []
    assert framer.buffered == 2  # a pong, or the start of a ping
    assert framer.feed(b"\r") == []
    assert framer.feed(b"\n") == [PING]
    assert framer.feed(b"\r\n\r\n\r\n\r\n") == [PING, PING]
    assert framer.feed(b"\r\n\r\n\r\n") == [PING]
    assert framer.feed(BYE) == [BYE]  # the held CRLF was leading noise
    assert framer.buffered == 0
    assert PONG == b"\r\n"


def test_pings_between_messages_keep_their_order():
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r\n" + BYE + b"\r\n\r\n" + OK + b"\r\n\r\n") == [PING, BYE, PING, OK, PING]


def test_folded_and_spaced_content_length():
    message = BYE.replace(b"Content-Length: 0\r\n", b"Content-Length:\r\n   3\r\n") + b"abc"
    assert StreamFramer().feed(message + BYE) == [message, BYE]


def test_duplicate_equal_content_lengths_frame_the_parser_rejects_them_later():
    message = BYE.replace(b"Content-Length: 0\r\n", b"Content-Length: 0\r\nl: 00\r\n")
    assert StreamFramer().feed(message) == [message]


def test_bare_lf_line_ends_frame_like_the_parser_reads_them():
    message = BYE.replace(b"\r\n", b"\n")
    assert StreamFramer().feed(message + b"\n" + OK) == [message, OK]


@pytest.mark.parametrize(
    "replacement, reason",
    [
        (b"", "missing Content-Length"),
        (b"Content-Length: abc\r\n", "malformed Content-Length"),
        (b"Content-Length: -1\r\n", "malformed Content-Length"),
        (b"Content-Length: 1 2\r\n", "malformed Content-Length"),
        (b"Content-Length:\r\n", "malformed Content-Length"),
        (b"Content-Length: 0\r\nl: 5\r\n", "conflicting Content-Length headers"),
    ],
)
def test_unusable_content_length_is_fatal(replacement, reason):
    framer = StreamFramer()
    with pytest.raises(FramingError) as info:
        framer.feed(BYE.replace(b"Content-Length: 0\r\n", replacement))
    assert info.value.reason == reason and info.value.status == 400
    assert isinstance(info.value, ValueError)
    with pytest.raises(FramingError, match=reason):  # the stream stays failed
        framer.feed(BYE)


def test_body_limit_is_inclusive():
    body = b"x" * 100
    message = BYE.replace(b"Content-Length: 0", b"Content-Length: 100") + body
    assert StreamFramer(max_body=100).feed(message) == [message]
    with pytest.raises(FramingError) as info:
        StreamFramer(max_body=99).feed(message[: -len(body)])  # refused before the body arrives
    assert info.value.status == 413


@pytest.mark.parametrize("value", [b"4294967296", b"9" * 5000, b"0" * 5000 + b"65537"])
def test_huge_content_length_is_refused(value):
    head = BYE.replace(b"Content-Length: 0", b"Content-Length: " + value)
    with pytest.raises(FramingError, match="body too large"):
        StreamFramer().feed(head)


def test_leading_zeros_are_allowed():
    message = BYE.replace(b"Content-Length: 0", b"Content-Length: 0000000000000000000003") + b"abc"
    assert StreamFramer().feed(message) == [message]


def test_head_limit_is_inclusive():
    head_length = BYE.index(b"\r\n\r\n")
    assert StreamFramer(max_head=head_length).feed(BYE) == [BYE]
    with pytest.raises(FramingError) as info:
        StreamFramer(max_head=head_length - 1).feed(BYE)
    assert info.value.status == 513


def test_endless_head_is_refused_without_waiting_for_its_end():
    framer = StreamFramer(max_head=1024)
    framer.feed(b"INVITE sip:bob@192.0.2.4 SIP/2.0\r\n")
    with pytest.raises(FramingError, match="head too large"):
        for _ in range(1000):
            framer.feed(b"X-Filler: " + b"a" * 50 + b"\r\n")
    assert framer.buffered <= 1024 + 3 + 62


def test_endless_head_byte_by_byte_fails_just_past_the_limit():
    framer = StreamFramer(max_head=64)
    fed = 0
    with pytest.raises(FramingError):
        while True:
            framer.feed(b"a")
            fed += 1
    assert fed == 64 + 3  # the 68th byte proves no terminator can end the head in time


def test_error_keeps_what_was_framed_before_it():
    framer = StreamFramer()
    with pytest.raises(FramingError) as info:
        framer.feed(BYE + b"\r\n\r\n" + b"garbage\r\n\r\n")
    assert info.value.framed == [BYE, PING]
