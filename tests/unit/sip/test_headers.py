import pytest

from sipbridge.sip.errors import SipParseError
from sipbridge.sip.headers import (
    COMPACT_FORMS,
    NameAddr,
    Via,
    canonical_name,
    parse_cseq,
    parse_name_addr,
    parse_params,
    parse_uint,
    parse_via,
    split_header_values,
)
from sipbridge.sip.uri import parse_uri


def test_compact_forms():
    expected = {
        "i": "Call-ID", "m": "Contact", "e": "Content-Encoding", "l": "Content-Length", "c": "Content-Type",
        "f": "From", "s": "Subject", "k": "Supported", "t": "To", "v": "Via", "o": "Event", "r": "Refer-To",
        "b": "Referred-By", "u": "Allow-Events", "x": "Session-Expires", "a": "Accept-Contact",
        "j": "Reject-Contact", "d": "Request-Disposition", "y": "Identity", "n": "Identity-Info",
    }  # fmt: skip
    assert COMPACT_FORMS == expected
    for letter, name in expected.items():
        assert canonical_name(letter) == canonical_name(letter.upper()) == name


def test_canonical_names():
    assert canonical_name("cseq") == "CSeq"
    assert canonical_name("CALL-id") == "Call-ID"
    assert canonical_name("www-authenticate") == "WWW-Authenticate"
    assert canonical_name("X-Custom") == "X-Custom"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("INVITE, ACK ,BYE", ["INVITE", "ACK", "BYE"]),
        ('"Doe, John" <sip:j@x>;q=1, <sip:k@y>', ['"Doe, John" <sip:j@x>;q=1', "<sip:k@y>"]),
        ("<sip:a@x;p=1,2>, <sip:b@y>", ["<sip:a@x;p=1,2>", "<sip:b@y>"]),
        ('"a \\" , b" <sip:a@x>', ['"a \\" , b" <sip:a@x>']),
        ("a,,b,", ["a", "b"]),
        ("", []),
        ("SIP/2.0/UDP a;branch=1 , SIP/2.0/UDP b", ["SIP/2.0/UDP a;branch=1", "SIP/2.0/UDP b"]),
    ],
)
def test_split_header_values(value, expected):
    assert split_header_values(value) == expected


def test_via():
    via = parse_via("SIP/2.0/udp 192.0.2.1:5062;branch=z9hG4bK776;rport;received=10.0.0.1;maddr=x;ttl=1")
    assert (via.transport, via.host, via.port) == ("UDP", "192.0.2.1", 5062)
    assert via.branch == "z9hG4bK776"
    assert via.params["rport"] is None
    assert via.params["received"] == "10.0.0.1"
    assert str(via) == "SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bK776;rport;received=10.0.0.1;maddr=x;ttl=1"


def test_via_with_lws_and_ipv6():
    via = parse_via("SIP / 2.0 / TCP   [2001:db8::1] : 5070 ; branch = z9hG4bKx ; rport = 5071")
    assert (via.transport, via.host, via.port) == ("TCP", "[2001:db8::1]", 5070)
    assert via.params == {"branch": "z9hG4bKx", "rport": "5071"}
    assert parse_via(str(via)) == via


def test_via_construction():
    via = Via("UDP", "10.0.0.1", 5060, {"branch": "z9hG4bKabc", "rport": None})
    assert str(via) == "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKabc;rport"
    assert Via().params == {} and Via().branch is None


@pytest.mark.parametrize(
    "value",
    [
        "",
        "SIP/2.0/UDP",
        "SIP/2.0 192.0.2.1",
        "SIP/2.0/UDP 192.0.2.1:70000",
        "SIP/2.0/UDP 192.0.2.1;;",
        "SIP/2.0/UDP 192.0.2.1;branch=a b",
        "SIP/2.0/UDP 192.0.2.1;=x",
        "SIP/2.0/UDP host junk",
        "SIP/2.0/UDP 192.0.2.1;branch=",
    ],
)
def test_malformed_via(value):
    with pytest.raises(SipParseError):
        parse_via(value)


def test_name_addr_forms():
    quoted = parse_name_addr('"Alice \\"A\\" Smith" <sip:alice@atlanta.com>;tag=1928301774')
    assert quoted.display == 'Alice "A" Smith'
    assert quoted.tag == "1928301774"
    assert str(quoted) == '"Alice \\"A\\" Smith" <sip:alice@atlanta.com>;tag=1928301774'
    token = parse_name_addr("Bob <sips:bob@biloxi.com>")
    assert (token.display, str(token.uri), token.params) == ("Bob", "sips:bob@biloxi.com", {})
    plain = parse_name_addr("<sip:carol@chicago.com;transport=tcp>;expires=60")
    assert plain.display is None
    assert plain.uri.params == {"transport": "tcp"}
    assert plain.params == {"expires": "60"}


def test_bare_uri_params_belong_to_the_header():
    bare = parse_name_addr("sip:+12125551212@server.phone2net.com;tag=887s")
    assert bare.uri.params == {}
    assert bare.tag == "887s"
    assert str(bare) == "<sip:+12125551212@server.phone2net.com>;tag=887s"


def test_with_tag():
    to = parse_name_addr("<sip:bob@biloxi.com>")
    tagged = to.with_tag("a6c85cf")
    assert tagged.tag == "a6c85cf" and to.tag is None
    assert str(tagged) == "<sip:bob@biloxi.com>;tag=a6c85cf"


def test_name_addr_construction_escapes_display():
    addr = NameAddr('Mr "X"\r\n', parse_uri("sip:x@y"), {"tag": "1"})
    assert str(addr) == '"Mr \\"X\\"  " <sip:x@y>;tag=1'
    assert parse_name_addr(str(addr)).display == 'Mr "X"  '


@pytest.mark.parametrize(
    "value",
    [
        '"Mr. J. User <sip:j.user@example.com>',
        "<sip:j.user@example.com",
        "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
        '"Joe" <sip:joe@example.org>;;;;',
        '"Joe" sip:joe@example.org',
        "<sip:a@b> junk",
        "",
        "<>",
        "<http:>",
        "a > b <sip:x@y>",
    ],
)
def test_malformed_name_addr(value):
    with pytest.raises(SipParseError):
        parse_name_addr(value)


def test_params_with_quoted_values():
    params = parse_params(' +sip.instance="<urn:uuid:1;2>" ; q=0.5;Flag')
    assert params == {"+sip.instance": '"<urn:uuid:1;2>"', "q": "0.5", "flag": None}


def test_cseq():
    assert parse_cseq("4711 INVITE") == (4711, "INVITE")
    assert parse_cseq("  0009 \t BYE ") == (9, "BYE")
    assert parse_cseq(f"{2**31 - 1} ACK") == (2**31 - 1, "ACK")


@pytest.mark.parametrize(
    "value",
    [
        "",
        "INVITE",
        "1",
        "-1 INVITE",
        f"{2**31} INVITE",
        "1 IN VITE",
        "1 INV<ITE",
        "x INVITE",
        "9" * 5000 + " A",
    ],
)
def test_malformed_cseq(value):
    with pytest.raises(SipParseError) as info:
        parse_cseq(value)
    assert info.value.status == 400


def test_parse_uint_bounds():
    assert parse_uint("0070", 255, "Max-Forwards") == 70
    assert parse_uint("0", 255, "x") == 0
    for bad in ("256", "-1", "", "1e3", "9" * 10000, "١٢"):
        with pytest.raises(SipParseError):
            parse_uint(bad, 255, "x")
