"""RFC 3262 through the real UserAgent: our reliable 180 and its PRACK as UAS, our PRACK for a
trunk's reliable 183 as UAC. Datagrams are fed directly, sends recorded; T1 is 10 ms."""

from __future__ import annotations

import asyncio

import pytest

from sipbridge.sip.invite_session import InviteSession
from sipbridge.sip.message import SipRequest, SipResponse
from sipbridge.sip.transaction import Timers
from sipbridge.sip.useragent import UserAgent
from testbed.sip_recorder import FAR, PEER, SDP, RecordingTransport, dial, request

TIMERS = Timers(t1=0.01, t2=0.04, t4=0.05)


@pytest.fixture
def ua() -> tuple[UserAgent, RecordingTransport, list[InviteSession]]:
    sessions: list[InviteSession] = []
    agent = UserAgent(timers=TIMERS, on_invite=sessions.append)
    transport = RecordingTransport()
    agent.use_datagram_sender(transport)
    return agent, transport, sessions


def reliable_180s(transport: RecordingTransport) -> list[SipResponse]:
    return [r for r in transport.responses() if r.status == 180]


def ringing_reliably(ua) -> tuple[InviteSession, SipResponse]:  # noqa: ANN001
    agent, transport, sessions = ua
    agent.datagram_received(request("INVITE", body=SDP, extra="Require: 100rel\r\n"), PEER)
    session = sessions[-1]
    session.provisional(180)
    return session, reliable_180s(transport)[0]


def prack_for(ringing: SipResponse, rack: str | None = None, branch: str = "z9hG4bKpr1") -> bytes:
    rack = rack or f"{ringing.headers.get('RSeq')} 1 INVITE"
    return request("PRACK", branch=branch, to_tag=ringing.to.tag or "", cseq=2, extra=f"RAck: {rack}\r\n")


def statuses_for(transport: RecordingTransport, method: str) -> list[int]:
    return [r.status for r in transport.responses() if r.cseq[1] == method]


# --- as UAS -----------------------------------------------------------------------------------------


async def test_required_100rel_makes_our_180_reliable_and_it_is_resent_until_the_prack(ua):
    agent, transport, _ = ua
    session, ringing = ringing_reliably(ua)
    assert ringing.headers.get("Require") == "100rel" and ringing.headers.get("RSeq", "").isdigit()
    assert ringing.to.tag == session.local_tag and ringing.headers.get("Contact")
    await asyncio.sleep(0.05)
    assert len(reliable_180s(transport)) >= 3
    assert all(r.headers.get("RSeq") == ringing.headers.get("RSeq") for r in reliable_180s(transport))
    agent.datagram_received(prack_for(ringing), PEER)
    assert statuses_for(transport, "PRACK") == [200]
    count = len(reliable_180s(transport))
    await asyncio.sleep(0.05)
    assert len(reliable_180s(transport)) == count


async def test_our_200_waits_for_the_prack_then_the_call_is_set_up(ua):
    agent, transport, _ = ua
    session, ringing = ringing_reliably(ua)
    accepting = asyncio.ensure_future(session.accept(b"v=0\r\n"))
    await asyncio.sleep(0.02)
    assert statuses_for(transport, "INVITE").count(200) == 0
    agent.datagram_received(prack_for(ringing), PEER)
    await asyncio.sleep(0)
    assert statuses_for(transport, "INVITE")[-1] == 200
    agent.datagram_received(request("ACK", branch="z9hG4bKack", to_tag=session.local_tag), PEER)
    assert await asyncio.wait_for(accepting, 1)
    agent.datagram_received(request("BYE", branch="z9hG4bKbye", to_tag=session.local_tag, cseq=3), PEER)
    assert statuses_for(transport, "BYE") == [200] and session.ended_by_peer


async def test_a_prack_naming_no_pending_response_gets_481_and_the_180_goes_on(ua):
    agent, transport, _ = ua
    _, ringing = ringing_reliably(ua)
    rseq = int(ringing.headers.get("RSeq"))
    agent.datagram_received(prack_for(ringing, rack=f"{rseq + 1} 1 INVITE"), PEER)
    assert statuses_for(transport, "PRACK") == [481]
    count = len(reliable_180s(transport))
    await asyncio.sleep(0.03)
    assert len(reliable_180s(transport)) > count


async def test_a_second_prack_after_the_first_gets_481(ua):
    agent, transport, _ = ua
    _, ringing = ringing_reliably(ua)
    agent.datagram_received(prack_for(ringing), PEER)
    agent.datagram_received(prack_for(ringing, branch="z9hG4bKpr2"), PEER)
    assert statuses_for(transport, "PRACK") == [200, 481]


async def test_no_prack_within_64_t1_refuses_the_invite_with_500(ua):
    _, transport, _ = ua
    session, _ = ringing_reliably(ua)
    failures: list[str] = []
    session.on_failed = failures.append
    accepting = asyncio.ensure_future(session.accept(b"v=0\r\n"))
    assert not await asyncio.wait_for(accepting, 2)
    final = transport.responses()[-1]
    assert final.status == 500 and "PRACK" in final.headers.get("Warning")
    assert failures == ["no PRACK for our reliable provisional response"] and session.ended


async def test_cancel_while_the_180_awaits_its_prack_ends_it_and_its_resending(ua):
    agent, transport, _ = ua
    session, _ = ringing_reliably(ua)
    agent.datagram_received(request("CANCEL"), PEER)
    assert statuses_for(transport, "INVITE")[-1] == 487 and session.cancelled
    count = len(reliable_180s(transport))
    await asyncio.sleep(0.05)
    assert len(reliable_180s(transport)) == count
    assert agent.dialogs == 0


async def test_hangup_while_ringing_reliably_sends_480_and_no_bye(ua):
    _, transport, _ = ua
    session, _ = ringing_reliably(ua)
    await session.hangup("agent unavailable")
    assert statuses_for(transport, "INVITE")[-1] == 480
    assert not [m for m, _ in transport.messages() if isinstance(m, SipRequest)]


async def test_without_require_the_180_is_unreliable_and_a_prack_gets_481(ua):
    agent, transport, sessions = ua
    agent.datagram_received(request("INVITE", body=SDP, extra="Supported: 100rel\r\n"), PEER)
    sessions[-1].provisional(180)
    (ringing,) = reliable_180s(transport)
    assert ringing.headers.get("RSeq") is None and ringing.headers.get("Require") is None
    agent.datagram_received(prack_for(ringing, rack="1 1 INVITE"), PEER)
    assert statuses_for(transport, "PRACK") == [481]


async def test_an_offerless_invite_requiring_100rel_gets_no_18x_and_our_offer_in_the_200(ua):
    """A reliable 18x would be the first reliable answer, so it would have to carry our offer."""
    agent, transport, sessions = ua
    agent.datagram_received(request("INVITE", extra="Require: 100rel\r\n"), PEER)
    session = sessions[-1]
    session.provisional(180)
    assert reliable_180s(transport) == []
    accepting = asyncio.ensure_future(session.accept(SDP.encode()))
    await asyncio.sleep(0)
    ok = transport.responses()[-1]
    assert ok.status == 200 and ok.body == SDP.encode()
    agent.datagram_received(request("ACK", branch="z9hG4bKack", to_tag=session.local_tag, body=SDP), PEER)
    assert await asyncio.wait_for(accepting, 1)


# --- as UAC -----------------------------------------------------------------------------------------


def sent_requests(transport: RecordingTransport, method: str) -> list[tuple[SipRequest, tuple[str, int]]]:
    unique: dict[str, tuple[SipRequest, tuple[str, int]]] = {}
    for message, addr in transport.messages():
        if isinstance(message, SipRequest) and message.method == method:
            unique.setdefault(message.via[0].branch or "", (message, addr))
    return list(unique.values())


def far_response(req: SipRequest, status: int, extra: str = "", body: str = "", tag: str = "far1") -> bytes:
    to = req.headers.get("To") or ""
    if ";tag=" not in to:
        to += f";tag={tag}"
    text = f"SIP/2.0 {status} Something\r\nVia: {req.headers.get('Via')}\r\nTo: {to}\r\n"
    text += (
        f"From: {req.headers.get('From')}\r\nCall-ID: {req.call_id}\r\nCSeq: {req.headers.get('CSeq')}\r\n"
    )
    text += "Contact: <sip:1001@127.0.0.1:5099>\r\n" + extra
    if body:
        text += f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n{body}"
    else:
        text += "Content-Length: 0\r\n\r\n"
    return text.encode()


async def dialling(ua) -> tuple[asyncio.Future, SipRequest, list[SipResponse]]:  # noqa: ANN001
    agent, transport, _ = ua
    seen: list[SipResponse] = []
    outgoing = dial(agent, on_provisional=seen.append)
    running = asyncio.ensure_future(outgoing.run(ring_timeout=5))
    await asyncio.sleep(0.001)
    ((invite, _),) = sent_requests(transport, "INVITE")
    return running, invite, seen


RELIABLE = "Require: 100rel\r\nRSeq: 4711\r\n"


async def test_our_invite_offers_100rel(ua):
    running, invite, _ = await dialling(ua)
    assert "100rel" in invite.headers.get("Supported") and "PRACK" in invite.headers.get("Allow")
    running.cancel()


async def test_a_reliable_183_is_pracked_once_in_its_early_dialog_and_its_sdp_passed_on(ua):
    agent, transport, _ = ua
    running, invite, seen = await dialling(ua)
    agent.datagram_received(far_response(invite, 183, RELIABLE, body=SDP), FAR)
    agent.datagram_received(far_response(invite, 183, RELIABLE, body=SDP), FAR)  # retransmitted
    await asyncio.sleep(0.001)
    ((prack, where),) = sent_requests(transport, "PRACK")
    assert where == ("127.0.0.1", 5099) and prack.uri == "sip:1001@127.0.0.1:5099"
    assert prack.headers.get("RAck") == "4711 1 INVITE" and prack.cseq == (2, "PRACK")
    assert prack.to.tag == "far1" and prack.from_.tag == invite.from_.tag and prack.call_id == invite.call_id
    assert [r.status for r in seen] == [183] and seen[0].body == SDP.encode()
    agent.datagram_received(far_response(prack, 200), ("127.0.0.1", 5099))
    agent.datagram_received(far_response(invite, 200, body=SDP), FAR)
    outcome = await asyncio.wait_for(running, 1)
    assert outcome.answered
    hanging_up = asyncio.ensure_future(outcome.session.hangup("done"))
    await asyncio.sleep(0.001)
    ((bye, _),) = sent_requests(transport, "BYE")
    assert bye.cseq == (3, "BYE")  # after the PRACK's number in the same dialog
    agent.datagram_received(far_response(bye, 200), ("127.0.0.1", 5099))
    await asyncio.wait_for(hanging_up, 1)


async def test_the_next_reliable_response_gets_its_own_prack_an_out_of_order_one_none(ua):
    agent, transport, _ = ua
    running, invite, seen = await dialling(ua)
    agent.datagram_received(far_response(invite, 180, RELIABLE), FAR)
    agent.datagram_received(far_response(invite, 183, "Require: 100rel\r\nRSeq: 4713\r\n", SDP), FAR)
    agent.datagram_received(far_response(invite, 183, "Require: 100rel\r\nRSeq: 4712\r\n", SDP), FAR)
    await asyncio.sleep(0.001)
    racks = [prack.headers.get("RAck") for prack, _ in sent_requests(transport, "PRACK")]
    assert racks == ["4711 1 INVITE", "4712 1 INVITE"] and [r.status for r in seen] == [180, 183]
    running.cancel()


async def test_an_unreliable_183_gets_no_prack(ua):
    agent, transport, _ = ua
    running, invite, seen = await dialling(ua)
    agent.datagram_received(far_response(invite, 183, body=SDP), FAR)
    await asyncio.sleep(0.001)
    assert not sent_requests(transport, "PRACK") and [r.status for r in seen] == [183]
    running.cancel()


class FakeAuth:
    def authorize(self, request: SipRequest, challenge: SipResponse) -> bool:
        request.headers.set("Proxy-Authorization", 'Digest username="u"')
        return True


async def test_a_challenged_prack_is_sent_again_with_credentials_and_the_next_cseq(ua):
    agent, transport, _ = ua
    outgoing = dial(agent, authenticator=FakeAuth())
    running = asyncio.ensure_future(outgoing.run(ring_timeout=5))
    await asyncio.sleep(0.001)
    ((invite, _),) = sent_requests(transport, "INVITE")
    agent.datagram_received(far_response(invite, 183, RELIABLE, body=SDP), FAR)
    await asyncio.sleep(0.001)
    ((first, _),) = sent_requests(transport, "PRACK")
    agent.datagram_received(far_response(first, 407), ("127.0.0.1", 5099))
    await asyncio.sleep(0.001)
    (_, (second, _)) = sent_requests(transport, "PRACK")
    assert second.cseq == (3, "PRACK") and second.headers.get("RAck") == "4711 1 INVITE"
    assert second.headers.get("Proxy-Authorization")
    running.cancel()
