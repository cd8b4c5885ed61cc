"""Attacks on the bridge's SIP, as a hostile internet host would make them, against the real process.

One test per defence of issue 13: host names that would block the event loop, text that would make
a regex backtrack, responses aimed at a third party (Via maddr, TCP), a captured digest answer
replayed, a blind ACK for a spoofed INVITE, requests inside a call from someone else, an ACK flood,
and what a stranger learns in drop mode. The bridge runs with asyncio's slow-callback detection:
a callback of 100 ms or more fails the test that caused it.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sipbridge.sip.digest import DigestCredentials, authorization_value, parse_challenge
from testbed import attacker, rawsip
from testbed.attacker import Dialog, OptionsProbe, RtpPhone
from testbed.bridge_proc import AgentProcess, start_bridge, trunk_config
from testbed.hostile_bridge import (
    PBX,
    PBX_PASSWORD,
    PBX_USER,
    PROBE,
    STRANGER,
    THIRD_PARTY,
    TRUNK,
    HostileBridge,
)
from testbed.procs import wait_until

pytestmark = [pytest.mark.integration]


@pytest.fixture(autouse=True)
def no_slow_callbacks(hostile: HostileBridge) -> Iterator[None]:
    since = hostile.log_size()
    yield
    assert hostile.slow_callbacks(since) == []


def _answered_probe(probe: OptionsProbe, allowed_misses: int = 1) -> list[float]:
    trips = probe.round_trips()
    assert len(trips) >= probe.sent - allowed_misses, f"{len(trips)} of {probe.sent} OPTIONS answered"
    return trips


def test_host_names_in_sdp_and_contact_never_stall_the_loop(hostile: HostileBridge) -> None:
    """c=IN IP4 slow.test gets 488 saying why; a Contact naming a host is looked up off the loop when
    we send the BYE; OPTIONS from elsewhere are answered throughout."""
    with OptionsProbe(hostile.sip, PROBE, interval=0.1) as probe, rawsip.RawSipSocket(TRUNK) as trunk:
        dialog = Dialog(hostile.sip)
        body = attacker.sdp("slow.test", 4000)
        trunk.send(dialog.request("INVITE", trunk.address, body=body), hostile.sip)
        refusal = attacker.final(trunk)
        assert refusal is not None and refusal.status == 488
        assert "host name" in refusal.headers["warning"]

        phone = RtpPhone(TRUNK)
        call = Dialog(hostile.sip)
        before = len(trunk.replies)
        trunk.send(
            call.request(
                "INVITE", trunk.address, body=attacker.sdp(*phone.address), contact_host="slow.test"
            ),
            hostile.sip,
        )
        answer = attacker.final(trunk, after=before)
        assert answer is not None and answer.status == 200
        call.to_tag = answer.to_tag
        trunk.send(call.request("ACK", trunk.address, branch=call.next_branch()), hostile.sip)
        view = wait_until(lambda: hostile.call_for(call.call_id), 5)
        assert view and view["state"] == "answered"
        status, ended = hostile.api("DELETE", f"/calls/{view['id']}")  # our BYE goes to slow.test
        assert status == 200 and ended["state"] == "ended"
        time.sleep(2.5)  # past the lookup's deadline
        phone.sock.close()
    trips = _answered_probe(probe)
    assert max(trips) < 0.5, f"slowest OPTIONS answer {max(trips):.3f} s"


def test_text_made_to_backtrack_does_not_stall_the_loop(hostile: HostileBridge) -> None:
    """60 KB of "sip:" as a digest user name (logged in the refusal) and as offered codec names
    (logged with the 488): three datagrams each, OPTIONS answered in time throughout."""
    filler = "sip:" * 14_000
    with OptionsProbe(hostile.sip, PROBE, interval=0.1) as probe:
        with rawsip.RawSipSocket(STRANGER) as stranger, rawsip.RawSipSocket(TRUNK) as trunk:
            for _ in range(3):
                dialog = Dialog(hostile.sip)
                auth = (
                    f'Authorization: Digest username="{filler}", realm="sipbridge", nonce="x", '
                    f'uri="sip:100@127.0.0.1", response="00", qop=auth, nc=00000001, cnonce="c"'
                )
                body = attacker.sdp(TRUNK, 4000)
                stranger.send(
                    dialog.request("INVITE", stranger.address, body=body, extra=(auth,)), hostile.sip
                )
                codecs = attacker.sdp(
                    TRUNK, 4000, codecs="96", rtpmap=f"a=rtpmap:96 {filler[:56_000]}/8000\r\n"
                )
                trunk.send(Dialog(hostile.sip).request("INVITE", trunk.address, body=codecs), hostile.sip)
                time.sleep(0.3)
            assert 488 in trunk.statuses() and 403 in stranger.statuses()
    trips = _answered_probe(probe)
    assert max(trips) < 0.5, f"slowest OPTIONS answer {max(trips):.3f} s"


class Listener:
    """UDP and TCP sockets on a third party's address that count what reaches them."""

    def __init__(self, host: str) -> None:
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind((host, 0))
        self.port = self.udp.getsockname()[1]
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind((host, self.port))
        self.tcp.listen(16)
        for sock in (self.udp, self.tcp):
            sock.setblocking(False)

    def received(self) -> int:
        count = 0
        for receive in (lambda: self.udp.recv(65535), lambda: self.tcp.accept()[0].close()):
            while True:
                try:
                    receive()
                except BlockingIOError:
                    break
                count += 1
        return count

    def close(self) -> None:
        self.udp.close()
        self.tcp.close()


def test_a_third_party_named_in_via_gets_nothing(hostile: HostileBridge) -> None:
    """maddr naming 127.0.0.9 in Via: the answers and their retransmissions go to the source only;
    over TCP, a response whose connection closed is not sent to the host the Via names."""
    victim = Listener(THIRD_PARTY)
    try:
        with rawsip.RawSipSocket(TRUNK) as trunk:
            maddr = f";maddr={THIRD_PARTY};rport"
            trunk.send(Dialog(hostile.sip).request("OPTIONS", trunk.address, via_params=maddr), hostile.sip)
            g729 = attacker.sdp(TRUNK, 4000, codecs="18", rtpmap="a=rtpmap:18 G729/8000\r\n")
            trunk.send(
                Dialog(hostile.sip).request("INVITE", trunk.address, via_params=maddr, body=g729), hostile.sip
            )
            time.sleep(2.0)  # the 488 is retransmitted (nobody ACKs it): none of it to the third party
            assert 200 in trunk.statuses() and trunk.statuses().count(488) >= 3
        dialog = Dialog(hostile.sip)
        request = dialog.request(
            "INVITE", (THIRD_PARTY, victim.port), body=attacker.sdp(TRUNK, 4000), via_params=""
        )
        with socket.create_connection(hostile.sip, source_address=(TRUNK, 0)) as connection:
            connection.sendall(request)
        time.sleep(3.0)  # the 180 and the 200 come after the connection is gone
        assert victim.received() == 0
    finally:
        victim.close()
        for call in hostile.calls():
            hostile.api("DELETE", f"/calls/{call['id']}")


def _challenge(sock: rawsip.RawSipSocket, dialog: Dialog, target: tuple[str, int]) -> str:
    before = len(sock.replies)
    sock.send(dialog.request("INVITE", sock.address, body=attacker.sdp(sock.address[0], 4000)), target)
    reply = attacker.final(sock, 5, before)
    assert reply is not None and reply.status == 401
    return reply.headers["www-authenticate"]


def test_a_replayed_digest_answer_is_refused(hostile: HostileBridge) -> None:
    """A PBX's Authorization header, captured and sent again: from another address, or from the PBX's
    own with another Call-ID and Request-URI (the same nonce count), it admits nothing."""
    with rawsip.RawSipSocket(PBX) as pbx, rawsip.RawSipSocket(STRANGER) as stranger:
        dialog = Dialog(hostile.sip)
        challenge = parse_challenge(_challenge(pbx, dialog, hostile.sip))
        uri = f"sip:{dialog.user}@{hostile.sip[0]}:{hostile.sip[1]}"
        credentials = DigestCredentials(PBX_USER, PBX_PASSWORD)
        header = "Authorization: " + authorization_value(
            challenge, credentials, "INVITE", uri, cnonce="c0ffee", nc=1
        )
        before = len(pbx.replies)
        body = attacker.sdp(PBX, 4000)
        pbx.send(
            dialog.request(
                "INVITE", pbx.address, cseq=2, branch=dialog.next_branch(), body=body, extra=(header,)
            ),
            hostile.sip,
        )
        assert wait_until(lambda: 100 in [r.status for r in pbx.replies[before:]], 3)  # admitted
        replays = [
            (stranger, Dialog(hostile.sip)),  # from elsewhere
            (stranger, Dialog(hostile.sip, user="9000")),  # elsewhere, another Request-URI
            (pbx, Dialog(hostile.sip)),  # the PBX's own address, another Call-ID, the same nc
        ]
        for sock, replay in replays:
            before = len(sock.replies)
            sock.send(replay.request("INVITE", sock.address, body=body, extra=(header,)), hostile.sip)
            refusal = attacker.final(sock, 5, before)
            assert refusal is not None and refusal.status in (401, 403), refusal
            assert 100 not in [r.status for r in sock.replies[before:]]
            assert hostile.call_for(replay.call_id) is None
    for call in hostile.calls():
        hostile.api("DELETE", f"/calls/{call['id']}")


def test_a_blind_ack_does_not_answer_a_spoofed_invite(hostile: HostileBridge) -> None:
    """An INVITE sent with the trunk's address whose answers the sender never sees, its SDP naming a
    victim; then an ACK that copies the INVITE's branch (it cannot know our tag): the call is not
    answered and the victim gets no audio."""
    victim = Listener(THIRD_PARTY)
    spoofer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # never reads: it cannot see replies
    spoofer.bind((TRUNK, 0))
    try:
        source = spoofer.getsockname()
        dialog = Dialog(hostile.sip)
        spoofer.sendto(
            dialog.request("INVITE", source, body=attacker.sdp(THIRD_PARTY, victim.port)), hostile.sip
        )
        view = wait_until(lambda: hostile.call_for(dialog.call_id), 5)
        assert view
        time.sleep(1.0)  # the agent is connected and our 200 is out by now
        spoofer.sendto(dialog.request("ACK", source), hostile.sip)  # the INVITE's branch, no To tag
        spoofer.sendto(
            dialog.request("ACK", source, branch=dialog.next_branch(), to_tag="guess"), hostile.sip
        )
        time.sleep(2.0)
        assert hostile.call(view["id"])["state"] != "answered"
        assert victim.received() == 0
        hostile.api("DELETE", f"/calls/{view['id']}")
    finally:
        spoofer.close()
        victim.close()


def test_requests_from_a_third_address_cannot_end_or_move_a_call(hostile: HostileBridge) -> None:
    """Knowing Call-ID and both tags is not enough: a BYE and a re-INVITE from another host get 403,
    and the call's audio goes on where it went; the caller's own BYE ends it."""
    phone = RtpPhone(TRUNK)
    with rawsip.RawSipSocket(TRUNK) as trunk, rawsip.RawSipSocket(STRANGER) as stranger:
        dialog = Dialog(hostile.sip)
        answer = attacker.place_call(trunk, dialog, phone.address)
        phone.start((hostile.sip[0], attacker.answer_port(answer)))
        view = wait_until(lambda: hostile.call_for(dialog.call_id), 5)
        assert view
        remote = f"{phone.address[0]}:{phone.address[1]}"
        assert wait_until(lambda: hostile.call(view["id"])["rtp"]["remote"] == remote, 3)
        stranger.send(
            dialog.request("BYE", stranger.address, branch=dialog.next_branch(), cseq=2), hostile.sip
        )
        moved = attacker.sdp(STRANGER, 4000)
        reinvite = dialog.request("INVITE", stranger.address, branch=dialog.next_branch(), cseq=3, body=moved)
        stranger.send(reinvite, hostile.sip)
        assert [r.status for r in stranger.wait_for(2)] == [403, 403]
        time.sleep(0.5)
        received = phone.received
        time.sleep(0.5)
        state = hostile.call(view["id"])
        assert state["state"] == "answered" and state["rtp"]["remote"] == remote
        assert phone.received > received  # the audio still comes to the phone
        before = len(trunk.replies)
        trunk.send(dialog.request("BYE", trunk.address, branch=dialog.next_branch(), cseq=4), hostile.sip)
        assert attacker.final(trunk, 3, before).status == 200
        assert wait_until(lambda: hostile.call(view["id"])["end_reason"] == "caller hung up", 3)
    phone.stop()


def test_an_ack_flood_from_a_stranger_leaves_others_answered(hostile: HostileBridge) -> None:
    """ACKs cost a parse like any request: they count against the sender's rate, so a flood of them
    from one host is dropped unread while another host's OPTIONS are answered."""
    stop = threading.Event()
    sent = [0]

    def flood() -> None:
        with rawsip.RawSipSocket(STRANGER) as sock:
            dialog = Dialog(hostile.sip, to_tag="x")
            ack = dialog.request("ACK", sock.address)
            while not stop.is_set():
                for _ in range(50):
                    sock.send(ack, hostile.sip)
                sent[0] += 50
                time.sleep(0.005)

    flooder = threading.Thread(target=flood)
    with OptionsProbe(hostile.sip, PROBE, interval=0.1) as probe:
        flooder.start()
        time.sleep(3.0)
        stop.set()
        flooder.join()
    assert sent[0] > 10_000
    trips = _answered_probe(probe, allowed_misses=2)
    assert max(trips) < 0.5, f"slowest OPTIONS answer {max(trips):.3f} s"


def test_a_folded_scanner_user_agent_gets_no_answer(hostile: HostileBridge) -> None:
    with rawsip.RawSipSocket("127.0.0.6") as scanner:
        folded = Dialog(hostile.sip).request(
            "OPTIONS", scanner.address, extra=("User-Agent:\r\n friendly-scanner",)
        )
        scanner.send(folded, hostile.sip)
        assert scanner.quiet_for(0.5) == []


def test_in_drop_mode_a_stranger_learns_nothing(
    logdir: Path, agent: AgentProcess, tmp_path: Path, hostile: HostileBridge
) -> None:
    """With unknown_source_action = "drop", a stranger's CANCEL, BYE or INFO naming no call of ours
    gets no 481 (nor anything else); the trunk's still does."""
    config = trunk_config(tmp_path, TRUNK)
    bridge = start_bridge(
        logdir, agent.whip_url, "--config", str(config), env={"SIPBRIDGE_UNKNOWN_SOURCE_ACTION": "drop"}
    )
    target = ("127.0.0.1", bridge.sip_port)
    try:
        with rawsip.RawSipSocket(STRANGER) as stranger, rawsip.RawSipSocket(TRUNK) as trunk:
            for method, tag in (("CANCEL", ""), ("BYE", "x"), ("INFO", "y")):
                stranger.send(Dialog(target).request(method, stranger.address, to_tag=tag), target)
            trunk.send(Dialog(target).request("BYE", trunk.address, to_tag="x"), target)
            assert [r.status for r in trunk.wait_for(1)] == [481]
            assert stranger.quiet_for(0.5) == []
    finally:
        bridge.proc.stop()
