"""The SIP user agent: the asyncio shell that joins the layers.

Bytes come up from the transport layer (``transport_layer``), pass the request gate, are parsed, and
go to the transaction layer (``transaction_layer``) when they match a transaction; the rest go to the
pure UA core (``ua_core``), which says what to do with them given what the tables here say (the
dialogs, the INVITE sessions) and what the application's screening says. This module looks things
up, asks, and carries the core's actions out; each new INVITE goes to the application as an
``InviteSession``.
"""

from __future__ import annotations

import logging
import ssl
from collections import Counter
from collections.abc import Callable

from .. import metrics
from . import ua_core
from .dialog import DialogId
from .errors import SipParseError
from .gate import ADMIT, RequestGate, Screening, Verdict
from .invite_session import InviteSession
from .message import SipRequest, SipResponse, extract_for_error_response, generate_tag, parse_message
from .resolver import Resolver
from .responses import parse_error_response
from .routing import Address, stamp_received
from .session_ua import DialogUsage
from .stream_limits import ConnectionPolicy
from .transaction import ServerInviteTransaction, State, Timers, invite_key_for_cancel, transaction_key
from .transaction_layer import ServerTx, Timed, TransactionLayer, TxKey
from .transport import Flow
from .transport_layer import DatagramEndpoint, TransportLayer
from .transport_stream import StreamConnection

log = logging.getLogger(__name__)


class UserAgent:
    """One SIP endpoint: a UDP socket and, when configured, TCP and TLS listeners on the same host."""

    def __init__(
        self,
        *,
        timers: Timers | None = None,
        public_ip: str | None = None,
        media_public_ip: str | None = None,
        user_agent: str = "sipbridge",
        on_invite: Callable[[InviteSession], None] | None = None,
        session_min_se: int = 90,
        session_expires: int | None = 1800,
        tls_server: ssl.SSLContext | None = None,
        tls_client: ssl.SSLContext | None = None,
        gate: RequestGate | None = None,
        screen: Callable[[SipRequest, Flow], Screening] | None = None,
        screen_stray: Callable[[SipRequest, Flow], Screening] | None = None,
        provider_source: Callable[[str, str], bool] | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        self.timers = timers or Timers()
        self.user_agent = user_agent
        self.on_invite = on_invite
        self.session_min_se = session_min_se
        self.session_expires = session_expires
        # Per-source limits and scanner signatures, on the raw bytes; then the application's
        # admission of each new out-of-dialog request (trunk addresses, digest).
        self.gate = gate
        self.screen = screen
        # What a request that names no dialog of ours (or one it may not act on) gets: DROP for a
        # stranger when strangers get no answer at all. And whether an address is one of a
        # provider's (name, address), so that a trunk's other hosts may act in its calls' dialogs.
        self.screen_stray = screen_stray
        self.provider_source = provider_source
        self.stats: Counter[str] = Counter(requests=0, responses=0, parse_errors=0)
        self.transport = TransportLayer(
            on_datagram=self.datagram_received,
            on_stream_message=self._stream_message,
            stats=self.stats,
            public_ip=public_ip,
            media_public_ip=media_public_ip,
            user=user_agent,
            tls_server=tls_server,
            tls_client=tls_client,
            resolver=resolver,
        )
        self.transactions = TransactionLayer(self.transport, self.timers, user_agent, self._server_tx_ended)
        self._sessions: dict[TxKey, InviteSession] = {}  # by their INVITE's transaction
        self._dialogs: dict[DialogId, DialogUsage] = {}

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(
        self,
        host: str,
        port: int,
        tcp: bool = True,
        tls_port: int | None = None,
        connections: ConnectionPolicy | None = None,
    ) -> None:
        """Listen on UDP ``port`` (and TCP on the same port); TLS on ``tls_port`` if given."""
        await self.transport.start(host, port, tcp, tls_port, connections)

    def close(self) -> None:
        self.transactions.close()
        self.transport.close()

    def use_datagram_sender(self, sender: DatagramEndpoint) -> None:
        """Send UDP through ``sender`` instead of a socket of our own (an embedding, or a test that
        records what would be sent); feed what arrives to ``datagram_received``."""
        self.transport.use_datagram_sender(sender)

    @property
    def live_transactions(self) -> int:
        """Server transactions alive: none once every request has been answered and forgotten."""
        return self.transactions.server_transactions

    @property
    def dialogs(self) -> int:
        return len(self._dialogs)

    def now(self) -> float:
        return self.transactions.now()

    # -- what sessions ask of us (``session_ua.SessionHost``); the addresses and flows they
    # reach through ``transport`` -------------------------------------------------------------

    def respond(self, tx: ServerTx, response: SipResponse) -> None:
        self.transactions.respond(tx, response)

    def arm(self, obj: Timed, callback: Callable) -> None:
        self.transactions.arm(obj, callback)

    def disarm(self, obj: object | None) -> None:
        self.transactions.disarm(obj)

    def register_dialog(self, session: DialogUsage) -> None:
        assert session.dialog is not None
        self._dialogs[session.dialog.id] = session

    def unregister_dialog(self, session: DialogUsage) -> None:
        if session.dialog is not None and self._dialogs.get(session.dialog.id) is session:
            del self._dialogs[session.dialog.id]

    async def send_request(
        self,
        request: SipRequest,
        destination: Address,
        transport: str | None = None,
        prefer: Flow | None = None,
        on_response: Callable[[SipResponse], None] | None = None,
        keep_via: bool = False,
        server_name: str | None = None,
    ) -> SipResponse | None:
        """Send a request through a client transaction; its final response, None on timeout/failure.

        ``prefer`` is a connection to reuse when it leads to the same host (the one a dialog was
        set up on). A request too large for UDP goes over TCP (§18.1.1). For an INVITE,
        ``on_response`` sees every response the transaction passes up (1xx, retransmitted 2xx).
        ``keep_via`` sends the request with the Via it has (a CANCEL must match its INVITE's).
        ``server_name`` is the host name a TLS server's certificate must carry (default: the address).
        """
        flow = await self.transport.flow_for(request, destination, transport, prefer, server_name)
        if flow is None:
            return None
        if not keep_via or "Via" not in request.headers:
            self.transport.stamp_via(request, flow)
        request.headers.set("User-Agent", self.user_agent)
        return await self.transactions.send_request(request, flow, on_response)

    # -- receiving -----------------------------------------------------------------------------

    def datagram_received(self, data: bytes, source: Address) -> None:
        if not data.strip(b"\r\n"):
            return  # keep-alive (RFC 5626 CRLF ping)
        verdict = self._gate_verdict(data, source)
        if verdict is not Verdict.DROP:
            self._handle_raw(data, verdict, self.transport.udp_flow(source))

    def _stream_message(self, data: bytes, connection: StreamConnection) -> None:
        verdict = self._gate_verdict(data, connection.remote)
        if verdict is not Verdict.DROP:
            self._handle_raw(data, verdict, connection)

    def _gate_verdict(self, data: bytes, source: Address) -> Verdict:
        """Per-source limit and scanner check on the raw bytes, before anything is parsed."""
        self.stats["received"] += 1
        return Verdict.HANDLE if self.gate is None else self.gate.check(data, source[0], self.now())

    def _handle_raw(self, data: bytes, verdict: Verdict, flow: Flow) -> None:
        if verdict is Verdict.HANDLE:
            self.message_received(data, flow)
            return
        try:
            request = parse_message(data)
        except SipParseError:
            return
        if isinstance(request, SipRequest):
            stamp_received(request, flow.remote)
            limiter = self.gate.limiter if self.gate is not None else None
            retry_after = limiter.retry_after if limiter is not None else 0
            self._perform(
                ua_core.gate_refusal(request, verdict, retry_after, self.transport.sent_by_host),
                request,
                flow,
            )

    def message_received(self, data: bytes, flow: Flow) -> None:
        try:
            message = parse_message(data)
        except SipParseError as exc:
            self.stats["parse_errors"] += 1
            self._answer_unparseable(data, exc, flow)
            return
        if isinstance(message, SipResponse):
            self.stats["responses"] += 1
            self.transactions.response_received(message)
        else:
            self.stats["requests"] += 1
            metrics.sip_request_received(message.method)
            self._request_received(message, flow)

    def _answer_unparseable(self, data: bytes, exc: SipParseError, flow: Flow) -> None:
        request = extract_for_error_response(data)
        log.info("unparseable SIP message from %s:%s: %s", flow.remote[0], flow.remote[1], exc.reason)
        if request is None or request.method == "ACK":
            return
        try:
            stamp_received(request, flow.remote)
            self.transactions.send_stateless(parse_error_response(request, exc), flow)
        except (SipParseError, ValueError, IndexError):
            log.debug("no response possible to broken message from %s", flow.remote)

    # -- requests: look up what the core needs to know, then do what it says -----------------

    def _request_received(self, request: SipRequest, flow: Flow) -> None:
        stamp_received(request, flow.remote)
        key = transaction_key(request)
        tx = self.transactions.server_tx(key)
        route = ua_core.route(request, tx is not None)
        if tx is not None:
            self.transactions.request_retransmitted(tx, request)
            accepted = isinstance(tx, ServerInviteTransaction) and tx.state is State.ACCEPTED
            if ua_core.acks_our_2xx(request, accepted):
                self._ack_received(request, flow)
        elif route is ua_core.Route.ACK:
            self._ack_received(request, flow)
        elif route is ua_core.Route.CANCEL:
            self._cancel_received(request, key, flow)
        elif route is ua_core.Route.IN_DIALOG:
            self._in_dialog_request(request, key, flow)
        else:
            self._out_of_dialog_request(request, key, flow)

    def _ack_received(self, ack: SipRequest, flow: Flow) -> None:
        session = self._find_dialog(ack)
        action = ua_core.ack(session is not None, session is not None and self._from_peer(session, flow))
        if isinstance(action, ua_core.AckToDialog) and session is not None:
            session.ack_received(ack)
        else:
            self._perform(action, ack, flow)

    def _cancel_received(self, cancel: SipRequest, key: TxKey, flow: Flow) -> None:
        invite_key = invite_key_for_cancel(cancel)
        invite_tx = self.transactions.server_tx(invite_key)
        found = isinstance(invite_tx, ServerInviteTransaction)
        invite_flow = self.transactions.flow_of(invite_tx) if invite_tx is not None else None
        session = self._sessions.get(invite_key)
        action = ua_core.cancel(
            cancel,
            invite_found=found,
            same_source=invite_flow is not None and invite_flow.remote[0] == flow.remote[0],
            invite_proceeding=found and invite_tx.state is State.PROCEEDING and session is not None,
            to_tag=session.local_tag if session is not None else generate_tag(),
            host=self.transport.sent_by_host,
        )
        self._perform(action, cancel, flow, key)
        if isinstance(action, ua_core.AcceptCancel) and action.cancels_invite and session is not None:
            session.cancel_received()

    def _in_dialog_request(self, request: SipRequest, key: TxKey, flow: Flow) -> None:
        session = self._find_dialog(request)
        from_peer = session is not None and self._from_peer(session, flow)
        if session is not None and not from_peer:
            log.info(
                "%s for call %s from %s refused: not from the call's peer",
                request.method,
                request.call_id[:64],
                flow.remote[0],
                extra=session.log_extra,
            )
        action = ua_core.in_dialog(
            request, dialog_found=session is not None, from_peer=from_peer, host=self.transport.sent_by_host
        )
        if isinstance(action, ua_core.ToDialog) and session is not None:
            session.request_received(request, self.transactions.new_server_tx(request, key, flow))
        else:
            self._perform(action, request, flow, key)

    def _out_of_dialog_request(self, request: SipRequest, key: TxKey, flow: Flow) -> None:
        screening = self.screen(request, flow) if self.screen is not None else ADMIT
        refused = ua_core.screened(request, screening, self.transport.sent_by_host)
        if refused is not None:
            self._perform(refused, request, flow)
            return
        merged = request.method == "INVITE" and self.transactions.is_merged(request, key)
        action = ua_core.out_of_dialog(
            request, merged=merged, admitted_as=screening.admitted_as, host=self.transport.sent_by_host
        )
        if isinstance(action, ua_core.StartInvite):
            self._new_invite(request, key, flow, action.admitted_as)
        else:
            self._perform(action, request, flow)

    def _new_invite(self, request: SipRequest, key: TxKey, flow: Flow, admitted_as: str | None) -> None:
        tx = self.transactions.new_server_tx(request, key, flow)
        assert isinstance(tx, ServerInviteTransaction)
        session = InviteSession.incoming(self, tx, flow, admitted_as)
        self._sessions[key] = session
        session.provisional(100)
        refusal, session.timer_terms = ua_core.invite_refusal(
            request,
            tag=session.local_tag,
            host=self.transport.sent_by_host,
            min_se=self.session_min_se,
            session_expires=self.session_expires,
        )
        if refusal is not None:
            self.respond(tx, refusal)
            session.ended = True
        elif self.on_invite is None:
            session.reject(503, warning="no call handler")
        else:
            self.on_invite(session)

    def _perform(self, action: ua_core.Action, request: SipRequest, flow: Flow, key: TxKey = ()) -> None:
        """Carry out an answer or a drop the core decided on."""
        if isinstance(action, ua_core.Drop):
            if action.counter is not None:
                self.stats[action.counter] += 1
        elif isinstance(action, ua_core.ReplyStateless):
            self.transactions.send_stateless(action.response, flow)
        elif isinstance(action, ua_core.RefuseStray):
            self._refuse_stray(action.response, request, flow)
        elif isinstance(action, ua_core.Reply | ua_core.AcceptCancel):
            self.respond(self.transactions.new_server_tx(request, key, flow), action.response)

    def _refuse_stray(self, response: SipResponse, request: SipRequest, flow: Flow) -> None:
        """Once, statelessly, or nothing at all to a source the application drops (a stranger in
        ``unknown_source_action = "drop"`` mode learns nothing, not even a 481)."""
        self.stats["stray_requests"] += 1
        screening = self.screen_stray(request, flow) if self.screen_stray is not None else ADMIT
        if not screening.drop:
            self.transactions.send_stateless(response, flow)

    def _from_peer(self, session: DialogUsage, flow: Flow) -> bool:
        """Whether a request inside ``session``'s dialog may come from ``flow``'s source: the peer's
        own addresses, or an address of the provider the call belongs to (§12.2.2 matches the tags;
        anyone who learned them could otherwise end or move the call)."""
        source = flow.remote[0]
        if source in session.peer_ips:
            return True
        name = session.admitted_as
        return name is not None and self.provider_source is not None and self.provider_source(name, source)

    def _find_dialog(self, request: SipRequest) -> DialogUsage | None:
        return self._dialogs.get((request.call_id, request.to.tag or "", request.from_.tag or ""))

    def _server_tx_ended(self, key: TxKey) -> None:
        self._sessions.pop(key, None)
