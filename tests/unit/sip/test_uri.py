import pytest

from sipbridge.sip.errors import SipParseError
from sipbridge.sip.uri import SipUri, parse_uri


def test_full_sip_uri():
    uri = parse_uri(
        "sip:alice:secret@Example.COM:5070;Transport=udp;lr;maddr=10.0.0.1?Subject=hi&Priority=urgent"
    )
    assert uri.scheme == "sip"
    assert (uri.user, uri.password) == ("alice", "secret")
    assert (uri.host, uri.port) == ("Example.COM", 5070)
    assert uri.params == {"transport": "udp", "lr": None, "maddr": "10.0.0.1"}
    assert uri.headers == {"Subject": "hi", "Priority": "urgent"}
    assert list(uri.params) == ["transport", "lr", "maddr"]


@pytest.mark.parametrize(
    "text",
    [
        "sip:alice@example.com",
        "sip:example.com",
        "sips:bob@[2001:db8::1]:5061;transport=tls",
        "sip:+15551234567@gw.example.net;user=phone",
        "sip:alice:pw@host:1;lr?h=v",
        "tel:+1-201-555-0123;phone-context=example.com",
        "sip:user;par=u%40example.net@example.com",
    ],
)
def test_round_trip(text):
    assert str(parse_uri(text)) == text


def test_scheme_is_case_insensitive():
    assert parse_uri("SIP:alice@example.com").scheme == "sip"


def test_host_port_defaults():
    assert parse_uri("sip:example.com").host_port == ("example.com", 5060)
    assert parse_uri("sips:example.com").host_port == ("example.com", 5061)
    assert parse_uri("sip:example.com;transport=TLS").host_port == ("example.com", 5061)
    assert parse_uri("sip:example.com:5080").host_port == ("example.com", 5080)


def test_ipv6_keeps_brackets_in_host():
    uri = parse_uri("sip:alice@[::1]:5062")
    assert uri.host == "[::1]"
    assert uri.host_port == ("::1", 5062)
    assert str(uri) == "sip:alice@[::1]:5062"


def test_tel_uri():
    uri = parse_uri("tel:+15551234567;ext=12")
    assert (uri.scheme, uri.user, uri.host, uri.params) == ("tel", "+15551234567", "", {"ext": "12"})
    assert not parse_uri("tel:1234").is_sip


@pytest.mark.parametrize(
    "text", ["http://example.com", "nobodyKnowsThisScheme:x", "soap.beep://192.0.2.103:3002"]
)
def test_unknown_scheme_is_416(text):
    with pytest.raises(SipParseError) as info:
        parse_uri(text)
    assert info.value.status == 416


def test_unknown_scheme_accepted_opaque_on_request():
    uri = parse_uri("isbn:2983792873", any_scheme=True)
    assert (uri.scheme, uri.opaque, str(uri)) == ("isbn", "2983792873", "isbn:2983792873")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "sip:",
        "sip:@example.com",
        "sip:alice@",
        "sip:example.com:99999",
        "sip:example.com:port",
        "sip:2001:db8::10",
        "<sip:example.com>",
        "sip:alice@exa mple.com",
        "sip:[::1",
        "sip:[::1]x",
        "sip:[zz]",
        "sip:example.com;=x",
        "sip:example.com;;lr",
        "sip:example.com?=v",
        "example.com",
        "1sip:example.com",
        'sip:"a"@example.com',
        "tel:",
        "tel:12 34",
    ],
)
def test_malformed_is_400(text):
    with pytest.raises(SipParseError) as info:
        parse_uri(text)
    assert info.value.status == 400


def test_equality_rfc3261_19_1_4():
    assert parse_uri("sip:%61lice@atlanta.com;transport=TCP") == parse_uri(
        "sip:alice@AtLanTa.CoM;Transport=tcp"
    )
    assert parse_uri("sip:carol@chicago.com") == parse_uri("sip:carol@chicago.com;newparam=5")
    assert parse_uri("sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com") == parse_uri(
        "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com"
    )
    assert parse_uri("SIP:ALICE@AtLanTa.CoM;Transport=udp") != parse_uri(
        "sip:alice@AtLanTa.CoM;Transport=UDP"
    )
    assert parse_uri("sip:bob@biloxi.com") != parse_uri("sip:bob@biloxi.com:5060")
    assert parse_uri("sip:bob@biloxi.com") != parse_uri("sip:bob@biloxi.com;transport=udp")
    assert parse_uri("sip:bob@biloxi.com") != parse_uri("sips:bob@biloxi.com")
    assert parse_uri("sip:carol@chicago.com;security=on") != parse_uri("sip:carol@chicago.com;security=off")
    assert parse_uri("sip:carol@chicago.com?Subject=next") != parse_uri("sip:carol@chicago.com")


def test_construct_and_serialise():
    uri = SipUri("sip", "bob", None, "10.0.0.2", 5062, {"transport": "udp"})
    assert str(uri) == "sip:bob@10.0.0.2:5062;transport=udp"
    assert str(SipUri(host="example.com")) == "sip:example.com"
