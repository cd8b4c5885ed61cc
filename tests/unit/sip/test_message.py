import pytest

from sipbridge.sip.errors import SipParseError
from sipbridge.sip.message import (
    Headers,
    SipRequest,
    SipResponse,
    extract_for_error_response,
    generate_branch,
    generate_call_id,
    generate_tag,
    parse_message,
)
from sipbridge.sip.responses import REASON_PHRASES, make_response

SDP = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"

INVITE_HEAD = (
    "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;rport\r\n"
    "Via: SIP/2.0/UDP bigbox3.site3.atlanta.example.com;branch=z9hG4bK77ef4c2312983.1\r\n"
    "Max-Forwards: 70\r\n"
    'To: "Bob" <sip:bob@biloxi.example.com>\r\n'
    'From: "Alice" <sip:alice@atlanta.example.com>;tag=1928301774\r\n'
    "Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    "CSeq: 314159 INVITE\r\n"
    "Contact: <sip:alice@pc33.atlanta.example.com>\r\n"
    "Content-Type: application/sdp\r\n"
)
CONTENT_LENGTH = f"Content-Length: {len(SDP)}"


def invite(extra: str = "", body: bytes = SDP, length: int | None = None) -> bytes:
    length_line = "" if length == -1 else f"Content-Length: {len(body) if length is None else length}\r\n"
    return (INVITE_HEAD + extra + length_line + "\r\n").encode() + body


def replace(data: bytes, old: str, new: str) -> bytes:
    assert old.encode() in data
    return data.replace(old.encode(), new.encode(), 1)


def test_parse_request():
    request = parse_message(invite())
    assert isinstance(request, SipRequest)
    assert (request.method, request.uri, request.version) == (
        "INVITE",
        "sip:bob@biloxi.example.com",
        "SIP/2.0",
    )
    assert request.call_id == "a84b4c76e66710@pc33.atlanta.example.com"
    assert request.cseq == (314159, "INVITE")
    assert [v.branch for v in request.via] == ["z9hG4bK776asdhds", "z9hG4bK77ef4c2312983.1"]
    assert request.from_.tag == "1928301774" and request.from_.display == "Alice"
    assert request.to.tag is None and request.to.uri.user == "bob"
    assert request.request_uri.host == "biloxi.example.com"
    assert request.max_forwards == 70
    assert request.content_type == "application/sdp"
    assert request.body == SDP


def test_round_trip():
    request = parse_message(invite())
    assert request.to_bytes() == invite()
    again = parse_message(request.to_bytes())
    assert again == request


def test_response_round_trip():
    data = (
        b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP a.example.com;branch=z9hG4bK1\r\n"
        b"To: <sip:b@x>;tag=9\r\nFrom: <sip:a@y>;tag=8\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    response = parse_message(data)
    assert isinstance(response, SipResponse)
    assert (response.status, response.reason) == (180, "Ringing")
    assert response.to_bytes() == data


def test_leading_crlf_keepalives_are_skipped():
    assert parse_message(b"\r\n\r\n\r\n" + invite()).method == "INVITE"


def test_folding_and_whitespace_around_colons():
    data = invite("Subject  :   lunch\r\n   at noon\r\n")
    request = parse_message(replace(data, "Max-Forwards: 70", "max-forwards\t:70"))
    assert request.headers.get("subject") == "lunch at noon"
    assert request.max_forwards == 70


def test_lf_only_line_endings():
    head, body = invite().split(b"\r\n\r\n", 1)
    request = parse_message(head.replace(b"\r\n", b"\n") + b"\n\n" + body)
    assert request.cseq == (314159, "INVITE")
    assert request.body == SDP


def test_compact_forms_expand():
    data = (
        b"OPTIONS sip:x@y SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
        b"t: <sip:x@y>\r\nf: <sip:a@b>;tag=1\r\n"
        b"i: abc\r\nCSeq: 1 OPTIONS\r\nm: <sip:a@h>\r\nk: timer, 100rel\r\nl: 0\r\n\r\n"
    )
    request = parse_message(data)
    assert [name for name, _ in request.headers.items()] == [
        "Via", "To", "From", "Call-ID", "CSeq", "Contact", "Supported", "Content-Length",
    ]  # fmt: skip
    assert request.headers.get_all("Supported") == ["timer", "100rel"]


def test_missing_content_length_takes_the_rest_of_the_datagram():
    assert parse_message(invite(length=-1)).body == SDP


def test_shorter_content_length_truncates():
    assert parse_message(invite(length=10)).body == SDP[:10]


def test_longer_content_length_is_400():
    with pytest.raises(SipParseError, match="Content-Length larger than message") as info:
        parse_message(invite(length=len(SDP) + 1))
    assert info.value.status == 400


def test_message_without_final_blank_line():
    data = invite(body=b"", length=0)[:-2]
    assert parse_message(data).body == b""


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (CONTENT_LENGTH, "Content-Length: abc"),
        (CONTENT_LENGTH, "Content-Length: -1"),
        (CONTENT_LENGTH, "Content-Length: 99999999999999999999"),
        ("Max-Forwards: 70", "Max-Forwards: 256"),
        ("Max-Forwards: 70", "Max-Forwards: seventy"),
        ("CSeq: 314159 INVITE", "CSeq: 2147483648 INVITE"),
        ("CSeq: 314159 INVITE", "CSeq: x INVITE"),
        ("Call-ID: a84b4c76e66710@pc33.atlanta.example.com", "Call-ID: a b"),
        ("Call-ID: a84b4c76e66710@pc33.atlanta.example.com", "Call-ID:"),
        ("Via: SIP/2.0/UDP pc33.atlanta.example.com;", "Via: SIP/2.0/UDP pc33.atlanta.example.com;;"),
        ('To: "Bob" <sip:bob@biloxi.example.com>', 'To: "Bob <sip:bob@biloxi.example.com>'),
        ("Contact: <sip:alice@pc33.atlanta.example.com>", "Contact: <sip:alice@pc33.atlanta.example.com"),
        ("INVITE sip:bob@biloxi.example.com SIP/2.0", "INVITE  sip:bob@biloxi.example.com SIP/2.0"),
        ("INVITE sip:bob@biloxi.example.com SIP/2.0", "INVITE sip:bob@biloxi.example.com SIP/2.0 "),
        ("INVITE sip:bob@biloxi.example.com SIP/2.0", "INVITE sip:bob@biloxi.example.com"),
        ("INVITE sip:bob@biloxi.example.com SIP/2.0", "INVITE sip:bob@biloxi.example.com HTTP/1.1"),
        ("INVITE sip:bob@biloxi.example.com SIP/2.0", "INVITE sip:bob@biloxi.example.com?x=y SIP/2.0"),
        ("INVITE sip:bob@biloxi.example.com SIP/2.0", "INV(ITE sip:bob@biloxi.example.com SIP/2.0"),
        ("CSeq: 314159 INVITE", "CSeq: 314159 BYE"),
        ("Max-Forwards: 70", "Max Forwards: 70"),
        ("Max-Forwards: 70", "Max-Forwards 70"),
    ],
)
def test_malformed_requests_are_400(old, new):
    with pytest.raises(SipParseError) as info:
        parse_message(replace(invite(), old, new))
    assert info.value.status == 400


def test_expires_out_of_range():
    parse_message(invite(f"Expires: {2**32 - 1}\r\n"))
    for value in (str(2**32), "soon"):
        with pytest.raises(SipParseError, match="Expires"):
            parse_message(invite(f"Expires: {value}\r\n"))


def test_cseq_method_mismatch_reason():
    with pytest.raises(SipParseError, match="CSeq method does not match"):
        parse_message(replace(invite(), "CSeq: 314159 INVITE", "CSeq: 314159 ACK"))


def test_version_not_supported_is_505():
    with pytest.raises(SipParseError) as info:
        parse_message(replace(invite(), "SIP/2.0\r\n", "SIP/3.0\r\n"))
    assert info.value.status == 505


def test_unsupported_request_uri_scheme_is_416():
    with pytest.raises(SipParseError) as info:
        parse_message(
            replace(invite(), "INVITE sip:bob@biloxi.example.com", "INVITE http://biloxi.example.com/")
        )
    assert info.value.status == 416


def test_tel_request_uri_is_accepted():
    data = replace(invite(), "INVITE sip:bob@biloxi.example.com", "INVITE tel:+15551234567")
    assert parse_message(data).request_uri.user == "+15551234567"


def test_missing_max_forwards_is_tolerated():
    request = parse_message(replace(invite(), "Max-Forwards: 70\r\n", ""))
    assert request.max_forwards is None


@pytest.mark.parametrize("name", ["To", "From", "Call-ID", "CSeq", "Via"])
def test_missing_required_header_is_400(name):
    lines = [line for line in invite().split(b"\r\n") if not line.startswith(name.encode() + b":")]
    with pytest.raises(SipParseError, match=f"missing {name}") as info:
        parse_message(b"\r\n".join(lines))
    assert info.value.status == 400


@pytest.mark.parametrize(
    "line",
    [
        "To: <sip:carol@example.com>",
        "From: <sip:carol@example.com>;tag=2",
        "Call-ID: other",
        "i: other",
        "CSeq: 314159 INVITE",
        "Max-Forwards: 70",
        "l: 132",
    ],
)
def test_duplicate_single_valued_header_is_400(line):
    with pytest.raises(SipParseError, match="duplicate") as info:
        parse_message(invite(line + "\r\n"))
    assert info.value.status == 400


@pytest.mark.parametrize(
    ("start", "status", "reason"),
    [("SIP/2.0 200 OK", 200, "OK"), ("SIP/2.0 100", 100, ""), ("sip/2.0 486 Busy  Here", 486, "Busy  Here")],
)
def test_status_lines(start, status, reason):
    data = replace(invite(), "INVITE sip:bob@biloxi.example.com SIP/2.0", start)
    response = parse_message(data)
    assert (response.status, response.reason) == (status, reason)


@pytest.mark.parametrize(
    "start", ["SIP/2.0 099 Low", "SIP/2.0 700 High", "SIP/2.0 2000 OK", "SIP/2.0 OK", "SIP/2.0"]
)
def test_bad_status_lines(start):
    with pytest.raises(SipParseError):
        parse_message(replace(invite(), "INVITE sip:bob@biloxi.example.com SIP/2.0", start))


def test_non_utf8_header_bytes_survive():
    data = replace(invite(), 'To: "Bob"', 'To: "B\xffb"').replace("B\xffb".encode(), b"B\xffb")
    request = parse_message(data)
    assert request.to.display is not None
    assert request.to_bytes() == data


def test_to_bytes_sets_content_length():
    request = parse_message(invite())
    request.body = b"hello"
    assert b"\r\nContent-Length: 5\r\n" in request.to_bytes()
    request.headers.remove("Content-Length")
    assert request.to_bytes().endswith(b"Content-Length: 5\r\n\r\nhello")
    built = SipRequest("OPTIONS", "sip:x@y", [("Via", "SIP/2.0/UDP h;branch=z9hG4bK1")])
    assert (
        built.to_bytes()
        == b"OPTIONS sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nContent-Length: 0\r\n\r\n"
    )


def test_headers_multimap():
    headers = Headers([("v", "SIP/2.0/UDP a, SIP/2.0/UDP b"), ("Via", "SIP/2.0/UDP c"), ("contact", "*")])
    assert headers.get("VIA") == "SIP/2.0/UDP a, SIP/2.0/UDP b"
    assert headers.get_all("via") == ["SIP/2.0/UDP a", "SIP/2.0/UDP b", "SIP/2.0/UDP c"]
    assert headers.get_all("m") == ["*"]
    assert headers.get("Subject") is None and headers.get("Subject", "x") == "x"
    assert "V" in headers and "Route" not in headers and 3 not in headers
    headers.add("Route", "<sip:p1;lr>, <sip:p2;lr>")
    assert headers.get_all("Route") == ["<sip:p1;lr>", "<sip:p2;lr>"]
    headers.set("via", "SIP/2.0/UDP z")
    assert headers.items()[0] == ("Via", "SIP/2.0/UDP z")
    assert headers.get_all("Via") == ["SIP/2.0/UDP z"]
    copy = headers.copy()
    headers.remove("Route")
    assert "Route" in copy and "Route" not in headers
    headers.set("X-New", "1")
    assert headers.items()[-1] == ("X-New", "1")
    assert headers.count("x-new") == 1 and len(headers) == 3 and list(headers) == ["Via", "Contact", "X-New"]


def test_headers_get_all_keeps_commas_of_single_headers():
    headers = Headers([("WWW-Authenticate", 'Digest realm="a", nonce="b"'), ("Date", "Sat, 13 Nov 2010")])
    assert headers.get_all("www-authenticate") == ['Digest realm="a", nonce="b"']
    assert headers.get_all("Date") == ["Sat, 13 Nov 2010"]


def test_make_response_copies_rfc3261_8_2_6_headers():
    request = parse_message(invite("Timestamp: 54\r\nv: SIP/2.0/UDP third.example.com;branch=z9hG4bK3\r\n"))
    response = make_response(request, 180, to_tag="abc")
    assert (response.status, response.reason) == (180, "Ringing")
    assert response.headers.get_all("Via") == request.headers.get_all("Via")
    assert response.headers.get("From") == request.headers.get("From")
    assert response.to.tag == "abc"
    assert response.headers.get("To") == '"Bob" <sip:bob@biloxi.example.com>;tag=abc'
    assert response.call_id == request.call_id and response.cseq == request.cseq
    assert "Timestamp" not in response.headers and "Contact" not in response.headers
    assert make_response(request, 100).headers.get("Timestamp") == "54"
    assert parse_message(response.to_bytes()).to_bytes() == response.to_bytes()


def test_make_response_keeps_an_existing_to_tag():
    request = parse_message(
        replace(invite(), "<sip:bob@biloxi.example.com>", "<sip:bob@biloxi.example.com>;tag=old")
    )
    assert make_response(request, 200, to_tag="new").to.tag == "old"


def test_make_response_body_and_extras():
    request = parse_message(invite())
    response = make_response(
        request,
        200,
        "Fine",
        to_tag="t",
        body=SDP,
        content_type="application/sdp",
        extra=[("Contact", "<sip:me@h>")],
    )
    assert response.reason == "Fine"
    assert response.content_type == "application/sdp"
    assert response.headers.get("Contact") == "<sip:me@h>"
    parsed = parse_message(response.to_bytes())
    assert parsed.body == SDP and parsed.headers.get("Content-Length") == str(len(SDP))


def test_reason_phrases():
    rfc3261 = [
        100,
        180,
        181,
        182,
        183,
        200,
        300,
        301,
        302,
        305,
        380,
        400,
        401,
        402,
        403,
        404,
        405,
        406,
        407,
        408,
    ]
    rfc3261 += [410, 413, 414, 415, 416, 420, 421, 423, 480, 481, 482, 483, 484, 485, 486, 487, 488, 491, 493]
    rfc3261 += [500, 501, 502, 503, 504, 505, 513, 600, 603, 604, 606, 422, 429, 494, 580]
    assert all(code in REASON_PHRASES for code in rfc3261)
    assert REASON_PHRASES[481] == "Call/Transaction Does Not Exist"
    assert make_response(parse_message(invite()), 499).reason == "Client Error"


def test_generators():
    assert generate_branch().startswith("z9hG4bK")
    assert len({generate_branch() for _ in range(100)}) == 100
    assert len({generate_tag() for _ in range(100)}) == 100
    call_id = generate_call_id("192.0.2.1")
    assert call_id.endswith("@192.0.2.1") and len(call_id) > 20


def test_extract_for_error_response():
    broken = replace(invite(), "CSeq: 314159 INVITE", "CSeq: 314159 BYE")
    request = extract_for_error_response(broken)
    assert request is not None and request.method == "INVITE"
    assert request.headers.get_all("Via") == parse_message(invite()).headers.get_all("Via")
    response = make_response(request, 400, to_tag="x")
    assert response.headers.get("CSeq") == "314159 BYE"
    assert parse_message(response.to_bytes()).status == 400


def test_extract_salvages_a_via_with_empty_params():
    data = replace(
        invite(), "Via: SIP/2.0/UDP pc33.atlanta.example.com;", "Via: SIP/2.0/UDP pc33.atlanta.example.com;;"
    )
    request = extract_for_error_response(data)
    assert request is not None
    assert request.via[0].host == "pc33.atlanta.example.com"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\r\n\r\n",
        b"\x00\x01garbage",
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n",
        b"OPTIONS sip:x@y SIP/2.0\r\nTo: <sip:x@y>\r\n\r\n",
    ],
)
def test_extract_gives_up(data):
    assert extract_for_error_response(data) is None


def test_empty_message_is_an_error():
    with pytest.raises(SipParseError):
        parse_message(b"\r\n\r\n")
