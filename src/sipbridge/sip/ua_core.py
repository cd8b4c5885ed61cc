"""The UA core's decisions about a request (RFC 3261 §8.2, §9.2, §12.2.2, §17.2.3), pure.

Given a parsed request and what the tables and the application say about it (does it match a
transaction of ours? a dialog? is it from that dialog's peer? how did screening judge it?), each
function here returns the action to take: answer statelessly, answer through a new server
transaction, hand it to a dialog, start a new INVITE session, or drop it. No sockets, no clock, no
tables: the asyncio shell (``useragent.py``) looks things up, asks, and carries the actions out.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .errors import SipParseError
from .gate import Screening, Verdict
from .message import SipRequest, SipResponse
from .responses import make_response, options_ok, refusal, unserved
from .session_timer import SessionTimerTerms, SessionTooSmall, negotiate

SUPPORTED_OPTIONS = frozenset({"timer", "100rel"})
# Requests that only make sense inside a dialog: out of one, there is no such call (481).
DIALOG_METHODS = frozenset({"BYE", "UPDATE", "INFO", "PRACK"})


class Route(Enum):
    """Which part of the core a request goes to (§17.2.3, then §8.2 / §12.2.2)."""

    TRANSACTION = "transaction"  # it matches a server transaction: a retransmission, or its ACK
    ACK = "ack"  # an ACK for a 2xx: the dialog takes it
    CANCEL = "cancel"
    IN_DIALOG = "in-dialog"
    OUT_OF_DIALOG = "out-of-dialog"


@dataclass(frozen=True)
class Drop:
    """No answer at all; ``counter`` names the statistic that counts it."""

    counter: str | None = None


@dataclass(frozen=True)
class ReplyStateless:
    """Answer once, with no transaction kept (§8.2.7)."""

    response: SipResponse


@dataclass(frozen=True)
class RefuseStray:
    """A request naming a dialog or transaction it may not act on (none of ours, or not from its
    peer): ``response`` statelessly, unless the application drops such requests from its source."""

    response: SipResponse


@dataclass(frozen=True)
class Reply:
    """Answer through a new server transaction (which absorbs the retransmissions)."""

    response: SipResponse


@dataclass(frozen=True)
class ToDialog:
    """Hand the request to its dialog, with a new server transaction to answer it."""


@dataclass(frozen=True)
class AckToDialog:
    """Hand the ACK for our 2xx to its dialog."""


@dataclass(frozen=True)
class AcceptCancel:
    """200 to the CANCEL; then, when the INVITE is still unanswered, 487 to it (§9.2)."""

    response: SipResponse
    cancels_invite: bool


@dataclass(frozen=True)
class StartInvite:
    """A new INVITE session; ``admitted_as`` is what screening admitted it as (a trunk's name)."""

    admitted_as: str | None


Action = Drop | ReplyStateless | RefuseStray | Reply | ToDialog | AckToDialog | AcceptCancel | StartInvite


def route(request: SipRequest, matches_transaction: bool) -> Route:
    if matches_transaction:
        return Route.TRANSACTION
    if request.method == "ACK":
        return Route.ACK
    if request.method == "CANCEL":
        return Route.CANCEL
    return Route.IN_DIALOG if request.to.tag else Route.OUT_OF_DIALOG


def acks_our_2xx(request: SipRequest, invite_accepted: bool) -> bool:
    """An RFC 2543 peer's ACK for our 2xx reuses the INVITE's branch, so it matches the transaction:
    the dialog must still check it (our To tag, §13.3.1.4), or anyone who saw (or guessed) the
    branch could confirm the call."""
    return request.method == "ACK" and invite_accepted


def ack(dialog_found: bool, from_peer: bool) -> Action:
    """An ACK for a 2xx of ours must match the dialog (Call-ID, our To tag, their From tag; §17.2.1)
    and come from its peer. Anything else is dropped: an ACK gets no response."""
    return AckToDialog() if dialog_found and from_peer else Drop("stray_acks")


def cancel(
    request: SipRequest,
    *,
    invite_found: bool,
    same_source: bool,
    invite_proceeding: bool,
    to_tag: str,
    host: str,
) -> Action:
    """§9.2: a CANCEL for an INVITE transaction of ours, from the host the INVITE came from (a CANCEL
    goes where its INVITE went, hop by hop). ``to_tag``: the INVITE session's (or a fresh one)."""
    if not invite_found:
        return RefuseStray(refusal(request, 481, host=host, warning="no such transaction"))
    if not same_source:
        return RefuseStray(refusal(request, 403, host=host, warning="CANCEL not from the INVITE's source"))
    return AcceptCancel(make_response(request, 200, to_tag=to_tag), invite_proceeding)


def in_dialog(request: SipRequest, *, dialog_found: bool, from_peer: bool, host: str) -> Action:
    """A request with a To tag (not ACK, not CANCEL): its dialog's, if it has one and may act in it."""
    if not dialog_found:
        return RefuseStray(refusal(request, 481, host=host, warning="no such dialog"))
    if not from_peer:
        return RefuseStray(refusal(request, 403, host=host, warning="not from this call's peer"))
    unsupported = unsupported_options(request)
    if unsupported:
        return Reply(refusal(request, 420, host=host, extra=[("Unsupported", ", ".join(unsupported))]))
    return ToDialog()


def screened(request: SipRequest, screening: Screening, host: str) -> Action | None:
    """The application's admission of a new out-of-dialog request: None when admitted, else the
    refusal (403 unless it names another status) or nothing at all."""
    if screening.status is None and not screening.drop:
        return None
    if screening.drop:
        return Drop()
    status = screening.status or 403
    return ReplyStateless(
        refusal(request, status, host=host, warning=screening.warning, extra=list(screening.headers))
    )


def out_of_dialog(request: SipRequest, *, merged: bool, admitted_as: str | None, host: str) -> Action:
    """An admitted request without a To tag: a new INVITE, OPTIONS, or something we refuse.

    ``merged``: the same INVITE reached us along another path (§8.2.2.2), which gets 482.
    """
    if request.method == "INVITE" and merged:
        return ReplyStateless(refusal(request, 482, host=host, warning="merged request: already handled"))
    unsupported = unsupported_options(request)
    if unsupported:
        extra = [("Unsupported", ", ".join(unsupported))]
        return ReplyStateless(refusal(request, 420, host=host, extra=extra))
    if request.method == "INVITE":
        return StartInvite(admitted_as)
    if request.method == "OPTIONS":
        return ReplyStateless(options_ok(request))
    if request.method in DIALOG_METHODS:
        return ReplyStateless(refusal(request, 481, host=host, warning="no such call"))
    return ReplyStateless(unserved(request, host))


def unsupported_options(request: SipRequest) -> list[str]:
    """The extensions ``request`` requires that we do not have (§8.2.2.3: 420 with Unsupported)."""
    required = [opt.strip() for opt in request.headers.get_all("Require") if opt.strip()]
    return [opt for opt in required if opt.lower() not in SUPPORTED_OPTIONS]


def invite_refusal(
    request: SipRequest, *, tag: str, host: str, min_se: int, session_expires: int | None
) -> tuple[SipResponse | None, SessionTimerTerms | None]:
    """What the core itself refuses in a new INVITE (body type, Accept, session timer terms), or
    None and the session timer terms the INVITE settles."""
    content_type = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if request.body and content_type != "application/sdp":
        return refusal(request, 415, host=host, extra=[("Accept", "application/sdp")], tag=tag), None
    if not accepts_sdp(request):
        warning = "our answer is SDP, which the Accept header excludes"
        return refusal(request, 406, host=host, warning=warning, tag=tag), None
    try:
        return None, negotiate(request, min_se, session_expires)
    except SessionTooSmall as exc:
        return refusal(request, 422, host=host, extra=[("Min-SE", str(exc.min_se))], tag=tag), None
    except SipParseError as exc:
        return refusal(request, 400, host=host, warning=exc.reason, tag=tag), None


def accepts_sdp(request: SipRequest) -> bool:
    """RFC 3261 §8.2.3: an Accept header, when present, must allow the body type of our answer."""
    if "Accept" not in request.headers:
        return True
    accepted = {value.split(";")[0].strip().lower() for value in request.headers.get_all("Accept")}
    return bool(accepted & {"application/sdp", "application/*", "*/*"}) or accepted == {""}


def gate_refusal(request: SipRequest, verdict: Verdict, retry_after: int, host: str) -> Action:
    """What the request gate's verdict on the raw bytes answers, before any other processing: 503
    with Retry-After to a source over its limit, 403 to a scanner; an ACK gets nothing."""
    if request.method == "ACK":
        return Drop()
    if verdict is Verdict.REJECT:
        return ReplyStateless(
            refusal(request, 503, host=host, warning="too many requests", retry_after=retry_after)
        )
    return ReplyStateless(refusal(request, 403, host=host, warning="scanner"))
