"""Our side of a call's offer/answer (RFC 3264): SDP in, the phone media it settles, SDP out.

Pure: no sockets, no clock. One session id for the call and a version that grows with each
description we send; the codec in use goes first in our later offers.
"""

from __future__ import annotations

from ..media_session.messages import PhoneMedia
from ..sip.sdp import AudioAnswer, SessionDescription, build_answer, build_offer, negotiate_audio, parse_sdp

CODECS = ("PCMU", "PCMA")


def phone_media(answer: AudioAnswer) -> PhoneMedia:
    """What the media side needs of a negotiated audio stream."""
    return PhoneMedia(
        codec=answer.codec,
        payload_type=answer.payload_type,
        dtmf_payload_type=answer.dtmf_payload_type,
        remote=answer.remote_addr,
        direction=answer.direction,
    )


class OfferAnswer:
    def __init__(self, session_id: int) -> None:
        self.session_id = session_id
        self.version = 0
        self.codec: str | None = None  # the codec settled last

    def take_offer(self, body: bytes) -> tuple[SessionDescription, AudioAnswer]:
        """The peer's offer and how we answer it. Raises NotAcceptableHere (488) or SdpError (400)."""
        offer = parse_sdp(body)
        return offer, negotiate_audio(offer)

    def take_answer(self, body: bytes) -> AudioAnswer:
        """The peer's answer to our offer. Raises SdpError when there is none we can use."""
        return negotiate_audio(parse_sdp(body))

    def settled(self, answer: AudioAnswer) -> PhoneMedia:
        """Offer/answer settled on ``answer``: remember its codec; the media it means."""
        self.codec = answer.codec
        return phone_media(answer)

    def answer(self, offer: SessionDescription, answer: AudioAnswer, ip: str, port: int) -> bytes:
        self.version += 1
        return build_answer(
            offer,
            answer,
            local_ip=ip,
            local_port=port,
            session_id=self.session_id,
            session_version=self.version,
        )

    def offer(self, ip: str, port: int) -> bytes:
        self.version += 1
        codecs = (self.codec, *(c for c in CODECS if c != self.codec)) if self.codec else CODECS
        return build_offer(
            local_ip=ip,
            local_port=port,
            session_id=self.session_id,
            session_version=self.version,
            codecs=codecs,
        )
