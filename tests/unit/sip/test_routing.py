from sipbridge.sip.message import parse_message
from sipbridge.sip.routing import response_destination, stamp_received


def _options(via: str):
    raw = (
        "OPTIONS sip:bridge@127.0.0.1 SIP/2.0\r\n"
        f"Via: {via}\r\nVia: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKsecond\r\n"
        "To: <sip:bridge@127.0.0.1>\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\n"
        "Call-ID: c1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    return parse_message(raw)


def test_rport_is_filled_and_response_goes_to_the_source():
    request = _options("SIP/2.0/UDP 192.168.1.2:5060;branch=z9hG4bKa;rport")
    stamp_received(request, ("127.0.0.5", 40000))
    top = request.via[0]
    assert top.params["rport"] == "40000" and top.params["received"] == "127.0.0.5"
    assert response_destination(top) == ("127.0.0.5", 40000)
    assert len(request.via) == 2 and request.via[1].branch == "z9hG4bKsecond"


def test_received_added_when_source_differs_without_rport():
    request = _options("SIP/2.0/UDP 192.168.1.2:5070;branch=z9hG4bKa")
    stamp_received(request, ("127.0.0.5", 40000))
    assert response_destination(request.via[0]) == ("127.0.0.5", 5070)


def test_same_source_leaves_via_alone():
    request = _options("SIP/2.0/UDP 127.0.0.5:5070;branch=z9hG4bKa")
    stamp_received(request, ("127.0.0.5", 5070))
    assert "received" not in request.via[0].params
    assert response_destination(request.via[0]) == ("127.0.0.5", 5070)


def test_maddr_is_ignored_responses_go_to_the_source():
    """A request naming a third party in maddr must not make us send it anything (reflection)."""
    request = _options("SIP/2.0/UDP 192.168.1.2;maddr=127.0.0.9;branch=z9hG4bKa")
    stamp_received(request, ("127.0.0.5", 40000))
    assert response_destination(request.via[0]) == ("127.0.0.5", 5060)


def test_maddr_naming_a_host_is_not_resolved_the_source_is_used():
    request = _options("SIP/2.0/UDP 192.168.1.2:5070;maddr=evil.example.com;branch=z9hG4bKa")
    stamp_received(request, ("127.0.0.5", 40000))
    assert response_destination(request.via[0]) == ("127.0.0.5", 5070)
