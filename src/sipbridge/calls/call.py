"""One phone call: its SIP session, RTP stream, transcoders and agent link, from INVITE to hang-up."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

import numpy as np

from .. import logs, metrics
from ..agent.link import AgentLink
from ..agent.whip import AgentUnavailable, WhipClient
from ..media.g711 import SILENCE
from ..media.pipeline import AgentToPhone, PhoneToAgent
from ..media.plc import Concealer
from ..rtp.arrival import ArrivalTiming
from ..rtp.clock import FrameClock
from ..rtp.dtmf import DIGITS as DTMF_DIGITS
from ..rtp.dtmf import DtmfPacket, DtmfReceiver, DtmfSender
from ..rtp.jitter import LOST, JitterBuffer, JitterConfig
from ..rtp.latch import LatchMode
from ..rtp.packet import RtpPacket
from ..rtp.ports import NoFreePort, PortAllocator
from ..rtp.session import RtpSession
from ..sip.invite_session import InviteSession
from ..sip.sdp import (
    AudioAnswer,
    NotAcceptableHere,
    SdpError,
    SessionDescription,
    build_answer,
    build_offer,
    negotiate_audio,
    parse_sdp,
)

log = logging.getLogger(__name__)

WATCH_INTERVAL_S = 1.0
PLAYOUT_MARGIN_S = 0.0002  # tick just after the due time, never just before it
FRAME_SAMPLES = 160  # the 20 ms tick at 8 kHz
PACKET_SAMPLES = frozenset(range(80, 481, 80))  # phone packets of 10 to 60 ms
MAX_DIGITS = 200
MAX_EVENTS = 200

T = TypeVar("T")


class CallState(StrEnum):
    DIALING = "dialing"
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
    # Seconds without RTP from the phone before the call is ended (not while the caller holds it).
    rtp_timeout: float | None = 30.0
    # Longest call; None: no limit.
    max_duration: float | None = None
    # Nothing from the agent this long: its link failed. Then redial with the resume token this long.
    agent_silence_timeout: float = 5.0
    agent_resume_window: float = 20.0
    # Whose RTP a call accepts before and besides the phone's first packet (see rtp/latch.py).
    rtp_latch: LatchMode = "sdp-or-signalling"


class Call:
    def __init__(
        self,
        session: InviteSession | None,
        settings: CallSettings,
        ports: PortAllocator,
        whip: WhipClient,
        clock: FrameClock,
        on_ended: Callable[[Call], None],
    ) -> None:
        self.id = secrets.token_hex(8)
        self.log = logs.call_logger(log, self.id)
        self.direction = "inbound"
        self.session = session
        self.settings = settings
        self._ports = ports
        self._whip = whip
        self._clock = clock
        self._on_ended = on_ended
        self.sip_call_id = ""
        self.from_user = self.to_user = ""
        self.from_display: str | None = None
        self.provider: str | None = None
        self.metadata: dict[str, str] = {}
        self.state = CallState.RINGING
        self.started_at = time.time()
        self._created = time.monotonic()
        self.setup_s: float | None = None  # INVITE to 200 OK sent (inbound), placed to answered (outbound)
        self.state_history: list[dict[str, Any]] = []
        self.answered_at: float | None = None
        self.ended_at: float | None = None
        self.end_reason: str | None = None
        self.codec: str | None = None
        self.events: list[dict[str, Any]] = []
        self.conversation: list[dict[str, str]] = []  # final transcripts and the agent's responses
        self.barge_ins = 0
        self.barge_in_dropped_ms = 0
        self.digits: list[dict[str, Any]] = []
        self._dtmf_in = DtmfReceiver()
        self._dtmf_out = DtmfSender()
        self._dtmf_poll: asyncio.TimerHandle | None = None
        self._jitter = JitterBuffer()
        self._concealer = Concealer()
        self._playout_due = 0  # samples of phone audio owed to the agent, played a packet at a time
        self._other_size = 0  # a packet size other than the buffer's, seen once
        self._playout_token: int | None = None
        self._agent_timing = ArrivalTiming()  # when the agent's frames come: we send just after
        self.rtp: RtpSession | None = None
        self.rtp_port: int | None = None
        self._local_port: int | None = None
        self.link: AgentLink | None = None
        self._recovery: asyncio.Task[None] | None = None
        self.agent_reconnects = 0
        self._replaced_links = metrics.MediaCounters()  # what the agent links before the current one carried
        self._uplink: PhoneToAgent | None = None
        self._downlink: AgentToPhone | None = None
        self._silence = b""
        self._media: AudioAnswer | None = None
        self.on_hold = False
        self._silence_from: float | None = None
        self._sdp_session_id = int(time.time() * 1000)
        self._sdp_version = 0
        self._ended = asyncio.Event()
        if session is not None:
            self._identify_inbound(session)
            self._set_state(CallState.RINGING)

    def _identify_inbound(self, session: InviteSession) -> None:
        request = session.request
        self.sip_call_id = request.call_id
        self.from_user = request.from_.uri.user or request.from_.uri.host
        self.from_display = request.from_.display
        self.to_user = request.to.uri.user or request.to.uri.host
        session.log_extra = {"call_id": self.id}
        # Wired before the first await: a CANCEL may answer our 100 Trying before run() starts.
        session.on_cancel = lambda: self._finish_soon("caller cancelled")
        session.on_bye = lambda: self._finish_soon("caller hung up")

    @property
    def remote_party(self) -> str:
        """The phone on the other end, whom the agent remembers across calls (its resource id)."""
        return self.to_user if self.direction == "outbound" else self.from_user

    def _set_state(self, state: CallState) -> None:
        self.state = state
        self.state_history.append({"state": state.value, "at": time.time()})

    # -- the inbound flow ----------------------------------------------------------------------

    async def run(self) -> None:
        """The call from INVITE to its end; whatever way it ends, its port and agent link are freed."""
        try:
            await self._establish()
            if self.state is CallState.ANSWERED:
                await self._hold_until_ended()
        except asyncio.CancelledError:
            await self.hangup("bridge shutting down")
            raise
        except Exception:
            self.log.exception("call %s failed", self.id)
            await self.hangup("internal error")
        finally:
            await self._release_media()
            self._detach_session()

    @property
    def _session(self) -> InviteSession:
        assert self.session is not None
        return self.session

    async def _establish(self) -> None:
        """Get the call to ANSWERED (or ended): for an inbound call, answer its INVITE."""
        await self._answer()

    async def _answer(self) -> None:
        if self._session.cancelled:
            return
        offer, answer = self._negotiate()
        if self.end_reason is not None or self.state is CallState.ENDED:
            return
        if not await self._open_rtp() or self.end_reason is not None:
            return
        if answer is not None:
            self._apply_media(answer)
        self._session.provisional(180)
        self._set_state(CallState.CONNECTING)
        if not await self._connect_agent():
            return
        if self._session.cancelled:
            await self.hangup("caller cancelled")
            return
        await self._accept(offer, answer)

    def _negotiate(self) -> tuple[SessionDescription | None, AudioAnswer | None]:
        """The caller's offer and our answer to it; (None, None) for an INVITE without SDP."""
        body = self._session.request.body
        if not body:
            return None, None  # we offer in the 200 and take the answer from the ACK
        try:
            offer = parse_sdp(body)
            answer = negotiate_audio(offer)
        except NotAcceptableHere as exc:
            self._reject(488, str(exc), exc.end_reason)
            return None, None
        except SdpError as exc:
            self._reject(400, f"bad SDP: {exc}", "bad SDP")
            return None, None
        return offer, answer

    async def _open_rtp(self) -> bool:
        try:
            rtp, port = await self._ports.open(
                self.settings.rtp_host,
                lambda: RtpSession(
                    on_packet=self._phone_packet,
                    on_event_packet=self._phone_dtmf,
                    latch=self.settings.rtp_latch,
                ),
            )
        except NoFreePort as exc:
            self._reject(503, str(exc), "no free RTP port")
            return False
        self.rtp, self.rtp_port, self._local_port = rtp, port, port
        rtp.dtmf_source = self._next_dtmf_packet
        self._playout_token = self._clock.subscribe(self._playout_tick)
        return True

    def _apply_media(self, answer: AudioAnswer) -> None:
        """Use what offer/answer settled: codec (new transcoders if it changed), address, direction."""
        assert self.rtp is not None
        settings = self.settings
        if answer.codec != self.codec or self._uplink is None:
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
            if self.codec is not None:
                self.log.info("call %s: codec changed from %s to %s", self.id, self.codec, answer.codec)
            self.codec = answer.codec
        signalling = self._signalling_source()
        self.rtp.configure(answer.payload_type, answer.dtmf_payload_type, answer.remote_addr, signalling)
        self.rtp.sending = answer.direction in ("sendrecv", "sendonly")
        self.on_hold = answer.direction in ("recvonly", "inactive")
        self._media = answer

    async def _connect_agent(self) -> bool:
        self.link = self._new_link()
        deadline = asyncio.get_running_loop().time() + self.settings.agent_timeout
        try:
            await self.link.connect(self.settings.agent_timeout)
            # Answer only once media can flow: a WHIP answer alone does not prove the agent hears us.
            await self.link.wait_connected(max(0.0, deadline - asyncio.get_running_loop().time()))
        except AgentUnavailable as exc:
            if self.end_reason is not None:
                return False  # the caller went away while we were dialling the agent
            self.log.warning("call %s: agent unavailable: %s", self.id, exc.reason)
            metrics.agent_link_failed("setup")
            self._reject(503, f"agent unavailable: {exc.reason}", "agent unavailable")
            return False
        return True

    def _new_link(self, resume_token: str | None = None) -> AgentLink:
        """A link to the agent whose end reports to this call only while it is the call's link."""

        def closed(reason: str) -> None:
            if link is self.link:
                self._finish_soon(f"agent ended the call: {reason}")

        def failed(reason: str) -> None:
            if link is self.link:
                self._agent_link_failed(reason)

        def packet(sequence: int) -> None:
            if link is self.link:
                self._agent_packet(sequence)

        link = AgentLink(
            self._whip,
            resource_id=self.remote_party,
            direction=self.direction,
            ice_servers=list(self.settings.ice_servers),
            on_audio=self._agent_audio,
            on_event=self._agent_event,
            on_closed=closed,
            on_failed=failed,
            on_packet=packet,
            audio_rate=self.settings.opus_pcm_rate,
            resume_token=resume_token,
            silence_timeout=self.settings.agent_silence_timeout,
        )
        return link

    # -- agent link recovery -------------------------------------------------------------------

    def _agent_link_failed(self, reason: str) -> None:
        if self.end_reason is not None or self._recovery is not None:
            return
        metrics.agent_link_failed("mid_call")
        if self.settings.agent_resume_window <= 0:
            self._finish_soon(f"agent link failed: {reason}")
            return
        self.log.warning("call %s: agent link failed (%s); redialling with the resume token", self.id, reason)
        self._note_link_event("failed", reason=reason)
        self._recovery = self._spawn(self._recover_agent(reason))

    async def _recover_agent(self, reason: str) -> None:
        """Redial the agent with the resume token until it answers or the window closes.

        The phone leg stays up meanwhile and hears comfort silence (the playout queue runs dry).
        """
        assert self.link is not None
        token = self.link.session.resume_token if self.link.session else ""
        await self.link.abandon()  # no DELETE: that would end the conversation we want back
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.agent_resume_window
        backoff, last_error = 0.25, reason
        while self.end_reason is None and (remaining := deadline - loop.time()) > 0:
            link = self._new_link(token or None)
            try:
                await link.connect(min(self.settings.agent_timeout, remaining))
                await link.wait_connected(min(self.settings.agent_timeout, max(0.0, deadline - loop.time())))
            except AgentUnavailable as exc:
                last_error = exc.reason
                token = link.session.resume_token if link.session and link.session.resume_token else token
                await link.abandon()
                await asyncio.sleep(min(backoff, max(0.0, deadline - loop.time())))
                backoff = min(backoff * 2, 2.0)
                continue
            except asyncio.CancelledError:
                await link.close()
                raise
            self._resumed(link)
            return
        self._recovery = None
        window = self.settings.agent_resume_window
        await self.hangup(
            f"agent link failed ({reason}) and was not recovered within {window:g} s: {last_error}"
        )

    def _resumed(self, link: AgentLink) -> None:
        assert link.session is not None
        if self.link is not None:
            self._replaced_links.add(_link_counters(self.link))
        self.link, self._recovery = link, None
        self.agent_reconnects += 1
        status = link.session.resume_status or "unknown"
        metrics.agent_reconnected(status == "resumed")
        self._note_link_event("resumed" if status == "resumed" else "reconnected", resume_status=status)
        if status == "resumed":
            self.log.info("call %s: agent link resumed", self.id)
        else:  # the agent lost the conversation: the call goes on with a new one
            self.log.warning("call %s: agent link back as a new conversation (resume %s)", self.id, status)

    def _note_link_event(self, state: str, **detail: str) -> None:
        self.events.append({"type": "link", "state": state, **detail, "at": time.time()})
        del self.events[:-MAX_EVENTS]

    async def _accept(self, offer: SessionDescription | None, answer: AudioAnswer | None) -> None:
        assert self.rtp is not None
        self._wire_dialog(self._session)
        if offer is not None and answer is not None:
            sdp = self._local_answer(offer, answer)
        else:
            sdp = self._local_offer()
        # Nothing goes to the address the INVITE names until its ACK (with our To tag) shows that the
        # caller receives our answers: a spoofed INVITE's sender never sees them, so it cannot aim the
        # agent's audio at a third party. (Offerless INVITE: the ACK's answer says where anyway.)
        sending, self.rtp.sending = self.rtp.sending, False
        self.rtp.start_sending(self._clock, self._next_phone_frame)
        sent_ok_at = time.monotonic()
        acked = await self._session.accept(sdp)
        if self._ended.is_set():
            return
        if acked and answer is not None:
            self.rtp.sending = sending
        if not acked:
            if self._session.ended_by_peer:  # its BYE overtook a lost ACK: the caller had the 200
                self.answered_at = time.time()
                await self.hangup("caller hung up")
            else:
                await self.hangup("no ACK for 200 OK")
            return
        if answer is None and not self._take_answer(self._session.ack_body):
            await self.hangup("no usable SDP answer in the ACK")
            return
        self._set_state(CallState.ANSWERED)
        self.answered_at = time.time()
        self._set_up(sent_ok_at)
        self.log.info("call %s answered (%s from %s)", self.id, self.codec, logs.redact_user(self.from_user))

    def _wire_dialog(self, session: InviteSession) -> None:
        session.on_dtmf = lambda digit: self._digit_from_phone(digit, "sip-info")
        session.on_offer = self._offer_in_dialog
        session.on_answer = self._answer_in_dialog
        session.on_failed = self._finish_soon

    def _media_ip(self) -> str:
        return self._session.media_ip

    def _signalling_source(self) -> tuple[str, int] | None:
        """Where the call's SIP comes from: its IP may send the phone's RTP (from a NAT's port)."""
        return self.session.source if self.session is not None else None

    async def _end_signalling(self, reason: str) -> None:
        await self._session.hangup(reason)

    # -- offer/answer --------------------------------------------------------------------------

    def _local_answer(self, offer: SessionDescription, answer: AudioAnswer) -> bytes:
        assert self.rtp_port is not None
        self._sdp_version += 1
        return build_answer(
            offer,
            answer,
            local_ip=self._media_ip(),
            local_port=self.rtp_port,
            session_id=self._sdp_session_id,
            session_version=self._sdp_version,
        )

    def _local_offer(self) -> bytes:
        assert self.rtp_port is not None
        self._sdp_version += 1
        codecs = (
            (self.codec, *(c for c in ("PCMU", "PCMA") if c != self.codec))
            if self.codec
            else ("PCMU", "PCMA")
        )
        return build_offer(
            local_ip=self._media_ip(),
            local_port=self.rtp_port,
            session_id=self._sdp_session_id,
            session_version=self._sdp_version,
            codecs=codecs,
        )

    def _take_answer(self, body: bytes | None) -> bool:
        """The caller's answer to our offer (in an ACK or a 2xx); False if there is none we can use."""
        if not body:
            return False
        try:
            answer = negotiate_audio(parse_sdp(body))
        except SdpError as exc:
            self.log.info("call %s: unusable SDP answer: %s", self.id, exc)
            return False
        if self.rtp is None:
            return False
        self._apply_media(answer)
        return True

    def _offer_in_dialog(self, body: bytes | None) -> bytes:
        """A re-INVITE or UPDATE: answer its offer (hold, resume, codec change), or make one.

        Raises SdpError (the session answers 488 and the call goes on as it was).
        """
        if body is None:
            return self._local_offer()
        offer = parse_sdp(body)
        answer = negotiate_audio(offer)
        self._apply_media(answer)
        self.log.info("call %s: media now %s %s", self.id, answer.codec, answer.direction)
        return self._local_answer(offer, answer)

    def _answer_in_dialog(self, body: bytes | None) -> None:
        if not self._take_answer(body) and self.state is CallState.ANSWERED:
            self._finish_soon("no usable SDP answer to our offer")

    # -- while the call is up -----------------------------------------------------------------

    @property
    def max_duration(self) -> float | None:
        return self.settings.max_duration

    async def _hold_until_ended(self) -> None:
        """Wait for the end, ending the call on RTP inactivity or at the maximum duration."""
        started = time.monotonic()
        while not self._ended.is_set():
            try:
                await asyncio.wait_for(self._ended.wait(), WATCH_INTERVAL_S)
                return
            except TimeoutError:
                pass
            now = time.monotonic()
            limit = self.max_duration
            if limit is not None and now - started >= limit:
                await self.hangup("maximum duration reached")
            elif self._rtp_silent_for(now, started) is not None:
                await self.hangup(f"no RTP from the phone for {self.settings.rtp_timeout:.0f} s")

    def _rtp_silent_for(self, now: float, started: float) -> float | None:
        timeout = self.settings.rtp_timeout
        if timeout is None or self.rtp is None or self.on_hold:
            self._silence_from = now  # holding restarts the count
            return None
        last = max(filter(None, (self.rtp.stats.last_packet_at, started, self._silence_from)))
        return now - last if now - last >= timeout else None

    # -- media ---------------------------------------------------------------------------------

    def _phone_packet(self, packet: RtpPacket, arrival: float) -> None:
        samples = len(packet.payload)  # G.711: one byte per sample
        if samples == self._jitter.config.frame_samples or samples not in PACKET_SAMPLES:
            self._other_size = 0
        elif self._other_size == samples or not self._jitter.started:  # two in a row: not a stray
            self._follow_packet_time(samples)
        else:
            self._other_size = samples
        self._jitter.push(packet, arrival)
        self._align_playout()  # the first frame of a talkspurt falls due its target after arriving

    def _follow_packet_time(self, samples: int) -> None:
        """The phone packs another duration than the buffer expects (ptime 10 to 60 ms): follow it."""
        if self._jitter.started:
            self.log.info("call %s: phone packets now %d ms", self.id, samples // 8)
        stats = self._jitter.stats
        self._jitter = JitterBuffer(JitterConfig(frame_samples=samples))
        self._jitter.stats = stats
        self._concealer = Concealer(frame_samples=samples)
        self._playout_due = self._other_size = 0

    def _playout_tick(self, frames: int) -> None:
        """Every 20 ms: the next frame from the jitter buffer (concealed when lost) to the agent."""
        now = time.monotonic()
        stats = self._jitter.stats
        per_packet = self._jitter.config.frame_samples
        self._playout_due += frames * FRAME_SAMPLES
        while self._playout_due >= per_packet:
            self._playout_due -= per_packet
            cuts = stats.shrunk + stats.overflow
            frame = self._jitter.pop(now)
            if frame is None or self._uplink is None:
                continue
            if frame is LOST:
                pcm = self._concealer.lost()
            elif stats.shrunk + stats.overflow != cuts:  # frames were dropped before this one
                pcm = self._concealer.splice(self._uplink.decode(frame))
            else:
                pcm = self._concealer.good(self._uplink.decode(frame))
            self._phone_pcm(pcm)
        self._align_playout()

    def _align_playout(self) -> None:
        """Tick when the next frame falls due, not up to 20 ms later at the clock's own phase.

        Only for 20 ms packets, one per tick (the phone's usual size): the tick of other sizes pops
        as many as the samples owed, which a tick moved to one frame's due would not keep right.
        """
        if self._playout_token is None or self._jitter.config.frame_samples != FRAME_SAMPLES:
            return
        due = self._jitter.next_due()
        if due is not None:
            self._clock.align(self._playout_token, due + PLAYOUT_MARGIN_S)

    def _phone_pcm(self, pcm: np.ndarray) -> None:
        if self._uplink is None or self.link is None:
            return
        for packet in self._uplink.push_pcm(pcm):
            self.link.send_opus(packet)

    def _agent_packet(self, sequence: int) -> None:
        self._agent_timing.arrived(sequence, time.monotonic())
        if self._downlink is not None:
            self._downlink.keep_frames = self._agent_timing.keep_frames

    def _agent_audio(self, pcm: np.ndarray) -> None:
        if self._downlink is not None:
            self._downlink.push_pcm(pcm)

    def _next_phone_frame(self) -> bytes:
        """Each 20 ms tick towards the phone: the agent's next frame, or comfort silence."""
        frame = self._downlink.pop_frame() if self._downlink is not None else None
        self._align_sending()
        return frame if frame is not None else self._silence

    def _align_sending(self) -> None:
        """Send each frame just after the agent's arrives, not up to 20 ms later at our own phase
        (or, a frame that comes a little late, 20 ms later after a frame of silence)."""
        scheduled = self.rtp.next_send_at if self.rtp is not None else None
        if scheduled is None or self._downlink is None:
            return
        queued = self._downlink.queued_frames
        at = self._agent_timing.tick_at(scheduled, time.monotonic(), queued)
        if at is not None:
            self.rtp.align_sending(at)

    def _agent_event(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        del self.events[:-MAX_EVENTS]
        kind = event.get("type")
        text = event.get("text")
        if isinstance(text, str) and (kind == "response" or (kind == "transcript" and event.get("final"))):
            self.conversation.append({"from": "agent" if kind == "response" else "caller", "text": text})
            del self.conversation[:-MAX_EVENTS]
        if kind == "state" and event.get("state") != "speaking":
            self._barge_in()
        elif kind == "dtmf" and isinstance(event.get("digits"), str):
            self._digits_to_phone(event["digits"])

    # -- DTMF ----------------------------------------------------------------------------------

    def _phone_dtmf(self, packet: RtpPacket) -> None:
        """An RFC 4733 telephone-event packet from the phone: each digit once, to the agent."""
        loop = asyncio.get_running_loop()
        for digit in self._dtmf_in.receive_packet(packet, loop.time()):
            self._digit_from_phone(digit.digit, "rfc4733")
        self._schedule_dtmf_poll()

    def _schedule_dtmf_poll(self) -> None:
        if self._dtmf_poll is not None:
            self._dtmf_poll.cancel()
        deadline = self._dtmf_in.deadline
        if deadline is not None:
            self._dtmf_poll = asyncio.get_running_loop().call_at(deadline, self._poll_dtmf)

    def _poll_dtmf(self) -> None:
        self._dtmf_poll = None
        for digit in self._dtmf_in.poll(asyncio.get_running_loop().time()):
            self._digit_from_phone(digit.digit, "rfc4733")

    def _digit_from_phone(self, digit: str, via: str) -> None:
        self.digits.append({"digit": digit, "from": "phone", "via": via, "at": time.time()})
        del self.digits[:-MAX_DIGITS]
        if self.link is not None:
            self.link.send_event({"type": "dtmf", "digit": digit})

    def _digits_to_phone(self, digits: str) -> None:
        """The agent dials digits to the phone (an IVR menu): RFC 4733 events in the RTP stream."""
        wanted = [d for d in digits.upper() if d in DTMF_DIGITS]
        if not wanted or self._media is None or self._media.dtmf_payload_type is None:
            self.log.info(
                "call %s: agent digits %r not sent (no telephone-event negotiated)", self.id, digits
            )
            return
        self._dtmf_out.send("".join(wanted))
        now = time.time()
        self.digits.extend({"digit": d, "from": "agent", "via": "rfc4733", "at": now} for d in wanted)
        del self.digits[:-MAX_DIGITS]

    def _next_dtmf_packet(self, timestamp: int) -> DtmfPacket | None:
        return self._dtmf_out.next_packet(timestamp) if self._dtmf_out.busy else None

    def _barge_in(self) -> None:
        """The agent stopped speaking (interrupted): what it had queued for the caller is stale."""
        if self._downlink is not None and self._downlink.buffered_ms:
            self.barge_ins += 1
            self.barge_in_dropped_ms += self._downlink.buffered_ms
            self._downlink.clear()

    # -- ending --------------------------------------------------------------------------------

    def _reject(self, status: int, warning: str, reason: str) -> None:
        self.log.info("call %s rejected with %d: %s", self.id, status, warning)
        self._session.reject(status, warning=warning)
        self._mark_ended(reason)

    def _finish_soon(self, reason: str) -> None:
        self._spawn(self.hangup(reason))

    def _spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """A task on behalf of this call (its log lines carry the call id), from any callback."""
        return asyncio.get_running_loop().create_task(coro, context=logs.call_context(self.id))

    def _set_up(self, at: float) -> None:
        self.setup_s = at - self._created
        metrics.call_set_up(self.direction, self.setup_s)

    async def hangup(self, reason: str) -> None:
        """End the call (BYE or final response as the dialog state requires) and free everything."""
        if self.end_reason is not None:
            return
        self.end_reason = reason
        self.log.info("call %s ending: %s", self.id, reason)
        # The BYE's answer may take up to 64·T1: the call is over for everyone before that.
        signalling = asyncio.ensure_future(self._end_signalling(reason))
        await asyncio.gather(self._release_media(), return_exceptions=True)
        self._mark_ended(reason)
        await asyncio.gather(signalling, return_exceptions=True)

    async def _release_media(self) -> None:
        recovery, self._recovery = self._recovery, None
        if recovery is not None and recovery is not asyncio.current_task():
            recovery.cancel()
            await asyncio.gather(recovery, return_exceptions=True)
        if self._dtmf_poll is not None:
            self._dtmf_poll.cancel()
        if self._playout_token is not None:
            self._clock.unsubscribe(self._playout_token)
            self._playout_token = None
        if self.rtp is not None:
            self.rtp.close()
        if self.rtp_port is not None:
            self._ports.release(self.rtp_port)
            self.rtp_port = None
        if self.link is not None:
            await self.link.close()

    def _detach_session(self) -> None:
        """Unhook the call from its SIP session, which the UA keeps while the INVITE transaction
        lives (64·T1 past the 200 OK), so that the call's codecs and buffers go now, not then."""
        session = self.session
        if session is not None:
            session.on_cancel = session.on_bye = session.on_failed = session.on_dtmf = None
            session.on_offer = session.on_answer = None

    def _mark_ended(self, reason: str) -> None:
        if self.state is CallState.ENDED:
            return
        self.end_reason = self.end_reason or reason
        self._set_state(CallState.ENDED)
        self.ended_at = time.time()
        self._ended.set()
        self._on_ended(self)

    # -- figures -------------------------------------------------------------------------------

    def media_counters(self) -> metrics.MediaCounters:
        """This call's RTP and agent-leg counters, read from its stats (nothing is counted per packet)."""
        jitter = self._jitter.stats
        counters = metrics.MediaCounters(
            rtp_packets_lost=jitter.lost, rtp_packets_late=jitter.late, rtp_frames_concealed=jitter.concealed
        )
        if self.rtp is not None:
            rtp = self.rtp.stats
            counters.rtp_packets_received, counters.rtp_packets_sent = rtp.packets_in, rtp.packets_out
            counters.rtp_bytes_received, counters.rtp_bytes_sent = rtp.bytes_in, rtp.bytes_out
            counters.rtp_packets_invalid = rtp.invalid_in
            counters.rtp_packets_foreign = rtp.foreign_in
        counters.add(self._replaced_links)
        if self.link is not None:
            counters.add(_link_counters(self.link))
        return counters

    @property
    def rtp_jitter_s(self) -> float | None:
        """The phone stream's interarrival jitter; None before any audio packet came."""
        return self._jitter.stats.jitter_ms / 1000 if self._jitter.stats.received else None

    @property
    def rtp_loss(self) -> float | None:
        """Share of the phone's frames that were missing at their playout time; None before any."""
        stats = self._jitter.stats
        due = stats.played + stats.lost
        return stats.lost / due if due else None

    # -- view ----------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "direction": self.direction,
            "from": self.from_user,
            "to": self.to_user,
            "state": self.state.value,
            "states": list(self.state_history),
            "provider": self.provider,
            "metadata": dict(self.metadata),
            "started_at": self.started_at,
            "answered_at": self.answered_at,
            "ended_at": self.ended_at,
            "end_reason": self.end_reason,
            "codec": self.codec,
            "on_hold": self.on_hold,
            "digits": "".join(d["digit"] for d in self.digits if d["from"] == "phone"),
            "dtmf": list(self.digits[-50:]),
            "conversation": list(self.conversation),
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
            "foreign_in": stats.foreign_in,
            "jitter_buffer": self._jitter_view(),
        }

    def _jitter_view(self) -> dict[str, Any]:
        stats = self._jitter.stats
        return {
            "packet_ms": self._jitter.config.frame_samples // 8,
            "depth_ms": round(stats.depth_ms, 1),
            "target_ms": round(stats.target_ms, 1),
            "jitter_ms": round(stats.jitter_ms, 1),
            "played": stats.played,
            "concealed": stats.concealed,
            "lost": stats.lost,
            "late": stats.late,
            "duplicate": stats.duplicate,
            "stretched": stats.stretched,
            "shrunk": stats.shrunk,
            "overflow": stats.overflow,
            "resyncs": stats.resyncs,
        }

    def _agent_view(self) -> dict[str, Any] | None:
        if self.link is None:
            return None
        stats = self.link.stats
        downlink = self._downlink
        return {
            "state": "reconnecting" if self._recovery is not None else self.link.state,
            "reconnects": self.agent_reconnects,
            "resume_status": self.link.session.resume_status if self.link.session else None,
            "packets_sent": stats.packets_sent,
            "packets_dropped": stats.packets_dropped,
            "packets_received": stats.packets_received,
            "events_received": stats.events_received,
            "playout_buffered_ms": downlink.buffered_ms if downlink else 0,
            "playout_dropped_ms": downlink.dropped_ms if downlink else 0,
            "playout_underruns": downlink.underruns if downlink else 0,
            "playout_wait_ms": round(self._agent_timing.wait_s * 1000, 1),
            "barge_ins": self.barge_ins,
            "barge_in_dropped_ms": self.barge_in_dropped_ms,
            "events": self.events[-20:],
        }


def _link_counters(link: AgentLink) -> metrics.MediaCounters:
    stats = link.stats
    return metrics.MediaCounters(
        agent_packets_sent=stats.packets_sent,
        agent_packets_received=stats.packets_received,
        agent_packets_dropped=stats.packets_dropped,
    )
