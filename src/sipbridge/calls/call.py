"""One phone call: the orchestrator between its SIP leg and its media, from INVITE to hang-up.

The call owns its state, identity and records. How it is set up is its leg's business (inbound:
answer an INVITE, ``calls/inbound.py``; outbound: dial a trunk, ``calls/outbound.py``); its media
(RTP, codecs, the agent link) is reached only through the plain-data messages of
``media_session/messages.py``, so the media can live in another process.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Coroutine
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from .. import logs, metrics
from ..media_session import messages as m
from ..media_session.control import MediaFactory
from ..sip.sdp import SdpError
from ..sip.sdp_answer import AudioAnswer
from .activity import CallActivity
from .call_transfer import CallTransfers
from .context import call_event, hangup_reason
from .offer_answer import OfferAnswer, codecs_for, srtp_mode
from .recording import plan_recording

if TYPE_CHECKING:
    from ..config import Config
    from ..sip.invite_session import InviteSession

log = logging.getLogger(__name__)

T = TypeVar("T")
Address = tuple[str, int]
# Told what happens to a call (kind: ringing, answered, dtmf, transfer, ended; data: the details), as
# it happens; it must not block or await (the webhooks only queue: calls/webhooks/).
CallObserver = Callable[["Call", str, dict[str, Any]], None]


class CallState(StrEnum):
    DIALING = "dialing"
    RINGING = "ringing"
    CONNECTING = "connecting"
    ANSWERED = "answered"
    ENDED = "ended"


class Leg(Protocol):
    """The call's SIP side: how it is set up and torn down (inbound or outbound)."""

    direction: str

    @property
    def session(self) -> InviteSession | None: ...

    def identify(self, call: Call) -> None:
        """Fill in who calls whom, and hook the session's early callbacks (before any await)."""

    async def establish(self, call: Call) -> None:
        """Get the call to ANSWERED, or ended."""

    def reject(self, call: Call, status: int, warning: str, reason: str) -> None: ...

    async def end_signalling(self, reason: str) -> None: ...

    def detach(self) -> None:
        """Unhook the call from its SIP session (which may outlive it by 64·T1)."""

    def media_ip(self) -> str: ...

    def signalling_source(self) -> Address | None: ...

    def max_duration(self, config: Config) -> float | None: ...


class Call:
    def __init__(
        self,
        leg: Leg,
        config: Config,
        media: MediaFactory,
        on_ended: Callable[[Call], None],
        on_event: CallObserver | None = None,
    ) -> None:
        self.id = secrets.token_hex(8)
        self.log = logs.call_logger(log, self.id)
        self.leg = leg
        self.direction = leg.direction
        self.config = config
        self.media = media(self._media_event)
        self._on_ended = on_ended
        self._on_event = on_event  # before identify(): an inbound call is ringing from there
        self.sip_call_id = ""
        self.from_user = self.to_user = ""
        self.from_display: str | None = None
        self.provider: str | None = None
        self.metadata: dict[str, str] = {}
        self.headers: dict[str, str] = {}  # the SIP headers the agent is told (forward_headers)
        self.transfers = CallTransfers(self)
        self.record_asked: bool | None = None  # what POST /calls said of recording (None: nothing)
        self.state = CallState.RINGING
        self.state_history: list[dict[str, Any]] = []
        self.started_at = time.time()
        self._created = time.monotonic()
        self.setup_s: float | None = None  # INVITE to 200 OK sent (inbound), placed to answered (outbound)
        self.answered_at: float | None = None
        self.ended_at: float | None = None
        self.end_reason: str | None = None
        self.activity = CallActivity()
        self.offer_answer = OfferAnswer(int(time.time() * 1000))
        self.rtp_port: int | None = None
        self.media_worker: int | None = None  # the media worker process holding it (None: this one)
        self.phone: m.PhoneMedia | None = None  # the phone media offer/answer settled last
        self._final_stats: m.MediaStats | None = None
        self._ended = asyncio.Event()
        leg.identify(self)
        self.offer_answer.srtp = srtp_mode(config, self.provider)  # the provider is known now
        self.offer_answer.codecs = codecs_for(config, self.provider)
        self.recording = plan_recording(config, self.id, self.provider, self.record_asked)

    @property
    def session(self) -> InviteSession | None:
        return self.leg.session

    @property
    def remote_party(self) -> str:
        """The phone on the other end, whom the agent remembers across calls (its resource id)."""
        return self.to_user if self.direction == "outbound" else self.from_user

    @property
    def codec(self) -> str | None:
        return self.offer_answer.codec

    @property
    def on_hold(self) -> bool:
        return self.phone is not None and self.phone.on_hold

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    def set_state(self, state: CallState) -> None:
        self.state = state
        self.state_history.append({"state": state.value, "at": time.time()})
        if state is CallState.RINGING:
            self.notify("ringing")

    def notify(self, kind: str, **data: Any) -> None:
        """Tell the observer (the webhooks) what happened: ``notify("transfer", state=..., reason=...)``.
        Never raises into the call, never waits."""
        if self._on_event is None:
            return
        try:
            self._on_event(self, kind, data)
        except Exception:
            self.log.exception("call %s: telling of its %s event failed", self.id, kind)

    # -- the life of the call ------------------------------------------------------------------

    async def run(self) -> None:
        """The call from set-up to its end; whatever way it ends, its media is freed."""
        try:
            await self.leg.establish(self)
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
            self.leg.detach()

    async def _hold_until_ended(self) -> None:
        """Wait for the end; at the maximum duration, end the call."""
        limit = self.leg.max_duration(self.config)
        try:
            await asyncio.wait_for(self._ended.wait(), limit)
        except TimeoutError:
            await self.hangup("maximum duration reached")

    # -- what the legs ask -------------------------------------------------------------------

    async def open_media(self) -> bool:
        """Take the call's RTP port; False (the call refused or ended) when there is none."""
        record_path = self.recording.path if self.recording is not None else None
        opened = await self.media.open(
            m.OpenMedia(self.id, self.direction, self.remote_party, self.leg.signalling_source(), record_path)
        )
        if isinstance(opened, m.MediaRefused):
            self.reject(503, opened.reason, "no free RTP port")
            return False
        self.rtp_port, self.media_worker = opened.port, opened.worker
        return True

    def apply_media(self, answer: AudioAnswer) -> None:
        """Offer/answer settled: the media side uses it (codec, address, hold or resume)."""
        self.phone = self.offer_answer.settled(answer)
        self.media.update(m.UpdateMedia(self.phone, self.leg.signalling_source()))

    def take_answer(self, body: bytes | None) -> bool:
        """The peer's answer to our offer (in an ACK or a 2xx); False if there is none we can use."""
        if not body:
            return False
        try:
            answer = self.offer_answer.take_answer(body)
        except SdpError as exc:
            self.log.info("call %s: unusable SDP answer: %s", self.id, exc)
            return False
        if self.rtp_port is None:
            return False
        self.apply_media(answer)
        return True

    def local_offer(self) -> bytes:
        assert self.rtp_port is not None
        return self.offer_answer.offer(self.leg.media_ip(), self.rtp_port)

    async def connect_agent(self) -> bool:
        """Dial the agent; False (the call refused or ending) when it cannot be reached."""
        result = await self.media.connect_agent(m.ConnectAgent(self.context()))
        if isinstance(result, m.AgentConnected):
            return True
        if self.end_reason is not None:
            return False  # the caller went away while we were dialling the agent
        self.log.warning("call %s: agent unavailable: %s", self.id, result.reason)
        metrics.agent_link_failed("setup")
        self.reject(503, f"agent unavailable: {result.reason}", "agent unavailable")
        return False

    def context(self) -> dict[str, Any]:
        """The first message the agent gets on ``events``: who calls whom, headers, metadata."""
        caller, callee = self.from_user, self.to_user
        return call_event(self.id, self.direction, caller, callee, self.provider, self.headers, self.metadata)

    def wire_dialog(self, session: InviteSession) -> None:
        """Hook what the established dialog brings: re-offers, answers, digits, failures."""
        session.on_dtmf = self._digit_by_signalling
        session.on_offer = self._offer_in_dialog
        session.on_answer = self._answer_in_dialog
        session.on_failed = self.finish_soon

    def answered(self, set_up_from: float) -> None:
        """The call is up (``set_up_from``: when its set-up time stops, monotonic)."""
        self.set_state(CallState.ANSWERED)
        self.answered_at = time.time()
        self.setup_s = set_up_from - self._created
        metrics.call_set_up(self.direction, self.setup_s)
        if self.recording is not None:
            self.recording.started = True
        self.media.answered(m.CallAnswered())
        self.notify("answered")

    def reject(self, status: int, warning: str, reason: str) -> None:
        self.leg.reject(self, status, warning, reason)

    def finish_soon(self, reason: str) -> None:
        self.spawn(self.hangup(reason))

    def spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """A task on behalf of this call (its log lines carry the call id), from any callback."""
        return asyncio.get_running_loop().create_task(coro, context=logs.call_context(self.id))

    # -- in the dialog -------------------------------------------------------------------------

    def _offer_in_dialog(self, body: bytes | None) -> bytes:
        """A re-INVITE or UPDATE: answer its offer (hold, resume, codec change), or make one.

        Raises SdpError (the session answers 488 and the call goes on as it was).
        """
        if body is None:
            return self.local_offer()
        offer, answer = self.offer_answer.take_offer(body)
        self.apply_media(answer)
        self.log.info("call %s: media now %s %s", self.id, answer.codec, answer.direction)
        assert self.rtp_port is not None
        return self.offer_answer.answer(offer, answer, self.leg.media_ip(), self.rtp_port)

    def _answer_in_dialog(self, body: bytes | None) -> None:
        if not self.take_answer(body) and self.state is CallState.ANSWERED:
            self.finish_soon("no usable SDP answer to our offer")

    def _digit_by_signalling(self, digit: str) -> None:
        self._phone_digit(digit, "sip-info", time.time())
        self.media.forward_digit(m.ForwardDigit(digit))

    def _phone_digit(self, digit: str, via: str, at: float) -> None:
        self.activity.digits_in(digit, "phone", via, at)
        self.notify("dtmf", digit=digit, via=via)

    # -- what the media side tells -------------------------------------------------------------

    def _media_event(self, event: m.MediaEvent) -> None:
        match event:
            case m.AgentEvent():
                self.activity.agent_event(event.event)
                kind = event.event.get("type")
                if kind == "hangup":
                    self.finish_soon(hangup_reason(event.event))
                elif kind == "transfer":
                    self.transfers.from_agent(event.event)
            case m.PhoneDigit():
                self._phone_digit(event.digit, event.via, event.at)
            case m.DigitsSent():
                self.activity.digits_in(event.digits, "agent", "rfc4733", event.at)
            case m.AgentClosed():
                self.finish_soon(f"agent ended the call: {event.reason}")
            case m.AgentFailed():
                self._agent_failed(event)
            case m.AgentRecovered():
                self._agent_recovered(event.status)
            case m.AgentLost():
                self.finish_soon(event.reason)
            case m.RtpTimeout():
                self.finish_soon(f"no RTP from the phone for {self.config.rtp_timeout:.0f} s")
            case m.MediaFailed():
                self.log.error("call %s: its media worker failed: %s", self.id, event.reason)
                self.finish_soon("media worker failed")
            case m.RecordingFailed():
                self.log.error("call %s: %s", self.id, event.reason)
                if self.recording is not None:
                    self.recording.error = event.reason
            case m.CodecChanged():
                self.log.info("call %s: codec changed from %s to %s", self.id, event.old, event.new)

    def _agent_failed(self, event: m.AgentFailed) -> None:
        if self.end_reason is not None:
            return
        metrics.agent_link_failed("mid_call")
        if not event.recovering:
            self.finish_soon(f"agent link failed: {event.reason}")
            return
        self.log.warning("call %s: agent link failed (%s); redialling", self.id, event.reason)
        self.activity.link_event("failed", reason=event.reason)

    def _agent_recovered(self, status: str) -> None:
        metrics.agent_reconnected(status == "resumed")
        self.activity.link_event("resumed" if status == "resumed" else "reconnected", resume_status=status)

    # -- ending --------------------------------------------------------------------------------

    async def hangup(self, reason: str) -> None:
        """End the call (BYE, CANCEL or a final response as the leg stands) and free everything."""
        if self.end_reason is not None:
            return
        self.end_reason = reason
        self.log.info("call %s ending: %s", self.id, reason)
        # The BYE's answer may take up to 64·T1: the call is over for everyone before that.
        signalling = asyncio.ensure_future(self.leg.end_signalling(reason))
        await asyncio.gather(self._release_media(), return_exceptions=True)
        self.mark_ended(reason)
        await asyncio.gather(signalling, return_exceptions=True)

    async def _release_media(self) -> None:
        self._final_stats = await self.media.close(m.CloseMedia(self.end_reason or "ended"))

    def mark_ended(self, reason: str) -> None:
        if self.state is CallState.ENDED:
            return
        self.end_reason = self.end_reason or reason
        self.set_state(CallState.ENDED)
        self.ended_at = time.time()
        self._ended.set()
        self._on_ended(self)
        self.notify("ended")

    # -- figures and view ----------------------------------------------------------------------

    def media_stats(self) -> m.MediaStats:
        """The media side's figures: the last snapshot once the media is closed, else a fresh one."""
        return self._final_stats or self.media.stats(m.StatsRequest())

    def media_counters(self) -> metrics.MediaCounters:
        """This call's RTP and agent-leg counters (nothing is counted per packet on this side)."""
        return self.media_stats().counters

    def to_dict(self) -> dict[str, Any]:
        stats, activity = self.media_stats(), self.activity
        agent = None if stats.agent is None else {**stats.agent, "events": activity.events[-20:]}
        return {
            "id": self.id,
            "direction": self.direction,
            "from": self.from_user,
            "to": self.to_user,
            "state": self.state.value,
            "states": list(self.state_history),
            "provider": self.provider,
            "metadata": dict(self.metadata),
            "headers": dict(self.headers),
            "transfer": self.transfers.view.to_dict() if self.transfers.view else None,
            "started_at": self.started_at,
            "answered_at": self.answered_at,
            "ended_at": self.ended_at,
            "end_reason": self.end_reason,
            "codec": self.codec,
            "srtp": {"suite": self.phone.srtp_suite} if self.phone and self.phone.srtp_suite else None,
            "worker": self.media_worker,
            "on_hold": self.on_hold,
            "digits": activity.phone_digits(),
            "dtmf": list(activity.digits[-50:]),
            "conversation": list(activity.conversation),
            "sip_call_id": self.sip_call_id,
            "rtp": stats.rtp,
            "agent": agent,
            "recording": self.recording.view() if self.recording is not None else None,
        }
