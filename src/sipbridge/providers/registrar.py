"""Keeps a provider registered (RFC 3261 §10): the asyncio driver of a sans-IO ``Registration``.

Sends each REGISTER the state machine hands out through the UA's client transactions, feeds back
the final response (or the timeout), arms its refresh/retry timer, and un-registers at shutdown.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging

from ..sip.locating import Target
from ..sip.message import SipRequest, SipResponse
from ..sip.registration import Registration, RegistrationState
from ..sip.useragent import UserAgent
from .provider import Provider

log = logging.getLogger(__name__)

UNREGISTER_WAIT_S = 3.0


class ProviderRegistration:
    def __init__(self, ua: UserAgent, provider: Provider) -> None:
        self._ua = ua
        self.provider = provider
        self.registration: Registration | None = None
        self._targets: list[Target] = []  # where REGISTERs go, in order (RFC 3263 fail-over)
        self._pending: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        hop = self.provider.next_hop
        try:
            self._targets = await self.provider.targets()
        except Exception as exc:  # a name that does not resolve: shown as the provider's error
            self._report(f"cannot resolve {hop.host}: {exc}")
            return
        self._let_in(self._targets)
        self.registration = self._registration()
        self._send(self.registration.start(self._ua.now()))

    def _registration(self) -> Registration:
        provider, config = self.provider, self.provider.config
        assert self._targets and config.username is not None
        first = self._targets[0]
        local = self._ua.transport.sent_by((first.host, first.port), first.transport)
        return Registration(
            provider.request_uri(),
            f"sip:{config.username}@{config.sip_domain}",
            f"sip:{config.username}@{local}{provider.transport_param}",
            expires=config.register_expires,
            credentials=provider.credentials,
        )

    def _send(self, requests: list[SipRequest]) -> None:
        for request in requests:
            task = asyncio.ensure_future(self._exchange(request))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
        self._rearm()

    def _let_in(self, targets: list[Target]) -> None:
        """The provider's signalling comes from where we register: let its INVITEs in."""
        networks = self.provider.inbound_networks
        for target in targets:
            network = ipaddress.ip_network(target.host)
            if network not in networks:
                networks.append(network)

    async def _exchange(self, request: SipRequest) -> None:
        assert self.registration is not None
        response = await self._send_to_first_answering(request)
        now = self._ua.now()
        if response is None:
            self.registration.timed_out(now, request)
            more: list[SipRequest] = []
        else:
            more = self.registration.receive_response(response, now)
        self._report()
        self._send(more)

    async def _send_to_first_answering(self, request: SipRequest) -> SipResponse | None:
        """RFC 3263 §4.3: the next server when one does not answer, or answers 503."""
        if self.provider.located:  # the DNS answers may have changed (their TTL ran out)
            try:
                self._targets = await self.provider.targets() or self._targets
            except Exception as exc:
                log.info("provider %s: keeps its servers: %s", self.provider.name, exc)
            self._let_in(self._targets)
        response = None
        for target in self._targets:
            response = await self._ua.send_request(request, (target.host, target.port), target.transport)
            if response is not None and response.status != 503:
                break
        return response

    def _rearm(self) -> None:
        if self.registration is not None:
            self._ua.arm(self.registration, self._on_timer)

    def _on_timer(self, registration: Registration) -> None:
        self._send(registration.on_timer(self._ua.now()))

    def _report(self, error: str | None = None) -> None:
        registration = self.registration
        if registration is None:
            self.provider.registration_state, self.provider.last_error = "failed", error
            return
        self.provider.registration_state = registration.state.value
        self.provider.last_error = registration.last_error
        if registration.state is RegistrationState.FAILED:
            log.warning("provider %s: registration failed: %s", self.provider.name, registration.last_error)
        elif registration.state is RegistrationState.REGISTERED:
            log.info("provider %s: registered for %s s", self.provider.name, registration.granted_expires)

    async def stop(self) -> None:
        """Un-register (Expires: 0) and wait briefly for the answer."""
        if self.registration is None:
            return
        self._ua.disarm(self.registration)
        self._send(self.registration.stop(self._ua.now()))
        self._ua.disarm(self.registration)
        if self._pending:
            await asyncio.wait(list(self._pending), timeout=UNREGISTER_WAIT_S)
        self._report()
