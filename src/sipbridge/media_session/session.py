"""MediaSession: one call's media — RTP with the phone, the agent link, the pacing, DTMF, barge-in.

Its whole interface is the plain-data messages of ``messages.py``: each command method takes one
message and returns one (or None), and everything it has to tell goes out through ``emit`` as an
event message. The signalling side never touches what is inside, so this object can live in
another process with a thin proxy of the same methods in front.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..media.opus_packet import packet_samples as opus_packet_samples
from ..media.phone_codec import phone_codec
from ..media.pipeline import PhoneToAgent
from ..media.recording_file import WRITE_ERRORS
from ..metrics import MediaCounters
from ..rtp.dtmf import DIGITS as DTMF_DIGITS
from ..rtp.dtmf import DtmfPacket, DtmfReceiver, DtmfSender
from ..rtp.packet import RtpPacket
from ..rtp.ports import NoFreePort
from ..rtp.session import RtpSession
from ..rtp.srtp import Srtp
from . import messages as m
from .agent_leg import AgentLeg, relay_params
from .agent_playout import IDLE_VIEW, AgentPlayout
from .phone_playout import PhonePlayout
from .phone_rtcp import PhoneRtcp
from .recorder import CallRecorder
from .rtp_watch import RtpWatch
from .shared import SharedMedia

log = logging.getLogger(__name__)

WATCH_INTERVAL_S = 1.0


class MediaSession:
    """One call's media, using what the calls of this process share (``shared``)."""

    def __init__(self, shared: SharedMedia, emit: Callable[[m.MediaEvent], None]) -> None:
        self._shared = shared
        self._config = config = shared.config
        self._emit = emit
        self._rtp: RtpSession | None = None
        self._port: int | None = None
        self._phone: m.PhoneMedia | None = None
        self._uplink: PhoneToAgent | None = None
        self._downlink: AgentPlayout | None = None
        self._playout = PhonePlayout()
        self._playout_token: int | None = None
        self._agent: AgentLeg | None = None
        self._dtmf_in = DtmfReceiver()
        self._dtmf_out = DtmfSender()
        self._dtmf_poll: asyncio.TimerHandle | None = None
        self._watch = RtpWatch(config.rtp_timeout or None)
        self._watch_timer: asyncio.TimerHandle | None = None
        self._signalling: tuple[str, int] | None = None
        self._confirmed = True
        self._rtcp: PhoneRtcp | None = None  # RTCP on the RTP port + 1 (or on it, rtcp-mux)
        self._record_path: str | None = None
        self._recorder: CallRecorder | None = None  # from the answer on, when the call is recorded
        self._closed = False

    # -- commands ------------------------------------------------------------------------------

    async def open(self, command: m.OpenMedia) -> m.MediaOpened | m.MediaRefused:
        config = self._config
        host = config.sip_listen.host  # RTP binds where SIP listens
        try:
            self._rtp, channel, self._port = await self._shared.ports.open_pair(
                host,
                lambda: RtpSession(
                    on_packet=self._phone_packet, on_event_packet=self._phone_dtmf, latch=config.rtp_latch
                ),
                lambda rtp: PhoneRtcp.channel_for(rtp, host),
            )
        except NoFreePort as exc:
            return m.MediaRefused(str(exc))
        self._rtp.dtmf_source = self._next_dtmf_packet
        self._rtcp = PhoneRtcp(self._rtp, channel, self._playout.jitter_s)
        self._signalling = command.signalling
        self._record_path = command.record_path
        self._playout_token = self._shared.clock.subscribe(self._playout_tick)
        self._agent = AgentLeg(
            self._shared.whip,
            config,
            resource_id=command.resource_id,
            direction=command.direction,
            on_packet=self._agent_packet,
            on_event=self._agent_event,
            emit=self._emit,
        )
        return m.MediaOpened(self._port)

    def update(self, command: m.UpdateMedia) -> None:
        """Use what offer/answer settled: codec (new transcoders if it changed), address, direction."""
        if self._rtp is None:
            return
        phone, config = command.phone, self._config
        if self._phone is None or phone.codec != self._phone.codec or self._downlink is None:
            codec = phone_codec(phone.codec)
            # Opus is relayed to the agent as it is: no transcoder that way
            self._uplink = None if codec.relayed else PhoneToAgent(phone.codec, config.opus)
            self._downlink = AgentPlayout(phone.codec, config.opus.pcm_rate)
            self._downlink.record(self._recorder)
            self._playout.use_codec(codec)
            if self._rtcp is not None:
                self._rtcp.use_clock(codec.clock_rate)
            if self._agent is not None:  # for the links dialled from now on
                self._agent.opus_params = relay_params(phone.codec_params) if codec.relayed else {}
            if self._phone is not None:
                self._emit(m.CodecChanged(self._phone.codec, phone.codec))
        signalling = command.signalling or self._signalling
        self._rtp.configure(
            phone.payload_type,
            phone.dtmf_payload_type,
            phone.remote,
            signalling,
            clock_rate=phone.clock_rate,
            dtmf_clock_rate=phone.dtmf_clock_rate,
        )
        self._dtmf_in.use_clock(phone.dtmf_clock_rate)
        self._dtmf_out.use_clock(phone.dtmf_clock_rate, phone.clock_rate)
        self._use_keys(phone)
        if self._rtcp is not None:
            self._rtcp.multiplex(phone.rtcp_mux)
        self._phone = phone
        self._rtp.sending = phone.sending and self._confirmed
        self._watch.hold(phone.on_hold, time.monotonic())

    def _use_keys(self, phone: m.PhoneMedia) -> None:
        """New SRTP sessions when the keys changed (a re-INVITE may bring new ones); none for plain RTP."""
        assert self._rtp is not None
        old = self._phone
        keys = (phone.srtp_suite, phone.srtp_send_key, phone.srtp_recv_key)
        if old is not None and keys == (old.srtp_suite, old.srtp_send_key, old.srtp_recv_key):
            return
        self._rtp.srtp = None
        if phone.srtp_suite:
            self._rtp.srtp = Srtp(phone.srtp_suite, phone.srtp_send_key, phone.srtp_recv_key)
        if self._rtcp is not None:
            self._rtcp.use_keys(self._rtp.srtp)

    def start_sending(self, command: m.StartSending) -> None:
        if self._rtp is None:
            return
        self._confirmed = command.confirmed
        if not command.confirmed:
            self._rtp.sending = False
        self._rtp.start_sending(self._shared.clock, self._next_phone_frame)

    def confirm_peer(self, command: m.ConfirmPeer) -> None:
        self._confirmed = True
        if self._rtp is not None and self._phone is not None:
            self._rtp.sending = self._phone.sending

    def answered(self, command: m.CallAnswered) -> None:
        if self._closed or self._watch_timer is not None:
            return
        self._watch.start(time.monotonic())
        self._watch_timer = asyncio.get_running_loop().call_later(WATCH_INTERVAL_S, self._watch_rtp)
        self._start_recording()

    def _start_recording(self) -> None:
        """Both sides to the recording file from the answer on, when the call is recorded."""
        if self._record_path is None or self._phone is None or self._recorder is not None:
            return
        emit = self._emit
        try:
            self._recorder = CallRecorder.open(
                self._record_path, self._phone.codec, lambda reason: emit(m.RecordingFailed(reason))
            )
        except WRITE_ERRORS as exc:  # the call goes on; it logs and shows why
            emit(m.RecordingFailed(f"recording not started: {exc}"))
            return
        if self._downlink is not None:
            self._downlink.record(self._recorder)

    async def connect_agent(self, command: m.ConnectAgent) -> m.AgentConnected | m.AgentUnavailable:
        if self._agent is None:
            return m.AgentUnavailable("media is not open")
        self._agent.greeting = command.context
        reason = await self._agent.connect()
        return m.AgentConnected() if reason is None else m.AgentUnavailable(reason)

    def send_digits(self, command: m.SendDigits) -> None:
        """Digits to the phone (an IVR menu): RFC 4733 events in the RTP stream, instead of audio;
        a DigitsSent event says which went (none without a negotiated telephone-event)."""
        wanted = "".join(d for d in command.digits.upper() if d in DTMF_DIGITS)
        if not wanted or self._phone is None or self._phone.dtmf_payload_type is None:
            log.info("digits %r not sent (no telephone-event negotiated)", command.digits)
            wanted = ""
        else:
            self._dtmf_out.send(wanted)
        self._emit(m.DigitsSent(wanted, time.time()))

    def send_agent_event(self, command: m.SendAgentEvent) -> None:
        if self._agent is not None:
            self._agent.send_event(command.event)

    def forward_digit(self, command: m.ForwardDigit) -> None:
        if self._agent is not None:
            self._agent.send_event({"type": "dtmf", "digit": command.digit})

    def stats(self, command: m.StatsRequest | None = None) -> m.MediaStats:
        counters = self._agent.counters() if self._agent is not None else MediaCounters()
        jitter = self._playout.stats
        counters.rtp_packets_lost, counters.rtp_packets_late = jitter.lost, jitter.late
        counters.rtp_frames_concealed = jitter.concealed
        if self._rtp is not None:
            rtp = self._rtp.stats
            counters.rtp_packets_received, counters.rtp_packets_sent = rtp.packets_in, rtp.packets_out
            counters.rtp_bytes_received, counters.rtp_bytes_sent = rtp.bytes_in, rtp.bytes_out
            counters.rtp_packets_invalid = rtp.invalid_in
            counters.rtp_packets_foreign = rtp.foreign_in
        return m.MediaStats(
            counters=counters,
            codec=self._phone.codec if self._phone else None,
            on_hold=self._phone.on_hold if self._phone else False,
            rtp=self._rtp_view(),
            agent=self._agent_view(),
            rtp_jitter_s=self._playout.jitter_s(),
            rtp_loss=self._playout.loss(),
        )

    async def close(self, command: m.CloseMedia) -> m.MediaStats:
        """Free the port, stop the clocks and close the agent link; the last stats. Idempotent."""
        if not self._closed:
            self._closed = True
            for handle in (self._dtmf_poll, self._watch_timer):
                if handle is not None:
                    handle.cancel()
            if self._playout_token is not None:
                self._shared.clock.unsubscribe(self._playout_token)
                self._playout_token = None
            if self._rtcp is not None:
                self._rtcp.close()
            if self._rtp is not None:
                self._rtp.close()
            if self._port is not None:
                self._shared.ports.release(self._port)
            if self._recorder is not None:
                self._recorder.close()
            if self._agent is not None:
                await self._agent.close()
        return self.stats()

    # -- phone → agent ------------------------------------------------------------------------

    def _phone_packet(self, packet: RtpPacket, arrival: float) -> None:
        self._playout.push(packet, arrival)
        self._align_playout()  # the first frame of a talkspurt falls due its target after arriving

    def _playout_tick(self, frames: int) -> None:
        """Every 20 ms: the next frame from the jitter buffer (concealed when lost) to the agent."""
        uplink = self._uplink
        frames_out = self._playout.tick(frames, time.monotonic(), uplink.decode if uplink else None)
        if uplink is None:  # Opus, relayed
            for packet in frames_out:
                self._phone_opus(packet)  # type: ignore[arg-type]
        else:
            for pcm in frames_out:
                self._phone_pcm(pcm)  # type: ignore[arg-type]
        self._align_playout()
        if self._rtcp is not None:
            self._rtcp.tick()
        if self._recorder is not None:
            self._recorder.tick(frames)

    def _align_playout(self) -> None:
        due = self._playout.next_due()
        if due is not None and self._playout_token is not None:
            self._shared.clock.align(self._playout_token, due)

    def _phone_pcm(self, pcm: np.ndarray) -> None:
        if self._uplink is None or self._agent is None:
            return
        if self._recorder is not None:
            self._recorder.caller_pcm(pcm, self._uplink.phone.pcm_rate)
        for packet in self._uplink.push_pcm(pcm):
            self._agent.send_opus(packet)

    def _phone_opus(self, packet: bytes) -> None:
        if self._recorder is not None:
            self._recorder.caller_opus(packet)
        if self._agent is not None:
            self._agent.send_opus(packet, opus_packet_samples(packet) or None)

    # -- agent → phone ------------------------------------------------------------------------

    def _agent_packet(self, sequence: int, payload: bytes, fresh: bool) -> None:
        if self._downlink is not None:
            self._downlink.packet(sequence, payload, time.monotonic(), fresh)

    def _next_phone_frame(self) -> bytes:
        """Each 20 ms tick towards the phone: the agent's next frame, or comfort silence."""
        if self._downlink is None or self._rtp is None:
            return b""  # no codec yet (an offerless INVITE before its ACK): nothing is transmitted
        frame, at = self._downlink.next_frame(self._rtp.next_send_at, time.monotonic())
        if at is not None:
            self._rtp.align_sending(at)
        return frame

    def _agent_event(self, event: dict[str, Any]) -> None:
        """What the media side itself does on an agent event (the call hears of each one too)."""
        kind = event.get("type")
        if kind == "state" and event.get("state") != "speaking" and self._downlink is not None:
            self._downlink.barge_in()
        elif kind == "dtmf" and isinstance(event.get("digits"), str):
            self.send_digits(m.SendDigits(event["digits"]))

    # -- DTMF from the phone ------------------------------------------------------------------

    def _phone_dtmf(self, packet: RtpPacket) -> None:
        """An RFC 4733 telephone-event packet from the phone: each digit once, to the agent."""
        loop = asyncio.get_running_loop()
        for digit in self._dtmf_in.receive_packet(packet, loop.time()):
            self._digit_from_phone(digit.digit)
        if self._dtmf_poll is not None:
            self._dtmf_poll.cancel()
        deadline = self._dtmf_in.deadline
        self._dtmf_poll = loop.call_at(deadline, self._poll_dtmf) if deadline is not None else None

    def _poll_dtmf(self) -> None:
        self._dtmf_poll = None
        for digit in self._dtmf_in.poll(asyncio.get_running_loop().time()):
            self._digit_from_phone(digit.digit)

    def _digit_from_phone(self, digit: str) -> None:
        if self._agent is not None:
            self._agent.send_event({"type": "dtmf", "digit": digit})
        self._emit(m.PhoneDigit(digit, "rfc4733", time.time()))

    def _next_dtmf_packet(self, timestamp: int) -> DtmfPacket | None:
        return self._dtmf_out.next_packet(timestamp) if self._dtmf_out.busy else None

    # -- RTP inactivity -----------------------------------------------------------------------

    def _watch_rtp(self) -> None:
        self._watch_timer = None
        if self._closed or self._rtp is None:
            return
        silent = self._watch.silent_for(time.monotonic(), self._rtp.stats.last_packet_at)
        if silent is not None:
            self._emit(m.RtpTimeout(silent))
            return
        self._watch_timer = asyncio.get_running_loop().call_later(WATCH_INTERVAL_S, self._watch_rtp)

    # -- views --------------------------------------------------------------------------------

    def _rtp_view(self) -> dict[str, Any] | None:
        if self._rtp is None:
            return None
        stats, remote = self._rtp.stats, self._rtp.remote
        return {
            "local_port": self._port,
            "remote": f"{remote[0]}:{remote[1]}" if remote else None,
            "packets_in": stats.packets_in,
            "packets_out": stats.packets_out,
            "invalid_in": stats.invalid_in,
            "foreign_in": stats.foreign_in,
            "srtp": {"suite": self._rtp.srtp.suite} if self._rtp.srtp else None,
            "srtp_auth_failures": stats.srtp_auth_failures,
            "jitter_buffer": self._playout.view(),
            "rtcp": self._rtcp.view() if self._rtcp is not None else None,
        }

    def _agent_view(self) -> dict[str, Any] | None:
        view = self._agent.view() if self._agent is not None else None
        if view is None:
            return None
        return {**view, **(self._downlink.view() if self._downlink is not None else IDLE_VIEW)}
