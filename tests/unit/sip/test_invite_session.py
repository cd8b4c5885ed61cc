"""The UA core inside an answered dialog: re-INVITE, UPDATE, CSeq order, glare, session timers.

Datagrams are fed directly and what the core would send is recorded; T1 is 10 ms so timers run fast.
"""

from __future__ import annotations

import asyncio

import pytest

from sipbridge.sip.invite_session import InviteSession
from sipbridge.sip.message import SipRequest, parse_message
from sipbridge.sip.sdp import SdpError
from sipbridge.sip.transaction import Timers
from sipbridge.sip.useragent import UserAgent
from testbed.sip_recorder import PEER, SDP, RecordingTransport, request

HOLD_SDP = SDP + "a=sendonly\r\n"


@pytest.fixture
def ua() -> tuple[UserAgent, RecordingTransport, list[InviteSession]]:
    sessions: list[InviteSession] = []
    agent = UserAgent(
        timers=Timers(t1=0.01, t2=0.04, t4=0.05),
        on_invite=sessions.append,
        session_min_se=1,
        session_expires=1800,
    )
    transport = RecordingTransport()
    agent.use_datagram_sender(transport)
    return agent, transport, sessions


def sent_requests(transport: RecordingTransport) -> list[SipRequest]:
    """What the core sent as requests, each once (retransmissions left out)."""
    unique: dict[tuple[str, str], SipRequest] = {}
    for data, _ in transport.sent:
        message = parse_message(data)
        if isinstance(message, SipRequest):
            unique.setdefault((message.via[0].branch or "", message.method), message)
    return list(unique.values())


def answer_to(req: SipRequest, status: int = 200, extra: str = "") -> bytes:
    text = f"SIP/2.0 {status} Whatever\r\nVia: {req.headers.get('Via')}\r\nTo: {req.headers.get('To')}\r\n"
    text += f"From: {req.headers.get('From')}\r\nCall-ID: {req.call_id}\r\n"
    text += f"CSeq: {req.headers.get('CSeq')}\r\n"
    return (text + extra + "Content-Length: 0\r\n\r\n").encode()


async def answered(ua, invite_extra: str = "", body: str = SDP) -> tuple[InviteSession, str]:
    """An INVITE answered and ACKed; returns the session and our To tag."""
    agent, transport, sessions = ua
    agent.datagram_received(request("INVITE", body=body, extra=invite_extra), PEER)
    session = sessions[-1]
    session.on_offer = lambda offer: b"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n" if offer is None else b"answer"
    accepting = asyncio.ensure_future(session.accept(b"v=0\r\n"))
    await asyncio.sleep(0)
    tag = transport.responses()[-1].to.tag
    agent.datagram_received(request("ACK", branch="z9hG4bKack1", to_tag=tag, body="v=0\r\n"), PEER)
    assert await accepting
    return session, tag


async def test_reinvite_to_hold_is_answered_and_its_200_retransmitted_until_ack(ua):
    agent, transport, _ = ua
    session, tag = await answered(ua)
    offers: list[bytes | None] = []
    session.on_offer = lambda offer: offers.append(offer) or b"v=0\r\na=recvonly\r\n"
    agent.datagram_received(request("INVITE", branch="z9hG4bKre", to_tag=tag, cseq=2, body=HOLD_SDP), PEER)
    assert offers == [HOLD_SDP.encode()]
    await asyncio.sleep(0.05)
    oks = [r for r in transport.responses() if r.status == 200 and r.cseq == (2, "INVITE")]
    assert len(oks) >= 3 and oks[0].body == b"v=0\r\na=recvonly\r\n"
    agent.datagram_received(request("ACK", branch="z9hG4bKack2", to_tag=tag, cseq=2), PEER)
    count = len(transport.sent)
    await asyncio.sleep(0.05)
    assert len(transport.sent) == count and not session.ended


async def test_refused_offer_gets_488_with_warning_and_the_call_goes_on(ua):
    agent, transport, _ = ua
    session, tag = await answered(ua)

    def refuse(offer: bytes | None) -> bytes:
        raise SdpError("no common codec: offered G729")

    session.on_offer = refuse
    agent.datagram_received(request("INVITE", branch="z9hG4bKre", to_tag=tag, cseq=2, body=SDP), PEER)
    response = transport.responses()[-1]
    assert response.status == 488 and "G729" in response.headers.get("Warning")
    assert not session.ended


async def test_offerless_reinvite_gets_our_offer_and_the_ack_carries_the_answer(ua):
    agent, transport, _ = ua
    session, tag = await answered(ua)
    answers: list[bytes | None] = []
    session.on_answer = answers.append
    agent.datagram_received(request("INVITE", branch="z9hG4bKre", to_tag=tag, cseq=2), PEER)
    ok = transport.responses()[-1]
    assert ok.status == 200 and ok.body.startswith(b"v=0")
    agent.datagram_received(request("ACK", branch="z9hG4bKack2", to_tag=tag, cseq=2, body=SDP), PEER)
    assert answers == [SDP.encode()]


async def test_invite_without_sdp_gets_our_offer_and_the_ack_answer_is_kept(ua):
    agent, transport, sessions = ua
    agent.datagram_received(request("INVITE"), PEER)
    session = sessions[0]
    accepting = asyncio.ensure_future(session.accept(b"offer"))
    await asyncio.sleep(0)
    ok = transport.responses()[-1]
    assert ok.body == b"offer" and ok.headers.get("Content-Type") == "application/sdp"
    agent.datagram_received(request("ACK", branch="z9hG4bKack", to_tag=ok.to.tag, body=SDP), PEER)
    assert await accepting and session.ack_body == SDP.encode()


async def test_update_without_sdp_refreshes_and_states_the_session_timer(ua):
    agent, transport, _ = ua
    session, tag = await answered(ua)
    extra = "Session-Expires: 120;refresher=uac\r\nSupported: timer\r\n"
    agent.datagram_received(request("UPDATE", branch="z9hG4bKup", to_tag=tag, cseq=2, extra=extra), PEER)
    ok = transport.responses()[-1]
    assert ok.status == 200 and ok.headers.get("Session-Expires") == "120;refresher=uac"
    assert ok.headers.get("Require") == "timer"


async def test_request_with_lower_cseq_gets_500(ua):
    agent, transport, _ = ua
    _, tag = await answered(ua)
    agent.datagram_received(request("OPTIONS", branch="z9hG4bKo5", to_tag=tag, cseq=5), PEER)
    agent.datagram_received(request("OPTIONS", branch="z9hG4bKo3", to_tag=tag, cseq=3), PEER)
    first, second = transport.responses()[-2:]
    assert first.status == 200 and second.status == 500 and "CSeq" in second.headers.get("Warning")


async def test_second_reinvite_before_the_ack_gets_500_with_retry_after(ua):
    agent, transport, _ = ua
    _, tag = await answered(ua)
    agent.datagram_received(request("INVITE", branch="z9hG4bKr2", to_tag=tag, cseq=2, body=SDP), PEER)
    agent.datagram_received(request("INVITE", branch="z9hG4bKr3", to_tag=tag, cseq=3, body=SDP), PEER)
    response = transport.responses()[-1]
    assert response.status == 500 and 0 <= int(response.headers.get("Retry-After")) <= 10


async def test_unknown_dialog_gets_481(ua):
    agent, transport, _ = ua
    agent.datagram_received(request("INVITE", branch="z9hG4bKx", to_tag="nosuch", cseq=2, body=SDP), PEER)
    assert transport.statuses() == [481]


async def test_session_expires_below_our_minimum_gets_422_with_min_se(ua):
    agent, transport, _ = ua
    agent.session_min_se = 90
    agent.datagram_received(request("INVITE", body=SDP, extra="Session-Expires: 30\r\n"), PEER)
    response = transport.responses()[-1]
    assert response.status == 422 and response.headers.get("Min-SE") == "90"


@pytest.mark.parametrize(
    ("require", "status"), [("timer", 100), ("100rel", 100), ("timer, 100rel", 100), ("timer, foo", 420)]
)
async def test_require_timer_and_100rel_are_supported_others_are_not(ua, require, status):
    agent, transport, _ = ua
    agent.datagram_received(request("INVITE", body=SDP, extra=f"Require: {require}\r\n"), PEER)
    response = transport.responses()[-1]
    assert response.status == status
    if status == 420:
        assert "timer" not in response.headers.get("Unsupported")


async def test_merged_request_gets_482(ua):
    agent, transport, sessions = ua
    agent.datagram_received(request("INVITE", body=SDP), PEER)
    agent.datagram_received(request("INVITE", branch="z9hG4bKother", body=SDP), ("127.0.0.1", 5099))
    assert len(sessions) == 1 and transport.statuses()[-1] == 482


async def test_we_refresh_with_update_at_half_the_interval(ua):
    agent, transport, _ = ua
    extra = "Session-Expires: 1;refresher=uas\r\nSupported: timer\r\nAllow: INVITE, ACK, BYE, UPDATE\r\n"
    session, tag = await answered(ua, invite_extra=extra)
    ok = [r for r in transport.responses() if r.status == 200][0]
    assert ok.headers.get("Session-Expires") == "1;refresher=uas"
    await asyncio.sleep(0.6)
    (update,) = [r for r in sent_requests(transport) if r.method == "UPDATE"]
    assert update.headers.get("Session-Expires") == "1;refresher=uac"  # in our UPDATE: we refresh
    assert update.to.tag == "caller1" and update.from_.tag == tag
    agent.datagram_received(answer_to(update, extra="Session-Expires: 1;refresher=uac\r\n"), PEER)
    await asyncio.sleep(0.6)
    assert len([r for r in sent_requests(transport) if r.method == "UPDATE"]) == 2
    assert not session.ended


async def test_refresh_answer_can_hand_the_refreshing_to_the_caller(ua):
    """A 2xx to our UPDATE saying refresher=uas makes the caller refresh: we stop, and expect theirs."""
    agent, transport, _ = ua
    extra = "Session-Expires: 1;refresher=uas\r\nSupported: timer\r\nAllow: UPDATE\r\n"
    session, _ = await answered(ua, invite_extra=extra)
    failures: list[str] = []
    session.on_failed = failures.append
    await asyncio.sleep(0.55)
    (update,) = [r for r in sent_requests(transport) if r.method == "UPDATE"]
    agent.datagram_received(answer_to(update, extra="Session-Expires: 1;refresher=uas\r\n"), PEER)
    await asyncio.sleep(0.8)
    assert len([r for r in sent_requests(transport) if r.method == "UPDATE"]) == 1
    assert failures and "expired" in failures[0]


async def test_refresh_by_reinvite_when_update_is_not_allowed_is_acked(ua):
    agent, transport, _ = ua
    extra = "Session-Expires: 1;refresher=uas\r\nAllow: INVITE, ACK, BYE\r\n"
    session, _ = await answered(ua, invite_extra=extra)
    await asyncio.sleep(0.6)
    (reinvite,) = [r for r in sent_requests(transport) if r.method == "INVITE"]
    assert reinvite.body.startswith(b"v=0")
    agent.datagram_received(answer_to(reinvite), PEER)
    await asyncio.sleep(0.01)
    (ack,) = [r for r in sent_requests(transport) if r.method == "ACK"]
    assert ack.cseq == (reinvite.cseq[0], "ACK")


async def test_failed_refresh_ends_the_call(ua):
    agent, transport, _ = ua
    extra = "Session-Expires: 1;refresher=uas\r\nAllow: UPDATE\r\n"
    session, _ = await answered(ua, invite_extra=extra)
    failures: list[str] = []
    session.on_failed = failures.append
    await asyncio.sleep(0.6)
    (update,) = [r for r in sent_requests(transport) if r.method == "UPDATE"]
    agent.datagram_received(answer_to(update, 481), PEER)
    await asyncio.sleep(0.01)
    assert failures and "481" in failures[0]


async def test_missed_refresh_by_the_caller_ends_the_call(ua):
    extra = "Session-Expires: 1;refresher=uac\r\nSupported: timer\r\n"
    session, _ = await answered(ua, invite_extra=extra)
    failures: list[str] = []
    session.on_failed = failures.append
    await asyncio.sleep(0.5)
    assert not failures
    await asyncio.sleep(0.4)
    assert failures and "expired" in failures[0]


async def test_bye_carries_the_reason(ua):
    agent, transport, _ = ua
    session, _ = await answered(ua)
    hanging_up = asyncio.ensure_future(session.hangup("agent unavailable"))
    await asyncio.sleep(0)
    (bye,) = [r for r in sent_requests(transport) if r.method == "BYE"]
    assert bye.headers.get("Reason") == 'SIP;cause=200;text="agent unavailable"'
    agent.datagram_received(answer_to(bye), PEER)
    await asyncio.wait_for(hanging_up, 1)


async def test_bye_overtaking_a_lost_ack_ends_the_dialog_and_the_200_retransmissions(ua):
    agent, transport, sessions = ua
    agent.datagram_received(request("INVITE", body=SDP), PEER)
    session = sessions[0]
    accepting = asyncio.ensure_future(session.accept(b"v=0\r\n"))
    await asyncio.sleep(0)
    tag = transport.responses()[-1].to.tag
    agent.datagram_received(request("BYE", branch="z9hG4bKbye", to_tag=tag, cseq=2), PEER)
    assert not await accepting and session.ended_by_peer
    assert transport.statuses()[-1] == 200
    count = len(transport.sent)
    await asyncio.sleep(0.05)
    assert len(transport.sent) == count  # no 200 retransmitted after the BYE


async def test_info_dtmf_relay_is_answered_and_handed_to_the_call(ua):
    agent, transport, _ = ua
    session, tag = await answered(ua)
    digits: list[str] = []
    session.on_dtmf = digits.append
    body = "Signal=5\r\nDuration=160\r\n"
    raw = request("INFO", branch="z9hG4bKinfo", to_tag=tag, cseq=2, body=body)
    agent.datagram_received(raw.replace(b"application/sdp", b"application/dtmf-relay"), PEER)
    assert transport.statuses()[-1] == 200 and digits == ["5"]
    raw = request("INFO", branch="z9hG4bKinfo2", to_tag=tag, cseq=3, body="hello")
    agent.datagram_received(raw.replace(b"application/sdp", b"text/plain"), PEER)
    response = transport.responses()[-1]
    assert response.status == 415 and "application/dtmf-relay" in response.headers.get("Accept")


async def test_hangup_before_the_ack_waits_for_it_then_sends_bye_and_stops_the_200(ua):
    agent, transport, sessions = ua
    agent.datagram_received(request("INVITE", body=SDP), PEER)
    session = sessions[0]
    accepting = asyncio.ensure_future(session.accept(b"v=0\r\n"))
    await asyncio.sleep(0)
    tag = transport.responses()[-1].to.tag
    hanging_up = asyncio.ensure_future(session.hangup("agent unavailable"))
    await asyncio.sleep(0.03)  # our 200 is retransmitted, its ACK has not come
    assert not [r for r in sent_requests(transport) if r.method == "BYE"]  # RFC 3261 §15
    agent.datagram_received(request("ACK", branch="z9hG4bKack1", to_tag=tag), PEER)
    await asyncio.sleep(0.005)
    (bye,) = [r for r in sent_requests(transport) if r.method == "BYE"]
    agent.datagram_received(answer_to(bye), PEER)
    await asyncio.wait_for(hanging_up, 1)
    await asyncio.wait_for(accepting, 1)
    count = len(transport.sent)
    await asyncio.sleep(0.05)
    assert len(transport.sent) == count  # no 200 retransmitted once ACKed and hung up


async def test_hangup_without_an_ack_sends_bye_once_the_200_gave_up(ua):
    agent, transport, sessions = ua
    agent.datagram_received(request("INVITE", body=SDP), PEER)
    session = sessions[0]
    accepting = asyncio.ensure_future(session.accept(b"v=0\r\n"))
    await asyncio.sleep(0)
    hanging_up = asyncio.ensure_future(session.hangup())
    await asyncio.sleep(0.3)  # well within 64·T1 = 640 ms
    assert not [r for r in sent_requests(transport) if r.method == "BYE"]
    assert not await asyncio.wait_for(accepting, 1)  # the 200's retransmissions gave up
    await asyncio.sleep(0.005)
    (bye,) = [r for r in sent_requests(transport) if r.method == "BYE"]
    agent.datagram_received(answer_to(bye), PEER)
    await asyncio.wait_for(hanging_up, 1)
    count = len(transport.sent)
    await asyncio.sleep(0.05)
    assert len(transport.sent) == count


async def test_bye_carries_no_contact_a_refresh_does(ua):
    """RFC 3261 Table 3: no Contact in a BYE; a target refresh (UPDATE, re-INVITE) must have one."""
    agent, transport, _ = ua
    extra = "Session-Expires: 1;refresher=uas\r\nSupported: timer\r\nAllow: INVITE, ACK, BYE, UPDATE\r\n"
    session, _ = await answered(ua, invite_extra=extra)
    await asyncio.sleep(0.6)  # we refresh at half the interval
    (update,) = [r for r in sent_requests(transport) if r.method == "UPDATE"]
    assert update.headers.get("Contact")
    agent.datagram_received(answer_to(update), PEER)
    hanging_up = asyncio.ensure_future(session.hangup())
    await asyncio.sleep(0)
    (bye,) = [r for r in sent_requests(transport) if r.method == "BYE"]
    assert "Contact" not in bye.headers
    agent.datagram_received(answer_to(bye), PEER)
    await asyncio.wait_for(hanging_up, 1)
