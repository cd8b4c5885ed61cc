"""Our UAS side of one incoming INVITE and, once answered, of its dialog (RFC 3261 §13-§14, RFC 4028).

The application (a call) answers or rejects the INVITE and supplies the SDP through callbacks:
``on_offer`` answers an offer that arrives in a re-INVITE or UPDATE (or, given None, makes an offer
for an offerless re-INVITE), ``on_answer`` takes the answer an ACK carries. Everything else —
retransmitting the 2xx until the ACK, CSeq order, glare, session-timer refreshes — happens here.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

from .dialog import Dialog
from .dialog_requests import refresh_session, send_in_dialog
from .digest import Authenticator
from .dtmf_info import answer_info
from .errors import SipParseError
from .headers import reason_value
from .invite_reliable import ReliableProvisionals
from .message import SipRequest, SipResponse, generate_tag
from .reliable_provisional import requires_100rel
from .resolver import is_ip
from .responses import allowed_methods, capabilities, make_response, record_route, refusal, unserved
from .sdp import SdpError
from .session_refresh import SessionRefresh
from .session_timer import SessionTimerTerms, SessionTooSmall, negotiate
from .session_ua import SessionHost
from .transaction import OkRetransmitter, ServerInviteTransaction, State
from .transaction_layer import ServerTx
from .transport import Flow

log = logging.getLogger(__name__)

MAX_PEER_IPS = 8

OfferHandler = Callable[[bytes | None], bytes]
AnswerHandler = Callable[[bytes | None], None]


class InviteSession:
    def __init__(
        self, ua: SessionHost, tx: ServerInviteTransaction | None, flow: Flow, request: SipRequest
    ) -> None:
        self._ua = ua
        self._tx = tx
        self.request = request
        self.flow = flow
        self.peer_allow = allowed_methods(request)
        # Credentials for challenges to our in-dialog requests (a trunk that challenges BYE).
        self.authenticator: Authenticator | None = None
        # What admitted an incoming INVITE (a trunk's name), as the UA's screen said; for a call we
        # place, the provider it goes through. Its addresses may act in the dialog too.
        self.admitted_as: str | None = None
        # Where requests in this dialog may come from (the UA refuses the rest): the INVITE's source,
        # then the peer's own literal addresses as the dialog learns them.
        self.peer_ips: set[str] = {flow.remote[0]}
        self.local_tag = generate_tag()
        self.dialog: Dialog | None = None
        self.cancelled = False
        self.ended = False
        self.ended_by_peer = False
        self.ack_body: bytes = b""
        self.local_sdp: bytes = b""  # the session description we last sent
        self.timer_terms: SessionTimerTerms | None = None
        self.on_cancel: Callable[[], None] | None = None
        self.on_bye: Callable[[], None] | None = None
        self.on_offer: OfferHandler | None = None
        self.on_answer: AnswerHandler | None = None
        self.on_failed: Callable[[str], None] | None = None
        self.on_dtmf: Callable[[str], None] | None = None
        self.on_notify: Callable[[SipRequest], SipResponse] | None = None  # a REFER's progress
        # Fields for this session's log lines (the application's call id: they run in SIP callbacks).
        self.log_extra: dict[str, str] = {}
        self._ok: SipResponse | None = None
        self._ok_tx: ServerInviteTransaction | None = None
        self._ok_cseq = 0
        self._ok_offered = False
        self._retransmitter: OkRetransmitter | None = None
        self._ack_outcome: asyncio.Future[bool] | None = None
        self._ok_settled = asyncio.Event()  # set while no 2xx of ours waits for its ACK
        self._ok_settled.set()
        self._refresh = SessionRefresh(ua, self._send_refresh, self._fail)
        # RFC 3262: our 18x go reliably when the caller requires it; the 2xx waits for their PRACK.
        self._reliable: ReliableProvisionals | None = None
        if tx is not None and requires_100rel(request):
            self._reliable = ReliableProvisionals(ua, tx, self._no_prack)

    @classmethod
    def incoming(
        cls, ua: SessionHost, tx: ServerInviteTransaction, flow: Flow, admitted_as: str | None = None
    ) -> InviteSession:
        session = cls(ua, tx, flow, tx.request)
        session.admitted_as = admitted_as
        return session

    @property
    def source(self) -> tuple[str, int]:
        return self.flow.remote

    def learn_peer(self, *addresses: str) -> None:
        """Take ``addresses`` and the dialog's literal peer addresses (first route, remote target)
        as places the peer's requests may come from; bounded, whatever the peer's re-INVITEs say."""
        hosts = [*addresses, *(self.dialog.peer_hosts() if self.dialog is not None else ())]
        for host in hosts:
            if len(self.peer_ips) < MAX_PEER_IPS and is_ip(host):
                self.peer_ips.add(host)

    @property
    def local_ip(self) -> str:
        return self._ua.transport.local_ip_for(self.flow.remote)

    @property
    def media_ip(self) -> str:
        return self._ua.transport.media_ip_for(self.flow.remote)

    # -- answering the INVITE ------------------------------------------------------------------

    def provisional(self, status: int, reason: str | None = None) -> None:
        assert self._tx is not None, "only an incoming INVITE is answered"
        if status == 100:
            self._ua.respond(self._tx, make_response(self.request, 100, reason))
            return
        extra = [*record_route(self.request), ("Contact", self._contact())]
        response = make_response(self.request, status, reason, to_tag=self.local_tag, extra=extra)
        if self._reliable is None:
            self._ua.respond(self._tx, response)
            return
        if not self.request.body:  # RFC 3262 §5: it would carry our offer, which goes in the 200
            return
        self._open_dialog()  # a reliable 18x sets up the early dialog its PRACK comes in
        if not self._reliable.send(response):  # §3: none before the last one's PRACK; may be left out
            log.debug("call %s: %d not sent, awaiting a PRACK", self.request.call_id, status)

    def _contact(self) -> str:
        return self._ua.transport.contact_toward(self.flow.remote, self.flow.transport)

    def _open_dialog(self) -> None:
        if self.dialog is None:
            self.dialog = Dialog.from_incoming_invite(self.request, self.local_tag, self._contact())
            self.learn_peer()
        self._ua.register_dialog(self)

    def _no_prack(self) -> None:
        reason = "no PRACK for our reliable provisional response"
        self.reject(500, warning=reason)  # §3: a 5xx after 64·T1 without PRACK
        if self.on_failed is not None:
            self.on_failed(reason)

    def _prack(self, request: SipRequest, tx: ServerTx) -> None:
        """§3: 200 to the PRACK of our unacknowledged reliable 18x (no more resending), else 481."""
        if self._reliable is None or not self._reliable.prack(request):
            self._ua.respond(tx, self._refusal(request, 481, "no such reliable provisional response"))
            return
        self._ua.respond(tx, make_response(request, 200))

    def _end_early(self) -> None:
        """The INVITE got a failure response: no more reliable 18x, no early dialog."""
        if self._reliable is not None:
            self._reliable.stop()
        if self.dialog is not None:
            self._ua.unregister_dialog(self)

    def reject(
        self,
        status: int,
        reason: str | None = None,
        warning: str | None = None,
        retry_after: int | None = None,
        extra: list[tuple[str, str]] | None = None,
    ) -> None:
        """Final failure response; ``warning`` says why, for the operator reading a trace."""
        assert self._tx is not None, "only an incoming INVITE is answered"
        host, tag = self._ua.transport.sent_by_host, self.local_tag
        response = refusal(
            self.request,
            status,
            host=host,
            reason=reason,
            warning=warning,
            extra=extra,
            tag=tag,
            retry_after=retry_after,
        )
        self._ua.respond(self._tx, response)
        self.ended = True
        self._end_early()

    async def accept(self, sdp: bytes) -> bool:
        """Send 200 OK with ``sdp`` and retransmit it until the ACK; False if cancelled or never ACKed.

        ``sdp`` is our answer, or our offer when the INVITE had none; the ACK's body (the answer
        then) is kept in ``ack_body``.
        """
        assert self._tx is not None, "only an incoming INVITE is answered"
        if self._reliable is not None:  # RFC 3262 §3: our 2xx after our reliable 18x's PRACK
            await self._reliable.settled()
            self._reliable.stop()
        if self.cancelled or self.ended or self._tx.state is not State.PROCEEDING:
            return False
        self._open_dialog()
        ok = self._ok_response(self.request, sdp)
        self._ack_outcome = asyncio.get_running_loop().create_future()
        self._send_ok(self._tx, ok, offered=not self.request.body)
        acked = await self._ack_outcome
        if acked and self.timer_terms is not None:
            self._refresh.restart(self.timer_terms)
        return acked

    def _ok_response(self, request: SipRequest, sdp: bytes | None) -> SipResponse:
        assert self.dialog is not None
        if sdp:
            self.local_sdp = sdp
        extra = [("Contact", self.dialog.local_contact), *capabilities()]
        if request is self.request:
            extra += record_route(request)  # §12.1.1: the proxies on the path stay on it
        if self.timer_terms is not None:
            extra.append(("Session-Expires", self.timer_terms.session_expires_header()))
            if self.timer_terms.refresher == "uac":
                extra.append(("Require", "timer"))
        return make_response(
            request,
            200,
            to_tag=self.local_tag,
            body=sdp or b"",
            content_type="application/sdp" if sdp else None,
            extra=extra,
        )

    def _send_ok(self, tx: ServerInviteTransaction, ok: SipResponse, offered: bool) -> None:
        self._ok, self._ok_tx, self._ok_cseq, self._ok_offered = ok, tx, tx.request.cseq[0], offered
        self._ok_settled.clear()
        self._ua.respond(tx, ok)
        self._ua.disarm(self._retransmitter)
        self._retransmitter = OkRetransmitter(self._ua.timers, self._ua.now())
        self._ua.arm(self._retransmitter, self._retransmit_ok)

    def _ok_done(self) -> None:
        """Our 2xx is ACKed, given up on, or overtaken by a BYE: no more retransmissions of it."""
        self._ok = None
        if self._retransmitter is not None:
            self._retransmitter.ack_received()
            self._ua.disarm(self._retransmitter)
        self._ok_settled.set()

    def _retransmit_ok(self, rt: OkRetransmitter) -> None:
        if rt is not self._retransmitter or self._ok is None or self._ok_tx is None:
            return
        if rt.on_timer(self._ua.now()):
            self._ua.respond(self._ok_tx, self._ok)
        if rt.gave_up:
            log.warning(
                "call %s: no ACK for 200 OK within %.0f s",
                self.request.call_id,
                self._ua.timers.b,
                extra=self.log_extra,
            )
            self._ok_done()
            if self._ack_outcome is not None and not self._ack_outcome.done():
                self._ua.unregister_dialog(self)
                self._ack_outcome.set_result(False)
            elif self.on_failed is not None:  # a re-INVITE's 200 was never ACKed: §14.2 says hang up
                self.on_failed("no ACK for the 200 OK to a re-INVITE")
        else:
            self._ua.arm(rt, self._retransmit_ok)

    def ack_received(self, ack: SipRequest) -> None:
        if self._ok is None or ack.cseq[0] != self._ok_cseq:
            return  # a retransmitted or stray ACK
        self._ok_done()
        if self._ack_outcome is not None and not self._ack_outcome.done():
            self.ack_body = ack.body  # the initial INVITE's ACK: accept() hands it over
            self._ack_outcome.set_result(True)
        elif self._ok_offered and self.on_answer is not None:
            self.on_answer(ack.body or None)  # the answer to our offer in a re-INVITE's 200

    def cancel_received(self) -> None:
        assert self._tx is not None
        self.cancelled = True
        self._ua.respond(self._tx, make_response(self.request, 487, to_tag=self.local_tag))
        self.ended = True
        self._end_early()
        if self.on_cancel is not None:
            self.on_cancel()

    def _refusal(
        self,
        request: SipRequest,
        status: int,
        warning: str | None,
        extra: list[tuple[str, str]] | None = None,
    ) -> SipResponse:
        return refusal(request, status, host=self._ua.transport.sent_by_host, warning=warning, extra=extra)

    # -- requests inside the dialog ------------------------------------------------------------

    def request_received(self, request: SipRequest, tx: ServerTx) -> None:
        """A request with our dialog's identifiers (not ACK, not CANCEL)."""
        assert self.dialog is not None
        if not self.dialog.accept_remote_cseq(request.cseq[0]):
            self._ua.respond(tx, self._refusal(request, 500, "CSeq lower than the previous request's"))
            return
        method = request.method
        if method == "BYE":
            self._ua.respond(tx, make_response(request, 200))
            self._ended_by_peer()
        elif method in ("INVITE", "UPDATE"):
            self._modify(request, tx)
        elif method == "OPTIONS":
            self._ua.respond(tx, make_response(request, 200, extra=capabilities()))
        elif method == "INFO":
            self._info(request, tx)
        elif method == "PRACK":
            self._prack(request, tx)
        elif method == "NOTIFY" and self.on_notify is not None:
            self._ua.respond(tx, self.on_notify(request))
        else:
            self._ua.respond(tx, unserved(request, self._ua.transport.sent_by_host))

    def _info(self, request: SipRequest, tx: ServerTx) -> None:
        """SIP INFO DTMF (application/dtmf-relay or application/dtmf)."""
        response, digit = answer_info(request, self._ua.transport.sent_by_host)
        self._ua.respond(tx, response)
        if digit is not None and self.on_dtmf is not None:
            self.on_dtmf(digit)

    def _ended_by_peer(self) -> None:
        if self._tx is not None and self._tx.state is State.PROCEEDING:  # a BYE in the early dialog
            self._ua.respond(self._tx, make_response(self.request, 487, to_tag=self.local_tag))
            self._end_early()
        self.ended = self.ended_by_peer = True
        self._ok_done()  # a BYE can overtake a lost ACK: the 200 is no longer retransmitted
        self._stop()
        if self._ack_outcome is not None and not self._ack_outcome.done():
            self._ack_outcome.set_result(False)
        if self.on_bye is not None:
            self.on_bye()

    def _modify(self, request: SipRequest, tx: ServerTx) -> None:
        """re-INVITE or UPDATE: target refresh, session-timer refresh, maybe a new offer."""
        refusal = self._glare(request)
        if refusal is not None:
            self._ua.respond(tx, refusal)
            return
        try:
            terms = negotiate(request, self._ua.session_min_se, None)
        except SessionTooSmall as exc:
            self._ua.respond(tx, make_response(request, 422, extra=[("Min-SE", str(exc.min_se))]))
            return
        except SipParseError as exc:
            self._ua.respond(tx, self._refusal(request, 400, exc.reason))
            return
        sdp = self._new_sdp(request, tx)
        if sdp is None and (request.body or request.method == "INVITE"):
            return  # refused in _new_sdp
        assert self.dialog is not None
        self.dialog.update_remote_target(request)
        self.learn_peer()
        self.timer_terms = terms
        ok = self._ok_response(request, sdp)
        if isinstance(tx, ServerInviteTransaction):
            self._send_ok(tx, ok, offered=not request.body)
        else:
            self._ua.respond(tx, ok)
        self._refresh.restart(terms)

    def _glare(self, request: SipRequest) -> SipResponse | None:
        """§14.2 / RFC 3311 §5.2: one offer at a time in each direction."""
        if request.method == "INVITE" and self._ok is not None:
            # Their previous INVITE is not ACKed yet: 500 with a random Retry-After (0-10 s).
            retry = str(random.randint(0, 10))
            return self._refusal(
                request, 500, "previous INVITE not yet acknowledged", extra=[("Retry-After", retry)]
            )
        if self._refresh.refreshing and (request.body or request.method == "INVITE"):
            return self._refusal(request, 491, "our own session refresh is in progress")
        return None

    def _new_sdp(self, request: SipRequest, tx: ServerTx) -> bytes | None:
        if not request.body and request.method == "UPDATE":
            return None  # a pure refresh
        if self.on_offer is None:
            self._ua.respond(tx, self._refusal(request, 488, "session changes are not supported"))
            return None
        try:
            return self.on_offer(request.body or None)
        except SdpError as exc:
            self._ua.respond(tx, self._refusal(request, 488, str(exc)))
        except Exception:  # the transaction must still be answered, and the call go on
            log.exception("call %s: session change failed", self.request.call_id, extra=self.log_extra)
            self._ua.respond(tx, self._refusal(request, 500, "internal error handling the offer"))
        return None

    # -- session timer -------------------------------------------------------------------------

    async def _send_refresh(self, terms: SessionTimerTerms) -> SipResponse | None:
        return await refresh_session(self._ua, self, terms)

    def _fail(self, reason: str) -> None:
        log.info("call %s: %s", self.request.call_id, reason, extra=self.log_extra)
        if self.on_failed is not None:
            self.on_failed(reason)
        else:
            asyncio.get_running_loop().create_task(self.hangup(reason))

    def _stop(self) -> None:
        self._refresh.stop()
        self._ua.disarm(self._retransmitter)
        self._ua.unregister_dialog(self)

    # -- hanging up ----------------------------------------------------------------------------

    async def request_in_dialog(self, request: SipRequest) -> SipResponse | None:
        """A request made by ``dialog.create_request`` (a REFER), sent in this dialog: its answer."""
        return await send_in_dialog(self._ua, self, request)

    async def hangup(self, reason: str | None = None) -> None:
        """End the call from our side: BYE once the dialog exists, otherwise a final error response.

        §15: no BYE while a 2xx of ours still waits for its ACK; it goes once the ACK came or the 2xx's
        retransmissions gave up (64·T1). A BYE from the peer meanwhile ends the dialog: none then.
        """
        if self.ended:
            return
        self.ended = True
        if self._tx is not None and self._tx.state is State.PROCEEDING:
            self.reject(480, warning=reason)
            return
        if self.dialog is None:
            return
        self._refresh.stop()
        await self._ok_settled.wait()
        if self.ended_by_peer:
            return
        self._stop()
        bye = self.dialog.create_request("BYE")
        if reason:
            bye.headers.add("Reason", reason_value(reason))
        response = await send_in_dialog(self._ua, self, bye)
        if response is None:
            log.info("call %s: BYE got no response", self.request.call_id, extra=self.log_extra)
