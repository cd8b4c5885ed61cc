"""The SIP user agent core: the asyncio shell around the sans-IO parser, transactions and dialogs.

It owns the UDP transport, the transaction table and the timers, answers what it can answer alone
(OPTIONS, retransmissions, CANCEL, unknown methods, broken requests) and hands each new INVITE to the
application as an ``InviteSession``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Protocol

from .dialog import Dialog, DialogId
from .errors import SipParseError
from .message import (
    REASON_PHRASES,
    SipRequest,
    SipResponse,
    extract_for_error_response,
    generate_tag,
    make_response,
    parse_message,
)
from .routing import Address, response_destination, stamp_received
from .transaction import (
    ClientNonInviteTransaction,
    OkRetransmitter,
    ServerInviteTransaction,
    ServerNonInviteTransaction,
    State,
    Timers,
    invite_key_for_cancel,
    transaction_key,
)
from .transport_udp import UdpTransport

log = logging.getLogger(__name__)

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS"
# Methods we know but do not serve here: 405 with Allow. Anything else: 501 (RFC 3261 §8.2.1).
KNOWN_METHODS = {"REGISTER", "SUBSCRIBE", "NOTIFY", "MESSAGE", "REFER", "PUBLISH", "INFO", "UPDATE", "PRACK"}


class _Timed(Protocol):
    @property
    def next_deadline(self) -> float | None: ...


class InviteSession:
    """Our server side of one incoming INVITE and, once answered, of its dialog."""

    def __init__(self, ua: UserAgent, tx: ServerInviteTransaction, source: Address) -> None:
        self._ua = ua
        self._tx = tx
        self.request = tx.request
        self.source = source
        self.local_tag = generate_tag()
        self.dialog: Dialog | None = None
        self.cancelled = False
        self.ended = False
        self.on_cancel: Callable[[], None] | None = None
        self.on_bye: Callable[[], None] | None = None
        self._ok: SipResponse | None = None
        self._retransmitter: OkRetransmitter | None = None
        self._ack_outcome: asyncio.Future[bool] | None = None

    @property
    def local_ip(self) -> str:
        return self._ua.local_ip_for(self.source)

    def provisional(self, status: int, reason: str | None = None) -> None:
        response = make_response(
            self.request, status, reason, to_tag=None if status == 100 else self.local_tag
        )
        self._ua.respond(self._tx, response)

    def reject(
        self,
        status: int,
        reason: str | None = None,
        warning: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        """Final failure response; ``warning`` says why, for the operator reading a trace."""
        extra = [("Warning", f'399 {self._ua.sent_by_host} "{warning}"')] if warning else []
        if retry_after is not None:
            extra.append(("Retry-After", str(retry_after)))
        response = make_response(self.request, status, reason, to_tag=self.local_tag, extra=extra or None)
        self._ua.respond(self._tx, response)
        self.ended = True

    async def accept(self, sdp: bytes) -> bool:
        """Send 200 OK with ``sdp``, retransmit it until the ACK; False if cancelled or never ACKed."""
        if self.cancelled or self._tx.state is not State.PROCEEDING:
            return False
        contact = self._ua.contact_for(self.source)
        extra = [("Contact", contact), ("Allow", ALLOW)]
        ok = make_response(
            self.request, 200, to_tag=self.local_tag, body=sdp, content_type="application/sdp", extra=extra
        )
        self.dialog = Dialog.from_incoming_invite(self.request, self.local_tag, contact)
        self._ok = ok
        self._ack_outcome = asyncio.get_running_loop().create_future()
        self._ua.register_dialog(self)
        self._ua.respond(self._tx, ok)
        self._retransmitter = OkRetransmitter(self._ua.timers, self._ua.now())
        self._ua.arm(self._retransmitter, self._retransmit_ok)
        return await self._ack_outcome

    def _settle(self, acked: bool) -> None:
        if self._retransmitter is not None:
            self._retransmitter.ack_received()
        if self._ack_outcome is not None and not self._ack_outcome.done():
            self._ack_outcome.set_result(acked)

    def _retransmit_ok(self, rt: OkRetransmitter) -> None:
        if self._ok is None or self._ack_outcome is None or self._ack_outcome.done():
            return
        if rt.on_timer(self._ua.now()):
            self._ua.respond(self._tx, self._ok)
        if rt.gave_up:
            log.warning("call %s: no ACK for 200 OK within %.0f s", self.request.call_id, self._ua.timers.b)
            self._ua.unregister_dialog(self)
            self._settle(False)
        else:
            self._ua.arm(rt, self._retransmit_ok)

    def ack_received(self) -> None:
        self._settle(True)

    def bye_received(self) -> None:
        self.ended = True
        self._settle(False)
        self._ua.unregister_dialog(self)
        if self.on_bye is not None:
            self.on_bye()

    def cancel_received(self) -> None:
        self.cancelled = True
        self._ua.respond(self._tx, make_response(self.request, 487, to_tag=self.local_tag))
        self.ended = True
        if self.on_cancel is not None:
            self.on_cancel()

    async def hangup(self) -> None:
        """End the call from our side: BYE once the dialog exists, otherwise a final error response."""
        if self.ended:
            return
        self.ended = True
        if self.dialog is None:
            if self._tx.state is State.PROCEEDING:
                self._ua.respond(self._tx, make_response(self.request, 480, to_tag=self.local_tag))
            return
        self._settle(False)
        self._ua.unregister_dialog(self)
        bye = self.dialog.create_request("BYE", self._ua.sent_by(self.source))
        response = await self._ua.send_request(bye, self.dialog.next_hop())
        if response is None:
            log.info("call %s: BYE got no response", self.request.call_id)


class UserAgent:
    """One SIP endpoint on one UDP socket."""

    def __init__(
        self,
        *,
        timers: Timers | None = None,
        public_ip: str | None = None,
        user_agent: str = "sipbridge",
        on_invite: Callable[[InviteSession], None] | None = None,
    ) -> None:
        self.timers = timers or Timers()
        self.public_ip = public_ip
        self.user_agent = user_agent
        self.on_invite = on_invite
        self._transport: UdpTransport | None = None
        self._server_txs: dict[tuple[str, ...], ServerInviteTransaction | ServerNonInviteTransaction] = {}
        self._tx_sources: dict[int, Address] = {}
        self._sessions: dict[tuple[str, ...], InviteSession] = {}
        self._dialogs: dict[DialogId, InviteSession] = {}
        self._client_txs: dict[tuple[str, str], tuple[ClientNonInviteTransaction, asyncio.Future]] = {}
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._local_ips: dict[str, str] = {}
        self.stats: dict[str, int] = {"requests": 0, "responses": 0, "parse_errors": 0}

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self, host: str, port: int) -> None:
        self._transport = await UdpTransport.open(host, port, self.datagram_received)

    def close(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        if self._transport is not None:
            self._transport.close()

    @property
    def local_address(self) -> Address:
        assert self._transport is not None
        return self._transport.local_address

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    # -- addresses -----------------------------------------------------------------------------

    def local_ip_for(self, peer: Address) -> str:
        """The address we advertise to ``peer`` in Contact, Via and SDP."""
        if self.public_ip:
            return self.public_ip
        bound = self.local_address[0]
        if bound not in ("0.0.0.0", "::"):
            return bound
        if peer[0] not in self._local_ips:
            self._local_ips[peer[0]] = _route_source_ip(peer)
        return self._local_ips[peer[0]]

    @property
    def sent_by_host(self) -> str:
        return self.public_ip or self.local_address[0]

    def sent_by(self, peer: Address) -> str:
        return _host_port(self.local_ip_for(peer), self.local_address[1])

    def contact_for(self, peer: Address) -> str:
        return f"<sip:{self.user_agent}@{self.sent_by(peer)}>"

    # -- sending -------------------------------------------------------------------------------

    def respond(
        self, tx: ServerInviteTransaction | ServerNonInviteTransaction, response: SipResponse
    ) -> None:
        response.headers.set("Server", self.user_agent)
        for message in tx.send_response(response, self.now()):
            self._send_response(message)
        self.arm(tx, self._on_server_tx_timer)

    def _send_response(self, response: SipResponse) -> None:
        self.stats["responses"] += 1
        if self._transport is not None:
            self._transport.send(response.to_bytes(), response_destination(response.via[0]))

    async def send_request(self, request: SipRequest, destination: Address) -> SipResponse | None:
        """Send a non-INVITE request through a client transaction; None on timeout (Timer F)."""
        request.headers.set("User-Agent", self.user_agent)
        tx = ClientNonInviteTransaction(request, self.timers, self.now())
        future: asyncio.Future[SipResponse | None] = asyncio.get_running_loop().create_future()
        self._client_txs[tx.key] = (tx, future)
        self._tx_sources[id(tx)] = destination
        self._send_raw(request.to_bytes(), destination)
        self.arm(tx, self._on_client_tx_timer)
        return await future

    def _send_raw(self, data: bytes, destination: Address) -> None:
        if self._transport is not None:
            self._transport.send(data, destination)

    # -- timers --------------------------------------------------------------------------------

    def arm(self, obj: _Timed, callback: Callable) -> None:
        handle = self._timers.pop(id(obj), None)
        if handle is not None:
            handle.cancel()
        deadline = obj.next_deadline
        if deadline is not None:
            loop = asyncio.get_running_loop()
            self._timers[id(obj)] = loop.call_at(deadline, self._fire, obj, callback)

    def _fire(self, obj: _Timed, callback: Callable) -> None:
        self._timers.pop(id(obj), None)
        callback(obj)

    def _on_server_tx_timer(self, tx: ServerInviteTransaction | ServerNonInviteTransaction) -> None:
        for message in tx.on_timer(self.now()):
            self._send_response(message)
        if tx.state is State.TERMINATED:
            self._forget_server_tx(tx)
        else:
            self.arm(tx, self._on_server_tx_timer)

    def _forget_server_tx(self, tx: ServerInviteTransaction | ServerNonInviteTransaction) -> None:
        key = transaction_key(tx.request)
        if self._server_txs.get(key) is tx:
            del self._server_txs[key]
        self._sessions.pop(key, None)

    def _on_client_tx_timer(self, tx: ClientNonInviteTransaction) -> None:
        destination = self._tx_sources.get(id(tx))
        for request in tx.on_timer(self.now()):
            if destination is not None:
                self._send_raw(request.to_bytes(), destination)
        if tx.state is State.TERMINATED:
            self._tx_sources.pop(id(tx), None)
            entry = self._client_txs.pop(tx.key, None)
            if entry is not None and not entry[1].done():
                entry[1].set_result(None)
        else:
            self.arm(tx, self._on_client_tx_timer)

    # -- dialogs -------------------------------------------------------------------------------

    def register_dialog(self, session: InviteSession) -> None:
        assert session.dialog is not None
        self._dialogs[session.dialog.id] = session

    def unregister_dialog(self, session: InviteSession) -> None:
        if session.dialog is not None:
            self._dialogs.pop(session.dialog.id, None)

    def _find_dialog(self, request: SipRequest) -> InviteSession | None:
        return self._dialogs.get((request.call_id, request.to.tag or "", request.from_.tag or ""))

    # -- receiving -----------------------------------------------------------------------------

    def datagram_received(self, data: bytes, source: Address) -> None:
        if not data.strip(b"\r\n"):
            return  # keep-alive (RFC 5626 CRLF ping)
        try:
            message = parse_message(data)
        except SipParseError as exc:
            self.stats["parse_errors"] += 1
            self._answer_unparseable(data, exc, source)
            return
        if isinstance(message, SipResponse):
            self._response_received(message)
        else:
            self.stats["requests"] += 1
            self._request_received(message, source)

    def _answer_unparseable(self, data: bytes, exc: SipParseError, source: Address) -> None:
        request = extract_for_error_response(data)
        log.info("unparseable SIP message from %s:%s: %s", source[0], source[1], exc.reason)
        if request is None or request.method == "ACK":
            return
        try:
            stamp_received(request, source)
            response = make_response(request, exc.status, _reason_phrase(exc))
            response.headers.set("Server", self.user_agent)
            self._send_response(response)
        except (SipParseError, ValueError, IndexError):
            log.debug("no response possible to broken message from %s", source)

    def _response_received(self, response: SipResponse) -> None:
        self.stats["responses"] += 1
        try:
            key = (response.via[0].branch or "", response.cseq[1])
        except (SipParseError, IndexError):
            return
        entry = self._client_txs.get(key)
        if entry is None:
            return
        tx, future = entry
        if tx.receive_response(response, self.now()) and not future.done():
            future.set_result(response)
        self.arm(tx, self._on_client_tx_timer)

    def _request_received(self, request: SipRequest, source: Address) -> None:
        stamp_received(request, source)
        key = transaction_key(request)
        tx = self._server_txs.get(key)
        if tx is not None:
            self._retransmission_or_ack(tx, request, key)
            return
        if request.method == "ACK":
            session = self._find_dialog(request)
            if session is not None:
                session.ack_received()
            return
        if request.method == "CANCEL":
            self._cancel_received(request, key)
            return
        unsupported = self._unsupported_extensions(request)
        if unsupported:
            self._reply_stateless(request, key, 420, extra=[("Unsupported", ", ".join(unsupported))])
        elif request.to.tag:
            self._in_dialog_request(request, key)
        elif request.method == "INVITE":
            self._new_invite(request, key, source)
        elif request.method == "OPTIONS":
            self._reply_stateless(request, key, 200, extra=_capabilities())
        elif request.method == "BYE":
            self._reply_stateless(request, key, 481)
        elif request.method in KNOWN_METHODS:
            self._reply_stateless(request, key, 405, extra=[("Allow", ALLOW)])
        else:
            self._reply_stateless(request, key, 501, extra=[("Allow", ALLOW)])

    def _retransmission_or_ack(
        self, tx: ServerInviteTransaction | ServerNonInviteTransaction, request: SipRequest, key: tuple
    ) -> None:
        for message in tx.receive_request(request, self.now()):
            self._send_response(message)
        self.arm(tx, self._on_server_tx_timer)
        if request.method == "ACK" and isinstance(tx, ServerInviteTransaction) and tx.state is State.ACCEPTED:
            session = self._sessions.get(key)
            if session is not None:
                session.ack_received()

    def _unsupported_extensions(self, request: SipRequest) -> list[str]:
        if request.method in ("ACK", "CANCEL"):
            return []
        return [opt for opt in request.headers.get_all("Require") if opt.strip()]

    def _reply_stateless(
        self, request: SipRequest, key: tuple, status: int, extra: list[tuple[str, str]] | None = None
    ) -> None:
        """Answer through a fresh non-INVITE server transaction (absorbs retransmissions)."""
        if request.method == "INVITE":
            tx: ServerInviteTransaction | ServerNonInviteTransaction = ServerInviteTransaction(
                request, self.timers
            )
        else:
            tx = ServerNonInviteTransaction(request, self.timers)
        self._server_txs[key] = tx
        to_tag = None if request.to.tag else generate_tag()
        self.respond(tx, make_response(request, status, to_tag=to_tag, extra=extra))

    def _cancel_received(self, cancel: SipRequest, key: tuple) -> None:
        invite_key = invite_key_for_cancel(cancel)
        invite_tx = self._server_txs.get(invite_key)
        if not isinstance(invite_tx, ServerInviteTransaction):
            self._reply_stateless(cancel, key, 481)
            return
        session = self._sessions.get(invite_key)
        to_tag = session.local_tag if session else generate_tag()
        tx = ServerNonInviteTransaction(cancel, self.timers)
        self._server_txs[key] = tx
        self.respond(tx, make_response(cancel, 200, to_tag=to_tag))
        if invite_tx.state is State.PROCEEDING and session is not None:
            session.cancel_received()

    def _in_dialog_request(self, request: SipRequest, key: tuple) -> None:
        session = self._find_dialog(request)
        if session is None:
            self._reply_stateless(request, key, 481)
            return
        if request.method == "BYE":
            self._reply_stateless(request, key, 200)
            session.bye_received()
        elif request.method == "OPTIONS":
            self._reply_stateless(request, key, 200, extra=_capabilities())
        elif request.method == "INVITE":
            warning = [("Warning", f'399 {self.sent_by_host} "session modification is not supported yet"')]
            self._reply_stateless(request, key, 488, extra=warning)
        elif request.method in KNOWN_METHODS:
            self._reply_stateless(request, key, 405, extra=[("Allow", ALLOW)])
        else:
            self._reply_stateless(request, key, 501, extra=[("Allow", ALLOW)])

    def _new_invite(self, request: SipRequest, key: tuple, source: Address) -> None:
        tx = ServerInviteTransaction(request, self.timers)
        self._server_txs[key] = tx
        session = InviteSession(self, tx, source)
        self._sessions[key] = session
        session.provisional(100)
        content_type = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if request.body and content_type != "application/sdp":
            self.respond(
                tx,
                make_response(request, 415, to_tag=session.local_tag, extra=[("Accept", "application/sdp")]),
            )
            return
        if not _accepts_sdp(request):
            session.reject(406, warning="our answer is SDP, which the Accept header excludes")
            return
        if self.on_invite is None:
            session.reject(503, warning="no call handler")
            return
        self.on_invite(session)


def _accepts_sdp(request: SipRequest) -> bool:
    """RFC 3261 §8.2.3: an Accept header, when present, must allow the body type of our answer."""
    if "Accept" not in request.headers:
        return True
    accepted = {value.split(";")[0].strip().lower() for value in request.headers.get_all("Accept")}
    return bool(accepted & {"application/sdp", "application/*", "*/*"}) or accepted == {""}


def _capabilities() -> list[tuple[str, str]]:
    return [("Allow", ALLOW), ("Accept", "application/sdp"), ("Supported", "")]


def _reason_phrase(exc: SipParseError) -> str:
    phrase = REASON_PHRASES.get(exc.status, "Bad Request")
    text = " ".join(exc.reason.split())[:120]
    return f"{phrase} ({text})" if text else phrase


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _route_source_ip(peer: Address) -> str:
    """The local address the kernel would use to reach ``peer`` (a UDP connect sends nothing)."""
    family = socket.AF_INET6 if ":" in peer[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((peer[0], peer[1] or 9))
            return probe.getsockname()[0]
        except OSError:
            return "127.0.0.1" if family == socket.AF_INET else "::1"
