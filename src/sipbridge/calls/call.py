"""One phone call: its SIP session, RTP stream, transcoders and agent link, from INVITE to hang-up."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np

from ..agent.link import AgentLink
from ..agent.whip import AgentUnavailable, WhipClient
from ..media.g711 import SILENCE
from ..media.pipeline import AgentToPhone, PhoneToAgent
from ..rtp.clock import FrameClock
from ..rtp.ports import NoFreePort, PortAllocator
from ..rtp.session import RtpSession
from ..sip.sdp import (
    AudioAnswer,
    NoCommonCodec,
    SdpError,
    SessionDescription,
    build_answer,
    negotiate_audio,
    parse_sdp,
)
from ..sip.useragent import InviteSession

log = logging.getLogger(__name__)


class CallState(StrEnum):
    RINGING = "ringing"
    CONNECTING = "connecting"
    ANSWERED = "answered"
    ENDED = "ended"


@dataclass(frozen=True)
class CallSettings:
    rtp_host: str
    agent_timeout: float
    ice_servers: tuple[str, ...]
    opus_bitrate: int
    opus_application: str
    opus_pcm_rate: int = 8000
    opus_complexity: int | None = None
    opus_fec: bool = False


class Call:
    def __init__(
        self,
        session: InviteSession,
        settings: CallSettings,
        ports: PortAllocator,
        whip: WhipClient,
        clock: FrameClock,
        on_ended: Callable[[Call], None],
    ) -> None:
        self.id = secrets.token_hex(8)
        self.direction = "inbound"
        self.session = session
        self.settings = settings
        self._ports = ports
        self._whip = whip
        self._clock = clock
        self._on_ended = on_ended
        request = session.request
        self.sip_call_id = request.call_id
        self.from_user = request.from_.uri.user or request.from_.uri.host
        self.from_display = request.from_.display
        self.to_user = request.to.uri.user or request.to.uri.host
        self.state = CallState.RINGING
        self.started_at = time.time()
        self.answered_at: float | None = None
        self.ended_at: float | None = None
        self.end_reason: str | None = None
        self.codec: str | None = None
        self.events: list[dict[str, Any]] = []
        self.rtp: RtpSession | None = None
        self.rtp_port: int | None = None
        self._local_port: int | None = None
        self.link: AgentLink | None = None
        self._uplink: PhoneToAgent | None = None
        self._downlink: AgentToPhone | None = None
        self._silence = b""
        self._ended = asyncio.Event()
        # Wired before the first await: a CANCEL may answer our 100 Trying before run() starts.
        session.on_cancel = lambda: self._finish_soon("caller cancelled")
        session.on_bye = lambda: self._finish_soon("caller hung up")

    # -- the inbound flow ----------------------------------------------------------------------

    async def run(self) -> None:
        """The call from INVITE to its end; whatever way it ends, its port and agent link are freed."""
        try:
            await self._answer()
            if self.state is CallState.ANSWERED:
                await self._ended.wait()
        except asyncio.CancelledError:
            await self.hangup("bridge shutting down")
            raise
        except Exception:
            log.exception("call %s failed", self.id)
            await self.hangup("internal error")
        finally:
            await self._release_media()

    async def _answer(self) -> None:
        if self.session.cancelled:
            return
        offer, answer = self._negotiate()
        if answer is None or offer is None:
            return
        if not await self._open_rtp(answer) or self.end_reason is not None:
            return
        self.session.provisional(180)
        self.state = CallState.CONNECTING
        if not await self._connect_agent():
            return
        if self.session.cancelled:
            await self.hangup("caller cancelled")
            return
        await self._accept(offer, answer)

    def _negotiate(self) -> tuple[SessionDescription | None, AudioAnswer | None]:
        body = self.session.request.body
        if not body:
            self._reject(488, "INVITE without an SDP offer is not supported yet", "no SDP offer")
            return None, None
        try:
            offer = parse_sdp(body)
            answer = negotiate_audio(offer)
        except NoCommonCodec as exc:
            self._reject(488, str(exc), "codec mismatch")
            return None, None
        except SdpError as exc:
            self._reject(400, f"bad SDP: {exc}", "bad SDP")
            return None, None
        self.codec = answer.codec
        return offer, answer

    async def _open_rtp(self, answer: AudioAnswer) -> bool:
        settings = self.settings
        self._uplink = PhoneToAgent(
            answer.codec,
            settings.opus_bitrate,
            settings.opus_application,
            opus_fec=settings.opus_fec,
            opus_rate=settings.opus_pcm_rate,
            opus_complexity=settings.opus_complexity,
        )
        self._downlink = AgentToPhone(answer.codec, pcm_rate=settings.opus_pcm_rate)
        self._silence = bytes([SILENCE[answer.codec]]) * 160
        try:
            rtp, port = await self._ports.open(
                self.settings.rtp_host, lambda: RtpSession(on_payload=self._phone_audio)
            )
        except NoFreePort as exc:
            self._reject(503, str(exc), "no free RTP port")
            return False
        self.rtp, self.rtp_port, self._local_port = rtp, port, port
        rtp.configure(answer.payload_type, answer.dtmf_payload_type, answer.remote_addr)
        return True

    async def _connect_agent(self) -> bool:
        self.link = AgentLink(
            self._whip,
            resource_id=self.from_user,
            direction=self.direction,
            ice_servers=list(self.settings.ice_servers),
            on_audio=self._agent_audio,
            on_event=self._agent_event,
            on_closed=lambda reason: self._finish_soon(f"agent ended the call: {reason}"),
            audio_rate=self.settings.opus_pcm_rate,
        )
        deadline = asyncio.get_running_loop().time() + self.settings.agent_timeout
        try:
            await self.link.connect(self.settings.agent_timeout)
            # Answer only once media can flow: a WHIP answer alone does not prove the agent hears us.
            await self.link.wait_connected(max(0.0, deadline - asyncio.get_running_loop().time()))
        except AgentUnavailable as exc:
            if self.end_reason is not None:
                return False  # the caller went away while we were dialling the agent
            log.warning("call %s: agent unavailable: %s", self.id, exc.reason)
            self._reject(503, f"agent unavailable: {exc.reason}", "agent unavailable")
            return False
        return True

    async def _accept(self, offer: SessionDescription, answer: AudioAnswer) -> None:
        assert self.rtp is not None and self.rtp_port is not None
        sdp = build_answer(
            offer,
            answer,
            local_ip=self.session.local_ip,
            local_port=self.rtp_port,
            session_id=int(time.time() * 1000),
        )
        self.rtp.start_sending(self._clock, self._next_phone_frame)
        acked = await self.session.accept(sdp)
        if self._ended.is_set():
            return
        if not acked:
            await self.hangup("no ACK for 200 OK")
            return
        self.state = CallState.ANSWERED
        self.answered_at = time.time()
        log.info("call %s answered (%s from %s)", self.id, self.codec, self.from_user)

    # -- media ---------------------------------------------------------------------------------

    def _phone_audio(self, payload: bytes) -> None:
        if self._uplink is None or self.link is None:
            return
        for packet in self._uplink.push(payload):
            self.link.send_opus(packet)

    def _agent_audio(self, pcm: np.ndarray) -> None:
        if self._downlink is not None:
            self._downlink.push_pcm(pcm)

    def _next_phone_frame(self) -> bytes:
        frame = self._downlink.pop_frame() if self._downlink is not None else None
        return frame if frame is not None else self._silence

    def _agent_event(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        del self.events[:-200]

    # -- ending --------------------------------------------------------------------------------

    def _reject(self, status: int, warning: str, reason: str) -> None:
        log.info("call %s rejected with %d: %s", self.id, status, warning)
        self.session.reject(status, warning=warning)
        self._mark_ended(reason)

    def _finish_soon(self, reason: str) -> None:
        asyncio.get_running_loop().create_task(self.hangup(reason))

    async def hangup(self, reason: str) -> None:
        """End the call (BYE or final response as the dialog state requires) and free everything."""
        if self.end_reason is not None:
            return
        self.end_reason = reason
        log.info("call %s ending: %s", self.id, reason)
        await asyncio.gather(self.session.hangup(), self._release_media(), return_exceptions=True)
        self._mark_ended(reason)

    async def _release_media(self) -> None:
        if self.rtp is not None:
            self.rtp.close()
        if self.rtp_port is not None:
            self._ports.release(self.rtp_port)
            self.rtp_port = None
        if self.link is not None:
            await self.link.close()

    def _mark_ended(self, reason: str) -> None:
        if self.state is CallState.ENDED:
            return
        self.end_reason = self.end_reason or reason
        self.state = CallState.ENDED
        self.ended_at = time.time()
        self._ended.set()
        self._on_ended(self)

    # -- view ----------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "direction": self.direction,
            "from": self.from_user,
            "to": self.to_user,
            "state": self.state.value,
            "started_at": self.started_at,
            "answered_at": self.answered_at,
            "ended_at": self.ended_at,
            "end_reason": self.end_reason,
            "codec": self.codec,
            "sip_call_id": self.sip_call_id,
            "rtp": self._rtp_view(),
            "agent": self._agent_view(),
        }

    def _rtp_view(self) -> dict[str, Any] | None:
        if self.rtp is None:
            return None
        stats = self.rtp.stats
        return {
            "local_port": self._local_port,
            "remote": f"{self.rtp.remote[0]}:{self.rtp.remote[1]}" if self.rtp.remote else None,
            "packets_in": stats.packets_in,
            "packets_out": stats.packets_out,
            "invalid_in": stats.invalid_in,
        }

    def _agent_view(self) -> dict[str, Any] | None:
        if self.link is None:
            return None
        stats = self.link.stats
        downlink = self._downlink
        return {
            "state": self.link.state,
            "packets_sent": stats.packets_sent,
            "packets_dropped": stats.packets_dropped,
            "packets_received": stats.packets_received,
            "events_received": stats.events_received,
            "playout_buffered_ms": downlink.buffered_ms if downlink else 0,
            "playout_dropped_ms": downlink.dropped_ms if downlink else 0,
            "events": self.events[-20:],
        }
