"""SRTP (SDES) in a call's offer/answer, its settings, and that its keys are never shown."""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import replace

import pytest

from sipbridge.calls.offer_answer import OfferAnswer, srtp_mode, srtp_warnings
from sipbridge.calls.records import call_record
from sipbridge.config import Config, load_config
from sipbridge.settings.provider import ProviderConfig
from sipbridge.settings.values import ConfigError, HostPort
from sipbridge.sip.sdp import parse_sdp
from sipbridge.sip.sdp_answer import NotAcceptableHere

KEY = base64.b64encode(bytes(range(30))).decode()


def _offer(proto: str = "RTP/SAVP", *cryptos: str) -> bytes:
    lines = ["v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1", "t=0 0"]
    lines += [f"m=audio 4000 {proto} 0 101", "a=rtpmap:101 telephone-event/8000"]
    lines += [f"a=crypto:{c}" for c in cryptos]
    return ("\r\n".join(lines) + "\r\n").encode()


SAVP = _offer(
    "RTP/SAVP", f"1 AES_CM_128_HMAC_SHA1_32 inline:{KEY}", f"2 AES_CM_128_HMAC_SHA1_80 inline:{KEY}"
)


def test_an_savp_offer_is_answered_in_savp_with_one_fresh_crypto_line_of_the_same_tag():
    oa = OfferAnswer(1)
    offer, answer = oa.take_offer(SAVP)
    sdp = parse_sdp(oa.answer(offer, answer, "192.0.2.9", 5000))
    (media,) = sdp.media
    cryptos = [value for name, value in media.attributes if name == "crypto"]
    assert media.proto == "RTP/SAVP" and len(cryptos) == 1
    tag, suite, inline = cryptos[0].split()
    assert (tag, suite) == ("1", "AES_CM_128_HMAC_SHA1_32") and inline != f"inline:{KEY}"
    phone = oa.settled(answer)
    assert phone.srtp_suite == suite and phone.srtp_recv_key == KEY
    assert f"inline:{phone.srtp_send_key}" == inline
    assert KEY not in repr(phone) and phone.srtp_send_key not in repr(phone) + repr(answer)


def test_a_re_offer_keeps_our_key_and_takes_the_peer_s_new_one():
    oa = OfferAnswer(1)
    first = oa.settled(oa.take_offer(SAVP)[1])
    new_key = base64.b64encode(bytes(30)).decode()
    second = oa.settled(oa.take_offer(_offer("RTP/SAVP", f"1 AES_CM_128_HMAC_SHA1_32 inline:{new_key}"))[1])
    assert second.srtp_send_key == first.srtp_send_key and second.srtp_recv_key == new_key


def test_an_offer_of_ours_in_an_srtp_call_stays_savp_with_the_key_in_use():
    oa = OfferAnswer(1)
    phone = oa.settled(oa.take_offer(SAVP)[1])
    (media,) = parse_sdp(oa.offer("192.0.2.9", 5000)).media
    assert media.proto == "RTP/SAVP"
    assert ("crypto", f"1 AES_CM_128_HMAC_SHA1_32 inline:{phone.srtp_send_key}") in media.attributes


def test_with_srtp_off_an_savp_only_offer_is_not_acceptable():
    with pytest.raises(NotAcceptableHere, match="RTP/SAVP is not supported"):
        OfferAnswer(1, srtp="off").take_offer(SAVP)


def test_an_savp_offer_without_a_usable_crypto_line_is_not_acceptable():
    offer = _offer("RTP/SAVP", f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|1:4")
    with pytest.raises(NotAcceptableHere, match="crypto line"):
        OfferAnswer(1).take_offer(offer)


def test_with_srtp_optional_plain_offers_go_on_and_ours_are_plain():
    oa = OfferAnswer(1)
    assert oa.settled(oa.take_offer(_offer("RTP/AVP"))[1]).srtp_suite is None
    assert parse_sdp(oa.offer("192.0.2.9", 5000)).media[0].proto == "RTP/AVP"


def test_with_srtp_required_a_plain_offer_is_refused_naming_its_profile():
    with pytest.raises(NotAcceptableHere, match=r"RTP/AVP is not supported \(SRTP: RTP/SAVP"):
        OfferAnswer(1, srtp="required").take_offer(_offer("RTP/AVP"))


def test_with_srtp_required_we_offer_savp_and_take_the_answer_s_matching_line():
    oa = OfferAnswer(1, srtp="required")
    (media,) = parse_sdp(oa.offer("192.0.2.9", 5000)).media
    cryptos = [value.split() for name, value in media.attributes if name == "crypto"]
    assert media.proto == "RTP/SAVP" and [c[1] for c in cryptos] == [
        "AES_CM_128_HMAC_SHA1_80",
        "AES_CM_128_HMAC_SHA1_32",
    ]
    answer = oa.take_answer(_offer("RTP/SAVP", f"2 AES_CM_128_HMAC_SHA1_32 inline:{KEY}"))
    phone = oa.settled(answer)
    assert phone.srtp_suite == "AES_CM_128_HMAC_SHA1_32" and phone.srtp_recv_key == KEY
    assert f"inline:{phone.srtp_send_key}" == cryptos[1][2]


def test_an_answer_whose_crypto_line_matches_none_of_ours_is_unusable():
    oa = OfferAnswer(1, srtp="required")
    oa.offer("192.0.2.9", 5000)
    with pytest.raises(ValueError, match="crypto"):
        oa.take_answer(_offer("RTP/SAVP", f"7 AES_CM_128_HMAC_SHA1_80 inline:{KEY}"))
    with pytest.raises(ValueError):
        oa.take_answer(_offer("RTP/AVP"))


def _provider(name: str, **fields) -> ProviderConfig:
    return ProviderConfig(name=name, type="generic", address=HostPort("127.0.0.1", 5070), **fields)


def test_the_setting_is_global_with_a_provider_s_own_winning():
    assert Config().srtp == "optional"
    config = replace(Config(), srtp="off", providers=(_provider("pbx", srtp="required"), _provider("b")))
    assert srtp_mode(config, "pbx") == "required"
    assert srtp_mode(config, "b") == srtp_mode(config, None) == "off"


def test_the_setting_is_read_from_toml_and_checked(tmp_path):
    path = tmp_path / "sipbridge.toml"
    path.write_text(
        'srtp = "required"\n[providers.pbx]\ntype = "generic"\naddress = "192.0.2.5"\nsrtp = "off"\n'
    )
    config = load_config(path, env={})
    assert config.srtp == "required" and config.providers[0].srtp == "off"
    path.write_text('srtp = "sometimes"\n')
    with pytest.raises(ConfigError, match="srtp"):
        load_config(path, env={})


def test_start_up_warns_where_keys_would_travel_in_clear_sdp():
    assert srtp_warnings(Config()) == []  # optional, the default: only if a caller offers it
    config = replace(
        Config(),
        providers=(
            _provider("udp-trunk", srtp="required"),
            _provider("tls-trunk", srtp="required", transport="tls"),
            _provider("plain", srtp="off"),
        ),
    )
    (warning,) = srtp_warnings(config)
    assert "udp-trunk" in warning and "tls" in warning
    assert any("UDP/TCP" in w for w in srtp_warnings(replace(Config(), srtp="required")))


async def test_a_call_s_view_record_and_logs_show_the_suite_never_a_key(make_call, caplog):
    caplog.set_level(logging.DEBUG)
    call = make_call()
    assert await call.open_media()
    offer, answer = call.offer_answer.take_offer(SAVP)
    call.apply_media(answer)
    sdp = call.offer_answer.answer(offer, answer, "192.0.2.9", call.rtp_port or 0)
    ours = call.phone.srtp_send_key
    assert ours and f"inline:{ours}".encode() in sdp
    view, record = call.to_dict(), call_record(call)
    assert view["srtp"] == record["srtp"] == {"suite": "AES_CM_128_HMAC_SHA1_32"}
    shown = json.dumps(view) + json.dumps(record) + caplog.text + repr(call.phone)
    assert ours not in shown and KEY not in shown
