"""RFC 3261 §17 timers driven with a fake clock: nothing here sleeps."""

from sipbridge.sip.message import SipResponse, parse_message
from sipbridge.sip.responses import make_response
from sipbridge.sip.transaction import (
    ClientInviteOutcome,
    ClientInviteTransaction,
    ClientNonInviteTransaction,
    MergedRequestDetector,
    OkRetransmitter,
    ServerInviteTransaction,
    ServerNonInviteTransaction,
    State,
    Timers,
    build_ack_for_non2xx,
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


# --- INVITE client transaction (RFC 3261 §17.1.1, RFC 6026) ---------------------------------------


def _routed_invite():
    raw = (
        b"INVITE sip:bob@192.0.2.4;transport=udp SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKinvite1;rport\r\n"
        b"Max-Forwards: 70\r\n"
        b"Route: <sip:p1.example.com;lr>\r\n"
        b"Route: <sip:p2.example.com;lr>, <sip:p3.example.com;lr>\r\n"
        b"To: Bob <sip:bob@example.com>\r\n"
        b"From: Alice <sip:alice@127.0.0.1>;tag=1928301774\r\n"
        b"Call-ID: a84b4c76e66710@127.0.0.1\r\n"
        b"CSeq: 7 INVITE\r\n"
        b"Contact: <sip:alice@127.0.0.1:5062>\r\n"
        b"Content-Type: application/sdp\r\n"
        b"Content-Length: 4\r\n\r\n"
        b"v=0\n"
    )
    return parse_message(raw)


def test_timer_a_doubles_without_t2_cap_until_timer_b_times_out():
    invite = _request()
    tx = ClientInviteTransaction(invite, T, 0.0)
    assert tx.state is State.CALLING
    sent = _drive(tx, 0.0, 100.0)
    assert [t for t, _ in sent] == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert all(message is invite for _, message in sent)
    assert tx.state is State.TERMINATED and tx.timed_out
    assert tx.next_deadline is None


def test_timer_b_fires_at_64_t1_and_wins_over_a_late_timer_a():
    tx = ClientInviteTransaction(_request(), T, 10.0)
    assert tx.on_timer(10.4) == []
    assert tx.on_timer(200.0) == []  # the caller was late: A and B both due, B ends it
    assert tx.state is State.TERMINATED and tx.timed_out


def test_reliable_invite_client_never_retransmits_but_still_times_out():
    tx = ClientInviteTransaction(_request(), T, 0.0, reliable=True)
    assert tx.next_deadline == 32.0
    assert _drive(tx, 0.0, 100.0) == []
    assert tx.state is State.TERMINATED and tx.timed_out


def test_provisional_stops_timers_a_and_b_and_each_one_reaches_the_tu():
    invite = _request()
    tx = ClientInviteTransaction(invite, T, 0.0)
    trying = make_response(invite, 100)
    assert tx.receive_response(trying, 0.2) == ClientInviteOutcome(to_tu=trying)
    assert tx.state is State.PROCEEDING
    assert tx.next_deadline is None  # no A, no B: the TU's CANCEL ends a long wait
    ringing = make_response(invite, 180, to_tag="b1")
    assert tx.receive_response(ringing, 3.0) == ClientInviteOutcome(to_tu=ringing)
    assert tx.on_timer(100.0) == [] and tx.state is State.PROCEEDING


def test_2xx_enters_accepted_and_every_2xx_retransmission_reaches_the_tu():
    invite = _request()
    tx = ClientInviteTransaction(invite, T, 0.0)
    tx.receive_response(make_response(invite, 180, to_tag="b1"), 0.1)
    ok = make_response(invite, 200, to_tag="b1")
    outcome = tx.receive_response(ok, 1.0)
    assert outcome == ClientInviteOutcome(to_tu=ok)
    assert outcome.to_send == []  # the ACK for a 2xx is the UA core's
    assert tx.state is State.ACCEPTED and tx.final_response is ok and tx.ack is None
    assert tx.receive_response(ok, 1.5).to_tu is ok
    forked_ok = make_response(invite, 200, to_tag="b2")
    assert tx.receive_response(forked_ok, 2.0).to_tu is forked_ok
    assert tx.receive_response(make_response(invite, 486, to_tag="b3"), 2.5) == ClientInviteOutcome()
    assert tx.receive_response(make_response(invite, 180, to_tag="b1"), 2.6) == ClientInviteOutcome()


def test_timer_m_ends_accepted_after_64_t1_on_any_transport():
    for reliable in (False, True):
        invite = _request()
        tx = ClientInviteTransaction(invite, T, 0.0, reliable=reliable)
        tx.receive_response(make_response(invite, 200, to_tag="b1"), 2.0)
        assert tx.next_deadline == 2.0 + T.m == 34.0
        assert tx.on_timer(33.9) == [] and tx.state is State.ACCEPTED
        assert _drive(tx, 2.0, 100.0) == []
        assert tx.state is State.TERMINATED and not tx.timed_out
        assert tx.receive_response(make_response(invite, 200, to_tag="b1"), 35.0).to_tu is None


def test_non_2xx_final_is_acked_once_passed_up_once_and_reacked_on_retransmission():
    invite = _request()
    tx = ClientInviteTransaction(invite, T, 0.0)
    busy = make_response(invite, 486, to_tag="b1")
    outcome = tx.receive_response(busy, 0.7)
    assert outcome.to_tu is busy
    assert len(outcome.to_send) == 1 and outcome.to_send[0] is tx.ack
    assert tx.state is State.COMPLETED and tx.final_response is busy
    again = tx.receive_response(busy, 1.2)
    assert again == ClientInviteOutcome(to_tu=None, to_send=[tx.ack])
    assert tx.receive_response(make_response(invite, 200, to_tag="b1"), 1.3) == ClientInviteOutcome()
    assert tx.receive_response(make_response(invite, 180, to_tag="b1"), 1.3) == ClientInviteOutcome()


def test_timer_d_absorbs_retransmissions_for_64_t1_then_terminates():
    invite = _request()
    tx = ClientInviteTransaction(invite, T, 0.0)
    tx.receive_response(make_response(invite, 503), 1.0)
    assert tx.next_deadline == 1.0 + T.d == 33.0
    assert _drive(tx, 1.0, 100.0) == []  # no more INVITE retransmissions once completed
    assert tx.state is State.TERMINATED and not tx.timed_out
    assert tx.receive_response(make_response(invite, 503), 34.0) == ClientInviteOutcome()


def test_timer_d_is_32_s_at_default_t1():
    assert Timers().d == 32.0 and Timers().m == 32.0


def test_reliable_non_2xx_terminates_at_once_timer_d_zero():
    invite = _request()
    tx = ClientInviteTransaction(invite, T, 0.0, reliable=True)
    outcome = tx.receive_response(make_response(invite, 404, to_tag="b1"), 5.0)
    assert len(outcome.to_send) == 1
    assert tx.next_deadline == 5.0
    assert tx.on_timer(5.0) == []
    assert tx.state is State.TERMINATED and not tx.timed_out


def test_final_response_in_calling_stops_timer_a():
    invite = _request()
    tx = ClientInviteTransaction(invite, T, 0.0)
    assert tx.on_timer(0.5) == [invite]
    tx.receive_response(make_response(invite, 480, to_tag="b1"), 0.6)
    assert _drive(tx, 0.6, 100.0) == []


def test_ack_for_non_2xx_follows_rfc3261_17_1_1_3():
    invite = _routed_invite()
    response = make_response(invite, 486, to_tag="callee-tag")
    response.headers.add("Via", "SIP/2.0/UDP 198.51.100.1;branch=z9hG4bKproxy")  # never copied
    ack = build_ack_for_non2xx(invite, response)
    assert ack.method == "ACK" and ack.uri == invite.uri
    assert ack.headers.get_all("Via") == ["SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKinvite1;rport"]
    assert ack.headers.get_all("Route") == [
        "<sip:p1.example.com;lr>",
        "<sip:p2.example.com;lr>",
        "<sip:p3.example.com;lr>",
    ]
    assert ack.to.tag == "callee-tag" and ack.headers.get("To") == response.headers.get("To")
    assert ack.headers.get("From") == invite.headers.get("From")
    assert ack.call_id == invite.call_id
    assert ack.cseq == (7, "ACK")
    assert ack.max_forwards == 70
    assert ack.body == b"" and "Contact" not in ack.headers and "Content-Type" not in ack.headers
    reparsed = parse_message(ack.to_bytes())
    assert reparsed.headers.get("Content-Length") == "0"
    assert transaction_key(reparsed) == transaction_key(invite)  # matches the far end's INVITE tx


def test_ack_of_the_transaction_is_the_built_ack():
    invite = _routed_invite()
    tx = ClientInviteTransaction(invite, T, 0.0)
    busy = make_response(invite, 603, to_tag="x")
    (ack,) = tx.receive_response(busy, 0.1).to_send
    assert ack == build_ack_for_non2xx(invite, busy)


def test_invite_client_key_is_branch_and_method():
    tx = ClientInviteTransaction(_request(branch="z9hG4bKabc"), T, 0.0)
    assert tx.key == ("z9hG4bKabc", "INVITE")


# --- Merged requests (RFC 3261 §8.2.2.2) ----------------------------------------------------------


def _from_path(method: str = "INVITE", branch: str = "z9hG4bKpath1", sent_by: str = "127.0.0.1:5062"):
    request = _request(method, branch)
    request.headers.set("Via", f"SIP/2.0/UDP {sent_by};branch={branch}")
    return request


def test_same_request_by_another_branch_is_merged():
    detector = MergedRequestDetector(ttl=T.b)
    first, second = _from_path(branch="z9hG4bKpath1"), _from_path(branch="z9hG4bKpath2")
    assert not detector.is_merged(first, transaction_key(first), 0.0)
    assert detector.is_merged(second, transaction_key(second), 0.1)
    assert detector.is_merged(second, transaction_key(second), 0.2)


def test_same_branch_from_another_sent_by_is_merged():
    detector = MergedRequestDetector(ttl=T.b)
    first, second = _from_path(sent_by="192.0.2.1:5060"), _from_path(sent_by="192.0.2.2:5060")
    assert not detector.is_merged(first, transaction_key(first), 0.0)
    assert detector.is_merged(second, transaction_key(second), 0.1)


def test_retransmission_is_not_merged_and_the_first_taker_keeps_the_entry():
    detector = MergedRequestDetector(ttl=T.b)
    first, second = _from_path(branch="z9hG4bKpath1"), _from_path(branch="z9hG4bKpath2")
    key1, key2 = transaction_key(first), transaction_key(second)
    assert not detector.is_merged(first, key1, 0.0)
    assert not detector.is_merged(first, key1, 0.5)
    detector.remember(second, key2, 0.6)  # ignored: path 1 took it first
    assert detector.is_merged(second, key2, 0.7)
    assert not detector.is_merged(first, key1, 0.7)
    assert len(detector) == 1


def test_requests_with_a_to_tag_and_acks_are_never_merged():
    detector = MergedRequestDetector(ttl=T.b)
    first, second = _from_path(branch="z9hG4bKpath1"), _from_path(branch="z9hG4bKpath2")
    for request in (first, second):
        request.headers.set("To", "Bob <sip:bob@127.0.0.1>;tag=dialog")
    assert not detector.is_merged(first, transaction_key(first), 0.0)
    assert not detector.is_merged(second, transaction_key(second), 0.0)
    ack1, ack2 = _from_path("ACK", "z9hG4bKpath1"), _from_path("ACK", "z9hG4bKpath2")
    assert not detector.is_merged(ack1, transaction_key(ack1), 0.0)
    assert not detector.is_merged(ack2, transaction_key(ack2), 0.0)
    assert len(detector) == 0


def test_other_cseq_method_or_call_is_not_merged():
    detector = MergedRequestDetector(ttl=T.b)
    invite = _from_path("INVITE", "z9hG4bKpath1")
    cancel = _from_path("CANCEL", "z9hG4bKpath1")
    other_call = _from_path("INVITE", "z9hG4bKpath2")
    other_call.headers.set("Call-ID", "another@127.0.0.1")
    assert not detector.is_merged(invite, transaction_key(invite), 0.0)
    assert not detector.is_merged(cancel, transaction_key(cancel), 0.0)
    assert not detector.is_merged(other_call, transaction_key(other_call), 0.0)


def test_entries_expire_after_the_ttl():
    detector = MergedRequestDetector(ttl=T.b)
    first, second = _from_path(branch="z9hG4bKpath1"), _from_path(branch="z9hG4bKpath2")
    detector.is_merged(first, transaction_key(first), 0.0)
    assert detector.is_merged(second, transaction_key(second), 31.9)
    detector.expire(32.0)
    assert len(detector) == 0
    assert not detector.is_merged(second, transaction_key(second), 32.0)  # now path 2 owns it
    assert detector.is_merged(first, transaction_key(first), 33.0)


def test_stale_entry_is_replaced_without_an_expire_call():
    detector = MergedRequestDetector(ttl=T.b)
    first, second = _from_path(branch="z9hG4bKpath1"), _from_path(branch="z9hG4bKpath2")
    detector.is_merged(first, transaction_key(first), 0.0)
    assert not detector.is_merged(second, transaction_key(second), 32.0)
    assert detector.is_merged(first, transaction_key(first), 33.0)
    assert len(detector) == 1


def test_default_ttl_is_64_t1_at_default_timers():
    assert MergedRequestDetector().ttl == Timers().b == 32.0


def test_retransmission_extends_the_entry():
    detector = MergedRequestDetector(ttl=T.b)
    first, second = _from_path(branch="z9hG4bKpath1"), _from_path(branch="z9hG4bKpath2")
    detector.is_merged(first, transaction_key(first), 0.0)
    detector.is_merged(first, transaction_key(first), 20.0)
    detector.expire(40.0)
    assert detector.is_merged(second, transaction_key(second), 40.0)


def test_detector_is_bounded_and_evicts_the_oldest():
    detector = MergedRequestDetector(ttl=T.b, max_entries=3)
    requests = []
    for number in range(5):
        request = _from_path(branch=f"z9hG4bKcall{number}")
        request.headers.set("Call-ID", f"call{number}@127.0.0.1")
        requests.append(request)
        detector.is_merged(request, transaction_key(request), float(number))
    assert len(detector) == 3
    # merged copies are checked first: a copy that is not merged is remembered, evicting another
    for number, expected in ((2, True), (3, True), (4, True), (0, False), (1, False)):
        copy = _from_path(branch="z9hG4bKelsewhere")
        copy.headers.set("Call-ID", f"call{number}@127.0.0.1")
        assert detector.is_merged(copy, transaction_key(copy), 5.0) is expected
