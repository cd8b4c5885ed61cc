"""Our UAC side of one outgoing INVITE, up to its final answer (RFC 3261 §13.2, §9.1, §22).

It sends the INVITE, answers digest challenges (401/407) by sending it again with credentials,
reports 1xx (with their SDP: early media) to the application, PRACKs the reliable ones (RFC 3262),
CANCELs on request or at the ring
timeout, ACKs a 2xx (again for each retransmission), and hands over an ``InviteSession`` for the
dialog. The outcome says how it ended in words an operator and an API user understand.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .dialog import Dialog
from .dialog_requests import with_next_cseq
from .digest import Authenticator
from .headers import reason_value
from .invite_session import InviteSession
from .locating import Target
from .message import Headers, SipRequest, SipResponse, generate_call_id, generate_tag
from .reliable_provisional import RAck, Reliability, ReliableReceiver
from .responses import allowed_methods, capabilities
from .session_ua import SessionHost
from .transport import Address, Flow

log = logging.getLogger(__name__)

MAX_AUTH_ROUNDS = 2


@dataclass
class InviteOutcome:
    """How an outgoing INVITE ended: a session when answered, else the reason and the final status."""

    session: InviteSession | None
    status: int | None
    reason: str
    response: SipResponse | None = None

    @property
    def answered(self) -> bool:
        return self.session is not None


def end_reason_for(status: int | None, phrase: str = "") -> str:
    """A failure final response (or None: no answer at all) in the words of a call's end reason."""
    if status is None:
        return "unreachable: no response"
    if status in (486, 600):
        return "busy"
    if status in (408, 480, 487):
        return "no answer"
    if status in (401, 407):
        return "auth failed"
    if status in (404, 484, 604):
        return f"rejected with {status}: unknown number"
    return f"rejected with {status} {phrase}".rstrip()


class OutgoingInvite:
    def __init__(
        self,
        ua: SessionHost,
        *,
        request_uri: str,
        from_uri: str,
        to_uri: str,
        destination: Address,
        transport: str = "UDP",
        fallbacks: Sequence[Target] = (),
        sdp: bytes,
        from_display: str | None = None,
        authenticator: Authenticator | None = None,
        extra_headers: list[tuple[str, str]] | None = None,
        on_provisional: Callable[[SipResponse], None] | None = None,
        server_name: str | None = None,
        provider: str | None = None,
    ) -> None:
        self._ua = ua
        self.server_name = server_name
        self.provider = provider  # the trunk the call goes through: its addresses may act in the dialog
        self.destination = destination
        self.transport = transport.upper()
        self._fallbacks = list(fallbacks)  # RFC 3263 §4.3: the next servers, for no answer or a 503
        self.sdp = sdp
        self._authenticator = authenticator
        self._on_provisional = on_provisional
        self._cancel_requested = False
        self._cancel_reason: str | None = None
        self._rang_out = False
        self._provisional_seen = asyncio.Event()
        self._sent: SipRequest | None = None
        self._ack: bytes | None = None
        self._flow: Flow | None = None
        # RFC 3262: the far end's reliable 18x, and the early dialogs our PRACKs go in (by To tag).
        self._reliable = ReliableReceiver()
        self._early: dict[str, Dialog] = {}
        self._pracks: set[asyncio.Task] = set()
        self.request = self._initial_request(request_uri, from_uri, to_uri, from_display, extra_headers or [])

    @property
    def call_id(self) -> str:
        return self.request.call_id

    def _initial_request(
        self, uri: str, from_uri: str, to_uri: str, display: str | None, extra: list[tuple[str, str]]
    ) -> SipRequest:
        headers = Headers()
        headers.add("Max-Forwards", "70")
        name = f'"{display}" ' if display else ""
        headers.add("From", f"{name}<{from_uri}>;tag={generate_tag()}")
        headers.add("To", f"<{to_uri}>")
        headers.add("Call-ID", generate_call_id(self._ua.transport.sent_by_host))
        headers.add("CSeq", "1 INVITE")
        headers.add("Contact", self._ua.transport.contact_toward(self.destination, self.transport))
        for name_, value in [*capabilities(), *extra]:
            headers.add(name_, value)
        headers.add("Content-Type", "application/sdp")
        return SipRequest("INVITE", uri, headers, self.sdp)

    # -- running -------------------------------------------------------------------------------

    async def run(self, ring_timeout: float, failover_timeout: float | None = None) -> InviteOutcome:
        """Dial until answered, refused, cancelled, or ``ring_timeout`` seconds pass (then CANCEL).

        While another server is left to try (RFC 3263), one that sends no response at all within
        ``failover_timeout`` seconds is given up for the next.
        """
        request = self.request
        challenges = 0
        started = asyncio.get_running_loop().time()
        while True:
            left = max(0.1, ring_timeout - (asyncio.get_running_loop().time() - started))
            response = await self._send(request, left, failover_timeout if self._fallbacks else None)
            if self._fails_over(response):
                request = self._retarget(request)
                continue
            if response is None or response.status not in (401, 407):
                return await self._outcome(response)
            challenges += 1
            if challenges > MAX_AUTH_ROUNDS:
                return InviteOutcome(None, 401, "auth failed")
            if self._authenticator is None or not self._authenticator.authorize(
                request := self._next_attempt(request), response
            ):
                return InviteOutcome(None, response.status, "auth failed", response)

    def _fails_over(self, response: SipResponse | None) -> bool:
        """RFC 3263 §4.3: no answer at all (a timeout, a connection refused) or a 503 moves on to
        the next server, unless the call is being given up (cancelled, rung out)."""
        if not self._fallbacks or self._cancel_requested or self._rang_out:
            return False
        return response is None or response.status == 503

    def _retarget(self, previous: SipRequest) -> SipRequest:
        """The INVITE again, as a new transaction, to the next server."""
        failed = self.destination
        target = self._fallbacks.pop(0)
        self.destination, self.transport = (target.host, target.port), target.transport
        log.info("call %s: %s:%s failed, trying %s:%s", previous.call_id, *failed, *self.destination)
        request = self._next_attempt(previous)
        request.headers.set("Contact", self._ua.transport.contact_toward(self.destination, self.transport))
        return request

    def _next_attempt(self, previous: SipRequest) -> SipRequest:
        headers = previous.headers.copy()
        headers.remove("Via")
        headers.remove("Authorization")
        headers.remove("Proxy-Authorization")
        headers.set("CSeq", f"{previous.cseq[0] + 1} INVITE")
        return SipRequest("INVITE", previous.uri, headers, previous.body)

    async def _send(
        self, request: SipRequest, ring_timeout: float, failover_timeout: float | None = None
    ) -> SipResponse | None:
        self._sent = request
        self._provisional_seen.clear()
        sending = asyncio.ensure_future(
            self._ua.send_request(
                request,
                self.destination,
                self.transport,
                on_response=self._response,
                server_name=self.server_name,
            )
        )
        if failover_timeout is not None and not await self._responds(sending, failover_timeout):
            host, port = self.destination
            log.info("call %s: nothing from %s:%s in %.1f s", request.call_id, host, port, failover_timeout)
            sending.cancel()  # §17.1.1: without a provisional response there is nothing to CANCEL
            await asyncio.gather(sending, return_exceptions=True)
            return None
        try:
            return await asyncio.wait_for(asyncio.shield(sending), ring_timeout)
        except TimeoutError:
            log.info("call %s: no answer within %.0f s, cancelling", request.call_id, ring_timeout)
            self._rang_out = True
            if self._provisional_seen.is_set():  # §9.1: no CANCEL before a provisional response
                await self._send_cancel(request)
            else:
                self._cancel_requested = True
            return await sending

    async def _responds(self, sending: asyncio.Future, within: float) -> bool:
        """Whether the server sent anything (a provisional or a final response) within ``within`` s."""
        seen = asyncio.ensure_future(self._provisional_seen.wait())
        done, _ = await asyncio.wait({sending, seen}, timeout=within, return_when=asyncio.FIRST_COMPLETED)
        seen.cancel()
        return bool(done)

    def _response(self, response: SipResponse) -> None:
        if response.status < 200:
            self._provisional_seen.set()
            reliability, rack = self._reliable.judge(response)
            if reliability is Reliability.STALE:
                return  # §4: a retransmission (our PRACK's transaction resends it) or out of order
            if rack is not None:
                self._prack(response, rack)
            if self._cancel_requested and self._sent is not None:
                asyncio.get_running_loop().create_task(self._send_cancel(self._sent))
            elif self._on_provisional is not None and response.status > 100:
                self._on_provisional(response)
        elif self._ack is not None and self._flow is not None:
            self._flow.send(self._ack)  # a retransmitted 2xx: our ACK was lost

    def _prack(self, response: SipResponse, rack: RAck) -> None:
        """§4: a PRACK in the early dialog the reliable ``response`` belongs to, with its RAck."""
        assert self._sent is not None
        tag = response.to.tag or ""
        dialog = self._early.get(tag)
        if dialog is None:
            dialog = self._early[tag] = Dialog.from_outgoing_invite(self._sent, response)
        prack = dialog.create_request("PRACK")
        prack.headers.add("RAck", str(rack))
        task = asyncio.get_running_loop().create_task(self._send_prack(prack, dialog))
        self._pracks.add(task)
        task.add_done_callback(self._pracks.discard)

    async def _send_prack(self, prack: SipRequest, dialog: Dialog) -> None:
        """Sent, and once more with credentials when the far end challenges it (401/407)."""
        response = await self._send_in_early_dialog(prack, dialog)
        if response is not None and response.status in (401, 407) and self._authenticator is not None:
            retry = with_next_cseq(prack, dialog)
            if self._authenticator.authorize(retry, response):
                response = await self._send_in_early_dialog(retry, dialog)
        if response is None or response.status >= 300:
            status = response.status if response is not None else "no answer"
            log.info("call %s: PRACK got %s", prack.call_id, status)

    async def _send_in_early_dialog(self, request: SipRequest, dialog: Dialog) -> SipResponse | None:
        host, port, transport = dialog.next_hop()
        prefer = self._ua.transport.existing_connection(self.destination, self.transport)
        return await self._ua.send_request(
            request, (host, port), transport or self.transport, prefer, server_name=self.server_name
        )

    async def _outcome(self, response: SipResponse | None) -> InviteOutcome:
        if response is None:
            return InviteOutcome(None, None, end_reason_for(None))
        if response.status >= 300:
            if self._rang_out:
                reason = "no answer"
            elif self._cancel_requested and response.status == 487:
                reason = "cancelled"
            else:
                reason = end_reason_for(response.status, response.reason)
            return InviteOutcome(None, response.status, reason, response)
        assert self._sent is not None
        dialog = Dialog.from_outgoing_invite(self._sent, response)
        host, port, transport = dialog.next_hop()
        ack = dialog.create_request("ACK", cseq=self._sent.cseq[0])
        for name in ("Authorization", "Proxy-Authorization"):
            value = self._sent.headers.get(name)
            if value is not None:
                ack.headers.add(name, value)
        prefer = self._ua.transport.existing_connection(self.destination, self.transport)
        flow = await self._ua.transport.flow_for(
            ack, (host, port), transport or self.transport, prefer, self.server_name
        )
        if flow is None:
            return InviteOutcome(None, response.status, "unreachable: cannot send the ACK", response)
        session = outgoing_session(self._ua, self._sent, response, flow, self.sdp)
        early = self._early.get(response.to.tag or "")
        if early is not None and session.dialog is not None:  # our PRACKs took CSeq numbers in it
            session.dialog.local_cseq = max(session.dialog.local_cseq, early.local_cseq)
        session.authenticator = self._authenticator
        session.admitted_as = self.provider
        session.learn_peer(self.destination[0])
        self._ua.transport.stamp_via(ack, flow)
        self._ack, self._flow = ack.to_bytes(), flow  # §13.2.2.4: the UA core's own request
        flow.send(self._ack)
        if self._cancel_requested:  # answered while our CANCEL was on its way: end it properly
            asyncio.get_running_loop().create_task(session.hangup("cancelled"))
        return InviteOutcome(session, response.status, "answered", response)

    # -- cancelling ----------------------------------------------------------------------------

    def cancel(self, reason: str | None = None) -> None:
        """Hang up before the answer: CANCEL now if the far end has answered 1xx, else on the first 1xx.
        ``reason`` goes in its Reason header (RFC 3326) as Q.850 cause 16, normal clearing, with our
        text: not SIP cause 200, which tells phones the call was answered elsewhere (no missed call)."""
        if self._cancel_requested:
            return
        self._cancel_requested = True
        self._cancel_reason = reason
        if self._provisional_seen.is_set() and self._sent is not None:
            asyncio.get_running_loop().create_task(self._send_cancel(self._sent))

    async def _send_cancel(self, invite: SipRequest) -> None:
        """§9.1: same Request-URI, Call-ID, From, To, CSeq number and top Via as the INVITE."""
        self._cancel_requested = True
        headers = Headers()
        headers.add("Via", invite.headers.get("Via") or "")
        headers.add("Max-Forwards", "70")
        for name in ("From", "To", "Call-ID"):
            headers.add(name, invite.headers.get(name) or "")
        headers.add("CSeq", f"{invite.cseq[0]} CANCEL")
        for route in invite.headers.get_all("Route"):
            headers.add("Route", route)
        if self._cancel_reason:
            headers.add("Reason", reason_value(self._cancel_reason, "Q.850", 16))
        cancel = SipRequest("CANCEL", invite.uri, headers)
        response = await self._ua.send_request(cancel, self.destination, self.transport, keep_via=True)
        if response is None or response.status >= 300:
            log.info("call %s: CANCEL got %s", invite.call_id, response.status if response else "no answer")


def outgoing_session(
    ua: SessionHost, invite: SipRequest, response: SipResponse, flow: Flow, local_sdp: bytes
) -> InviteSession:
    """The dialog our INVITE set up, answered by ``response`` (a 2xx), handled as an incoming one's."""
    session = InviteSession(ua, None, flow, invite)
    session.peer_allow = allowed_methods(response)
    session.local_tag = invite.from_.tag or ""
    session.dialog = Dialog.from_outgoing_invite(invite, response)
    session.local_sdp = local_sdp
    session.learn_peer()
    ua.register_dialog(session)
    return session
