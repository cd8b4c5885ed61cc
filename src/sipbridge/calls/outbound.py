"""The leg of a call we place: dial through a trunk; the media and agent handling are the call's.

States in order: dialing → ringing (a 1xx) → answered → ended. Early media (a 18x with SDP) starts
the RTP exchange and the agent link before the answer, so the agent hears what the far end plays.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .. import logs
from ..media_session.messages import StartSending
from ..sip.digest import Authenticator
from ..sip.invite_client import OutgoingInvite
from ..sip.invite_session import InviteSession
from ..sip.locating import Target
from ..sip.message import SipResponse
from ..sip.sdp import SdpError
from ..sip.useragent import UserAgent
from .call import Address, Call, CallState

if TYPE_CHECKING:
    from ..config import Config

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
    fallbacks: tuple[Target, ...] = ()  # where to try next when no answer comes, or a 503 (RFC 3263)
    server_name: str | None = None  # the host name a TLS trunk's certificate is checked against
    authenticator: Authenticator | None = None
    ring_timeout: float = 30.0
    failover_timeout: float = 4.0  # no response from a server this long: the next fallback
    max_duration: float | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    headers: list[tuple[str, str]] = field(default_factory=list)  # X- and User-to-User, checked
    record: bool | None = None  # record this call (None: as the record settings say)


class OutboundLeg:
    direction = "outbound"

    def __init__(self, ua: UserAgent, target: OutboundTarget) -> None:
        self._ua = ua
        self.target = target
        self._session: InviteSession | None = None
        self._dialer: OutgoingInvite | None = None
        self._agent_task: asyncio.Task[bool] | None = None

    @property
    def session(self) -> InviteSession | None:
        return self._session

    def identify(self, call: Call) -> None:
        target = self.target
        call.provider = target.provider
        call.from_user, call.to_user = target.from_user, target.to
        call.metadata = dict(target.metadata)
        call.headers = dict(target.headers)  # what our INVITE carries
        call.record_asked = target.record
        call.set_state(CallState.DIALING)

    async def establish(self, call: Call) -> None:
        """Dial the target; ANSWERED once the far end answered and the agent's media is up."""
        if not await call.open_media():
            return
        target = self.target
        self._dialer = OutgoingInvite(
            self._ua,
            request_uri=target.request_uri,
            from_uri=target.from_uri,
            to_uri=target.to_uri,
            destination=target.destination,
            transport=target.transport,
            fallbacks=target.fallbacks,
            sdp=call.local_offer(),
            authenticator=target.authenticator,
            on_provisional=lambda response: self._provisional(call, response),
            server_name=target.server_name,
            provider=target.provider,
            extra_headers=list(target.headers),
        )
        call.sip_call_id = self._dialer.call_id
        outcome = await self._dialer.run(target.ring_timeout, target.failover_timeout)
        if call.state is CallState.ENDED:
            if outcome.session is not None:
                await outcome.session.hangup(call.end_reason)
            return
        if outcome.session is None:
            call.mark_ended(outcome.reason)
            return
        session = self._session = outcome.session
        session.log_extra = {"call_id": call.id}
        session.on_bye = lambda: call.finish_soon("far end hung up")
        call.wire_dialog(session)
        if outcome.response is None or not call.take_answer(outcome.response.body or None):
            await call.hangup("no usable SDP answer in the 200 OK")
            return
        if not await self._agent_connected(call):
            return
        call.answered(time.monotonic())
        call.log.info("call %s answered by %s (%s)", call.id, logs.redact_user(target.to), call.codec)

    def _provisional(self, call: Call, response: SipResponse) -> None:
        if call.state is CallState.DIALING:
            call.set_state(CallState.RINGING)
        if response.body and response.status in (180, 183):
            self._early_media(call, response.body)

    def _early_media(self, call: Call, body: bytes) -> None:
        """Early media (a 18x with SDP): RTP and the agent link start before the answer, so the
        agent hears what the far end plays."""
        try:
            answer = call.offer_answer.take_answer(body)
        except SdpError as exc:
            call.log.info("call %s: unusable early-media SDP: %s", call.id, exc)
            return
        call.apply_media(answer)
        self._start_media(call)

    def _start_media(self, call: Call) -> None:
        """RTP both ways and the agent link: from early media on, or from the answer."""
        call.media.start_sending(StartSending())
        if self._agent_task is None:
            self._agent_task = call.spawn(call.connect_agent())

    async def _agent_connected(self, call: Call) -> bool:
        self._start_media(call)
        assert self._agent_task is not None
        if await self._agent_task:
            return True
        await call.hangup("agent unavailable")
        return False

    def reject(self, call: Call, status: int, warning: str, reason: str) -> None:
        """Nothing to answer on an outbound call: a failure ends it (CANCEL or BYE as it stands)."""
        call.log.info("call %s: %s", call.id, warning)
        call.finish_soon(reason)

    async def end_signalling(self, reason: str) -> None:
        if self._session is not None:
            await self._session.hangup(reason)
        elif self._dialer is not None:
            self._dialer.cancel(reason)

    def detach(self) -> None:
        session = self._session
        if session is not None:
            session.on_cancel = session.on_bye = session.on_failed = session.on_dtmf = None
            session.on_offer = session.on_answer = None

    def media_ip(self) -> str:
        return self._ua.transport.media_ip_for(self.target.destination)

    def signalling_source(self) -> Address | None:
        return self.target.destination  # known before the answer (early media)

    def max_duration(self, config: Config) -> float | None:
        return self.target.max_duration or config.max_call_duration or None
