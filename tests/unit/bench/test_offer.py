"""bench.load.offer: the SDP sipp offers for each codec of the axis, plain or SRTP, and the keys."""

from __future__ import annotations

import base64

import pytest

from bench.common import SCENARIOS
from bench.load import offer
from bench.load.wire import G722, OPUS, PCMU
from sipbridge.sip.sdes import parse_crypto

TEMPLATE = (SCENARIOS / "uac_bench.xml").read_text(encoding="latin-1")


def test_plain_pcmu_is_the_offer_of_before_the_codec_axis() -> None:
    assert offer.scenario(TEMPLATE, PCMU, srtp=False) == TEMPLATE


def test_each_codec_is_offered_alone_with_its_rtpmap() -> None:
    assert offer.media_lines(G722, srtp=False) == [
        "m=audio [field0] RTP/AVP 9", "a=rtpmap:9 G722/8000", "a=ptime:20", "a=sendrecv",
    ]  # fmt: skip
    assert offer.media_lines(OPUS, srtp=False) == [
        "m=audio [field0] RTP/AVP 111",
        "a=rtpmap:111 opus/48000/2",
        "a=fmtp:111 useinbandfec=1;stereo=0",
        "a=ptime:20",
        "a=sendrecv",
    ]


def test_srtp_offers_savp_with_the_calls_own_key() -> None:
    lines = offer.media_lines(PCMU, srtp=True)

    assert lines[0] == "m=audio [field0] RTP/SAVP 0"
    assert "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:[field1]" in lines
    assert sum(line.startswith("a=crypto") for line in lines) == 1


def test_the_scenario_replaces_only_the_media_lines_and_logs_the_answer_key_with_srtp() -> None:
    text = offer.scenario(TEMPLATE, G722, srtp=True)

    body = text[text.index("v=0") : text.index("]]>", text.index("v=0"))]
    assert "      m=audio [field0] RTP/SAVP 9\n      a=rtpmap:9 G722/8000\n" in body
    assert "PCMU" not in body and "RTP/AVP" not in body
    start = text.index('<recv response="200"')
    answer = text[start : text.index("</recv>", start)]
    assert 'assign_to="answer_crypto"' in answer and 'check_it="true"' in answer
    assert '<log message="[field0] [$answer_crypto]"/>' in answer
    assert 'assign_to="contact_uri"' in answer  # the template's own action is kept
    assert "answer_crypto" not in offer.scenario(TEMPLATE, G722, srtp=False)


def test_a_template_without_a_media_section_is_refused() -> None:
    with pytest.raises(ValueError, match="media section"):
        offer.scenario("<scenario/>", PCMU, srtp=False)


def test_each_call_gets_its_port_and_with_srtp_its_key() -> None:
    key = base64.b64encode(offer.new_key()).decode()

    assert offer.injection_text([4000, 4002], [None, None]) == "SEQUENTIAL\n4000;\n4002;\n"
    assert offer.injection_text([4000], [key]) == f"SEQUENTIAL\n4000;{key};\n"


def test_new_keys_are_usable_sdes_keys_and_differ() -> None:
    a, b = offer.new_key(), offer.new_key()

    assert a != b and len(a) == 30
    line = f"1 {offer.SUITE} inline:{base64.b64encode(a).decode()}"
    assert parse_crypto(line) is not None


def test_answer_keys_are_read_per_probe_port_and_junk_is_left_out() -> None:
    key = offer.new_key()
    inline = base64.b64encode(key).decode()
    short = base64.b64encode(key[:20]).decode()
    log = (
        f"40000 a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{inline}\n"
        f"40002 a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{short}\n"  # wrong length
        "40004 \n"  # the ereg found nothing
        "garbage line\n"
    )

    assert offer.answer_keys(log) == {40000: key}
