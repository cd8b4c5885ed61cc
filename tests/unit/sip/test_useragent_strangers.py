"""The UA core against requests from hosts that are not the call's peer: blind ACKs, BYEs and
re-INVITEs from third addresses, CANCELs from elsewhere, maddr reflection, host names in Contact,
and strangers that get no answer at all. Datagrams are fed straight in; a recorder keeps what would
be sent and where."""

from __future__ import annotations

import asyncio
import time

import pytest

from sipbridge.sip.gate import ADMIT, Screening
from sipbridge.sip.invite_session import InviteSession
from sipbridge.sip.message import SipRequest, SipResponse, parse_message
from sipbridge.sip.resolver import Resolver
from sipbridge.sip.transaction import Timers
from sipbridge.sip.useragent import UserAgent
from testbed.sip_recorder import PEER, SDP, RecordingTransport, request

THIRD = ("127.0.0.7", 5062)
TRUNK_OTHER_HOST = ("127.0.0.8", 5060)


def make_ua(
    *,
    stray: Screening = ADMIT,
    admitted_as: str | None = None,
    resolver: Resolver | None = None,
) -> tuple[UserAgent, RecordingTransport, list[InviteSession]]:
    sessions: list[InviteSession] = []
    agent = UserAgent(
        timers=Timers(t1=0.01, t2=0.04, t4=0.05),
        on_invite=sessions.append,
        screen=lambda req, flow: Screening(admitted_as=admitted_as),
        screen_stray=lambda req, flow: stray,
        provider_source=lambda name, ip: name == "trunk" and ip == TRUNK_OTHER_HOST[0],
        resolver=resolver,
    )
    recorder = RecordingTransport()
    agent.use_datagram_sender(recorder)
    return agent, recorder, sessions


async def answered(
    agent: UserAgent, recorder: RecordingTransport, sessions: list[InviteSession], contact: str | None = None
) -> tuple[InviteSession, str]:
    """An INVITE from PEER answered and ACKed: the session and our To tag."""
    invite = request("INVITE", body=SDP) if contact is None else request("INVITE", body=SDP, contact=contact)
    agent.datagram_received(invite, PEER)
    session = sessions[0]
    accepting = asyncio.ensure_future(session.accept(SDP.encode()))
    await asyncio.sleep(0)
    tag = next(m for m, _ in recorder.messages() if isinstance(m, SipResponse) and m.status == 200).to.tag
    agent.datagram_received(request("ACK", branch="z9hG4bKack", to_tag=tag), PEER)
    assert await asyncio.wait_for(accepting, 1)
    return session, tag


async def test_a_blind_ack_reusing_the_invite_branch_without_our_tag_does_not_confirm_the_call():
    """§17.2.1/§13.3.1.4: the ACK for our 2xx must carry our To tag; a spoofed INVITE's sender never
    saw it, so its ACK (branch copied from its own INVITE) must leave the 200 unacknowledged."""
    agent, recorder, sessions = make_ua(admitted_as="trunk")
    agent.datagram_received(request("INVITE", body=SDP), PEER)
    accepting = asyncio.ensure_future(sessions[0].accept(SDP.encode()))
    await asyncio.sleep(0)
    agent.datagram_received(request("ACK"), PEER)  # the INVITE's branch, no To tag
    agent.datagram_received(request("ACK", branch="z9hG4bKnew", to_tag="guess"), PEER)
    await asyncio.sleep(0.03)
    assert not accepting.done()
    assert agent.stats["stray_acks"] == 2
    assert not await asyncio.wait_for(accepting, 2)  # 64·T1 later: never ACKed, the call fails


async def test_an_ack_with_our_tag_from_a_third_address_does_not_confirm_the_call():
    agent, recorder, sessions = make_ua()
    agent.datagram_received(request("INVITE", body=SDP), PEER)
    accepting = asyncio.ensure_future(sessions[0].accept(SDP.encode()))
    await asyncio.sleep(0)
    tag = recorder.messages()[-1][0].to.tag
    agent.datagram_received(request("ACK", branch="z9hG4bKack", to_tag=tag), THIRD)
    await asyncio.sleep(0.02)
    assert not accepting.done()
    agent.datagram_received(request("ACK", branch="z9hG4bKack", to_tag=tag), PEER)
    assert await asyncio.wait_for(accepting, 1)


async def test_a_bye_from_a_third_address_is_refused_and_the_call_goes_on():
    agent, recorder, sessions = make_ua()
    session, tag = await answered(agent, recorder, sessions)
    byes: list[bool] = []
    session.on_bye = lambda: byes.append(True)
    agent.datagram_received(request("BYE", branch="z9hG4bKbye", to_tag=tag, cseq=2), THIRD)
    assert not byes and not session.ended
    assert [parse_message(d).status for d in recorder.to(THIRD)] == [403]
    agent.datagram_received(request("BYE", branch="z9hG4bKbye2", to_tag=tag, cseq=2), PEER)
    assert byes and recorder.statuses()[-1] == 200


async def test_a_reinvite_from_a_third_address_does_not_move_the_media():
    agent, recorder, sessions = make_ua()
    session, tag = await answered(agent, recorder, sessions)
    offers: list[bytes | None] = []
    session.on_offer = lambda body: offers.append(body) or SDP.encode()
    moved = SDP.replace("127.0.0.1", "127.0.0.7")
    agent.datagram_received(request("INVITE", branch="z9hG4bKre", to_tag=tag, cseq=2, body=moved), THIRD)
    assert offers == [] and [parse_message(d).status for d in recorder.to(THIRD)] == [403]


async def test_a_trunks_other_host_may_act_in_its_calls_dialog():
    """The provider the call came through (its inbound_cidrs) may send the BYE from another host."""
    agent, recorder, sessions = make_ua(admitted_as="trunk")
    session, tag = await answered(agent, recorder, sessions)
    byes: list[bool] = []
    session.on_bye = lambda: byes.append(True)
    agent.datagram_received(request("BYE", branch="z9hG4bKbye", to_tag=tag, cseq=2), TRUNK_OTHER_HOST)
    assert byes


async def test_in_drop_mode_a_stranger_learns_nothing_not_even_481():
    agent, recorder, sessions = make_ua(stray=Screening(drop=True))
    agent.datagram_received(request("BYE", to_tag="nope"), THIRD)
    agent.datagram_received(request("CANCEL"), THIRD)
    agent.datagram_received(request("INFO", to_tag="nope", branch="z9hG4bKi"), THIRD)
    assert recorder.sent == []
    session, tag = await answered(agent, recorder, sessions)
    count = len(recorder.sent)
    agent.datagram_received(request("BYE", branch="z9hG4bKbye", to_tag=tag, cseq=2), THIRD)
    assert len(recorder.sent) == count and not session.ended


async def test_a_cancel_from_another_host_does_not_cancel_the_call():
    agent, recorder, sessions = make_ua()
    agent.datagram_received(request("INVITE", body=SDP), PEER)
    cancelled: list[bool] = []
    sessions[0].on_cancel = lambda: cancelled.append(True)
    agent.datagram_received(request("CANCEL"), THIRD)  # its Via copied from the INVITE
    assert not cancelled and [parse_message(d).status for d in recorder.to(THIRD)] == [403]
    agent.datagram_received(request("CANCEL"), PEER)
    assert cancelled


async def test_maddr_in_via_is_ignored_and_counted():
    agent, recorder, _ = make_ua()
    raw = request("OPTIONS", via_host="127.0.0.1:5062", via_params=";maddr=127.0.0.9;rport")
    agent.datagram_received(raw, PEER)
    assert [addr for _, addr in recorder.sent] == [PEER]
    assert agent.stats["maddr_ignored"] == 1


async def test_out_of_dialog_answers_keep_no_transaction_and_repeat_their_tag():
    """OPTIONS, 481 and the like are answered statelessly (§8.2.7): a flood of them leaves nothing
    behind, and a retransmission gets the same To tag."""
    agent, recorder, _ = make_ua()
    agent.datagram_received(request("OPTIONS"), PEER)
    agent.datagram_received(request("OPTIONS"), PEER)
    first, second = (m for m, _ in recorder.messages())
    assert first.status == second.status == 200 and first.to.tag == second.to.tag
    agent.datagram_received(request("OPTIONS", branch="z9hG4bKother"), PEER)
    assert recorder.messages()[-1][0].to.tag != first.to.tag


async def test_a_host_name_in_contact_is_resolved_off_the_loop_for_the_bye():
    looked_up: list[str] = []

    def lookup(name: str) -> str:
        looked_up.append(name)
        return "127.0.0.1"

    agent, recorder, sessions = make_ua(resolver=Resolver(lookup=lookup))
    session, _ = await answered(agent, recorder, sessions, contact="<sip:caller@phone.test:5070>")
    hanging_up = asyncio.ensure_future(session.hangup())
    await asyncio.sleep(0.05)
    bye = [(m, addr) for m, addr in recorder.messages() if isinstance(m, SipRequest)]
    assert [(m.method, addr) for m, addr in bye][:1] == [("BYE", ("127.0.0.1", 5070))]
    assert looked_up == ["phone.test"]
    hanging_up.cancel()


async def test_a_slow_host_name_in_contact_never_stalls_the_loop():
    def slow(name: str) -> str:
        time.sleep(1.0)
        return "127.0.0.1"

    agent, recorder, sessions = make_ua(resolver=Resolver(lookup=slow, timeout=0.1))
    session, _ = await answered(agent, recorder, sessions, contact="<sip:caller@slow.test>")
    loop = asyncio.get_running_loop()
    started = loop.time()
    hanging_up = asyncio.ensure_future(session.hangup())
    ticks = 0
    while not hanging_up.done():  # the loop keeps turning while the name is looked up
        await asyncio.sleep(0.01)
        ticks += 1
    assert ticks >= 5 and loop.time() - started < 0.9
    assert not any(isinstance(m, SipRequest) for m, _ in recorder.messages())  # no BYE to a name


@pytest.mark.parametrize("contact", ["<sip:caller@127.0.0.1:5062>", "<sip:caller@phone.test>"])
async def test_the_peer_addresses_of_a_dialog_are_bounded(contact):
    agent, recorder, sessions = make_ua(resolver=Resolver(lookup=lambda name: "127.0.0.1"))
    session, tag = await answered(agent, recorder, sessions, contact=contact)
    session.on_offer = lambda body: SDP.encode()
    for i in range(20):  # each target refresh names another address
        refresh = request(
            "UPDATE", branch=f"z9hG4bKu{i}", to_tag=tag, cseq=2 + i, contact=f"<sip:c@127.0.1.{i}:5062>"
        )
        agent.datagram_received(refresh, PEER)
    assert len(session.peer_ips) <= 8
