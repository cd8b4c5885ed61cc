"""The UA core's decisions, pure: a crafted request and the facts in, an action out (no sockets, no loop)."""

from __future__ import annotations

import pytest

from sipbridge.sip import ua_core
from sipbridge.sip.gate import ADMIT, Screening, Verdict
from sipbridge.sip.message import SipRequest, parse_message
from sipbridge.sip.ua_core import (
    AcceptCancel,
    AckToDialog,
    Drop,
    RefuseStray,
    Reply,
    ReplyStateless,
    Route,
    StartInvite,
    ToDialog,
)

HOST = "192.0.2.10"
SDP = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"


def crafted(
    method: str = "INVITE",
    *,
    to_tag: str = "",
    extra: str = "",
    body: str = "",
    content_type: str = "application/sdp",
) -> SipRequest:
    to = "<sip:bridge@192.0.2.10>" + (f";tag={to_tag}" if to_tag else "")
    head = (
        f"{method} sip:bridge@192.0.2.10 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKcore1\r\n"
        "Max-Forwards: 70\r\n"
        f"To: {to}\r\n"
        "From: <sip:+15550001@192.0.2.1>;tag=caller1\r\n"
        "Call-ID: core-1@192.0.2.1\r\n"
        f"CSeq: 1 {method}\r\n"
        "Contact: <sip:caller@192.0.2.1:5060>\r\n"
        f"{extra}"
    )
    if body:
        head += f"Content-Type: {content_type}\r\n"
    message = parse_message(f"{head}Content-Length: {len(body)}\r\n\r\n{body}".encode())
    assert isinstance(message, SipRequest)
    return message


def response_of(action: object) -> tuple[int, str]:
    """The status and the Warning text of the response an action carries."""
    response = action.response  # type: ignore[attr-defined]
    return response.status, response.headers.get("Warning") or ""


def out_of_dialog(request: SipRequest, merged: bool = False) -> object:
    return ua_core.out_of_dialog(request, merged=merged, admitted_as=None, host=HOST)


def invite_refusal(request: SipRequest, min_se: int = 90, session_expires: int | None = 1800) -> object:
    refusal, _ = ua_core.invite_refusal(
        request, tag="ourtag", host=HOST, min_se=min_se, session_expires=session_expires
    )
    return refusal


# --- routing --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "to_tag", "matches", "route"),
    [
        ("INVITE", "", True, Route.TRANSACTION),
        ("ACK", "t", False, Route.ACK),
        ("CANCEL", "", False, Route.CANCEL),
        ("BYE", "t", False, Route.IN_DIALOG),
        ("OPTIONS", "", False, Route.OUT_OF_DIALOG),
    ],
)
def test_route(method, to_tag, matches, route):
    assert ua_core.route(crafted(method, to_tag=to_tag), matches) is route


def test_only_an_ack_matching_an_accepted_invite_goes_to_the_dialog():
    assert ua_core.acks_our_2xx(crafted("ACK", to_tag="t"), invite_accepted=True)
    assert not ua_core.acks_our_2xx(crafted("ACK", to_tag="t"), invite_accepted=False)
    assert not ua_core.acks_our_2xx(crafted("INVITE"), invite_accepted=True)


# --- out of any dialog ----------------------------------------------------------------------------


def test_a_new_invite_starts_a_session_as_screening_admitted_it():
    action = ua_core.out_of_dialog(crafted(body=SDP), merged=False, admitted_as="trunk", host=HOST)
    assert action == StartInvite("trunk")


def test_merged_invite_gets_482():
    assert response_of(out_of_dialog(crafted(body=SDP), merged=True)) == (
        482,
        f'399 {HOST} "merged request: already handled"',
    )


def test_merged_only_matters_for_an_invite():
    assert response_of(out_of_dialog(crafted("OPTIONS"), merged=True))[0] == 200


def test_unknown_require_gets_420_with_unsupported():
    action = out_of_dialog(crafted(extra="Require: timer, 100rel, foo, bar\r\n", body=SDP))
    assert isinstance(action, ReplyStateless)
    assert action.response.status == 420 and action.response.headers.get("Unsupported") == "foo, bar"


def test_require_100rel_starts_the_invite():
    assert isinstance(out_of_dialog(crafted(extra="Require: 100rel\r\n", body=SDP)), StartInvite)


def test_options_gets_200_with_allow_accept_supported_and_a_stable_tag():
    first, again = out_of_dialog(crafted("OPTIONS")), out_of_dialog(crafted("OPTIONS"))
    assert isinstance(first, ReplyStateless) and isinstance(again, ReplyStateless)
    headers = first.response.headers
    assert first.response.status == 200 and "INVITE" in (headers.get("Allow") or "")
    assert headers.get("Accept") == "application/sdp" and headers.get("Supported") == "timer, 100rel"
    assert "PRACK" in (headers.get("Allow") or "")
    assert first.response.to.tag == again.response.to.tag  # §8.2.7: the same for a retransmission


@pytest.mark.parametrize("method", ["BYE", "UPDATE", "INFO", "PRACK"])
def test_a_dialog_request_outside_any_dialog_gets_481(method):
    assert response_of(out_of_dialog(crafted(method))) == (481, f'399 {HOST} "no such call"')


@pytest.mark.parametrize(("method", "status"), [("REGISTER", 405), ("SUBSCRIBE", 405), ("FOOBAR", 501)])
def test_unserved_methods_get_405_or_501_with_allow(method, status):
    action = out_of_dialog(crafted(method))
    assert isinstance(action, ReplyStateless)
    assert action.response.status == status and "BYE" in (action.response.headers.get("Allow") or "")


# --- screening ------------------------------------------------------------------------------------


def test_an_admitted_request_goes_on():
    assert ua_core.screened(crafted(), ADMIT, HOST) is None


def test_a_screen_refusal_carries_its_status_warning_and_headers():
    challenge = ("WWW-Authenticate", 'Digest realm="r", nonce="n"')
    screening = Screening(status=401, warning="who are you", headers=(challenge,))
    action = ua_core.screened(crafted(), screening, HOST)
    assert isinstance(action, ReplyStateless)
    assert action.response.status == 401 and action.response.headers.get("WWW-Authenticate") == challenge[1]
    assert "who are you" in (action.response.headers.get("Warning") or "")


def test_a_screen_refusal_without_status_is_403_and_drop_is_silence():
    refused = ua_core.screened(crafted(), Screening(warning="not a trunk of ours", status=403), HOST)
    assert response_of(refused)[0] == 403
    assert ua_core.screened(crafted(), Screening(drop=True), HOST) == Drop()


# --- a new INVITE's own terms ---------------------------------------------------------------------


def test_an_acceptable_invite_is_not_refused_and_settles_its_timer_terms():
    refusal, terms = ua_core.invite_refusal(
        crafted(body=SDP, extra="Supported: timer\r\nSession-Expires: 600\r\n"),
        tag="ourtag",
        host=HOST,
        min_se=90,
        session_expires=1800,
    )
    assert refusal is None and terms is not None and terms.interval == 600


def test_a_body_that_is_not_sdp_gets_415_with_accept():
    refusal = invite_refusal(crafted(body="<xml/>", content_type="application/xml"))
    assert refusal.status == 415 and refusal.headers.get("Accept") == "application/sdp"
    assert refusal.to.tag == "ourtag"


def test_an_accept_that_excludes_sdp_gets_406():
    refusal = invite_refusal(crafted(body=SDP, extra="Accept: text/plain\r\n"))
    assert refusal.status == 406 and "Accept header excludes" in refusal.headers.get("Warning")


@pytest.mark.parametrize("accept", ["application/sdp", "application/*", "*/*", "text/plain, application/sdp"])
def test_an_accept_that_allows_sdp_passes(accept):
    assert invite_refusal(crafted(body=SDP, extra=f"Accept: {accept}\r\n")) is None


def test_a_session_expires_below_our_minimum_gets_422_with_min_se():
    refusal = invite_refusal(
        crafted(body=SDP, extra="Supported: timer\r\nSession-Expires: 60\r\n"), min_se=120
    )
    assert refusal.status == 422 and refusal.headers.get("Min-SE") == "120"


def test_a_malformed_session_expires_gets_400():
    refusal = invite_refusal(crafted(body=SDP, extra="Session-Expires: soon\r\n"))
    assert refusal.status == 400 and "Session-Expires" in refusal.headers.get("Warning")


# --- inside a dialog ------------------------------------------------------------------------------


def test_a_request_for_no_dialog_of_ours_is_a_stray_481():
    action = ua_core.in_dialog(crafted("BYE", to_tag="t"), dialog_found=False, from_peer=False, host=HOST)
    assert isinstance(action, RefuseStray) and response_of(action) == (481, f'399 {HOST} "no such dialog"')


def test_a_request_not_from_the_dialogs_peer_is_a_stray_403():
    action = ua_core.in_dialog(crafted("BYE", to_tag="t"), dialog_found=True, from_peer=False, host=HOST)
    assert isinstance(action, RefuseStray)
    assert response_of(action) == (403, f'399 {HOST} "not from this call\'s peer"')


def test_an_unsupported_require_in_a_dialog_gets_420_through_a_transaction():
    request = crafted("UPDATE", to_tag="t", extra="Require: foo\r\n")
    action = ua_core.in_dialog(request, dialog_found=True, from_peer=True, host=HOST)
    assert isinstance(action, Reply) and action.response.status == 420


def test_a_request_from_the_peer_goes_to_its_dialog():
    action = ua_core.in_dialog(crafted("BYE", to_tag="t"), dialog_found=True, from_peer=True, host=HOST)
    assert action == ToDialog()


def test_an_ack_goes_to_its_dialog_only_from_its_peer():
    assert ua_core.ack(dialog_found=True, from_peer=True) == AckToDialog()
    assert ua_core.ack(dialog_found=True, from_peer=False) == Drop("stray_acks")
    assert ua_core.ack(dialog_found=False, from_peer=False) == Drop("stray_acks")


# --- CANCEL ---------------------------------------------------------------------------------------


def cancel(**facts: bool) -> object:
    defaults = {"invite_found": True, "same_source": True, "invite_proceeding": True}
    return ua_core.cancel(crafted("CANCEL"), to_tag="ourtag", host=HOST, **(defaults | facts))


def test_cancel_for_no_invite_of_ours_is_a_stray_481():
    action = cancel(invite_found=False)
    assert isinstance(action, RefuseStray) and response_of(action)[0] == 481


def test_cancel_from_elsewhere_than_the_invite_is_a_stray_403():
    action = cancel(same_source=False)
    assert isinstance(action, RefuseStray)
    assert response_of(action) == (403, f'399 {HOST} "CANCEL not from the INVITE\'s source"')


def test_cancel_gets_200_with_the_sessions_tag_and_ends_a_proceeding_invite():
    action = cancel()
    assert isinstance(action, AcceptCancel) and action.cancels_invite
    assert action.response.status == 200 and action.response.to.tag == "ourtag"
    late = cancel(invite_proceeding=False)
    assert isinstance(late, AcceptCancel) and not late.cancels_invite  # answered already: 200 only


# --- the request gate -----------------------------------------------------------------------------


def test_a_source_over_its_limit_gets_503_with_retry_after():
    action = ua_core.gate_refusal(crafted("OPTIONS"), Verdict.REJECT, 7, HOST)
    assert response_of(action)[0] == 503 and action.response.headers.get("Retry-After") == "7"


def test_a_scanner_gets_403_and_an_ack_gets_nothing():
    assert response_of(ua_core.gate_refusal(crafted("OPTIONS"), Verdict.FORBID, 7, HOST)) == (
        403,
        f'399 {HOST} "scanner"',
    )
    assert ua_core.gate_refusal(crafted("ACK", to_tag="t"), Verdict.REJECT, 7, HOST) == Drop()
