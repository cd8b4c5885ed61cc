"""The REGISTER client driven with a fake clock: challenges, refresh timing, failures and backoff."""

import pytest

from sipbridge.sip.digest import DigestCredentials, digest_response, parse_challenge
from sipbridge.sip.headers import parse_name_addr, parse_params
from sipbridge.sip.message import SipRequest, SipResponse, parse_message
from sipbridge.sip.registration import Backoff, Registration, RegistrationState, refresh_delay
from sipbridge.sip.responses import make_response

REGISTRAR = "sip:example.com"
AOR = "sip:alice@example.com"
CONTACT = "sip:alice@192.0.2.10:5060"
CREDENTIALS = DigestCredentials("alice", "s3cret")
S = RegistrationState


def _registration(**kwargs) -> Registration:
    kwargs.setdefault("credentials", CREDENTIALS)
    return Registration(
        REGISTRAR,
        AOR,
        CONTACT,
        new_call_id=lambda: "reg-call@192.0.2.10",
        new_tag=lambda: "fromtag",
        cnonce=lambda: "cnonce1",
        **kwargs,
    )


def _respond(request: SipRequest, status: int, *extra: tuple[str, str]) -> SipResponse:
    return make_response(request, status, to_tag="registrar", extra=list(extra))


def _challenge(request: SipRequest, nonce: str = "N1", stale: bool = False, status: int = 401) -> SipResponse:
    name = "Proxy-Authenticate" if status == 407 else "WWW-Authenticate"
    value = f'Digest realm="example.com", nonce="{nonce}", qop="auth", algorithm=MD5'
    return _respond(request, status, (name, value + (", stale=true" if stale else "")))


def _ok(request: SipRequest, expires: int | None = None) -> SipResponse:
    granted = request.headers.get("Expires") if expires is None else str(expires)
    return _respond(request, 200, ("Contact", f"<{CONTACT}>;expires={granted}"))


def _auth(request: SipRequest, name: str = "Authorization") -> dict[str, str | None]:
    value = request.headers.get(name)
    assert value is not None, f"no {name}"
    params = parse_params(value.removeprefix("Digest ").replace(", ", ";"))
    return {k: v.strip('"') if v else v for k, v in params.items()}


def _registered(now: float = 0.0) -> tuple[Registration, SipRequest]:
    """A registration that went through one challenge; returns it and its last REGISTER."""
    reg = _registration()
    [first] = reg.start(now)
    [second] = reg.receive_response(_challenge(first), now)
    assert reg.receive_response(_ok(second), now) == []
    return reg, second


# --- the request --------------------------------------------------------------------------------


def test_start_sends_a_register_without_via_for_the_transport_to_stamp():
    reg = _registration()
    [request] = reg.start(0.0)
    assert (request.method, request.uri) == ("REGISTER", REGISTRAR)
    assert "Via" not in request.headers and "Authorization" not in request.headers
    assert request.headers.get("Max-Forwards") == "70"
    assert request.from_.uri == parse_name_addr(AOR).uri and request.from_.tag == "fromtag"
    assert str(request.to.uri) == AOR and request.to.tag is None
    assert request.call_id == "reg-call@192.0.2.10"
    assert request.cseq == (1, "REGISTER")
    contact = parse_name_addr(request.headers.get("Contact") or "")
    assert str(contact.uri) == CONTACT and contact.params == {"expires": "300"}
    assert request.headers.get("Expires") == "300"
    assert reg.state is S.REGISTERING and reg.outstanding is request
    assert reg.next_deadline is None  # the client transaction times the request out
    assert reg.start(0.0) == []  # already under way


def test_request_serialises_and_parses_once_the_transport_adds_via():
    [request] = _registration().start(0.0)
    request.headers.add_first("Via", "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKx")
    assert parse_message(request.to_bytes()).cseq == (1, "REGISTER")


def test_default_call_id_is_generated_once():
    reg = Registration(REGISTRAR, AOR, CONTACT)
    [first] = reg.start(0.0)
    assert first.call_id == reg.call_id and reg.call_id.endswith("@192.0.2.10")


def test_bad_uris_are_refused_at_construction():
    with pytest.raises(ValueError):
        Registration(REGISTRAR, "alice at example", CONTACT)


def test_next_hop_is_the_outbound_proxy_when_configured():
    assert _registration().next_hop == REGISTRAR
    reg = _registration(outbound_proxy="sip:proxy.example.com;lr")
    assert reg.next_hop == "sip:proxy.example.com;lr"
    [request] = reg.start(0.0)
    assert request.uri == REGISTRAR and "Route" not in request.headers


# --- challenge, success, refresh ----------------------------------------------------------------


def test_challenge_then_200():
    reg = _registration()
    [first] = reg.start(0.0)
    [second] = reg.receive_response(_challenge(first), 0.1)
    assert second.cseq == (2, "REGISTER") and second.call_id == first.call_id
    assert second.headers.get("From") == first.headers.get("From")
    auth = _auth(second)
    challenge = parse_challenge(_challenge(first).headers.get("WWW-Authenticate") or "")
    expected = digest_response(challenge, CREDENTIALS, "REGISTER", REGISTRAR, cnonce="cnonce1", nc=1)
    assert (auth["uri"], auth["nc"], auth["response"]) == (REGISTRAR, "00000001", expected)
    assert reg.state is S.REGISTERING
    assert reg.receive_response(_ok(second), 0.2) == []
    assert reg.state is S.REGISTERED and reg.last_error is None
    assert (reg.granted_expires, reg.expires_at) == (300, 300.2)
    assert reg.next_deadline == pytest.approx(0.2 + 240)


def test_proxy_challenge_is_answered_in_proxy_authorization():
    reg = _registration()
    [first] = reg.start(0.0)
    [second] = reg.receive_response(_challenge(first, status=407), 0.0)
    assert _auth(second, "Proxy-Authorization")["nonce"] == "N1" and "Authorization" not in second.headers


@pytest.mark.parametrize(
    ("granted", "refresh_after"), [(300, 240), (3600, 3540), (120, 60), (60, 30), (10, 5)]
)
def test_refresh_timing(granted, refresh_after):
    assert refresh_delay(granted) == refresh_after
    reg = _registration(expires=granted)
    [request] = reg.start(0.0)
    reg.receive_response(_ok(request), 10.0)
    assert reg.next_deadline == 10.0 + refresh_after


def test_refresh_reuses_the_nonce_with_the_next_nc_and_stays_registered():
    reg, last = _registered()
    deadline = reg.next_deadline
    assert deadline == 240
    assert reg.on_timer(239.9) == []
    [refresh] = reg.on_timer(deadline)
    assert reg.state is S.REGISTERED  # the binding is still valid while it is refreshed
    assert refresh.cseq == (last.cseq[0] + 1, "REGISTER") and refresh.call_id == last.call_id
    assert (_auth(refresh)["nonce"], _auth(refresh)["nc"]) == ("N1", "00000002")
    assert reg.next_deadline is None
    reg.receive_response(_ok(refresh), 241.0)
    assert reg.next_deadline == 481.0


def test_refresh_with_an_expired_nonce_is_retried_with_the_new_one():
    reg, _ = _registered()
    [refresh] = reg.on_timer(240.0)
    [retry] = reg.receive_response(_challenge(refresh, nonce="N2"), 240.1)  # not even stale=true
    assert (_auth(retry)["nonce"], _auth(retry)["nc"]) == ("N2", "00000001")
    reg.receive_response(_ok(retry), 240.2)
    assert reg.state is S.REGISTERED


def test_granted_expires_comes_from_our_contact_first():
    reg = _registration()
    [request] = reg.start(0.0)
    response = _respond(
        request,
        200,
        ("Contact", "<sip:alice@198.51.100.7>;expires=3600"),
        ("Contact", f"<{CONTACT}>;expires=120"),
        ("Expires", "900"),
    )
    reg.receive_response(response, 0.0)
    assert reg.granted_expires == 120


@pytest.mark.parametrize(
    ("headers", "granted"),
    [
        (
            [
                ("Contact", "<sip:alice@198.51.100.7>;expires=3600"),
                ("Contact", "<sip:x@h>"),
                ("Expires", "900"),
            ],
            900,
        ),
        ([("Contact", "<sip:alice@203.0.113.5:4000>;expires=180")], 180),  # rewritten by a NAT-fixing proxy
        ([("Expires", "600")], 600),
        ([], 300),  # nothing said: what we asked for
        ([("Contact", f"<{CONTACT}>;expires=junk"), ("Expires", "450")], 450),
    ],
)
def test_granted_expires_fallbacks(headers, granted):
    reg = _registration()
    [request] = reg.start(0.0)
    reg.receive_response(_respond(request, 200, *headers), 0.0)
    assert reg.granted_expires == granted


def test_zero_granted_is_a_failure():
    reg = _registration()
    [request] = reg.start(0.0)
    reg.receive_response(_ok(request, expires=0), 0.0)
    assert reg.state is S.FAILED and "no time" in (reg.last_error or "")


# --- failures and backoff -----------------------------------------------------------------------


def test_wrong_password_fails_and_retries_with_backoff():
    reg = _registration()
    [first] = reg.start(0.0)
    [second] = reg.receive_response(_challenge(first), 0.0)
    assert reg.receive_response(_challenge(second), 0.1) == []  # the same nonce again, not stale
    assert reg.state is S.FAILED
    assert "credentials rejected" in (reg.last_error or "")
    assert reg.next_deadline == pytest.approx(5.1)
    [retry] = reg.on_timer(5.1)
    assert reg.state is S.REGISTERING and _auth(retry)["nc"] == "00000002"
    reg.receive_response(_challenge(retry), 5.2)
    assert reg.state is S.FAILED and reg.next_deadline == pytest.approx(15.2)


def test_wrong_password_with_a_new_nonce_per_challenge_fails_too():
    reg = _registration()
    [first] = reg.start(0.0)
    [second] = reg.receive_response(_challenge(first, nonce="N1"), 0.0)
    assert reg.receive_response(_challenge(second, nonce="N2"), 0.0) == []
    assert reg.state is S.FAILED


def test_stale_nonce_is_retried_without_failing():
    reg = _registration()
    [first] = reg.start(0.0)
    [second] = reg.receive_response(_challenge(first, nonce="N1"), 0.0)
    [third] = reg.receive_response(_challenge(second, nonce="N2", stale=True), 0.0)
    assert _auth(third)["nonce"] == "N2"
    reg.receive_response(_ok(third), 0.0)
    assert reg.state is S.REGISTERED


def test_endless_stale_challenges_are_given_up():
    reg = _registration()
    [request] = reg.start(0.0)
    for n in range(10):
        sent = reg.receive_response(_challenge(request, nonce=f"N{n}", stale=True), 0.0)
        if not sent:
            break
        [request] = sent
    assert reg.state is S.FAILED and "too many challenges" in (reg.last_error or "")


def test_challenge_without_credentials_fails():
    reg = _registration(credentials=None)
    [request] = reg.start(0.0)
    assert reg.receive_response(_challenge(request), 0.0) == []
    assert reg.state is S.FAILED and "no credentials" in (reg.last_error or "")


def test_unusable_challenge_fails_with_the_reason():
    reg = _registration()
    [request] = reg.start(0.0)
    challenge = _respond(
        request, 401, ("WWW-Authenticate", 'Digest realm="r", nonce="n", algorithm=AKAv1-MD5')
    )
    reg.receive_response(challenge, 0.0)
    assert reg.state is S.FAILED and "AKAv1-MD5" in (reg.last_error or "")


def test_interval_too_brief_retries_with_min_expires():
    reg = _registration(expires=60)
    [first] = reg.start(0.0)
    [second] = reg.receive_response(_respond(first, 423, ("Min-Expires", "600")), 0.0)
    assert second.headers.get("Expires") == "600" and "expires=600" in (second.headers.get("Contact") or "")
    reg.receive_response(_ok(second), 1.0)
    assert reg.state is S.REGISTERED and reg.next_deadline == 541.0
    [refresh] = reg.on_timer(541.0)
    assert refresh.headers.get("Expires") == "600"


@pytest.mark.parametrize("extra", [[], [("Min-Expires", "30")], [("Min-Expires", "soon")]])
def test_interval_too_brief_without_a_larger_minimum_fails(extra):
    reg = _registration(expires=60)
    [request] = reg.start(0.0)
    assert reg.receive_response(_respond(request, 423, *extra), 0.0) == []
    assert reg.state is S.FAILED and "423" in (reg.last_error or "")


def test_timeouts_back_off_exponentially_up_to_the_cap():
    reg = _registration()
    reg.start(0.0)
    now, delays = 0.0, []
    for _ in range(9):
        reg.timed_out(now)
        assert reg.state is S.FAILED and "timeout" in (reg.last_error or "")
        delays.append(reg.next_deadline - now)
        now = reg.next_deadline
        assert len(reg.on_timer(now)) == 1
    assert delays == [5, 10, 20, 40, 80, 160, 300, 300, 300]


def test_success_resets_the_backoff():
    reg = _registration()
    [request] = reg.start(0.0)
    reg.timed_out(0.0)
    [request] = reg.on_timer(5.0)
    reg.timed_out(5.0)
    [request] = reg.on_timer(15.0)
    reg.receive_response(_ok(request), 15.0)
    [refresh] = reg.on_timer(reg.next_deadline)
    reg.timed_out(255.0)
    assert reg.state is S.FAILED and reg.next_deadline == 260.0


def test_jitter_and_custom_backoff():
    reg = _registration(backoff=Backoff(initial=2, maximum=8), jitter=lambda delay: delay * 0.5)
    reg.start(0.0)
    reg.timed_out(0.0)
    assert reg.next_deadline == 1.0


@pytest.mark.parametrize(("status", "reason"), [(403, "403 Forbidden"), (404, "404 Not Found"), (500, "500")])
def test_final_failures_are_reported(status, reason):
    reg = _registration()
    [request] = reg.start(0.0)
    reg.receive_response(_respond(request, status), 0.0)
    assert reg.state is S.FAILED and (reg.last_error or "").startswith(reason)
    assert reg.next_deadline == 5.0


def test_retry_after_is_honoured():
    reg = _registration()
    [request] = reg.start(0.0)
    reg.receive_response(_respond(request, 503, ("Retry-After", "120 (maintenance)")), 0.0)
    assert reg.next_deadline == 120.0


def test_failed_refresh_after_registration():
    reg, _ = _registered()
    [refresh] = reg.on_timer(240.0)
    reg.timed_out(272.0, refresh)
    assert reg.state is S.FAILED and reg.next_deadline == 277.0


def test_start_retries_at_once_when_failed():
    reg = _registration()
    reg.start(0.0)
    reg.timed_out(0.0)
    [request] = reg.start(1.0)
    assert reg.state is S.REGISTERING and request.cseq[0] == 2 and reg.next_deadline is None


# --- stale responses ----------------------------------------------------------------------------


def test_provisional_and_unrelated_responses_are_ignored():
    reg = _registration()
    [request] = reg.start(0.0)
    assert reg.receive_response(_respond(request, 100), 0.0) == []
    other = _ok(request)
    other.headers.set("CSeq", "99 REGISTER")
    reg.receive_response(other, 0.0)
    assert reg.state is S.REGISTERING and reg.outstanding is request


def test_timeout_of_an_older_request_is_ignored():
    reg, last = _registered()
    reg.on_timer(240.0)
    reg.timed_out(241.0, last)
    assert reg.state is S.REGISTERED and reg.outstanding is not None


# --- un-registration ----------------------------------------------------------------------------


def test_stop_unregisters_with_expires_zero():
    reg, last = _registered()
    [bye] = reg.stop(10.0)
    assert reg.state is S.UNREGISTERING
    assert bye.headers.get("Expires") == "0" and "expires=0" in (bye.headers.get("Contact") or "")
    assert bye.call_id == last.call_id and bye.cseq[0] == last.cseq[0] + 1
    assert _auth(bye)["nc"] == "00000002"
    assert reg.stop(10.0) == []
    reg.receive_response(_ok(bye), 10.1)
    assert reg.state is S.UNREGISTERED and reg.last_error is None
    assert reg.next_deadline is None and reg.expires_at is None


def test_unregistration_answers_a_challenge():
    reg, _ = _registered()
    [bye] = reg.stop(10.0)
    [again] = reg.receive_response(_challenge(bye, nonce="N9", stale=True), 10.0)
    assert again.headers.get("Expires") == "0" and _auth(again)["nonce"] == "N9"
    reg.receive_response(_ok(again), 10.0)
    assert reg.state is S.UNREGISTERED


@pytest.mark.parametrize("outcome", ["timeout", "500"])
def test_failed_unregistration_still_ends_unregistered_without_retry(outcome):
    reg, _ = _registered()
    [bye] = reg.stop(10.0)
    if outcome == "timeout":
        reg.timed_out(42.0)
    else:
        reg.receive_response(_respond(bye, 500), 10.0)
    assert reg.state is S.UNREGISTERED and reg.last_error and reg.next_deadline is None


def test_stop_before_any_binding_sends_nothing():
    reg = _registration()
    assert reg.stop(0.0) == [] and reg.state is S.UNREGISTERED


def test_stop_while_the_first_register_is_in_flight_unregisters_and_ignores_its_answer():
    reg = _registration()
    [register] = reg.start(0.0)
    [bye] = reg.stop(0.1)
    reg.receive_response(_ok(register), 0.2)  # answer to the superseded REGISTER
    assert reg.state is S.UNREGISTERING
    reg.receive_response(_ok(bye), 0.3)
    assert reg.state is S.UNREGISTERED


def test_start_again_after_stop():
    reg, last = _registered()
    [bye] = reg.stop(10.0)
    reg.receive_response(_ok(bye), 10.0)
    [again] = reg.start(20.0)
    assert reg.state is S.REGISTERING and again.call_id == last.call_id and again.cseq[0] == bye.cseq[0] + 1
    assert again.headers.get("Expires") == "300"


# --- secrets ------------------------------------------------------------------------------------


def test_no_secret_in_repr_or_on_the_wire():
    reg, last = _registered()
    texts = [repr(reg), str(reg), repr(reg._auth), repr(CREDENTIALS), last.to_bytes().decode()]
    assert all("s3cret" not in text for text in texts)
    assert "alice@example.com" in repr(reg) and "registered" in repr(reg)
