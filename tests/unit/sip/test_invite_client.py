"""Our outgoing INVITE against a scripted far end: answers, challenges, busy, ring timeout, CANCEL."""

from __future__ import annotations

import asyncio

import pytest

from sipbridge.sip.invite_client import end_reason_for
from sipbridge.sip.locating import Target
from sipbridge.sip.message import SipRequest, SipResponse, parse_message
from sipbridge.sip.transaction import Timers
from sipbridge.sip.useragent import UserAgent
from testbed.sip_recorder import FAR, SDP, RecordingTransport, dial


@pytest.fixture
def ua() -> tuple[UserAgent, RecordingTransport]:
    agent = UserAgent(timers=Timers(t1=0.01, t2=0.04, t4=0.05))
    transport = RecordingTransport()
    agent.use_datagram_sender(transport)
    return agent, transport


def requests(transport: RecordingTransport, method: str) -> list[SipRequest]:
    unique: dict[str, SipRequest] = {}
    for data, _ in transport.sent:
        message = parse_message(data)
        if isinstance(message, SipRequest) and message.method == method:
            unique.setdefault(message.via[0].branch or "", message)
    return list(unique.values())


def reply(agent: UserAgent, req: SipRequest, status: int, extra: str = "", tag: str = "far1") -> None:
    to = req.headers.get("To") or ""
    if status > 100 and ";tag=" not in to:
        to += f";tag={tag}"
    text = f"SIP/2.0 {status} Something\r\nVia: {req.headers.get('Via')}\r\nTo: {to}\r\n"
    text += f"From: {req.headers.get('From')}\r\nCall-ID: {req.call_id}\r\n"
    text += f"CSeq: {req.headers.get('CSeq')}\r\n"
    agent.datagram_received((text + extra + "Content-Length: 0\r\n\r\n").encode(), FAR)


async def test_answered_call_is_acked_to_the_contact_and_becomes_a_dialog(ua):
    agent, transport = ua
    seen: list[int] = []
    outgoing = dial(agent, on_provisional=lambda r: seen.append(r.status))
    running = asyncio.ensure_future(outgoing.run(ring_timeout=5))
    await asyncio.sleep(0.001)
    (invite,) = requests(transport, "INVITE")
    assert invite.body == SDP.encode() and invite.headers.get("Contact")
    reply(agent, invite, 100)
    reply(agent, invite, 180)
    reply(agent, invite, 200, extra="Contact: <sip:1001@127.0.0.1:5099>\r\nAllow: INVITE, BYE, UPDATE\r\n")
    outcome = await asyncio.wait_for(running, 1)
    assert seen == [180] and outcome.answered and outcome.reason == "answered"
    (ack,) = requests(transport, "ACK")
    assert ack.uri == "sip:1001@127.0.0.1:5099" and ack.cseq == (1, "ACK") and ack.to.tag == "far1"
    assert transport.sent[-1][1] == ("127.0.0.1", 5099)
    byes = []
    outcome.session.on_bye = lambda: byes.append(True)
    bye = (
        "BYE sip:sipbridge@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bKfarbye\r\n"
        f"From: <sip:1001@127.0.0.1>;tag=far1\r\nTo: {invite.headers.get('From')}\r\n"
        f"Call-ID: {invite.call_id}\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n"
    )
    agent.datagram_received(bye.encode(), ("127.0.0.1", 5099))
    assert byes and transport.statuses()[-1] == 200


class FakeAuth:
    def __init__(self, ok: bool = True) -> None:
        self.ok = ok
        self.challenges: list[int] = []

    def authorize(self, request: SipRequest, challenge: SipResponse) -> bool:
        self.challenges.append(challenge.status)
        header = "Authorization" if challenge.status == 401 else "Proxy-Authorization"
        request.headers.set(header, 'Digest username="u"')
        return self.ok


@pytest.mark.parametrize("status", [401, 407])
async def test_challenge_is_answered_with_credentials_in_a_new_invite(ua, status):
    agent, transport = ua
    auth = FakeAuth()
    running = asyncio.ensure_future(dial(agent, authenticator=auth).run(ring_timeout=5))
    await asyncio.sleep(0.001)
    (first,) = requests(transport, "INVITE")
    reply(agent, first, status)
    await asyncio.sleep(0.001)
    first_ack = requests(transport, "ACK")  # the transaction ACKs the 401/407
    assert first_ack and first_ack[0].via[0].branch == first.via[0].branch
    second = requests(transport, "INVITE")[-1]
    assert second.cseq == (2, "INVITE") and second.call_id == first.call_id
    assert second.from_.tag == first.from_.tag and second.via[0].branch != first.via[0].branch
    assert "Digest" in (second.headers.get("Authorization") or second.headers.get("Proxy-Authorization"))
    reply(agent, second, 200, extra="Contact: <sip:1001@127.0.0.1:5070>\r\n")
    outcome = await asyncio.wait_for(running, 1)
    assert outcome.answered and auth.challenges == [status]


async def test_refused_credentials_end_as_auth_failed(ua):
    agent, transport = ua
    running = asyncio.ensure_future(dial(agent, authenticator=FakeAuth(ok=False)).run(ring_timeout=5))
    await asyncio.sleep(0.001)
    reply(agent, requests(transport, "INVITE")[0], 401)
    outcome = await asyncio.wait_for(running, 1)
    assert not outcome.answered and outcome.reason == "auth failed" and outcome.status == 401


async def test_busy(ua):
    agent, transport = ua
    running = asyncio.ensure_future(dial(agent).run(ring_timeout=5))
    await asyncio.sleep(0.001)
    reply(agent, requests(transport, "INVITE")[0], 486)
    outcome = await asyncio.wait_for(running, 1)
    assert outcome.reason == "busy" and outcome.status == 486


async def test_ring_timeout_cancels_with_the_invites_branch(ua):
    agent, transport = ua
    running = asyncio.ensure_future(dial(agent).run(ring_timeout=0.05))
    await asyncio.sleep(0.001)
    (invite,) = requests(transport, "INVITE")
    reply(agent, invite, 180)
    await asyncio.sleep(0.1)
    (cancel,) = requests(transport, "CANCEL")
    assert cancel.via[0].branch == invite.via[0].branch and cancel.cseq == (1, "CANCEL")
    assert cancel.headers.get("Reason") is None
    reply(agent, cancel, 200)
    reply(agent, invite, 487)
    outcome = await asyncio.wait_for(running, 1)
    assert outcome.reason == "no answer" and outcome.status == 487


async def test_cancel_before_the_first_provisional_waits_for_it(ua):
    agent, transport = ua
    outgoing = dial(agent)
    running = asyncio.ensure_future(outgoing.run(ring_timeout=5))
    await asyncio.sleep(0.001)
    outgoing.cancel('media worker "0" failed')
    await asyncio.sleep(0.001)
    assert not requests(transport, "CANCEL")
    (invite,) = requests(transport, "INVITE")
    reply(agent, invite, 180)
    await asyncio.sleep(0.001)
    (cancel,) = requests(transport, "CANCEL")
    # RFC 3326 with Q.850 normal clearing: SIP cause 200 would say "answered elsewhere"
    assert cancel.headers.get("Reason") == "Q.850;cause=16;text=\"media worker '0' failed\""
    reply(agent, cancel, 200)
    reply(agent, invite, 487)
    assert (await asyncio.wait_for(running, 1)).reason == "cancelled"


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (None, "unreachable: no response"),
        (486, "busy"),
        (480, "no answer"),
        (403, "rejected with 403 Forbidden"),
    ],
)
def test_end_reasons(status, reason):
    assert end_reason_for(status, "Forbidden") == reason


async def test_a_challenged_bye_is_sent_again_with_credentials(ua):
    agent, transport = ua
    running = asyncio.ensure_future(dial(agent, authenticator=FakeAuth()).run(ring_timeout=5))
    await asyncio.sleep(0.001)
    (invite,) = requests(transport, "INVITE")
    reply(agent, invite, 200, extra="Contact: <sip:1001@127.0.0.1:5070>\r\n")
    outcome = await asyncio.wait_for(running, 1)
    hanging_up = asyncio.ensure_future(outcome.session.hangup("done"))
    await asyncio.sleep(0.001)
    (bye,) = requests(transport, "BYE")
    reply(agent, bye, 407)
    await asyncio.sleep(0.001)
    first, second = requests(transport, "BYE")
    assert second.cseq == (first.cseq[0] + 1, "BYE") and second.headers.get("Proxy-Authorization")
    assert second.headers.get("Reason") == first.headers.get("Reason")
    reply(agent, second, 200)
    await asyncio.wait_for(hanging_up, 1)


# -- RFC 3263 §4.3: the next server on no answer or 503 -------------------------------------------

SECOND = Target("127.0.0.2", 5080, "UDP")


def sent_to(transport: RecordingTransport, method: str) -> list[tuple[SipRequest, tuple[str, int]]]:
    return [(m, addr) for m, addr in transport.messages() if isinstance(m, SipRequest) and m.method == method]


async def test_a_503_moves_the_invite_to_the_next_server(ua):
    agent, transport = ua
    outgoing = dial(agent, fallbacks=[SECOND])
    running = asyncio.ensure_future(outgoing.run(ring_timeout=5))
    await asyncio.sleep(0.001)
    (first,) = requests(transport, "INVITE")
    reply(agent, first, 503)
    await asyncio.sleep(0.01)
    second = requests(transport, "INVITE")[-1]
    assert second.via[0].branch != first.via[0].branch and second.cseq == (2, "INVITE")
    assert second.call_id == first.call_id and sent_to(transport, "INVITE")[-1][1] == ("127.0.0.2", 5080)
    reply(agent, second, 200, extra="Contact: <sip:1001@127.0.0.2:5080>\r\n")
    outcome = await asyncio.wait_for(running, 1)
    assert outcome.answered and outgoing.destination == ("127.0.0.2", 5080)


async def test_a_server_that_never_answers_is_left_for_the_next(ua):
    agent, transport = ua  # T1 10 ms: Timer B gives up after 640 ms
    running = asyncio.ensure_future(dial(agent, fallbacks=[SECOND]).run(ring_timeout=5))
    there = ("127.0.0.2", 5080)
    second = await _wait_for(lambda: [m for m, addr in sent_to(transport, "INVITE") if addr == there])
    assert {addr for _, addr in sent_to(transport, "INVITE")} == {FAR, there}
    reply(agent, second[0], 486)
    outcome = await asyncio.wait_for(running, 1)
    assert outcome.status == 486 and outcome.reason == "busy"


async def test_the_last_servers_503_is_the_outcome(ua):
    agent, transport = ua
    running = asyncio.ensure_future(dial(agent, fallbacks=[SECOND]).run(ring_timeout=5))
    await asyncio.sleep(0.001)
    reply(agent, requests(transport, "INVITE")[0], 503)
    await asyncio.sleep(0.01)
    reply(agent, requests(transport, "INVITE")[-1], 503)
    outcome = await asyncio.wait_for(running, 1)
    assert outcome.status == 503 and len(requests(transport, "INVITE")) == 2


async def test_a_cancelled_call_does_not_move_on(ua):
    agent, transport = ua
    outgoing = dial(agent, fallbacks=[SECOND])
    running = asyncio.ensure_future(outgoing.run(ring_timeout=5))
    await asyncio.sleep(0.001)
    outgoing.cancel("hung up through the API")
    reply(agent, requests(transport, "INVITE")[0], 503)
    outcome = await asyncio.wait_for(running, 1)
    assert outcome.status == 503 and len(requests(transport, "INVITE")) == 1


async def _wait_for(found, timeout: float = 2.0):  # noqa: ANN001, ANN202
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not (result := found()) and loop.time() < deadline:
        await asyncio.sleep(0.01)
    assert result
    return result
