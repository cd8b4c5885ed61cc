"""The leg of a call that came to us: answer its INVITE once the agent's media is up.

States in order: ringing → connecting (180 sent, agent being dialled) → answered (our 2xx ACKed) →
ended. Nothing is sent to the address the INVITE names before its ACK: see ``_accept``.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from .. import logs
from ..media_session.messages import ConfirmPeer, StartSending
from ..sip.invite_session import InviteSession
from ..sip.sdp import SdpError, SessionDescription
from ..sip.sdp_answer import AudioAnswer, NotAcceptableHere
from .call import Address, Call, CallState
from .context import forward_rules, forwarded_headers

if TYPE_CHECKING:
    from ..config import Config

log = logging.getLogger(__name__)


class InboundLeg:
    direction = "inbound"

    def __init__(self, session: InviteSession) -> None:
        self._session = session

    @property
    def session(self) -> InviteSession:
        return self._session

    def identify(self, call: Call) -> None:
        session, request = self._session, self._session.request
        call.sip_call_id = request.call_id
        call.from_user = request.from_.uri.user or request.from_.uri.host
        call.from_display = request.from_.display
        call.to_user = request.to.uri.user or request.to.uri.host
        call.provider = session.admitted_as
        call.headers = forwarded_headers(request.headers.items(), forward_rules(call.config, call.provider))
        session.log_extra = {"call_id": call.id}
        # Wired before the first await: a CANCEL may answer our 100 Trying before run() starts.
        session.on_cancel = lambda: call.finish_soon("caller cancelled")
        session.on_bye = lambda: call.finish_soon("caller hung up")
        session.on_failed = call.finish_soon  # e.g. no PRACK for our reliable 180 (RFC 3262)
        call.set_state(CallState.RINGING)

    async def establish(self, call: Call) -> None:
        session = self._session
        if session.cancelled:
            return
        offer, answer = self._negotiate(call)
        if call.end_reason is not None or call.state is CallState.ENDED:
            return
        if not await call.open_media() or call.end_reason is not None:
            return
        if answer is not None:
            call.apply_media(answer)
        session.provisional(180)
        call.set_state(CallState.CONNECTING)
        if not await call.connect_agent():
            return
        if session.cancelled:
            await call.hangup("caller cancelled")
            return
        await self._accept(call, offer, answer)

    def _negotiate(self, call: Call) -> tuple[SessionDescription | None, AudioAnswer | None]:
        """The caller's offer and our answer to it; (None, None) for an INVITE without SDP."""
        body = self._session.request.body
        if not body:
            return None, None  # we offer in the 200 and take the answer from the ACK
        try:
            return call.offer_answer.take_offer(body)
        except NotAcceptableHere as exc:
            self.reject(call, 488, str(exc), exc.end_reason)
        except SdpError as exc:
            self.reject(call, 400, f"bad SDP: {exc}", "bad SDP")
        return None, None

    async def _accept(self, call: Call, offer: SessionDescription | None, answer: AudioAnswer | None) -> None:
        session = self._session
        assert call.rtp_port is not None
        call.wire_dialog(session)
        if offer is not None and answer is not None:
            sdp = call.offer_answer.answer(offer, answer, self.media_ip(), call.rtp_port)
        else:
            sdp = call.local_offer()
        # Nothing goes to the address the INVITE names until its ACK (with our To tag) shows that the
        # caller receives our answers: a spoofed INVITE's sender never sees them, so it cannot aim the
        # agent's audio at a third party. (Offerless INVITE: the ACK's answer says where anyway.)
        call.media.start_sending(StartSending(confirmed=False))
        sent_ok_at = time.monotonic()
        acked = await session.accept(sdp)
        if call.ended:
            return
        if not acked:
            if session.ended_by_peer:  # its BYE overtook a lost ACK: the caller had the 200
                call.answered_at = time.time()
                await call.hangup("caller hung up")
            else:
                await call.hangup("no ACK for 200 OK")
            return
        call.media.confirm_peer(ConfirmPeer())
        if answer is None and not call.take_answer(session.ack_body):
            await call.hangup("no usable SDP answer in the ACK")
            return
        call.answered(sent_ok_at)
        call.log.info("call %s answered (%s from %s)", call.id, call.codec, logs.redact_user(call.from_user))

    def reject(self, call: Call, status: int, warning: str, reason: str) -> None:
        call.log.info("call %s rejected with %d: %s", call.id, status, warning)
        self._session.reject(status, warning=warning)
        call.mark_ended(reason)

    async def end_signalling(self, reason: str) -> None:
        await self._session.hangup(reason)

    def detach(self) -> None:
        """Unhook the call from its SIP session, which the UA keeps while the INVITE transaction
        lives (64·T1 past the 200 OK), so that the call's records go now, not then."""
        session = self._session
        session.on_cancel = session.on_bye = session.on_failed = session.on_dtmf = None
        session.on_offer = session.on_answer = None

    def media_ip(self) -> str:
        return self._session.media_ip

    def signalling_source(self) -> Address | None:
        """Where the call's SIP comes from: its IP may send the phone's RTP (from a NAT's port)."""
        return self._session.source

    def max_duration(self, config: Config) -> float | None:
        return config.max_call_duration or None
