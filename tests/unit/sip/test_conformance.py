"""RFC 4475 and RFC 5118 torture messages against the sans-IO parser, one row per message.

The parser decides what the message syntax alone decides (400, 416, 505). Rows whose expected
handling belongs to higher layers (405/501 unknown method, 415, 420, 406, 401, 483, transaction
matching, dropping responses) only need a successful parse here.
"""

import csv
from pathlib import Path

import pytest

from sipbridge.sip.errors import SipParseError
from sipbridge.sip.message import SipRequest, SipResponse, extract_for_error_response, parse_message
from sipbridge.sip.responses import make_response

CONFORMANCE = Path(__file__).resolve().parents[4] / "shared" / "conformance"
RFC4475 = CONFORMANCE / "rfc4475"
RFC5118 = CONFORMANCE / "rfc5118"

pytestmark = pytest.mark.skipif(not RFC4475.is_dir(), reason=f"conformance data not found at {CONFORMANCE}")

# file -> status the parser raises. Rows absent here must parse.
PARSER_REJECTS = {
    "badinv01.dat": 400,  # empty Via / Contact parameters
    "clerr.dat": 400,  # Content-Length larger than the datagram
    "ncl.dat": 400,  # negative Content-Length
    "scalar02.dat": 400,  # CSeq, Max-Forwards, Expires overflow
    "scalarlg.dat": 400,  # response: the UA layer drops it
    "quotbal.dat": 400,  # unterminated quoted display name
    "ltgtruri.dat": 400,  # <> around the Request-URI
    "lwsruri.dat": 400,  # LWS inside the Request-URI
    "lwsstart.dat": 400,  # several SP between Request-Line elements
    "trws.dat": 400,  # SP at the end of the Request-Line
    "escruri.dat": 400,  # headers in the Request-URI (the strict choice)
    "regbadct.dat": 400,  # Contact URI with '?' not in <>
    "badvers.dat": 505,
    "mismatch01.dat": 400,  # CSeq method differs from the method
    "mismatch02.dat": 400,
    "bigcode.dat": 400,  # response: the UA layer drops it
    "insuf.dat": 400,  # no Call-ID, From, To
    "unkscm.dat": 416,
    "novelsc.dat": 416,
    "multi01.dat": 400,  # several From/To/Call-ID/CSeq/Max-Forwards
    "mcl01.dat": 400,  # several Content-Length
    "test.dat": 400,  # no SIP-version in the Request-Line
}
# The RFC allows "400, or liberal accept"; we accept these.
LIBERAL = {"baddate.dat", "badaspec.dat", "baddn.dat"}
# Answering these is a higher layer's decision (405/501, 420, 415, 406, 401, 400 registrar, UAC drop...).
HIGHER_LAYER = {
    "intmeth.dat",
    "esc02.dat",
    "badbranch.dat",
    "unksm2.dat",
    "bext01.dat",
    "invut.dat",
    "regaut01.dat",
    "bcast.dat",
    "zeromf.dat",
    "sdp01.dat",
    "cparam01.dat",
    "cparam02.dat",
    "regescrt.dat",
}


def _manifest() -> list[dict[str, str]]:
    if not RFC4475.is_dir():
        return []
    with open(RFC4475 / "MANIFEST.tsv", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


ROWS = _manifest()


def test_manifest_is_complete():
    assert len(ROWS) == 50
    files = {row["file"] for row in ROWS}
    assert set(PARSER_REJECTS) | LIBERAL | HIGHER_LAYER <= files
    assert files == {path.name for path in RFC4475.glob("*.dat")}


def test_every_row_is_classified():
    for row in ROWS:
        name, verdict = row["file"], row["verdict"]
        if name in PARSER_REJECTS or name in LIBERAL:
            assert verdict.startswith(("invalid", "semantic", "n/a")), name
        else:
            assert verdict.startswith(("valid", "semantic")), name


@pytest.mark.parametrize("row", ROWS, ids=[row["file"] for row in ROWS])
def test_rfc4475(row):
    data = (RFC4475 / row["file"]).read_bytes()
    assert len(data) == int(row["bytes"])
    status = PARSER_REJECTS.get(row["file"])
    if status is None:
        message = parse_message(data)
        assert isinstance(message, SipResponse if "response" in row["verdict"] else SipRequest)
        return
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    assert info.value.status == status, info.value.reason


@pytest.mark.parametrize(
    "name",
    sorted(name for name, status in PARSER_REJECTS.items() if name not in ("scalarlg.dat", "bigcode.dat")),
)
def test_broken_requests_can_still_be_answered(name):
    data = (RFC4475 / name).read_bytes()
    request = extract_for_error_response(data)
    if name == "test.dat":  # no Via at all: nowhere to send a response
        assert request is None
        return
    assert request is not None
    response = make_response(request, PARSER_REJECTS[name], to_tag="t1")
    assert response.via, name
    assert response.headers.get("CSeq") == request.headers.get("CSeq")
    assert response.to_bytes().startswith(b"SIP/2.0 %d " % PARSER_REJECTS[name])


@pytest.mark.parametrize("name", ["scalarlg.dat", "bigcode.dat", "unreason.dat"])
def test_responses_are_never_answered(name):
    assert extract_for_error_response((RFC4475 / name).read_bytes()) is None


def test_wsinv_details():
    message = parse_message((RFC4475 / "wsinv.dat").read_bytes())
    assert message.cseq == (9, "INVITE")
    assert message.max_forwards == 68
    assert [v.host for v in message.via] == ["192.0.2.2", "spindle.example.com", "192.168.255.111"]
    assert [v.branch for v in message.via] == ["390skdjuw", "z9hG4bK9ikj8", "z9hG4bK30239"]
    assert message.to.tag == "1918181833n"
    assert message.from_.display == 'J Rosenberg \\"'
    assert message.from_.tag == "98asjd8"
    assert message.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert message.headers.get("Subject") == ""
    contact = message.headers.get_all("Contact")
    assert len(contact) == 1 and contact[0].startswith('"Quoted string')
    assert len(message.body) == 150


def test_intmeth_details():
    message = parse_message((RFC4475 / "intmeth.dat").read_bytes())
    assert message.method == "!interesting-Method0123456789_*+`.%indeed'~"
    uri = message.request_uri
    assert uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert uri.host == "example.com"
    assert message.to.display == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert message.from_.tag == "_token~1'+`*%!-."


def test_escapes_and_oddities():
    esc01 = parse_message((RFC4475 / "esc01.dat").read_bytes())
    assert esc01.request_uri.user == "sips%3Auser%40example.com"
    esc02 = parse_message((RFC4475 / "esc02.dat").read_bytes())
    assert esc02.method == "RE%47IST%45R"
    assert len(esc02.headers.get_all("Contact")) == 2  # C%6Fntact is another header
    escnull = parse_message((RFC4475 / "escnull.dat").read_bytes())
    assert escnull.to.uri.user == "null-%00-null"
    semi = parse_message((RFC4475 / "semiuri.dat").read_bytes())
    assert semi.request_uri.user == "user;par=u%40example.net"
    assert semi.request_uri.host == "example.com"
    assert len(semi.headers.get_all("Accept")) == 6


def test_dblreq_keeps_only_the_first_message():
    message = parse_message((RFC4475 / "dblreq.dat").read_bytes())
    assert message.method == "REGISTER"
    assert message.body == b""


def test_mpart01_binary_body_counted_in_bytes():
    message = parse_message((RFC4475 / "mpart01.dat").read_bytes())
    assert len(message.body) == 553
    assert message.body.endswith(b"--7a9cbec02ceef655--\r\n")


def test_inv2543_without_content_length_takes_the_rest():
    message = parse_message((RFC4475 / "inv2543.dat").read_bytes())
    assert message.via[0].branch is None
    assert message.from_.tag is None
    assert message.max_forwards is None
    assert message.body.startswith(b"v=0") and message.body.endswith(b"RTP/AVP 0\r\n")


def test_unknown_schemes_in_headers_are_kept_opaque():
    message = parse_message((RFC4475 / "unksm2.dat").read_bytes())
    assert message.to.uri.scheme == "isbn" and not message.to.uri.is_sip
    assert str(message.from_.uri) == "http://www.example.com"


def test_responses():
    noreason = parse_message((RFC4475 / "noreason.dat").read_bytes())
    assert (noreason.status, noreason.reason) == (100, "")
    unreason = parse_message((RFC4475 / "unreason.dat").read_bytes())
    assert unreason.status == 200 and "2**3" in unreason.reason
    assert unreason.reason.endswith("простое")
    assert parse_message(unreason.to_bytes()).reason == unreason.reason


RFC5118_FILES = sorted(path.name for path in RFC5118.glob("*")) if RFC5118.is_dir() else []


@pytest.mark.parametrize("name", RFC5118_FILES)
def test_rfc5118(name):
    data = (RFC5118 / name).read_bytes()
    if name == "ipv6-bad":  # IPv6 reference without brackets in the Request-URI
        with pytest.raises(SipParseError) as info:
            parse_message(data)
        assert info.value.status == 400
        return
    if name == "ipv6-in-sdp":
        # The RFC's Content-Length (268) is larger than its own body (251 octets): over UDP that is
        # a 400 (RFC 3261 §18.3). With the length corrected the message parses.
        with pytest.raises(SipParseError, match="Content-Length larger"):
            parse_message(data)
        head, body = data.split(b"\r\n\r\n", 1)
        data = head.replace(b"Content-Length: 268", b"Content-Length: %d" % len(body)) + b"\r\n\r\n" + body
    message = parse_message(data)
    assert message.via


def test_rfc5118_ipv6_details():
    good = parse_message((RFC5118 / "ipv6-good").read_bytes())
    assert good.request_uri.host == "[2001:db8::10]"
    assert good.request_uri.host_port == ("2001:db8::10", 5060)
    assert good.via[0].host == "[2001:db8::9:1]"
    ambiguous = parse_message((RFC5118 / "port-ambiguous").read_bytes())
    assert ambiguous.request_uri.host == "[2001:db8::10:5070]" and ambiguous.request_uri.port is None
    unambiguous = parse_message((RFC5118 / "port-unambiguous").read_bytes())
    assert unambiguous.request_uri.port == 5070
    no_delim = parse_message((RFC5118 / "via-received-param-no-delim").read_bytes())
    assert no_delim.via[0].params["received"] == "2001:db8::9:255"
    with_delim = parse_message((RFC5118 / "via-received-param-with-delim").read_bytes())
    assert with_delim.via[0].params["received"] == "[2001:db8::9:255]"
    mixed = parse_message((RFC5118 / "mult-ip-in-header").read_bytes())
    assert [v.host for v in mixed.via] == ["[2001:db8::9:1]", "192.0.2.1", "[2001:db8::9:255]"]
    assert mixed.via[0].port == 6050
