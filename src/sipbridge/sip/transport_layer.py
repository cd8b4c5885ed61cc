"""The transport layer (RFC 3261 §18): the UDP socket and the TCP/TLS listeners of one UA, which
connection a message goes over, and which of our addresses a peer is told.

It sends what it is given and hands up what arrives (bytes and the flow they came on); it decides
nothing about SIP beyond §18: where a response goes (§18.2.2), when a request is too big for UDP
(§18.1.1), and the Via and Contact that name us.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import ssl
from collections import Counter, OrderedDict
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from .. import metrics
from .message import SipRequest, SipResponse, generate_branch
from .resolver import ResolveError, Resolver, is_ip
from .routing import Address, response_destination
from .stream_limits import AcceptBudget, ConnectionPolicy
from .transport import DEFAULT_PORTS, UDP_SIZE_LIMIT, Flow, UdpFlow
from .transport_stream import StreamConnection, StreamTransport
from .transport_udp import UdpTransport

log = logging.getLogger(__name__)

MAX_LOCAL_IPS = 1024  # peers whose route we remember (the kernel's choice of our source address)
_FAILED_CONNECT = (TimeoutError, OSError, ssl.SSLError)


class DatagramEndpoint(Protocol):
    """What the transport layer needs of a UDP socket."""

    @property
    def local_address(self) -> Address: ...

    def send(self, data: bytes, addr: Address) -> None: ...

    def close(self) -> None: ...


class TransportLayer:
    """One UDP socket and, when configured, TCP and TLS listeners on the same host."""

    def __init__(
        self,
        *,
        on_datagram: Callable[[bytes, Address], None],
        on_stream_message: Callable[[bytes, StreamConnection], None],
        stats: Counter[str],
        public_ip: str | None = None,
        media_public_ip: str | None = None,
        user: str = "sipbridge",
        tls_server: ssl.SSLContext | None = None,
        tls_client: ssl.SSLContext | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        self.public_ip = public_ip
        self.media_public_ip = media_public_ip
        self.user = user  # the user part of our Contact
        self.resolver = resolver or Resolver()
        self._on_datagram = on_datagram
        self._on_stream_message = on_stream_message
        self._stats = stats
        self._tls_server = tls_server
        self._tls_client = tls_client
        self._udp: DatagramEndpoint | None = None
        self._streams: dict[str, StreamTransport] = {}
        self._local_ips: OrderedDict[str, str] = OrderedDict()  # by peer address, bounded
        self._tasks: set[asyncio.Task] = set()

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(
        self, host: str, port: int, tcp: bool, tls_port: int | None, connections: ConnectionPolicy | None
    ) -> None:
        """Listen on UDP ``port`` (and TCP on the same port); TLS on ``tls_port`` if given.

        Port 0 picks a port free for both UDP and TCP. ``connections``: the caps and deadlines of
        accepted TCP and TLS connections (one budget for both).
        """
        budget = AcceptBudget(connections or ConnectionPolicy())
        for attempt in range(1 if port else 20):
            udp = self._udp = await UdpTransport.open(host, port, self._on_datagram)
            if not tcp:
                break
            try:
                await self._listen("TCP", host, udp.local_address[1], budget)
                break
            except OSError:
                udp.close()
                if port or attempt == 19:
                    raise
        if tls_port is not None:
            if self._tls_server is None:
                raise ValueError("TLS listener needs a certificate and key")
            await self._listen("TLS", host, tls_port, budget)
        elif self._tls_client is not None:  # outbound TLS (a trunk on 5061) without a listener of ours
            self._streams["TLS"] = StreamTransport(
                "TLS", self._on_stream_message, None, self._tls_client, budget
            )

    async def _listen(self, protocol: str, host: str, port: int, budget: AcceptBudget) -> None:
        server_ssl = self._tls_server if protocol == "TLS" else None
        stream = StreamTransport(protocol, self._on_stream_message, server_ssl, self._tls_client, budget)
        await stream.listen(host, port)
        self._streams[protocol] = stream

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._udp is not None:
            self._udp.close()
        for stream in self._streams.values():
            stream.close()
        self.resolver.close()

    def use_datagram_sender(self, sender: DatagramEndpoint) -> None:
        self._udp = sender

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

    def udp_flow(self, remote: Address) -> UdpFlow:
        assert self._udp is not None
        return UdpFlow(self._udp, remote)

    # -- our addresses -------------------------------------------------------------------------

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

    def contact_toward(self, destination: Address, transport: str = "UDP") -> str:
        """Our Contact for a request we are about to send to ``destination``."""
        param = "" if transport == "UDP" else f";transport={transport.lower()}"
        return f"<sip:{self.user}@{self.sent_by(destination, transport)}{param}>"

    def stamp_via(self, request: SipRequest, flow: Flow) -> None:
        """Our Via with a fresh branch on top of ``request`` (§8.1.1.7), rport asked over UDP."""
        branch = generate_branch()
        via = f"SIP/2.0/{flow.transport} {self.sent_by(flow.remote, flow.transport)};branch={branch}"
        request.headers.remove("Via")
        request.headers.add_first("Via", via + (";rport" if flow.transport == "UDP" else ""))

    # -- sending -------------------------------------------------------------------------------

    def send_response(self, response: SipResponse, flow: Flow | None) -> None:
        """§18.2.2: over the connection the request came on; UDP to received/rport.

        Never to anyone but the request's source: ``maddr`` is ignored, and when the connection has
        closed a new one goes to the source address (at the Via's port), not to the Via's host.
        """
        self._stats["responses"] += 1
        metrics.sip_response_sent(response.status)
        data = response.to_bytes()
        via = response.via[0]
        if "maddr" in via.params:
            self._stats["maddr_ignored"] += 1
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
        except _FAILED_CONNECT as exc:
            log.info("could not open %s connection to %s:%s for a response: %s", transport, *remote, exc)
            return
        connection.send(data)

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
            return self.udp_flow(destination)
        stream = self._streams.get(wanted)
        if stream is None:
            log.info("no %s transport for a request to %s:%s", wanted, *destination)
            return None
        try:
            return await stream.connect(destination, server_name)
        except _FAILED_CONNECT as exc:
            log.info("could not open %s connection to %s:%s: %s", wanted, *destination, exc)
            return None

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


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
