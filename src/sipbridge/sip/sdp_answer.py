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
# The sample rate of a codec's audio where wider than G.711's 8 kHz (media/phone_codec.py holds the
# same figures; the sip layer cannot import media, and the table is two lines).
AUDIO_BAND = {"OPUS": 48000, "G722": 16000}
# Opus (RFC 7587): always named opus/48000/2 in SDP, mono or stereo alike; dynamic payload type.
OPUS_PAYLOAD_TYPE = 111
# What we ask of the phone's Opus: in-band FEC (our loss concealment reads it from the next packet),
# mono. ``maxplaybackrate`` is left at its default (48000): the agent gets the full band.
OPUS_ANSWER_FMTP = "useinbandfec=1;stereo=0;sprop-stereo=0"
DTMF_CLOCKS = (8000, 48000)  # telephone-event rates we offer (48000 only beside Opus)


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
    codec_params: str = ""  # the peer's fmtp for the codec (Opus: maxplaybackrate, stereo, ...)
    dtmf_clock_rate: int = 8000


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
    """The widest mono codec offered that we support; among equally wide ones, the offer's first.
    (Opus counts as mono: RFC 7587 names it opus/48000/2 whatever the channels.)"""
    ours = [pt for pt in int_formats(media.formats) if rtpmap.get(pt, ("", 0, 0))[0] in wanted]
    usable = [pt for pt in ours if rtpmap[pt][2] == 1 or _is_opus(rtpmap[pt])]
    return max(usable, key=lambda pt: AUDIO_BAND.get(rtpmap[pt][0], 8000), default=None)


def _is_opus(entry: tuple[str, int, int]) -> bool:
    return entry[:2] == ("OPUS", 48000)


def _pick_dtmf(media: MediaDescription, rtpmap: dict[int, tuple[str, int, int]], clock: int) -> int | None:
    """telephone-event at the audio's own clock rate (RFC 4733 §2.1), else at 8000 (what most
    phones offer beside any codec)."""
    events = {
        rtpmap[pt][1]: pt
        for pt in reversed(int_formats(media.formats))
        if rtpmap.get(pt, ("", 0, 0))[0] == "TELEPHONE-EVENT"
    }
    return events.get(clock, events.get(8000))


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
    clock = rtpmap[pt][1]
    dtmf = _pick_dtmf(media, rtpmap, clock)
    return AudioAnswer(
        payload_type=pt,
        codec=rtpmap[pt][0],
        clock_rate=clock,
        dtmf_payload_type=dtmf,
        dtmf_clock_rate=rtpmap[dtmf][1] if dtmf is not None else 8000,
        codec_params=media.fmtp().get(pt, ""),
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
    """An SDP offer for one sendrecv audio stream with our codecs (static payload types, Opus on
    ``OPUS_PAYLOAD_TYPE``) and telephone-event (also at 48000 on the next type when Opus is offered)
    (``extra``: more attributes, such as an RTP/SAVP stream's crypto lines).

    ``rtcp_mux``: a=rtcp-mux (RFC 5761 §5.1.1): RTCP on the RTP port if the answer says so too;
    RTCP on port + 1 stays ready for an answer that does not.
    """
    names = [name.upper() for name in codecs]
    unknown = [name for name in names if name not in _STATIC_BY_NAME and name != "OPUS"]
    if unknown or not codecs:
        raise SdpError(f"cannot offer codecs {unknown or codecs}")
    pts = [OPUS_PAYLOAD_TYPE if name == "OPUS" else _STATIC_BY_NAME[name] for name in names]
    attributes = [line for pt in pts for line in _codec_attribute(pt)]
    dtmf = [] if dtmf_payload_type is None else [dtmf_payload_type]
    if dtmf and "OPUS" in names:
        dtmf.append(dtmf_payload_type + 1)  # type: ignore[operator]
    for pt, rate in zip(dtmf, DTMF_CLOCKS, strict=False):
        attributes += _dtmf_attributes(pt, rate)
    attributes += [("ptime", "20"), ("sendrecv", None), *_mux_attributes(rtcp_mux), *extra]
    formats = [str(pt) for pt in pts + dtmf]
    media = MediaDescription("audio", local_port, proto, formats, None, attributes)
    return _session(local_ip, session_id, session_version, username, [media]).to_bytes()


def _audio_media(proto: str, port: int, answer: AudioAnswer) -> MediaDescription:
    dtmf = answer.dtmf_payload_type
    formats = [str(answer.payload_type)] + ([str(dtmf)] if dtmf is not None else [])
    attributes = _answer_codec_attributes(answer)
    attributes += _dtmf_attributes(dtmf, answer.dtmf_clock_rate) + [
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


def _opus_attributes(pt: int) -> list[Attribute]:
    return [("rtpmap", f"{pt} opus/48000/2"), ("fmtp", f"{pt} {OPUS_ANSWER_FMTP}")]


def _codec_attribute(pt: int) -> list[Attribute]:
    if pt == OPUS_PAYLOAD_TYPE:
        return _opus_attributes(pt)
    return [_rtpmap_attribute(pt, *STATIC_PAYLOAD_TYPES[pt][:2])]


def _answer_codec_attributes(answer: AudioAnswer) -> list[Attribute]:
    if answer.codec == "OPUS":
        return _opus_attributes(answer.payload_type)
    return [_rtpmap_attribute(answer.payload_type, answer.codec, answer.clock_rate)]


def _dtmf_attributes(pt: int | None, rate: int = 8000) -> list[Attribute]:
    if pt is None:
        return []
    return [("rtpmap", f"{pt} telephone-event/{rate}"), ("fmtp", f"{pt} 0-16")]


def _mux_attributes(mux: bool) -> list[Attribute]:
    return [("rtcp-mux", None)] if mux else []


def _session(
    local_ip: str, session_id: int, version: int, username: str, media: list[MediaDescription]
) -> SessionDescription:
    addrtype = "IP6" if ":" in local_ip else "IP4"
    origin = Origin(username, session_id, version, "IN", addrtype, local_ip)
    return SessionDescription(0, origin, "sipbridge", local_ip, "0 0", [], media)
