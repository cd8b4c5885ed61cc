"""The UA core fed datagrams directly, with a transport that records what it would send."""

from __future__ import annotations

import asyncio

import pytest

from sipbridge.sip.invite_session import InviteSession
from sipbridge.sip.message import parse_message
from sipbridge.sip.transaction import Timers
from sipbridge.sip.useragent import UserAgent
from testbed.sip_recorder import PEER, SDP, RecordingTransport, request


@pytest.fixture
def ua() -> tuple[UserAgent, RecordingTransport, list[InviteSession]]:
    sessions: list[InviteSession] = []
    agent = UserAgent(timers=Timers(t1=0.01, t2=0.04, t4=0.05), on_invite=sessions.append)
    transport = RecordingTransport()
    agent.use_datagram_sender(transport)
    return agent, transport, sessions


async def test_options_gets_200_with_allow_routed_to_rport(ua):
    agent, transport, _ = ua
    agent.datagram_received(request("OPTIONS"), ("127.0.0.1", 40001))
    (response,) = transport.responses()
    assert response.status == 200 and "INVITE" in response.headers.get("Allow")
    assert transport.sent[0][1] == ("127.0.0.1", 40001)  # rport: back to the source port


@pytest.mark.parametrize(("method", "status"), [("REGISTER", 405), ("SUBSCRIBE", 405), ("FOOBAR", 501)])
async def test_unserved_and_unknown_methods(ua, method, status):
    agent, transport, _ = ua
    agent.datagram_received(request(method), PEER)
    (response,) = transport.responses()
    assert response.status == status and response.headers.get("Allow")


async def test_unknown_require_gets_420_with_unsupported(ua):
    agent, transport, _ = ua
    agent.datagram_received(request("OPTIONS", extra="Require: foo, bar\r\n"), PEER)
    (response,) = transport.responses()
    assert response.status == 420 and response.headers.get("Unsupported") == "foo, bar"


async def test_bye_for_unknown_dialog_gets_481(ua):
    agent, transport, _ = ua
    agent.datagram_received(request("BYE", to_tag="nope"), PEER)
    assert transport.statuses() == [481]


async def test_broken_request_gets_400_with_reason_and_server_goes_on(ua):
    agent, transport, _ = ua
    broken = request("OPTIONS").replace(b"CSeq: 1 OPTIONS", b"CSeq: 1 INVITE")
    agent.datagram_received(broken, PEER)
    agent.datagram_received(b"\x00\xffgarbage", PEER)
    agent.datagram_received(request("OPTIONS", branch="z9hG4bKb2"), PEER)
    statuses = transport.statuses()
    assert statuses == [400, 200]
    assert "CSeq" in transport.responses()[0].reason


async def test_invite_is_handed_over_after_100_and_retransmission_is_absorbed(ua):
    agent, transport, sessions = ua
    agent.datagram_received(request("INVITE", body=SDP), PEER)
    agent.datagram_received(request("INVITE", body=SDP), PEER)
    assert len(sessions) == 1
    assert transport.statuses() == [100, 100]
    sessions[0].provisional(180)
    agent.datagram_received(request("INVITE", body=SDP), PEER)
    assert transport.statuses() == [100, 100, 180, 180]


async def test_non_sdp_body_gets_415_with_accept(ua):
    agent, transport, sessions = ua
    raw = request("INVITE", body="hello").replace(b"application/sdp", b"text/plain")
    agent.datagram_received(raw, PEER)
    assert transport.statuses() == [100, 415] and not sessions
    assert transport.responses()[1].headers.get("Accept") == "application/sdp"


async def test_cancel_gives_200_and_487_and_tells_the_session(ua):
    agent, transport, sessions = ua
    agent.datagram_received(request("INVITE", body=SDP), PEER)
    cancelled = []
    sessions[0].on_cancel = lambda: cancelled.append(True)
    agent.datagram_received(request("CANCEL"), PEER)
    assert sorted(transport.statuses()) == [100, 200, 487] and cancelled
    assert not await sessions[0].accept(SDP.encode())


async def test_cancel_for_unknown_invite_gets_481(ua):
    agent, transport, _ = ua
    agent.datagram_received(request("CANCEL"), PEER)
    assert transport.statuses() == [481]


async def test_200_is_retransmitted_until_ack_then_bye_ends_the_dialog(ua):
    agent, transport, sessions = ua
    agent.datagram_received(request("INVITE", body=SDP), PEER)
    session = sessions[0]
    accepting = asyncio.ensure_future(session.accept(b"v=0\r\n"))
    await asyncio.sleep(0.05)  # T1 = 10 ms: a few retransmissions
    oks = [r for r in transport.responses() if r.status == 200]
    assert len(oks) >= 3
    local_tag = oks[0].to.tag
    assert oks[0].headers.get("Contact") == "<sip:sipbridge@127.0.0.1:5060>"
    agent.datagram_received(request("ACK", branch="z9hG4bKack", to_tag=local_tag), PEER)
    assert await accepting
    count = len(transport.sent)
    await asyncio.sleep(0.05)
    assert len(transport.sent) == count  # no more retransmissions after the ACK
    byes = []
    session.on_bye = lambda: byes.append(True)
    agent.datagram_received(request("BYE", branch="z9hG4bKbye", to_tag=local_tag), PEER)
    assert byes and transport.statuses()[-1] == 200


async def test_no_ack_gives_up_after_64_t1(ua):
    agent, transport, sessions = ua
    agent.datagram_received(request("INVITE", body=SDP), PEER)
    started = asyncio.get_running_loop().time()
    assert not await sessions[0].accept(b"v=0\r\n")
    assert asyncio.get_running_loop().time() - started >= 64 * 0.01


async def test_hangup_after_answer_sends_bye_to_the_contact(ua):
    agent, transport, sessions = ua
    agent.datagram_received(request("INVITE", body=SDP), PEER)
    session = sessions[0]
    accepting = asyncio.ensure_future(session.accept(b"v=0\r\n"))
    await asyncio.sleep(0)
    tag = transport.responses()[-1].to.tag
    agent.datagram_received(request("ACK", branch="z9hG4bKack", to_tag=tag), PEER)
    await accepting
    hanging_up = asyncio.ensure_future(session.hangup())
    await asyncio.sleep(0)
    data, addr = transport.sent[-1]
    bye = parse_message(data)
    assert bye.method == "BYE" and addr == ("127.0.0.1", 5062)
    assert bye.to.tag == "caller1" and bye.from_.tag == tag
    ok = f"SIP/2.0 200 OK\r\nVia: {bye.headers.get('Via')}\r\nTo: {bye.headers.get('To')}\r\n"
    ok += f"From: {bye.headers.get('From')}\r\nCall-ID: {bye.call_id}\r\nCSeq: {bye.headers.get('CSeq')}\r\n"
    agent.datagram_received((ok + "Content-Length: 0\r\n\r\n").encode(), PEER)
    await asyncio.wait_for(hanging_up, 1)


@pytest.mark.parametrize(
    ("accept", "status"), [("text/nobodyknowsthis", 406), ("application/sdp, text/plain", 100), ("*/*", 100)]
)
async def test_invite_whose_accept_excludes_sdp_gets_406(ua, accept, status):
    agent, transport, sessions = ua
    agent.datagram_received(request("INVITE", body=SDP, extra=f"Accept: {accept}\r\n"), PEER)
    assert transport.statuses()[-1] == status
    assert bool(sessions) == (status == 100)


async def test_public_addresses_go_into_contact_and_sdp_separately():
    sessions: list[InviteSession] = []
    agent = UserAgent(public_ip="203.0.113.5", media_public_ip="198.51.100.7", on_invite=sessions.append)
    transport = RecordingTransport()
    agent.use_datagram_sender(transport)
    agent.datagram_received(request("INVITE", body=SDP), PEER)
    session = sessions[0]
    assert session.local_ip == "203.0.113.5" and session.media_ip == "198.51.100.7"
    accepting = asyncio.ensure_future(session.accept(b"v=0\r\n"))
    await asyncio.sleep(0)
    ok = transport.responses()[-1]
    assert ok.headers.get("Contact") == "<sip:sipbridge@203.0.113.5:5060>"
    accepting.cancel()


async def test_contact_never_carries_the_wildcard_address():
    sessions: list[InviteSession] = []
    agent = UserAgent(on_invite=sessions.append)
    transport = RecordingTransport()
    transport.local_address = ("0.0.0.0", 5060)
    agent.use_datagram_sender(transport)
    agent.datagram_received(request("INVITE", body=SDP), PEER)
    assert sessions[0].local_ip == "127.0.0.1" and sessions[0].media_ip == "127.0.0.1"


# -- the gate and the screen ------------------------------------------------------------------


def _gated_ua(gate=None, screen=None):  # noqa: ANN001, ANN202
    sessions: list[InviteSession] = []
    agent = UserAgent(
        timers=Timers(t1=0.01, t2=0.04, t4=0.05), on_invite=sessions.append, gate=gate, screen=screen
    )
    transport = RecordingTransport()
    agent.use_datagram_sender(transport)
    return agent, transport, sessions


async def test_a_source_over_its_rate_gets_one_503_with_retry_after_then_nothing():
    from sipbridge.sip.gate import RequestGate, SourceLimiter

    agent, transport, _ = _gated_ua(gate=RequestGate(SourceLimiter(rate=0.01, burst=3, retry_after=7), None))
    for i in range(20):
        agent.datagram_received(request("OPTIONS", branch=f"z9hG4bKf{i}", cseq=i + 1), PEER)
    assert transport.statuses() == [200, 200, 200, 503]
    assert transport.responses()[-1].headers.get("Retry-After") == "7"
    assert agent.gate is not None and agent.gate.counts.dropped == 16
    agent.datagram_received(request("OPTIONS", branch="z9hG4bKother", cseq=99), ("127.0.0.9", 5060))
    assert transport.statuses()[-1] == 200  # another source is not affected


async def test_a_scanner_gets_no_answer_at_all():
    from sipbridge.sip.gate import DEFAULT_SCANNER_SIGNATURES, RequestGate, scanner_pattern

    agent, transport, sessions = _gated_ua(
        gate=RequestGate(None, scanner_pattern(DEFAULT_SCANNER_SIGNATURES))
    )
    agent.datagram_received(request("INVITE", extra="User-Agent: friendly-scanner\r\n", body=SDP), PEER)
    agent.datagram_received(request("OPTIONS", extra="User-Agent: sipcli/v1.8\r\n"), PEER)
    assert transport.sent == [] and sessions == []


async def test_a_screened_out_invite_gets_no_100_trying_and_no_session():
    from sipbridge.sip.gate import Screening

    agent, transport, sessions = _gated_ua(screen=lambda request, flow: Screening(drop=True))
    agent.datagram_received(request("INVITE", body=SDP), PEER)
    assert transport.sent == [] and sessions == []


async def test_a_challenge_from_the_screen_is_a_stateless_401_with_its_headers():
    from sipbridge.sip.gate import Screening

    challenge = ("WWW-Authenticate", 'Digest realm="sipbridge", nonce="n", qop="auth"')
    agent, transport, sessions = _gated_ua(
        screen=lambda request, flow: Screening(status=401, headers=(challenge,))
    )
    agent.datagram_received(request("INVITE", body=SDP), PEER)
    agent.datagram_received(request("INVITE", body=SDP), PEER)  # a retransmission is answered again
    assert transport.statuses() == [401, 401] and sessions == []
    assert transport.responses()[0].headers.get("WWW-Authenticate") == challenge[1]
    await asyncio.sleep(0.1)  # well past Timer G at T1 = 10 ms: nothing is retransmitted
    assert transport.statuses() == [401, 401] and agent.live_transactions == 0


async def test_the_screen_says_what_admitted_the_call_and_is_not_asked_in_a_dialog():
    from sipbridge.sip.gate import Screening

    asked: list[str] = []

    def screen(req, flow):  # noqa: ANN001, ANN202
        asked.append(req.method)
        return Screening(admitted_as="trunk")

    agent, transport, sessions = _gated_ua(screen=screen)
    agent.datagram_received(request("INVITE", body=SDP), PEER)
    agent.datagram_received(request("BYE", to_tag="nope", branch="z9hG4bKbye"), PEER)
    assert sessions[0].admitted_as == "trunk" and asked == ["INVITE"]
