"""Assembles the running bridge from the configuration: SIP endpoint, calls, agent link, REST API."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import ssl
from collections.abc import Callable, Iterator

import uvicorn

from .agent.echo import EchoAgentServer
from .agent.ice import loopback_addresses_for, use_host_addresses
from .api.app import create_app
from .calls.manager import CallManager
from .calls.offer_answer import srtp_warnings
from .calls.recording import prepare_recordings_dir
from .calls.records import CallRecords
from .calls.webhooks.sender import WebhookSender
from .config import Config
from .heap import TIDY_INTERVAL_S, settle_heap, tidy_when_idle
from .loop_lag import LoopLag
from .media_session.pool import WorkerPool
from .providers.admission import InboundAdmission
from .providers.provider import Providers
from .providers.registrar import ProviderRegistration
from .rtp.ports import even_ports
from .settings.values import ConfigError
from .sip.gate import DEFAULT_SCANNER_SIGNATURES, RequestGate, SourceLimiter, Verdict, scanner_pattern
from .sip.invite_session import InviteSession
from .sip.locator import ServerLocator
from .sip.stream_limits import ConnectionPolicy
from .sip.transaction import Timers
from .sip.useragent import UserAgent

log = logging.getLogger(__name__)

TIDY_AFTER_MESSAGES = 1000  # SIP messages (to no call) worth a tidy once the bridge is idle


class _ApiServer(uvicorn.Server):
    """uvicorn without signal handling of its own: SIGTERM is the bridge's, which drains first.

    (Its own handlers would stop the API at the first SIGTERM, then raise the signal again once
    stopped, which the bridge would take for a second one.)
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Bridge:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.agent_server: EchoAgentServer | None = None
        self.media: WorkerPool | None = None
        self.ua: UserAgent | None = None
        self.manager: CallManager | None = None
        self.webhooks: WebhookSender | None = None
        self.providers = Providers(())
        self.admission: InboundAdmission | None = None
        self.registrations: list[ProviderRegistration] = []
        self._api: uvicorn.Server | None = None
        self._api_task: asyncio.Task | None = None
        self.loop_lag = LoopLag()
        self._tidy_task: asyncio.Task | None = None

    async def start(self) -> None:
        config = self.config
        endpoint = config.agent or self._embedded_agent_url()
        use_host_addresses(config.ice_host_addresses or loopback_addresses_for(endpoint))
        if config.agent is None:
            endpoint = await self._start_embedded_agent()
        records = _call_records(config)  # configuration errors first, before any process starts
        _recordings_dir(config)
        for warning in srtp_warnings(config):
            log.warning("%s", warning)
        self.media = WorkerPool(config, endpoint, worker_count(config))
        await self.media.start()
        if config.webhook_url:
            self.webhooks = WebhookSender(config.webhook_url, config.webhook_secret)
            await self.webhooks.start()
        on_event = self.webhooks.call_event if self.webhooks is not None else None
        self.manager = CallManager(config, self.media, records=records, on_event=on_event)
        locator = ServerLocator([(server.host, server.port) for server in config.dns_servers])
        self.providers = Providers(config.providers, locator)
        self.manager.transfer_check = self.providers.transfer_check
        self.admission = InboundAdmission(
            self.providers,
            config.auth_realm,
            config.unknown_source_action,
            algorithms=config.auth_algorithms,
        )
        timers = Timers(t1=config.sip_t1_ms / 1000, t2=config.sip_t2_ms / 1000, t4=config.sip_t4_ms / 1000)
        tls_server = server_tls_context(config)
        self.ua = UserAgent(
            timers=timers,
            public_ip=config.public_ip,
            media_public_ip=config.media_public_ip,
            user_agent=config.user_agent,
            on_invite=self._incoming,
            session_min_se=config.session_min_se,
            session_expires=config.session_expires,
            tls_server=tls_server,
            tls_client=client_tls_context(config),
            gate=request_gate(config, self.admission.trusted),
            screen=self.admission.screen,
            screen_stray=self.admission.screen_stray,
            provider_source=self.admission.from_provider,
        )
        await self.ua.start(
            config.sip_listen.host,
            config.sip_listen.port,
            tcp=config.sip_tcp,
            tls_port=config.sip_tls_port if tls_server is not None else None,
            connections=connection_policy(config, self.admission.trusted),
        )
        self.registrations = [ProviderRegistration(self.ua, p) for p in self.providers if p.config.register]
        for registration in self.registrations:
            await registration.start()
        self.loop_lag.start()
        await self._start_api()
        self._tidy_task = asyncio.get_running_loop().create_task(self._tidy_when_idle(), name="tidy-heap")
        log.info(
            "sipbridge ready: SIP %s on %s (TLS port %s), REST http://%s, RTP ports %s in %d media"
            " worker(s), agent %s",
            "/".join(self.ua.transport.transports),
            config.sip_listen,
            self.ua.transport.listen_port("TLS") if "TLS" in self.ua.transport.transports else "off",
            config.api_listen,
            config.rtp_ports,
            len(self.media.workers),
            endpoint if config.agent else f"{endpoint} (embedded echo agent)",
        )

    def _incoming(self, session: InviteSession) -> None:
        """An INVITE the admission let in (``InboundAdmission.screen``) becomes a call."""
        assert self.manager is not None
        self.manager.handle_invite(session)

    async def _tidy_when_idle(self) -> None:
        """Give back what the last calls left (see heap.py); their transactions hold it 64·T1."""
        assert self.manager is not None
        manager = self.manager
        window = 64 * self.config.sip_t1_ms / 1000 + 2 * TIDY_INTERVAL_S
        await tidy_when_idle(window, lambda: len(manager.active), self._work_done)

    def _work_done(self) -> int:
        """What the heap may hold garbage of: calls, and SIP messages in batches (a flood)."""
        assert self.manager is not None
        messages = self.ua.stats["received"] if self.ua is not None else 0
        return self.manager.total_calls + messages // TIDY_AFTER_MESSAGES

    def _embedded_agent_url(self) -> str:
        return f"http://{self.config.embedded_agent_listen}/whip"

    async def _start_embedded_agent(self) -> str:
        listen = self.config.embedded_agent_listen
        self.agent_server = EchoAgentServer(listen.host, listen.port, mode="echo")
        await self.agent_server.start()
        return self.agent_server.url

    async def _start_api(self) -> None:
        assert self.manager is not None
        listen = self.config.api_listen
        app = create_app(
            self.manager,
            self.providers,
            self.ua,
            self.config.api_keys,
            self.config.degraded_load,
            self.loop_lag,
            self.admission,
        )
        uv_config = uvicorn.Config(
            app,
            host=listen.host,
            port=listen.port,
            log_level="warning",
            log_config=None,  # its lines go through our handler: our format, redacted
            lifespan="off",
            access_log=False,
        )
        self._api = _ApiServer(uv_config)
        self._api_task = asyncio.get_running_loop().create_task(self._api.serve())
        while not self._api.started:
            if self._api_task.done():
                self._api_task.result()
                raise OSError(f"REST API could not listen on {listen}")
            await asyncio.sleep(0.01)

    async def drain(self, hurry: asyncio.Event) -> None:
        """Refuse new calls, withdraw registrations, and let running calls end by themselves for up to
        ``drain_grace`` seconds (or until ``hurry`` is set: a second SIGTERM or SIGINT)."""
        if self.manager is None:
            return
        grace = self.config.drain_grace
        self.manager.start_draining(retry_after=max(1, math.ceil(grace)))
        active = len(self.manager.active)
        log.info(
            "draining: new calls refused, %d call(s) running; waiting up to %g s for them to end"
            " (signal again to end them now)",
            active,
            grace,
        )
        await self._withdraw_registrations()
        if active and not await self.manager.drained(grace, hurry):
            log.info("drain over: ending %d call(s) with BYE", len(self.manager.active))

    async def _withdraw_registrations(self) -> None:
        registrations, self.registrations = self.registrations, []
        await asyncio.gather(*(r.stop() for r in registrations), return_exceptions=True)

    async def stop(self) -> None:
        if self._tidy_task is not None:
            self._tidy_task.cancel()
        if self.manager is not None:
            await self.manager.shutdown()
        if self.webhooks is not None:  # the calls' last events (ended) go out first, briefly
            await self.webhooks.stop()
        if self._api is not None and self._api_task is not None:
            self._api.should_exit = True
            await asyncio.gather(self._api_task, return_exceptions=True)
        await self._withdraw_registrations()
        if self.ua is not None:
            self.ua.close()
        if self.media is not None:
            await self.media.stop()
        if self.agent_server is not None:
            await self.agent_server.stop()
        await self.loop_lag.stop()


def worker_count(config: Config) -> int:
    """``workers``, or for ``auto`` one per CPU this process may use, at most one per two RTP ports."""
    pairs = max(1, len(even_ports(config.rtp_ports.low, config.rtp_ports.high)))
    if config.workers > pairs:
        raise ConfigError(f"workers: {config.workers} workers need at least {config.workers} even RTP ports")
    return config.workers or max(1, min(len(os.sched_getaffinity(0)), pairs))


def _call_records(config: Config) -> CallRecords:
    try:
        return CallRecords(config.call_records, redact=config.log_redact)
    except OSError as exc:
        raise ConfigError(f"call_records: cannot append to {config.call_records!r}: {exc.strerror}") from None


def _recordings_dir(config: Config) -> None:
    if config.recordings_dir is None:
        return
    try:
        prepare_recordings_dir(config.recordings_dir)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(f"recordings_dir: cannot write to {config.recordings_dir!r}: {reason}") from None


def request_gate(config: Config, trusted: Callable[[str], bool]) -> RequestGate | None:
    """The per-source rate limit and the scanner filter, as configured (None: neither)."""
    limiter = None
    if config.sip_rate_limit > 0:
        limiter = SourceLimiter(
            config.sip_rate_limit, config.sip_rate_burst, max_sources=config.sip_rate_sources
        )
    scanners = None
    if config.scanner_action != "allow":
        scanners = scanner_pattern(config.scanner_signatures or DEFAULT_SCANNER_SIGNATURES)
    if limiter is None and scanners is None:
        return None
    verdict = Verdict.DROP if config.scanner_action == "drop" else Verdict.FORBID
    return RequestGate(limiter, scanners, trusted, verdict)


def connection_policy(config: Config, trusted: Callable[[str], bool]) -> ConnectionPolicy:
    """Caps and deadlines of the TCP/TLS connections we accept; ``trusted`` names trunks' addresses."""
    return ConnectionPolicy(
        max_connections=config.sip_max_connections,
        max_per_source=config.sip_max_connections_per_source,
        trunk_reserve=config.sip_trunk_connections,
        handshake_timeout=config.sip_tls_handshake_timeout,
        first_message_timeout=config.sip_first_message_timeout,
        trusted=trusted,
    )


def server_tls_context(config: Config) -> ssl.SSLContext | None:
    """The TLS listener's context, from the configured certificate chain and key."""
    if config.tls_cert_file is None or config.tls_key_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(config.tls_cert_file, config.tls_key_file)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"tls_cert_file/tls_key_file: cannot load: {exc}") from None
    return context


def client_tls_context(config: Config) -> ssl.SSLContext:
    """For connections we open: the peer's certificate is verified unless tls_verify is off."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=config.tls_ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if not config.tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


async def serve(config: Config) -> None:
    """Run the bridge until SIGINT or SIGTERM; then drain (a second signal ends the drain) and stop."""
    bridge = Bridge(config)
    stop, hurry = asyncio.Event(), asyncio.Event()

    def signalled() -> None:
        (hurry if stop.is_set() else stop).set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, signalled)
    try:
        await bridge.start()
        settle_heap()
        await stop.wait()
        log.info("shutting down")
        await bridge.drain(hurry)
    finally:
        await bridge.stop()
