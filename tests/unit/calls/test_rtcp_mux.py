"""rtcp-mux (RFC 5761) in a call's offer/answer: answered when offered, always offered, used only
when both sides said it; the decision crosses the seam as PhoneMedia.rtcp_mux."""

from __future__ import annotations

import base64

from sipbridge.calls.offer_answer import OfferAnswer
from sipbridge.sip.sdp import parse_sdp

KEY = base64.b64encode(bytes(range(30))).decode()


def _sdp(*attributes: str, proto: str = "RTP/AVP") -> bytes:
    lines = ["v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1", "t=0 0"]
    lines += [f"m=audio 4000 {proto} 0 101", "a=rtpmap:101 telephone-event/8000"]
    lines += [f"a={a}" for a in attributes]
    return ("\r\n".join(lines) + "\r\n").encode()


def _mux(body: bytes) -> bool:
    return ("rtcp-mux", None) in parse_sdp(body).media[0].attributes


def test_an_offer_with_rtcp_mux_is_answered_with_it_and_the_media_side_muxes():
    oa = OfferAnswer(1)
    offer, answer = oa.take_offer(_sdp("rtcp-mux"))
    assert _mux(oa.answer(offer, answer, "192.0.2.9", 5000))
    assert oa.settled(answer).rtcp_mux is True


def test_an_offer_without_it_is_answered_without_and_rtcp_stays_on_port_plus_one():
    oa = OfferAnswer(1)
    offer, answer = oa.take_offer(_sdp())
    assert not _mux(oa.answer(offer, answer, "192.0.2.9", 5000))
    assert oa.settled(answer).rtcp_mux is False


def test_our_offers_say_rtcp_mux_and_the_answer_decides():
    oa = OfferAnswer(1)
    assert _mux(oa.offer("192.0.2.9", 5000))
    assert oa.settled(oa.take_answer(_sdp("rtcp-mux"))).rtcp_mux is True
    assert _mux(oa.offer("192.0.2.9", 5000))  # a re-INVITE offer of ours too
    assert oa.settled(oa.take_answer(_sdp())).rtcp_mux is False  # an answer without: port + 1


def test_a_re_offer_without_rtcp_mux_moves_rtcp_back_to_port_plus_one():
    oa = OfferAnswer(1)
    assert oa.settled(oa.take_offer(_sdp("rtcp-mux"))[1]).rtcp_mux is True
    assert oa.settled(oa.take_offer(_sdp())[1]).rtcp_mux is False


def test_an_srtp_offer_with_rtcp_mux_gets_both():
    oa = OfferAnswer(1)
    offer, answer = oa.take_offer(
        _sdp(f"crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}", "rtcp-mux", proto="RTP/SAVP")
    )
    body = oa.answer(offer, answer, "192.0.2.9", 5000)
    phone = oa.settled(answer)
    assert _mux(body) and b"a=crypto:1 AES_CM_128_HMAC_SHA1_80" in body
    assert phone.rtcp_mux is True and phone.srtp_suite == "AES_CM_128_HMAC_SHA1_80"
