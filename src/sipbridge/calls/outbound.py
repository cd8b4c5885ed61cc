"""A call we place: dial through a trunk, then the same media and agent handling as an inbound call.

States in order: dialing → ringing (a 1xx) → answered → ended. Early media (a 18x with SDP) starts
the RTP exchange and the agent link before the answer, so the agent hears what the far end plays.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .. import logs
from ..agent.whip import WhipClient
from ..rtp.clock import FrameClock
from ..rtp.ports import PortAllocator
from ..sip.digest import Authenticator
from ..sip.invite_client import OutgoingInvite
from ..sip.message import SipResponse
from ..sip.sdp import SdpError, negotiate_audio, parse_sdp
from ..sip.useragent import UserAgent
from .call import Call, CallSettings, CallState

log = logging.getLogger(__name__)


@dataclass
class OutboundTarget:
    """Everything needed to dial one number through one trunk (built by a provider)."""

    provider: str
    to: str
    from_user: str
    request_uri: str
    from_uri: str
    to_uri: str
    destination: tuple[str, int]
    transport: str = "UDP"
    server_name: str | None = None  # the host name a TLS trunk's certificate is checked against
    authenticator: Authenticator | None = None
    ring_timeout: float = 30.0
    max_duration: float | None = None
    metadata: dict[str, str] = field(default_factory=dict)


class OutboundCall(Call):
    def __init__(
        self,
        ua: UserAgent,
        target: OutboundTarget,
        settings: CallSettings,
        ports: PortAllocator,
        whip: WhipClient,
        clock: FrameClock,
        on_ended: Callable[[Call], None],
    ) -> None:
        super().__init__(None, settings, ports, whip, clock, on_ended)
        self.log = logs.call_logger(log, self.id)
        self.direction = "outbound"
        self._ua = ua
        self.target = target
        self.provider = target.provider
        self.from_user, self.to_user = target.from_user, target.to
        self.metadata = dict(target.metadata)
        self._dialer: OutgoingInvite | None = None
        self._agent_task: asyncio.Task[bool] | None = None
        self._set_state(CallState.DIALING)

    def _media_ip(self) -> str:
        return self._ua.media_ip_for(self.target.destination)

    def _signalling_source(self) -> tuple[str, int] | None:
        return self.target.destination  # known before the answer (early media)

    async def _end_signalling(self, reason: str) -> None:
        if self.session is not None:
            await self.session.hangup(reason)
        elif self._dialer is not None:
            self._dialer.cancel()

    # -- the outbound flow ---------------------------------------------------------------------

    async def _establish(self) -> None:
        """Dial the target; ANSWERED once the far end answered and the agent's media is up."""
        if not await self._open_rtp():
            return
        target = self.target
        self._dialer = OutgoingInvite(
            self._ua,
            request_uri=target.request_uri,
            from_uri=target.from_uri,
            to_uri=target.to_uri,
            destination=target.destination,
            transport=target.transport,
            sdp=self._local_offer(),
            authenticator=target.authenticator,
            on_provisional=self._provisional,
            server_name=target.server_name,
            provider=target.provider,
        )
        self.sip_call_id = self._dialer.call_id
        outcome = await self._dialer.run(target.ring_timeout)
        if self.state is CallState.ENDED:
            if outcome.session is not None:
                await outcome.session.hangup(self.end_reason)
            return
        if outcome.session is None:
            self._mark_ended(outcome.reason)
            return
        self.session = outcome.session
        self.session.log_extra = {"call_id": self.id}
        self.session.on_bye = lambda: self._finish_soon("far end hung up")
        self._wire_dialog(self.session)
        if outcome.response is None or not self._take_answer(outcome.response.body or None):
            await self.hangup("no usable SDP answer in the 200 OK")
            return
        if not await self._agent_connected():
            return
        self._set_state(CallState.ANSWERED)
        self.answered_at = time.time()
        self._set_up(time.monotonic())
        self.log.info("call %s answered by %s (%s)", self.id, logs.redact_user(target.to), self.codec)

    def _provisional(self, response: SipResponse) -> None:
        if self.state is CallState.DIALING:
            self._set_state(CallState.RINGING)
        if response.body and response.status in (180, 183):
            self._early_media(response.body)

    def _early_media(self, body: bytes) -> None:
        try:
            answer = negotiate_audio(parse_sdp(body))
        except SdpError as exc:
            self.log.info("call %s: unusable early-media SDP: %s", self.id, exc)
            return
        self._apply_media(answer)
        self._start_media()

    def _start_media(self) -> None:
        """RTP both ways and the agent link: from early media on, or from the answer."""
        assert self.rtp is not None
        self.rtp.start_sending(self._clock, self._next_phone_frame)
        if self._agent_task is None:
            self._agent_task = self._spawn(self._connect_agent())

    async def _agent_connected(self) -> bool:
        self._start_media()
        assert self._agent_task is not None
        if await self._agent_task:
            return True
        await self.hangup("agent unavailable")
        return False

    def _reject(self, status: int, warning: str, reason: str) -> None:
        """Nothing to answer on an outbound call: a failure ends it (CANCEL or BYE as it stands)."""
        self.log.info("call %s: %s", self.id, warning)
        self._finish_soon(reason)

    @property
    def max_duration(self) -> float | None:
        return self.target.max_duration or self.settings.max_duration
