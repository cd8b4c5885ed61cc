"""Requests we send inside an INVITE dialog (RFC 3261 §12.2.1.1): a BYE, a session-timer refresh and
the ACK for its 2xx (RFC 4028 §7.4, §13.2.2.4), each sent again with credentials when challenged."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from .dialog import Dialog
from .digest import Authenticator
from .message import SipRequest, SipResponse
from .responses import SUPPORTED
from .session_timer import SessionTimerTerms
from .session_ua import RequestSender
from .transport import Flow


class DialogSide(Protocol):
    """Our side of a dialog, as sending needs it."""

    dialog: Dialog | None
    flow: Flow  # the connection the dialog was set up on, reused when it leads to the next hop
    authenticator: Authenticator | None
    peer_allow: set[str]
    local_sdp: bytes
    on_answer: Callable[[bytes | None], None] | None


async def send_in_dialog(ua: RequestSender, side: DialogSide, request: SipRequest) -> SipResponse | None:
    """Send ``request`` to the dialog's route set or remote target; once more with credentials when
    the peer challenges it (401/407) and we have some."""
    assert side.dialog is not None
    host, port, transport = side.dialog.next_hop()
    response = await ua.send_request(request, (host, port), transport, prefer=side.flow)
    if response is None or response.status not in (401, 407) or side.authenticator is None:
        return response
    retry = with_next_cseq(request, side.dialog)
    if not side.authenticator.authorize(retry, response):
        return response
    return await ua.send_request(retry, (host, port), transport, prefer=side.flow)


async def refresh_session(
    ua: RequestSender, side: DialogSide, terms: SessionTimerTerms
) -> SipResponse | None:
    """A session-timer refresh (RFC 4028 §7.4): UPDATE when the peer allows it, else re-INVITE."""
    assert side.dialog is not None
    allows_update = "UPDATE" in side.peer_allow
    request = side.dialog.create_request("UPDATE" if allows_update else "INVITE")
    # RFC 4028 §7.4: in our own request, "uac" names us as the refresher (and we go on being it).
    request.headers.add("Session-Expires", f"{terms.interval};refresher=uac")
    request.headers.add("Min-SE", str(ua.session_min_se))
    request.headers.add("Supported", SUPPORTED)
    if not allows_update and side.local_sdp:
        # RFC 6337 §5.3: a refresh offers the unchanged session (same o= version).
        request.body = side.local_sdp
        request.headers.set("Content-Type", "application/sdp")
    response = await send_in_dialog(ua, side, request)
    if request.method == "INVITE" and response is not None and 200 <= response.status < 300:
        if side.on_answer is not None and response.body:
            side.on_answer(response.body)
        await _ack_2xx(ua, side, request)
    return response


async def _ack_2xx(ua: RequestSender, side: DialogSide, invite: SipRequest) -> None:
    """The UA core's ACK for a 2xx to our re-INVITE (§13.2.2.4): a request of its own."""
    assert side.dialog is not None
    ack = side.dialog.create_request("ACK", cseq=invite.cseq[0])
    host, port, transport = side.dialog.next_hop()
    flow = await ua.transport.flow_for(ack, (host, port), transport, side.flow)
    if flow is not None:
        ua.transport.stamp_via(ack, flow)
        flow.send(ack.to_bytes())


def with_next_cseq(request: SipRequest, dialog: Dialog) -> SipRequest:
    """The same in-dialog request again, with the dialog's next CSeq (to answer a challenge)."""
    dialog.local_cseq += 1
    headers = request.headers.copy()
    headers.remove("Via")
    headers.set("CSeq", f"{dialog.local_cseq} {request.method}")
    return SipRequest(request.method, request.uri, headers, request.body)
