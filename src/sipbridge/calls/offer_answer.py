"""Our side of a call's offer/answer (RFC 3264): SDP in, the phone media it settles, SDP out.

Pure: no sockets, no clock. One session id for the call and a version that grows with each
description we send; the codec in use goes first in our later offers. SRTP (SDES, RFC 4568): the
``srtp`` mode says which profiles we take and offer; our key stays the same for the whole call
unless the suite changes, the peer's is whatever its last description says.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import TYPE_CHECKING

from ..media_session.messages import PhoneMedia
from ..sip.sdes import RTP_PROFILES, SRTP_PROFILES, Crypto, choose, is_secure, new_crypto, offered_cryptos
from ..sip.sdp import SdpError, SessionDescription, parse_sdp
from ..sip.sdp_answer import (
    ANY_PROFILE,
    AudioAnswer,
    NoCommonCodec,
    build_answer,
    build_offer,
    negotiate_audio,
)

if TYPE_CHECKING:
    from ..config import Config

CODECS = ("OPUS", "G722", "PCMU", "PCMA")  # what we take and offer, widest first
OFFERED_SUITES = ("AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32")  # the most widely supported
_PROFILES = {"off": RTP_PROFILES, "optional": ANY_PROFILE, "required": SRTP_PROFILES}


def codecs_for(config: Config, provider: str | None) -> tuple[str, ...]:
    """The ``codecs`` setting a call follows (its provider's, else the global one); empty: all."""
    own = next((p.codecs for p in config.providers if p.name == provider), None)
    return own if own is not None else config.codecs


def srtp_mode(config: Config, provider: str | None) -> str:
    """The ``srtp`` setting a call follows: its provider's, else the global one."""
    own = next((p.srtp for p in config.providers if p.name == provider), None)
    return own or config.srtp


def srtp_warnings(config: Config) -> list[str]:
    """Where SRTP keys would cross the network in clear SDP (SIP not over TLS): for the start-up log.

    The global ``optional`` (the default) is not warned of: nothing is encrypted unless a caller
    offers it, and without SRTP the SDP is in clear anyway.
    """
    warnings = []
    if config.srtp == "required":
        warnings.append("srtp = required while SIP is also taken over UDP/TCP: SRTP keys travel in clear SDP")
    for provider in config.providers:
        mode = provider.srtp or config.srtp
        if provider.transport != "tls" and (mode == "required" or provider.srtp == "optional"):
            warnings.append(
                f"provider {provider.name}: srtp = {mode} over {provider.transport.upper()}:"
                " SRTP keys travel in clear SDP (use transport = tls)"
            )
    return warnings


def phone_media(answer: AudioAnswer) -> PhoneMedia:
    """What the media side needs of a negotiated audio stream."""
    ours, theirs = answer.crypto, answer.peer_crypto
    return PhoneMedia(
        codec=answer.codec,
        payload_type=answer.payload_type,
        dtmf_payload_type=answer.dtmf_payload_type,
        remote=answer.remote_addr,
        clock_rate=answer.clock_rate,
        codec_params=answer.codec_params,
        dtmf_clock_rate=answer.dtmf_clock_rate,
        direction=answer.direction,
        srtp_suite=ours.suite if ours and theirs else None,
        srtp_send_key=ours.inline if ours and theirs else "",
        srtp_recv_key=theirs.inline if ours and theirs else "",
        rtcp_mux=answer.rtcp_mux,
    )


class OfferAnswer:
    def __init__(self, session_id: int, srtp: str = "optional") -> None:
        self.session_id = session_id
        self.version = 0
        self.srtp = srtp  # off, optional or required (srtp_mode)
        self.codecs: tuple[str, ...] = ()  # the codecs setting (codecs_for); empty: all, widest first
        self.codec: str | None = None  # the codec settled last
        self.secure = False  # the last settled stream is SRTP
        self._key: Crypto | None = None  # our SRTP key, once one is settled
        self._offered: tuple[Crypto, ...] = ()  # the crypto lines of our last offer

    def take_offer(self, body: bytes) -> tuple[SessionDescription, AudioAnswer]:
        """The peer's offer and how we answer it. Raises NotAcceptableHere (488) or SdpError (400)."""
        offer = parse_sdp(body)
        answer = self._negotiate(offer, _PROFILES[self.srtp])
        if not is_secure(answer.proto):
            return offer, answer
        theirs = choose(offered_cryptos(offer.media[answer.media_index].attributes))
        assert theirs is not None  # negotiate_audio takes no SRTP stream without a usable line
        ours = self._key if self._key is not None and self._key.suite == theirs.suite else None
        ours = replace(ours, tag=theirs.tag) if ours else new_crypto(theirs.tag, theirs.suite)
        return offer, replace(answer, crypto=ours, peer_crypto=theirs)

    def take_answer(self, body: bytes) -> AudioAnswer:
        """The peer's answer to our offer. Raises SdpError when there is none we can use."""
        profiles = SRTP_PROFILES if self._offered else RTP_PROFILES
        answer = self._negotiate(parse_sdp(body), profiles)
        if not self._offered:
            return answer
        media = parse_sdp(body).media[answer.media_index]
        for theirs in offered_cryptos(media.attributes):
            ours = next((c for c in self._offered if (c.tag, c.suite) == (theirs.tag, theirs.suite)), None)
            if ours is not None:
                return replace(answer, crypto=ours, peer_crypto=theirs)
        raise SdpError("the SRTP answer has no crypto line matching our offer")

    def _negotiate(self, sdp: SessionDescription, profiles: frozenset[str]) -> AudioAnswer:
        """The audio stream and codec we take: with a ``codecs`` list, its first that the SDP has;
        without, the widest (negotiate_audio's rule)."""
        for codec in self.codecs:
            with contextlib.suppress(NoCommonCodec):
                return negotiate_audio(sdp, (codec,), profiles=profiles)
        return negotiate_audio(sdp, self.codecs or CODECS, profiles=profiles)

    def settled(self, answer: AudioAnswer) -> PhoneMedia:
        """Offer/answer settled on ``answer``: remember its codec and key; the media it means."""
        self.codec = answer.codec
        self.secure = answer.crypto is not None
        self._key = answer.crypto
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
        """Our offer: RTP/SAVP when SRTP is required or already in use (with the key in use)."""
        self.version += 1
        ours = self.codecs or CODECS
        codecs = (self.codec, *(c for c in ours if c != self.codec)) if self.codec else ours
        self._offered = ()
        if self.srtp == "required" or (self.secure and self.srtp != "off"):
            fresh = tuple(new_crypto(tag, suite) for tag, suite in enumerate(OFFERED_SUITES, 1))
            self._offered = (self._key,) if self._key is not None else fresh
        return build_offer(
            local_ip=ip,
            local_port=port,
            session_id=self.session_id,
            session_version=self.version,
            codecs=codecs,
            proto="RTP/SAVP" if self._offered else "RTP/AVP",
            extra=tuple(crypto.attribute() for crypto in self._offered),
        )
