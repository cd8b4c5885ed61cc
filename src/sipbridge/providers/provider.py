"""Trunk profiles (asterisk, twilio, ringcentral, generic): where outbound INVITEs go, with what
credentials, to which numbers and how often; and which sources may send inbound calls.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..calls.outbound import OutboundTarget
from ..settings.provider import ProviderConfig
from ..settings.values import HostPort
from ..sip.digest import DigestCredentials, DigestError, DigestSession
from ..sip.locating import Target
from ..sip.locator import ServerLocator
from ..sip.message import SipRequest, SipResponse
from ..sip.refer import on_peer_host, target_host
from ..sip.resolver import is_ip
from .policy import DEFAULT_COUNTRY, DEFAULT_DESTINATIONS, AttemptLimiter, DestinationPolicy, Refused
from .twilio_ranges import TWILIO_SIGNALLING_CIDRS


class DigestAuthenticator:
    """Answers 401/407 for one outbound call with a provider's credentials."""

    def __init__(self, credentials: DigestCredentials) -> None:
        self._session = DigestSession(credentials)

    def authorize(self, request: SipRequest, challenge: SipResponse) -> bool:
        try:
            self._session.on_challenge(challenge)
        except DigestError:
            return False
        for name, value in self._session.authorization_headers(request.method, request.uri, request.body):
            request.headers.set(name, value)
        return True


@dataclass
class DialRequest:
    to: str
    from_user: str | None = None
    ring_timeout: float | None = None
    max_duration: float | None = None
    metadata: dict[str, str] | None = None
    headers: tuple[tuple[str, str], ...] = ()  # more headers for the INVITE (checked by the API)
    record: bool | None = None


class Provider:
    def __init__(self, config: ProviderConfig, locator: ServerLocator | None = None) -> None:
        self.config = config
        self.name = config.name
        self.locator = locator or ServerLocator()
        patterns = config.destinations or DEFAULT_DESTINATIONS[config.type]
        self.country = config.country or DEFAULT_COUNTRY[config.type]
        self.policy = DestinationPolicy(patterns, config.allow_premium, self.country)
        self.limiter = AttemptLimiter(config.max_attempts_per_minute)
        cidrs = config.inbound_cidrs or (TWILIO_SIGNALLING_CIDRS if config.type == "twilio" else ())
        self.inbound_networks = [ipaddress.ip_network(cidr) for cidr in cidrs]
        self.registration_state = "registering" if config.register else "not registering"
        self.last_error: str | None = None
        self.calls_placed = 0  # outbound calls whose INVITE could be sent (their destination resolved)
        self.calls_refused = 0  # outbound calls refused by admit() (policy, cap, attempt rate)

    # -- outbound ------------------------------------------------------------------------------

    def admit(self, to: str, outbound_active: int, now: float | None = None) -> str:
        """The number to dial (E.164, or an extension) if a call to it may start now; raises Refused
        (403/422/429). ``outbound_active`` counts this provider's calls up and slots held for calls
        being placed: the caller takes its own slot before anything awaits."""
        try:
            number = self.policy.check(to)
            if outbound_active >= self.config.max_outbound_calls:
                raise Refused(429, f"provider {self.name} has {outbound_active} outbound calls up (the cap)")
            moment = time.monotonic() if now is None else now
            if not self.limiter.allow(moment):
                limit = self.config.max_attempts_per_minute
                raise Refused(429, f"provider {self.name}: more than {limit} call attempts in a minute")
        except Refused:
            self.calls_refused += 1
            raise
        return number

    async def target(self, number: str, dial: DialRequest) -> OutboundTarget:
        """Where and how to send the INVITE for ``number`` (DNS resolved here, off the hot path)."""
        config = self.config
        domain = config.sip_domain
        hop = self.next_hop
        from_user = dial.from_user or config.caller_id
        credentials = self.credentials
        first, *fallbacks = await self.targets()
        # Counted once the destination resolved: a DNS failure (502) places no call.
        self.calls_placed += 1
        return OutboundTarget(
            provider=self.name,
            to=number,
            from_user=from_user,
            request_uri=self.request_uri(number),
            from_uri=f"sip:{from_user}@{domain}",
            to_uri=f"sip:{number}@{domain}",
            destination=(first.host, first.port),
            transport=first.transport,
            fallbacks=tuple(fallbacks),
            server_name=hop.host,
            authenticator=DigestAuthenticator(credentials) if credentials is not None else None,
            ring_timeout=dial.ring_timeout or config.ring_timeout,
            failover_timeout=config.failover_timeout,
            max_duration=dial.max_duration,
            metadata=dict(dial.metadata or {}),
            headers=list(dial.headers),
            record=dial.record,
        )

    async def targets(self) -> list[Target]:
        """Where requests to this provider go, in the order to try them: the next hop as configured,
        or, for a domain without a port, the servers its DNS records name (RFC 3263). Refused
        (502) when nothing is found."""
        hop, config = self.next_hop, self.config
        if not self.located:
            return [Target(await resolve(hop.host), hop.port, config.transport.upper())]
        found = await self.locator.locate(hop.host, config.transport if config.transport_set else None)
        if not found:
            raise Refused(502, f"cannot resolve {hop.host}: no NAPTR, SRV or address records")
        return found

    @property
    def located(self) -> bool:
        """Whether the next hop is a domain named without a port (located through DNS records)."""
        hop = self.next_hop
        return not hop.port_given and hop.host != "localhost" and not is_ip(hop.host)

    @property
    def next_hop(self) -> HostPort:
        """Where our requests to this provider are sent: the outbound proxy, else its address."""
        return self.config.outbound_proxy or self.config.address

    def request_uri(self, user: str | None = None) -> str:
        """sip:[user@]domain[:port][;transport=...]: the port only when the domain is the address and
        names one (a port in the URI would tell the far end's proxies not to use SRV, RFC 3263)."""
        config = self.config
        address = config.address
        bare = config.domain or address.port == 5060 or not address.port_given
        port = "" if bare else f":{address.port}"
        return f"sip:{user + '@' if user else ''}{config.sip_domain}{port}{self.transport_param}"

    @property
    def transport_param(self) -> str:
        transport = self.config.transport.lower()
        return "" if transport == "udp" else f";transport={transport}"

    @property
    def credentials(self) -> DigestCredentials | None:
        """Digest credentials (the authorization id when it differs from the user), if configured."""
        config = self.config
        if not config.username or config.password is None:
            return None
        return DigestCredentials(config.auth_username or config.username, config.password)

    # -- inbound -------------------------------------------------------------------------------

    def accepts_source(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.inbound_networks)

    # -- view ----------------------------------------------------------------------------------

    @property
    def status(self) -> str:
        return self.registration_state if self.config.register else "ready"

    def to_dict(self) -> dict[str, Any]:
        """What GET /providers shows: never a password or a credential."""
        config = self.config
        return {
            "name": self.name,
            "type": config.type,
            "address": str(config.address),
            "transport": config.transport,
            "status": self.status,
            "last_error": self.last_error,
            "register": config.register,
            "country": self.country,
            "destinations": list(self.policy.patterns),
            "allow_premium": config.allow_premium,
            "max_outbound_calls": config.max_outbound_calls,
            "max_attempts_per_minute": config.max_attempts_per_minute,
            "inbound_cidrs": [str(network) for network in self.inbound_networks],
            "calls_placed": self.calls_placed,
            "calls_refused": self.calls_refused,
        }


async def resolve(host: str) -> str:
    """An IP address for ``host`` (a literal is returned as it is)."""
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, None, type=socket.SOCK_DGRAM)
    except OSError as exc:
        raise Refused(502, f"cannot resolve {host}: {exc}") from None
    return str(infos[0][4][0])


class Providers:
    """All configured providers by name."""

    def __init__(self, configs: tuple[ProviderConfig, ...], locator: ServerLocator | None = None) -> None:
        locator = locator or ServerLocator()  # one DNS cache for all
        self.by_name = {config.name: Provider(config, locator) for config in configs}

    def get(self, name: str) -> Provider | None:
        return self.by_name.get(name)

    def __iter__(self) -> Iterator[Provider]:
        return iter(self.by_name.values())

    @property
    def restricts_inbound(self) -> bool:
        """Once any provider names inbound sources, INVITEs from anywhere else are refused."""
        return any(provider.inbound_networks for provider in self)

    def transfer_check(self, call: Any, to: str) -> str | None:
        """May ``call`` be transferred to ``to``? A number must pass the call's provider's dialling
        policy (``destinations``, premium and international rules) like any ``POST /calls``; a SIP
        URI must name the host the call's phone side is on (the PBX or trunk itself), no other.
        The refusal's reason, or None."""
        if target_host(to) is not None:
            session = call.session
            peer = session.dialog.remote_target if session is not None and session.dialog else ""
            if on_peer_host(to, peer):
                return None
            return f"transfer to {to[:80]}: a SIP URI must name the call's own peer host"
        provider = self.get(call.provider) if call.provider else None
        if provider is None:
            return "transfer to a number needs the call's provider (its destinations) to check it"
        try:
            provider.policy.check(to)
        except Refused as exc:
            return f"transfer refused: {exc.reason}"
        return None

    def inbound_provider(self, address: str) -> Provider | None:
        return next((provider for provider in self if provider.accepts_source(address)), None)
