"""The audio offer/answer of RFC 3264 on SDP descriptions (``sdp.py``): which stream and codec we
take from an offer or an answer, and the SDP we answer or offer with."""

from __future__ import annotations

from dataclasses import dataclass

from .resolver import is_ip
from .sdes import RTP_PROFILES, SRTP_PROFILES, Crypto, is_secure, no_usable_stream, offered_cryptos
from .sdp import (
    STATIC_PAYLOAD_TYPES,
    Attribute,
    MediaDescription,
    Origin,
    SdpError,
    SessionDescription,
    explicit_direction,
    int_formats,
    ptime_of,
)


class NotAcceptableHere(SdpError):
    """A well-formed offer we cannot take (answer 488 Not Acceptable Here); ``end_reason`` names why
    in a call's end reason."""

    end_reason = "offer not acceptable"


class NoCommonCodec(NotAcceptableHere):
    """The offer has no audio stream we can take."""

    end_reason = "codec mismatch"


class MediaHostName(NotAcceptableHere):
    """The media address is a host name, not an IP address (as SBCs require: sending RTP to a name
    would mean a DNS lookup the caller chose, for every packet or at least every call)."""

    end_reason = "media address not an IP address"


_STATIC_BY_NAME = {name: pt for pt, (name, _, _) in STATIC_PAYLOAD_TYPES.items()}
_ANSWER_DIRECTION = {"sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}
ANY_PROFILE = RTP_PROFILES | SRTP_PROFILES
_NOT_CODECS = frozenset({"TELEPHONE-EVENT", "CN"})
AUDIO_BAND = {"G722": 16000}  # sample rate of a codec's audio where wider than G.711's 8 kHz


@dataclass
class AudioAnswer:
    """The outcome of negotiating an audio offer: what we send and where, and how we answer."""

    payload_type: int
    codec: str
    clock_rate: int
    dtmf_payload_type: int | None
    remote_addr: tuple[str, int]
    ptime: int = 20
    direction: str = "sendrecv"
    media_index: int = 0
    proto: str = "RTP/AVP"
    crypto: Crypto | None = None  # SRTP: our key (in our SDP; what we send is protected with it)
    peer_crypto: Crypto | None = None  # SRTP: the peer's key (what we receive is protected with it)
    rtcp_mux: bool = False  # RFC 5761: the stream has a=rtcp-mux (an offer: we answer with it too)


def negotiate_audio(
    offer: SessionDescription,
    supported: tuple[str, ...] = ("PCMU", "PCMA"),
    profiles: frozenset[str] = RTP_PROFILES,
) -> AudioAnswer:
    """Pick, on the first usable audio stream of one of ``profiles`` (an RTP/SAVP one needs a crypto
    line we can use), the widest offered codec we support (G.722 before G.711), else the offer's order."""
    wanted = {name.upper() for name in supported}
    offered: list[str] = []
    refused_profiles: list[str] = []
    for index, media in enumerate(offer.media):
        if media.media != "audio" or media.port == 0:
            continue
        if media.proto.upper() not in profiles or (
            is_secure(media.proto) and not offered_cryptos(media.attributes)
        ):
            refused_profiles.append(media.proto)
            continue
        rtpmap = media.rtpmap()
        names = [rtpmap[pt][0] if pt in rtpmap else str(pt) for pt in int_formats(media.formats)]
        offered = list(dict.fromkeys(offered + [name for name in names if name not in _NOT_CODECS]))
        choice = _pick_codec(media, rtpmap, wanted)
        if choice is not None:
            return _answer_for(offer, index, media, rtpmap, choice)
    if not offered:
        raise NoCommonCodec(no_usable_stream(refused_profiles, profiles))
    raise NoCommonCodec(f"no common codec: offered {', '.join(offered)}; supported {', '.join(supported)}")


def _pick_codec(
    media: MediaDescription, rtpmap: dict[int, tuple[str, int, int]], wanted: set[str]
) -> int | None:
    """The widest mono codec offered that we support; among equally wide ones, the offer's first."""
    ours = [pt for pt in int_formats(media.formats) if rtpmap.get(pt, ("", 0, 0))[0] in wanted]
    mono = [pt for pt in ours if rtpmap[pt][2] == 1]
    return max(mono, key=lambda pt: AUDIO_BAND.get(rtpmap[pt][0], 8000), default=None)


def _pick_dtmf(media: MediaDescription, rtpmap: dict[int, tuple[str, int, int]]) -> int | None:
    for pt in int_formats(media.formats):
        if rtpmap.get(pt, ("", 0, 0))[:2] == ("TELEPHONE-EVENT", 8000):
            return pt
    return None


def _answer_for(
    offer: SessionDescription,
    index: int,
    media: MediaDescription,
    rtpmap: dict[int, tuple[str, int, int]],
    pt: int,
) -> AudioAnswer:
    address = offer.connection_address(media)
    if address is None:
        raise SdpError("no connection address for the audio stream")
    if not is_ip(address):
        raise MediaHostName(f"media address {address[:64]!r} is a host name: an IP address is required")
    direction = explicit_direction(media.attributes) or explicit_direction(offer.attributes) or "sendrecv"
    return AudioAnswer(
        payload_type=pt,
        codec=rtpmap[pt][0],
        clock_rate=rtpmap[pt][1],
        dtmf_payload_type=_pick_dtmf(media, rtpmap),
        remote_addr=(address, media.port),
        ptime=media.ptime or ptime_of(offer.attributes) or 20,
        direction=_ANSWER_DIRECTION.get(direction, "sendrecv"),
        media_index=index,
        proto=media.proto,
        rtcp_mux=("rtcp-mux", None) in media.attributes,
    )


def build_answer(
    offer: SessionDescription,
    answer: AudioAnswer,
    *,
    local_ip: str,
    local_port: int,
    session_id: int,
    session_version: int = 1,
    username: str = "sipbridge",
) -> bytes:
    """The SDP answer: the chosen audio stream, and every other offered stream rejected (port 0)."""
    media = [
        _audio_media(offered.proto, local_port, answer)
        if index == answer.media_index
        else MediaDescription(offered.media, 0, offered.proto, list(offered.formats))
        for index, offered in enumerate(offer.media)
    ]
    return _session(local_ip, session_id, session_version, username, media).to_bytes()


def build_offer(
    *,
    local_ip: str,
    local_port: int,
    session_id: int,
    codecs: tuple[str, ...] = ("PCMU", "PCMA"),
    dtmf_payload_type: int | None = 101,
    session_version: int = 1,
    username: str = "sipbridge",
    proto: str = "RTP/AVP",
    extra: tuple[Attribute, ...] = (),
    rtcp_mux: bool = True,
) -> bytes:
    """An SDP offer for one sendrecv audio stream with static-payload codecs and telephone-event
    (``extra``: more attributes, such as an RTP/SAVP stream's crypto lines).

    ``rtcp_mux``: a=rtcp-mux (RFC 5761 §5.1.1): RTCP on the RTP port if the answer says so too;
    RTCP on port + 1 stays ready for an answer that does not.
    """
    unknown = [name for name in codecs if name.upper() not in _STATIC_BY_NAME]
    if unknown or not codecs:
        raise SdpError(f"cannot offer codecs {unknown or codecs}")
    pts = [_STATIC_BY_NAME[name.upper()] for name in codecs]
    attributes = [_rtpmap_attribute(pt, *STATIC_PAYLOAD_TYPES[pt][:2]) for pt in pts]
    attributes += _dtmf_attributes(dtmf_payload_type) + [("ptime", "20"), ("sendrecv", None)]
    attributes += [*_mux_attributes(rtcp_mux), *extra]
    formats = [str(pt) for pt in pts] + ([str(dtmf_payload_type)] if dtmf_payload_type is not None else [])
    media = MediaDescription("audio", local_port, proto, formats, None, attributes)
    return _session(local_ip, session_id, session_version, username, [media]).to_bytes()


def _audio_media(proto: str, port: int, answer: AudioAnswer) -> MediaDescription:
    dtmf = answer.dtmf_payload_type
    formats = [str(answer.payload_type)] + ([str(dtmf)] if dtmf is not None else [])
    attributes = [_rtpmap_attribute(answer.payload_type, answer.codec, answer.clock_rate)]
    attributes += _dtmf_attributes(dtmf) + [
        ("ptime", str(_answer_ptime(answer.ptime))),
        (answer.direction, None),
        *_mux_attributes(answer.rtcp_mux),
        *([answer.crypto.attribute()] if answer.crypto else []),
    ]
    return MediaDescription("audio", port, proto, formats, None, attributes)


def _answer_ptime(offered: int) -> int:
    """The packet time we ask to receive: the caller's own (10 to 60 ms, whole 10s), else 20.

    We play phone packets of any of those lengths, so a trunk set to 30 ms is not made to change;
    what we send is always 20 ms.
    """
    return offered if offered in (10, 20, 30, 40, 50, 60) else 20


def _rtpmap_attribute(pt: int, name: str, rate: int) -> Attribute:
    return "rtpmap", f"{pt} {name}/{rate}"


def _dtmf_attributes(pt: int | None) -> list[Attribute]:
    if pt is None:
        return []
    return [("rtpmap", f"{pt} telephone-event/8000"), ("fmtp", f"{pt} 0-16")]


def _mux_attributes(mux: bool) -> list[Attribute]:
    return [("rtcp-mux", None)] if mux else []


def _session(
    local_ip: str, session_id: int, version: int, username: str, media: list[MediaDescription]
) -> SessionDescription:
    addrtype = "IP6" if ":" in local_ip else "IP4"
    origin = Origin(username, session_id, version, "IN", addrtype, local_ip)
    return SessionDescription(0, origin, "sipbridge", local_ip, "0 0", [], media)
