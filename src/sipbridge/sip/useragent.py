"""The SIP user agent core: the asyncio shell around the sans-IO parser, transactions and dialogs.

It owns the transports (UDP, TCP, TLS), the transaction tables and the timers, answers what it can
answer alone (OPTIONS, retransmissions, CANCEL, unknown methods, broken requests) and hands each new
INVITE to the application as an ``InviteSession``.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import socket
import ssl
from collections import Counter, OrderedDict
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from .. import metrics
from .dialog import DialogId
from .errors import SipParseError
from .gate import ADMIT, RequestGate, Screening, Verdict
from .invite_session import InviteSession, ServerTx
from .message import (
    REASON_PHRASES,
    SipRequest,
    SipResponse,
    extract_for_error_response,
    generate_branch,
    generate_tag,
    make_response,
    parse_message,
)
from .resolver import ResolveError, Resolver, is_ip
from .routing import Address, response_destination, stamp_received
from .session_timer import SessionTimerTerms, SessionTooSmall, negotiate
from .stream_limits import AcceptBudget, ConnectionPolicy
from .transaction import (
    ClientInviteTransaction,
    ClientNonInviteTransaction,
    MergedRequestDetector,
    ServerInviteTransaction,
    ServerNonInviteTransaction,
    State,
    Timers,
    client_transaction_key,
    invite_key_for_cancel,
    transaction_key,
)
from .transport import DEFAULT_PORTS, UDP_SIZE_LIMIT, Flow, UdpFlow
from .transport_stream import StreamConnection, StreamTransport
from .transport_udp import UdpTransport

log = logging.getLogger(__name__)

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO"
SUPPORTED = "timer"
# Methods we know but do not serve here: 405 with Allow. Anything else: 501 (RFC 3261 §8.2.1).
KNOWN_METHODS = {"REGISTER", "SUBSCRIBE", "NOTIFY", "MESSAGE", "REFER", "PUBLISH", "PRACK"}
SUPPORTED_OPTIONS = frozenset({"timer"})
MAX_LOCAL_IPS = 1024  # peers whose route we remember (the kernel's choice of our source address)

ClientTx = ClientInviteTransaction | ClientNonInviteTransaction


class DatagramEndpoint(Protocol):
    """What the UA needs of a UDP socket."""

    @property
    def local_address(self) -> Address: ...

    def send(self, data: bytes, addr: Address) -> None: ...

    def close(self) -> None: ...


class _Timed(Protocol):
    @property
    def next_deadline(self) -> float | None: ...


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
        self.public_ip = public_ip
        self.media_public_ip = media_public_ip
        self.user_agent = user_agent
        self.on_invite = on_invite
        self.session_min_se = session_min_se
        self.session_expires = session_expires
        self._tls_server = tls_server
        self._tls_client = tls_client
        # Per-source limits and scanner signatures, on the raw bytes; then the application's
        # admission of each new out-of-dialog request (trunk addresses, digest).
        self.gate = gate
        self.screen = screen
        # What a request that names no dialog of ours (or one it may not act on) gets: DROP for a
        # stranger when strangers get no answer at all. And whether an address is one of a
        # provider's (name, address), so that a trunk's other hosts may act in its calls' dialogs.
        self.screen_stray = screen_stray
        self.provider_source = provider_source
        self._udp: UdpTransport | None = None
        self._streams: dict[str, StreamTransport] = {}
        self._server_txs: dict[tuple[str, ...], ServerTx] = {}
        self._tx_flows: dict[int, Flow] = {}
        self._tx_observers: dict[int, Callable[[SipResponse], None]] = {}
        self._sessions: dict[tuple[str, ...], InviteSession] = {}
        self._dialogs: dict[DialogId, InviteSession] = {}
        self._client_txs: dict[tuple[str, str], tuple[ClientTx, asyncio.Future]] = {}
        self._merged = MergedRequestDetector(ttl=self.timers.b)
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._local_ips: OrderedDict[str, str] = OrderedDict()  # by peer address, bounded
        self.resolver = resolver or Resolver()
        self._tasks: set[asyncio.Task] = set()
        self.stats: Counter[str] = Counter(requests=0, responses=0, parse_errors=0)

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(
        self,
        host: str,
        port: int,
        tcp: bool = True,
        tls_port: int | None = None,
        connections: ConnectionPolicy | None = None,
    ) -> None:
        """Listen on UDP ``port`` (and TCP on the same port); TLS on ``tls_port`` if given.

        Port 0 picks a port free for both UDP and TCP. ``connections``: the caps and deadlines of
        accepted TCP and TLS connections (one budget for both).
        """
        budget = AcceptBudget(connections or ConnectionPolicy())
        for attempt in range(1 if port else 20):
            self._udp = await UdpTransport.open(host, port, self.datagram_received)
            if not tcp:
                break
            try:
                await self._listen("TCP", host, self._udp.local_address[1], budget)
                break
            except OSError:
                self._udp.close()
                if port or attempt == 19:
                    raise
        if tls_port is not None:
            if self._tls_server is None:
                raise ValueError("TLS listener needs a certificate and key")
            await self._listen("TLS", host, tls_port, budget)
        elif self._tls_client is not None:  # outbound TLS (a trunk on 5061) without a listener of ours
            self._streams["TLS"] = StreamTransport(
                "TLS", self._stream_message, None, self._tls_client, budget
            )

    async def _listen(self, protocol: str, host: str, port: int, budget: AcceptBudget) -> None:
        server_ssl = self._tls_server if protocol == "TLS" else None
        stream = StreamTransport(protocol, self._stream_message, server_ssl, self._tls_client, budget)
        await stream.listen(host, port)
        self._streams[protocol] = stream

    def close(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        for task in self._tasks:
            task.cancel()
        if self._udp is not None:
            self._udp.close()
        for stream in self._streams.values():
            stream.close()
        self.resolver.close()

    def use_datagram_sender(self, sender: DatagramEndpoint) -> None:
        """Send UDP through ``sender`` instead of a socket of our own (an embedding, or a test that
        records what would be sent); feed what arrives to ``datagram_received``."""
        self._udp = sender  # type: ignore[assignment]

    @property
    def local_address(self) -> Address:
        assert self._udp is not None
        return self._udp.local_address

    def listen_port(self, transport: str) -> int:
        stream = self._streams.get(transport)
        if stream is None or not stream.listening:
            return self.local_address[1]
        return stream.local_address[1]

    @property
    def connections_refused(self) -> int:
        """TCP/TLS connections closed at once for being over the per-source or total cap."""
        return sum(stream.refused for stream in self._streams.values())

    @property
    def connections_timed_out(self) -> int:
        """TCP/TLS connections closed at a deadline (handshake, first message, idle, a slow message)."""
        return sum(stream.timed_out for stream in self._streams.values())

    @property
    def transports(self) -> list[str]:
        return ["UDP", *(name for name, stream in self._streams.items() if stream.listening)]

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    # -- addresses -----------------------------------------------------------------------------

    def local_ip_for(self, peer: Address) -> str:
        """The address we advertise to ``peer`` in Contact and Via: never a wildcard."""
        if self.public_ip:
            return self.public_ip
        bound = self.local_address[0]
        if bound not in ("0.0.0.0", "::"):
            return bound
        local = self._local_ips.get(peer[0])
        if local is None:
            self._local_ips[peer[0]] = local = _route_source_ip(peer)
            if len(self._local_ips) > MAX_LOCAL_IPS:
                self._local_ips.popitem(last=False)
            if _is_private(local) and not _is_private(peer[0]):
                log.warning(
                    "advertising private address %s to public peer %s: set public_ip if behind NAT",
                    local,
                    peer[0],
                )
        return local

    def media_ip_for(self, peer: Address) -> str:
        """The address for our SDP: ``media_public_ip``, else the signalling one."""
        return self.media_public_ip or self.local_ip_for(peer)

    @property
    def sent_by_host(self) -> str:
        return self.public_ip or self.local_address[0]

    def sent_by(self, peer: Address, transport: str = "UDP") -> str:
        return _host_port(self.local_ip_for(peer), self.listen_port(transport))

    def contact_for(self, flow: Flow) -> str:
        return self.contact_toward(flow.remote, flow.transport)

    def contact_toward(self, destination: Address, transport: str = "UDP") -> str:
        """Our Contact for a request we are about to send to ``destination``."""
        param = "" if transport == "UDP" else f";transport={transport.lower()}"
        return f"<sip:{self.user_agent}@{self.sent_by(destination, transport)}{param}>"

    def capabilities(self) -> list[tuple[str, str]]:
        return [("Allow", ALLOW), ("Supported", SUPPORTED)]

    # -- responses -----------------------------------------------------------------------------

    def refusal(
        self,
        request: SipRequest,
        status: int,
        reason: str | None = None,
        warning: str | None = None,
        retry_after: int | None = None,
        extra: list[tuple[str, str]] | None = None,
        tag: str | None = None,
    ) -> SipResponse:
        """A failure response whose Warning says why, for the operator reading a trace."""
        headers = list(extra or [])
        if warning:
            text = " ".join(warning.split()).replace('"', "'")[:200]
            headers.append(("Warning", f'399 {self.sent_by_host} "{text}"'))
        if retry_after is not None:
            headers.append(("Retry-After", str(retry_after)))
        to_tag = None if request.to.tag else (tag or stateless_tag(request))
        return make_response(request, status, reason, to_tag=to_tag, extra=headers)

    def unserved(self, request: SipRequest) -> SipResponse:
        """405 for methods we know but do not serve, 501 for the rest (§8.2.1), both with Allow."""
        status = 405 if request.method in KNOWN_METHODS else 501
        return self.refusal(request, status, extra=[("Allow", ALLOW)])

    def respond(self, tx: ServerTx, response: SipResponse) -> None:
        response.headers.set("Server", self.user_agent)
        flow = self._tx_flows.get(id(tx))
        for message in tx.send_response(response, self.now()):
            self._send_response(message, flow)
        self.arm(tx, self._on_server_tx_timer)

    def _send_response(self, response: SipResponse, flow: Flow | None) -> None:
        """§18.2.2: over the connection the request came on; UDP to received/rport.

        Never to anyone but the request's source: ``maddr`` is ignored, and when the connection has
        closed a new one goes to the source address (at the Via's port), not to the Via's host.
        """
        self.stats["responses"] += 1
        metrics.sip_response_sent(response.status)
        data = response.to_bytes()
        via = response.via[0]
        if "maddr" in via.params:
            self.stats["maddr_ignored"] += 1
        if flow is None or flow.transport == "UDP":
            if self._udp is not None:
                self._udp.send(data, response_destination(via))
        elif not flow.closed:
            flow.send(data)
        else:
            port = via.port or DEFAULT_PORTS.get(flow.transport, 5060)
            self._spawn(self._send_over_new_connection(flow.transport, (flow.remote[0], port), data))

    async def _send_over_new_connection(self, transport: str, remote: Address, data: bytes) -> None:
        try:
            connection = await self._streams[transport].connect(remote)
        except (TimeoutError, OSError, ssl.SSLError) as exc:
            log.info("could not open %s connection to %s:%s for a response: %s", transport, *remote, exc)
            return
        connection.send(data)

    # -- requests we send ----------------------------------------------------------------------

    async def send_in_dialog(self, session: InviteSession, request: SipRequest) -> SipResponse | None:
        """Send a request inside ``session``'s dialog, to its route set or remote target."""
        assert session.dialog is not None
        host, port, transport = session.dialog.next_hop()
        response = await self.send_request(request, (host, port), transport, prefer=session.flow)
        if response is None or response.status not in (401, 407) or session.authenticator is None:
            return response
        retry = _with_next_cseq(request, session)
        if not session.authenticator.authorize(retry, response):
            return response
        return await self.send_request(retry, (host, port), transport, prefer=session.flow)

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
        flow = await self.flow_for(request, destination, transport, prefer, server_name)
        if flow is None:
            return None
        if not keep_via or "Via" not in request.headers:
            self.stamp_via(request, flow)
        request.headers.set("User-Agent", self.user_agent)
        if request.method == "INVITE":
            tx: ClientTx = ClientInviteTransaction(request, self.timers, self.now(), flow.reliable)
        else:
            tx = ClientNonInviteTransaction(request, self.timers, self.now(), flow.reliable)
        future: asyncio.Future[SipResponse | None] = asyncio.get_running_loop().create_future()
        self._client_txs[tx.key] = (tx, future)
        self._tx_flows[id(tx)] = flow
        if on_response is not None:
            self._tx_observers[id(tx)] = on_response
        flow.send(request.to_bytes())
        self.arm(tx, self._on_client_tx_timer)
        if request.method != "INVITE":
            return await future
        try:  # after a 1xx nothing in the INVITE transaction ends the wait: a refresh must not hang
            return await asyncio.wait_for(future, self.timers.b)
        except TimeoutError:
            self._forget_client_tx(tx)
            return None

    def existing_connection(self, destination: Address, transport: str) -> Flow | None:
        stream = self._streams.get(transport.upper())
        return stream.existing(destination) if stream is not None else None

    async def flow_for(
        self,
        request: SipRequest,
        destination: Address,
        transport: str | None,
        prefer: Flow | None,
        server_name: str | None = None,
    ) -> Flow | None:
        """How ``request`` goes to ``destination``: a reused connection, a new one, or UDP.

        A host name (a peer's Contact or Record-Route) is resolved off the event loop first; None when
        it does not resolve in time.
        """
        if not is_ip(destination[0]):
            try:
                address = await self.resolver.resolve(destination[0])
            except ResolveError as exc:
                log.info("no %s request to %s: %s", request.method, destination[0], exc)
                return None
            server_name = server_name or destination[0]
            destination = (address, destination[1])
        wanted = transport or (prefer.transport if prefer is not None else "UDP")
        if wanted == "UDP" and len(request.to_bytes()) + 120 > UDP_SIZE_LIMIT and "TCP" in self._streams:
            wanted = "TCP"
        if prefer is not None and not prefer.closed and prefer.transport == wanted:
            if prefer.remote[0] == destination[0] and (wanted != "UDP" or prefer.remote == destination):
                return prefer
        if wanted == "UDP":
            assert self._udp is not None
            return UdpFlow(self._udp, destination)
        stream = self._streams.get(wanted)
        if stream is None:
            log.info("no %s transport for a request to %s:%s", wanted, *destination)
            return None
        try:
            return await stream.connect(destination, server_name)
        except (TimeoutError, OSError, ssl.SSLError) as exc:
            log.info("could not open %s connection to %s:%s: %s", wanted, *destination, exc)
            return None

    def stamp_via(self, request: SipRequest, flow: Flow) -> None:
        branch = generate_branch()
        via = f"SIP/2.0/{flow.transport} {self.sent_by(flow.remote, flow.transport)};branch={branch}"
        request.headers.remove("Via")
        request.headers.add_first("Via", via + (";rport" if flow.transport == "UDP" else ""))

    async def refresh_session(self, session: InviteSession, terms: SessionTimerTerms) -> SipResponse | None:
        """A session-timer refresh (RFC 4028 §7.4): UPDATE when the peer allows it, else re-INVITE."""
        assert session.dialog is not None
        allows_update = "UPDATE" in session.peer_allow
        request = session.dialog.create_request("UPDATE" if allows_update else "INVITE")
        # RFC 4028 §7.4: in our own request, "uac" names us as the refresher (and we go on being it).
        request.headers.add("Session-Expires", f"{terms.interval};refresher=uac")
        request.headers.add("Min-SE", str(self.session_min_se))
        request.headers.add("Supported", SUPPORTED)
        if not allows_update and session.local_sdp:
            # RFC 6337 §5.3: a refresh offers the unchanged session (same o= version).
            request.body = session.local_sdp
            request.headers.set("Content-Type", "application/sdp")
        response = await self.send_in_dialog(session, request)
        if request.method == "INVITE" and response is not None and 200 <= response.status < 300:
            self._ack_2xx(session, request, response)
        return response

    def _ack_2xx(self, session: InviteSession, invite: SipRequest, response: SipResponse) -> None:
        """The UA core's ACK for a 2xx to our re-INVITE (§13.2.2.4): a request of its own."""
        assert session.dialog is not None
        ack = session.dialog.create_request("ACK", cseq=invite.cseq[0])
        if session.on_answer is not None and response.body:
            session.on_answer(response.body)
        self._spawn(self._send_ack(session, ack))

    async def _send_ack(self, session: InviteSession, ack: SipRequest) -> None:
        assert session.dialog is not None
        host, port, transport = session.dialog.next_hop()
        flow = await self.flow_for(ack, (host, port), transport, session.flow)
        if flow is not None:
            self.stamp_via(ack, flow)
            flow.send(ack.to_bytes())

    # -- timers --------------------------------------------------------------------------------

    def arm(self, obj: _Timed, callback: Callable) -> None:
        self.disarm(obj)
        deadline = obj.next_deadline
        if deadline is not None:
            loop = asyncio.get_running_loop()
            self._timers[id(obj)] = loop.call_at(deadline, self._fire, obj, callback)

    def disarm(self, obj: object | None) -> None:
        handle = self._timers.pop(id(obj), None) if obj is not None else None
        if handle is not None:
            handle.cancel()

    def _fire(self, obj: _Timed, callback: Callable) -> None:
        self._timers.pop(id(obj), None)
        callback(obj)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_server_tx_timer(self, tx: ServerTx) -> None:
        flow = self._tx_flows.get(id(tx))
        for message in tx.on_timer(self.now()):
            self._send_response(message, flow)
        if tx.state is State.TERMINATED:
            self._forget_server_tx(tx)
        else:
            self.arm(tx, self._on_server_tx_timer)

    def _forget_server_tx(self, tx: ServerTx) -> None:
        key = transaction_key(tx.request)
        if self._server_txs.get(key) is tx:
            del self._server_txs[key]
        self._tx_flows.pop(id(tx), None)
        self._sessions.pop(key, None)

    def _on_client_tx_timer(self, tx: ClientTx) -> None:
        flow = self._tx_flows.get(id(tx))
        for request in tx.on_timer(self.now()):
            if flow is not None:
                flow.send(request.to_bytes())
        if tx.state is State.TERMINATED:
            self._forget_client_tx(tx)
        else:
            self.arm(tx, self._on_client_tx_timer)

    def _forget_client_tx(self, tx: ClientTx) -> None:
        self.disarm(tx)
        self._tx_observers.pop(id(tx), None)
        self._tx_flows.pop(id(tx), None)
        entry = self._client_txs.pop(tx.key, None)
        if entry is not None and not entry[1].done():
            entry[1].set_result(None)

    # -- dialogs -------------------------------------------------------------------------------

    def register_dialog(self, session: InviteSession) -> None:
        assert session.dialog is not None
        self._dialogs[session.dialog.id] = session

    def unregister_dialog(self, session: InviteSession) -> None:
        if session.dialog is not None and self._dialogs.get(session.dialog.id) is session:
            del self._dialogs[session.dialog.id]

    def _find_dialog(self, request: SipRequest) -> InviteSession | None:
        return self._dialogs.get((request.call_id, request.to.tag or "", request.from_.tag or ""))

    # -- receiving -----------------------------------------------------------------------------

    def datagram_received(self, data: bytes, source: Address) -> None:
        if not data.strip(b"\r\n"):
            return  # keep-alive (RFC 5626 CRLF ping)
        assert self._udp is not None
        verdict = self._gate_verdict(data, source)
        if verdict is not Verdict.DROP:
            self._handle_raw(data, verdict, UdpFlow(self._udp, source))

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
        else:
            self._refuse_unparsed(data, verdict, flow)

    def _refuse_unparsed(self, data: bytes, verdict: Verdict, flow: Flow) -> None:
        """503 with Retry-After to a source over its limit, 403 to a scanner; no transaction kept."""
        try:
            request = parse_message(data)
        except SipParseError:
            return
        if not isinstance(request, SipRequest) or request.method == "ACK":
            return
        stamp_received(request, flow.remote)
        if verdict is Verdict.REJECT:
            assert self.gate is not None and self.gate.limiter is not None
            retry = self.gate.limiter.retry_after
            response = self.refusal(request, 503, warning="too many requests", retry_after=retry)
        else:
            response = self.refusal(request, 403, warning="scanner")
        self._send_stateless(response, flow)

    def _send_stateless(self, response: SipResponse, flow: Flow) -> None:
        """A refusal sent once, with no transaction (RFC 3261 §8.2.7: a request refused before any
        processing, e.g. unauthenticated, may be answered statelessly). A retransmitted request gets
        it again; nothing is retransmitted towards a source that never ACKs, so a spoofed flood is
        not amplified, and nothing is kept."""
        response.headers.set("Server", self.user_agent)
        self._send_response(response, flow)

    def message_received(self, data: bytes, flow: Flow) -> None:
        try:
            message = parse_message(data)
        except SipParseError as exc:
            self.stats["parse_errors"] += 1
            self._answer_unparseable(data, exc, flow)
            return
        if isinstance(message, SipResponse):
            self._response_received(message)
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
            response = make_response(request, exc.status, _reason_phrase(exc))
            response.headers.set("Server", self.user_agent)
            self._send_response(response, flow)
        except (SipParseError, ValueError, IndexError):
            log.debug("no response possible to broken message from %s", flow.remote)

    def _response_received(self, response: SipResponse) -> None:
        self.stats["responses"] += 1
        try:
            key = client_transaction_key(response)
        except (SipParseError, IndexError):
            return
        entry = self._client_txs.get(key)
        if entry is None:
            log.debug("%s %s for %s matches no transaction of ours", response.status, response.reason, key)
            return
        tx, future = entry
        if isinstance(tx, ClientInviteTransaction):
            self._invite_response(tx, future, response)
        elif tx.receive_response(response, self.now()) and not future.done():
            future.set_result(response)
        self.arm(tx, self._on_client_tx_timer)

    def _invite_response(
        self, tx: ClientInviteTransaction, future: asyncio.Future, response: SipResponse
    ) -> None:
        outcome = tx.receive_response(response, self.now())
        flow = self._tx_flows.get(id(tx))
        for request in outcome.to_send:
            if flow is not None:
                flow.send(request.to_bytes())
        passed = outcome.to_tu
        if passed is None:
            return
        if passed.status >= 200 and not future.done():
            future.set_result(passed)
        else:
            observer = self._tx_observers.get(id(tx))
            if observer is not None:
                observer(passed)

    def _request_received(self, request: SipRequest, flow: Flow) -> None:
        stamp_received(request, flow.remote)
        key = transaction_key(request)
        tx = self._server_txs.get(key)
        if tx is not None:
            self._retransmission_or_ack(tx, request, flow)
        elif request.method == "ACK":
            self._ack_received(request, flow)
        elif request.method == "CANCEL":
            self._cancel_received(request, key, flow)
        elif request.to.tag:
            self._in_dialog_request(request, key, flow)
        else:
            self._out_of_dialog_request(request, key, flow)

    def _out_of_dialog_request(self, request: SipRequest, key: tuple, flow: Flow) -> None:
        admitted = self._screened_in(request, flow)
        if admitted is None:
            return
        if request.method == "INVITE" and self._merged.is_merged(request, key, self.now()):
            self._send_stateless(self.refusal(request, 482, warning="merged request: already handled"), flow)
            return
        unsupported = self._unsupported(request)
        if unsupported is not None:
            self._send_stateless(unsupported, flow)
        elif request.method == "INVITE":
            self._new_invite(request, key, flow, admitted.admitted_as)
        elif request.method == "OPTIONS":
            ok = make_response(request, 200, to_tag=stateless_tag(request), extra=_option_headers())
            self._send_stateless(ok, flow)
        elif request.method in ("BYE", "UPDATE", "INFO"):
            self._send_stateless(self.refusal(request, 481, warning="no such call"), flow)
        else:
            self._send_stateless(self.unserved(request), flow)

    def _screened_in(self, request: SipRequest, flow: Flow) -> Screening | None:
        """The application's admission of a new out-of-dialog request; None once refused or ignored."""
        screening = self.screen(request, flow) if self.screen is not None else ADMIT
        if screening.status is None and not screening.drop:
            return screening
        if not screening.drop:
            refusal = self.refusal(
                request, screening.status or 403, warning=screening.warning, extra=list(screening.headers)
            )
            self._send_stateless(refusal, flow)
        return None

    def _stray(self, request: SipRequest, flow: Flow, status: int, warning: str) -> None:
        """A request that names a dialog or transaction it may not act on (none of ours, or not from
        its peer): ``status`` once, statelessly, or nothing at all to a source the application drops
        (a stranger in ``unknown_source_action = "drop"`` mode learns nothing, not even a 481)."""
        self.stats["stray_requests"] += 1
        screening = self.screen_stray(request, flow) if self.screen_stray is not None else ADMIT
        if not screening.drop:
            self._send_stateless(self.refusal(request, status, warning=warning), flow)

    def _from_peer(self, session: InviteSession, flow: Flow) -> bool:
        """Whether a request inside ``session``'s dialog may come from ``flow``'s source: the peer's
        own addresses, or an address of the provider the call belongs to (§12.2.2 matches the tags;
        anyone who learned them could otherwise end or move the call)."""
        source = flow.remote[0]
        if source in session.peer_ips:
            return True
        name = session.admitted_as
        return name is not None and self.provider_source is not None and self.provider_source(name, source)

    def _retransmission_or_ack(self, tx: ServerTx, request: SipRequest, flow: Flow) -> None:
        for message in tx.receive_request(request, self.now()):
            self._send_response(message, self._tx_flows.get(id(tx)))
        self.arm(tx, self._on_server_tx_timer)
        if request.method == "ACK" and isinstance(tx, ServerInviteTransaction) and tx.state is State.ACCEPTED:
            # An RFC 2543 peer's ACK for our 2xx reuses the INVITE's branch: it must still carry our
            # To tag (§13.3.1.4), or anyone who saw (or guessed) the branch could confirm the call.
            self._ack_received(request, flow)

    def _ack_received(self, ack: SipRequest, flow: Flow) -> None:
        """An ACK for a 2xx of ours: it must match the dialog (Call-ID, our To tag, their From tag;
        §17.2.1) and come from its peer. Anything else is dropped (no response to an ACK)."""
        session = self._find_dialog(ack)
        if session is None or not self._from_peer(session, flow):
            self.stats["stray_acks"] += 1
            return
        session.ack_received(ack)

    def _unsupported(self, request: SipRequest) -> SipResponse | None:
        """420 with Unsupported when ``request`` requires extensions we do not have (§8.2.2.3)."""
        required = [opt.strip() for opt in request.headers.get_all("Require") if opt.strip()]
        unsupported = [opt for opt in required if opt.lower() not in SUPPORTED_OPTIONS]
        if not unsupported:
            return None
        return self.refusal(request, 420, extra=[("Unsupported", ", ".join(unsupported))])

    def _new_server_tx(self, request: SipRequest, key: tuple, flow: Flow) -> ServerTx:
        cls = ServerInviteTransaction if request.method == "INVITE" else ServerNonInviteTransaction
        tx = cls(request, self.timers, flow.reliable)
        self._server_txs[key] = tx
        self._tx_flows[id(tx)] = flow
        return tx

    def _reply(self, request: SipRequest, key: tuple, flow: Flow, response: SipResponse) -> None:
        """Answer through a fresh server transaction (which absorbs retransmissions)."""
        self.respond(self._new_server_tx(request, key, flow), response)

    def _cancel_received(self, cancel: SipRequest, key: tuple, flow: Flow) -> None:
        invite_key = invite_key_for_cancel(cancel)
        invite_tx = self._server_txs.get(invite_key)
        if not isinstance(invite_tx, ServerInviteTransaction):
            self._stray(cancel, flow, 481, "no such transaction")
            return
        invite_flow = self._tx_flows.get(id(invite_tx))
        if invite_flow is None or invite_flow.remote[0] != flow.remote[0]:
            # §9.2: a CANCEL goes where its INVITE went, hop by hop: it comes from the same host.
            self._stray(cancel, flow, 403, "CANCEL not from the INVITE's source")
            return
        session = self._sessions.get(invite_key)
        to_tag = session.local_tag if session else generate_tag()
        self._reply(cancel, key, flow, make_response(cancel, 200, to_tag=to_tag))
        if invite_tx.state is State.PROCEEDING and session is not None:
            session.cancel_received()

    def _in_dialog_request(self, request: SipRequest, key: tuple, flow: Flow) -> None:
        session = self._find_dialog(request)
        if session is None:
            self._stray(request, flow, 481, "no such dialog")
            return
        if not self._from_peer(session, flow):
            log.info(
                "%s for call %s from %s refused: not from the call's peer",
                request.method,
                request.call_id[:64],
                flow.remote[0],
                extra=session.log_extra,
            )
            self._stray(request, flow, 403, "not from this call's peer")
            return
        unsupported = self._unsupported(request)
        if unsupported is not None:
            self._reply(request, key, flow, unsupported)
            return
        session.request_received(request, self._new_server_tx(request, key, flow))

    def _new_invite(self, request: SipRequest, key: tuple, flow: Flow, admitted_as: str | None) -> None:
        tx = self._new_server_tx(request, key, flow)
        assert isinstance(tx, ServerInviteTransaction)
        session = InviteSession.incoming(self, tx, flow, admitted_as)
        self._sessions[key] = session
        session.provisional(100)
        refusal = self._invite_refusal(request, session)
        if refusal is not None:
            self.respond(tx, refusal)
            session.ended = True
        elif self.on_invite is None:
            session.reject(503, warning="no call handler")
        else:
            self.on_invite(session)

    def _invite_refusal(self, request: SipRequest, session: InviteSession) -> SipResponse | None:
        """What the core itself refuses in a new INVITE: body type, Accept, session timer terms."""
        tag = session.local_tag
        content_type = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if request.body and content_type != "application/sdp":
            return self.refusal(request, 415, extra=[("Accept", "application/sdp")], tag=tag)
        if not _accepts_sdp(request):
            return self.refusal(
                request, 406, warning="our answer is SDP, which the Accept header excludes", tag=tag
            )
        try:
            session.timer_terms = negotiate(request, self.session_min_se, self.session_expires)
        except SessionTooSmall as exc:
            return self.refusal(request, 422, extra=[("Min-SE", str(exc.min_se))], tag=tag)
        except SipParseError as exc:
            return self.refusal(request, 400, warning=exc.reason, tag=tag)
        return None


def _with_next_cseq(request: SipRequest, session: InviteSession) -> SipRequest:
    """The same in-dialog request again, with the dialog's next CSeq (to answer a challenge)."""
    assert session.dialog is not None
    session.dialog.local_cseq += 1
    headers = request.headers.copy()
    headers.remove("Via")
    headers.set("CSeq", f"{session.dialog.local_cseq} {request.method}")
    return SipRequest(request.method, request.uri, headers, request.body)


def _accepts_sdp(request: SipRequest) -> bool:
    """RFC 3261 §8.2.3: an Accept header, when present, must allow the body type of our answer."""
    if "Accept" not in request.headers:
        return True
    accepted = {value.split(";")[0].strip().lower() for value in request.headers.get_all("Accept")}
    return bool(accepted & {"application/sdp", "application/*", "*/*"}) or accepted == {""}


def _option_headers() -> list[tuple[str, str]]:
    return [("Allow", ALLOW), ("Accept", "application/sdp"), ("Supported", SUPPORTED)]


def stateless_tag(request: SipRequest) -> str:
    """The To tag of a response sent without a transaction: the same for a retransmission of the same
    request (§8.2.7), derived from its branch and Call-ID."""
    branch = (request.via[0].branch or "") if request.via else ""
    return hashlib.sha256(f"{branch}|{request.call_id}".encode()).hexdigest()[:16]


def _reason_phrase(exc: SipParseError) -> str:
    phrase = REASON_PHRASES.get(exc.status, "Bad Request")
    text = " ".join(exc.reason.split())[:120]
    return f"{phrase} ({text})" if text else phrase


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _is_private(ip: str) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return address.is_private or address.is_loopback or address.is_link_local


def _route_source_ip(peer: Address) -> str:
    """The local address the kernel would use to reach ``peer`` (a UDP connect sends nothing)."""
    family = socket.AF_INET6 if ":" in peer[0] else socket.AF_INET
    if not is_ip(peer[0]):  # a name here would be a blocking lookup: callers pass resolved addresses
        return "127.0.0.1" if family == socket.AF_INET else "::1"
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((peer[0], peer[1] or 9))
            return probe.getsockname()[0]
        except OSError:
            return "127.0.0.1" if family == socket.AF_INET else "::1"
