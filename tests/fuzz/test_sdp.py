"""Fuzz target: the SDP parser (``parse_sdp``) and the audio offer/answer built on it.

Own error: ``SdpError`` (``NoCommonCodec``, its subclass, from ``negotiate_audio``). An SDP that
parses serialises to text that parses to the same description; an offer that negotiates gives an
answer that ``build_answer`` writes and ``parse_sdp`` reads back.
"""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st
from tests.fuzz.corpus import SDP_SAMPLES, checked, fuzz_bytes, header_text, no_hang

from sipbridge.sip.sdp import SdpError, parse_sdp
from sipbridge.sip.sdp_answer import build_answer, negotiate_audio

SDP_PIECES = [
    "v=0\r\n",
    "o=- 1 1 IN IP4 192.0.2.1\r\n",
    "s=-\r\n",
    "t=0 0\r\n",
    "c=IN IP4 ",
    "c=IN IP6 ::1\r\n",
    "m=audio ",
    "m=video 0 RTP/AVP 31\r\n",
    " RTP/AVP ",
    " RTP/SAVP ",
    "a=rtpmap:",
    "a=fmtp:",
    "a=ptime:",
    "a=sendonly\r\n",
    "a=inactive\r\n",
    "telephone-event/8000",
    "PCMU/8000",
    "PCMA/8000/2",
    "0",
    "8",
    "101",
    "255",
    "65536",
    "99999999999999999999999",
    "/",
    ".",
    " ",
    "\r\n",
    "\n",
    "\r",
    "\x00",
    "é",
    "\udcff",
]


def exercise(data: bytes | str) -> None:
    sdp = checked(lambda: parse_sdp(data), SdpError)
    if sdp is None:
        return
    with no_hang():
        for media in sdp.media:
            media.rtpmap(), media.fmtp(), media.direction, media.ptime
        again = parse_sdp(sdp.to_bytes())
        assert again == sdp
        try:
            answer = negotiate_audio(sdp)
        except SdpError:
            return
        body = build_answer(sdp, answer, local_ip="192.0.2.9", local_port=10000, session_id=1)
        assert parse_sdp(body).media[answer.media_index].port == 10000


@given(fuzz_bytes(SDP_SAMPLES))
@example(b"v=0\r\no=- 1 1 IN IP4 h\r\nm=audio 1 RTP/AVP 0\r\nc=IN IP4 a\r\na=ptime:99999999999\r\n")
def test_parse_sdp(data):
    exercise(data)


@given(st.lists(st.sampled_from(SDP_PIECES) | st.text(max_size=3), max_size=40).map("".join))
def test_parse_sdp_structured(text):
    exercise("v=0\r\no=- 1 1 IN IP4 h\r\n" + text)


@given(header_text(SDP_PIECES))
def test_parse_sdp_text(text):
    exercise(text)
