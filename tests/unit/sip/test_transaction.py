"""RFC 3261 §17 timers driven with a fake clock: nothing here sleeps."""

from sipbridge.sip.message import SipResponse, make_response, parse_message
from sipbridge.sip.transaction import (
    ClientNonInviteTransaction,
    OkRetransmitter,
    ServerInviteTransaction,
    ServerNonInviteTransaction,
    State,
    Timers,
    invite_key_for_cancel,
    transaction_key,
)

T = Timers(t1=0.5, t2=4.0, t4=5.0)


def _request(method: str = "INVITE", branch: str = "z9hG4bK776asdhds", cseq_method: str | None = None):
    raw = (
        f"{method} sip:bob@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5062;branch={branch}\r\n"
        "Max-Forwards: 70\r\n"
        "To: Bob <sip:bob@127.0.0.1>\r\n"
        "From: Alice <sip:alice@127.0.0.1>;tag=1928301774\r\n"
        "Call-ID: a84b4c76e66710@127.0.0.1\r\n"
        f"CSeq: 314159 {cseq_method or method}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    return parse_message(raw)


def _drive(obj, start: float, until: float) -> list[tuple[float, object]]:
    """Fire every deadline up to ``until``; returns (time, output) for each transmission."""
    sent = []
    now = start
    while (deadline := obj.next_deadline) is not None and deadline <= until:
        now = deadline
        for message in obj.on_timer(now):
            sent.append((round(now - start, 3), message))
    return sent


def test_invite_retransmission_gets_last_response_not_a_second_call():
    invite = _request()
    tx = ServerInviteTransaction(invite, T)
    trying = make_response(invite, 100)
    assert tx.send_response(trying, 0.0) == [trying]
    assert tx.receive_request(invite, 0.1) == [trying]
    ringing = make_response(invite, 180, to_tag="abc")
    tx.send_response(ringing, 0.2)
    assert tx.receive_request(invite, 0.3) == [ringing]


def test_non_2xx_final_is_retransmitted_by_timer_g_until_timer_h():
    invite = _request()
    tx = ServerInviteTransaction(invite, T)
    busy = make_response(invite, 486, to_tag="abc")
    tx.send_response(busy, 0.0)
    sent = _drive(tx, 0.0, 100.0)
    times = [t for t, _ in sent]
    assert times[:5] == [0.5, 1.5, 3.5, 7.5, 11.5]  # T1 doubling, capped at T2 = 4 s
    assert all(t <= 32.0 for t in times)
    assert tx.state is State.TERMINATED and tx.timed_out


def test_ack_for_non_2xx_stops_retransmission_then_timer_i_ends_it():
    invite = _request()
    tx = ServerInviteTransaction(invite, T)
    tx.send_response(make_response(invite, 487, to_tag="abc"), 0.0)
    ack = _request("ACK")
    assert tx.receive_request(ack, 0.7) == []
    assert tx.state is State.CONFIRMED
    assert _drive(tx, 0.7, 100.0) == []
    assert tx.state is State.TERMINATED and not tx.timed_out


def test_2xx_moves_to_accepted_and_absorbs_invite_retransmissions():
    invite = _request()
    tx = ServerInviteTransaction(invite, T)
    ok = make_response(invite, 200, to_tag="abc")
    tx.send_response(ok, 0.0)
    assert tx.state is State.ACCEPTED
    assert tx.receive_request(invite, 1.0) == []
    assert tx.send_response(ok, 1.0) == [ok]  # the UA core's retransmission passes
    _drive(tx, 0.0, 100.0)
    assert tx.state is State.TERMINATED


def test_ok_retransmitter_doubles_to_t2_and_gives_up_at_64_t1():
    rt = OkRetransmitter(T, 0.0)
    fired = []
    while (deadline := rt.next_deadline) is not None:
        if rt.on_timer(deadline):
            fired.append(deadline)
    assert fired[:6] == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5]
    assert rt.gave_up and max(fired) < 32.0


def test_ok_retransmitter_stops_on_ack():
    rt = OkRetransmitter(T, 0.0)
    assert rt.on_timer(0.5)
    rt.ack_received()
    assert rt.next_deadline is None and not rt.on_timer(1.5)


def test_non_invite_server_absorbs_retransmissions_and_ends_after_timer_j():
    bye = _request("BYE")
    tx = ServerNonInviteTransaction(bye, T)
    assert tx.receive_request(bye, 0.0) == []  # Trying: absorbed
    ok = make_response(bye, 200, to_tag="x")
    tx.send_response(ok, 0.1)
    assert tx.receive_request(bye, 0.2) == [ok]
    _drive(tx, 0.1, 100.0)
    assert tx.state is State.TERMINATED


def test_non_invite_client_timer_e_then_timer_f():
    bye = _request("BYE")
    tx = ClientNonInviteTransaction(bye, T, 0.0)
    sent = _drive(tx, 0.0, 100.0)
    assert [t for t, _ in sent][:5] == [0.5, 1.5, 3.5, 7.5, 11.5]
    assert tx.state is State.TERMINATED and tx.timed_out


def test_non_invite_client_final_response_is_delivered_once():
    bye = _request("BYE")
    tx = ClientNonInviteTransaction(bye, T, 0.0)
    ok = SipResponse(status=200, reason="OK", headers=bye.headers.copy())
    assert tx.receive_response(ok, 0.2)
    assert not tx.receive_response(ok, 0.3)
    _drive(tx, 0.2, 100.0)
    assert tx.state is State.TERMINATED and not tx.timed_out


def test_ack_and_cancel_match_their_invite():
    invite, ack, cancel = _request(), _request("ACK"), _request("CANCEL")
    assert transaction_key(ack) == transaction_key(invite)
    assert transaction_key(cancel) != transaction_key(invite)
    assert invite_key_for_cancel(cancel) == transaction_key(invite)


def test_rfc2543_requests_without_magic_cookie_still_match():
    invite, again = _request(branch="oldbranch"), _request(branch="oldbranch")
    assert transaction_key(invite) == transaction_key(again)
