"""The ``codecs`` setting: which phone codecs a call takes and offers, and in which order."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sipbridge.calls.offer_answer import OfferAnswer, codecs_for
from sipbridge.config import Config, load_config
from sipbridge.settings.provider import ProviderConfig
from sipbridge.settings.values import ConfigError, HostPort
from sipbridge.sip.sdp import parse_sdp
from sipbridge.sip.sdp_answer import NotAcceptableHere


def _offer(formats: str) -> bytes:
    return (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio 4000 RTP/AVP {formats}\r\n"
    ).encode()


def _taken(codecs: tuple[str, ...], formats: str) -> str:
    offer_answer = OfferAnswer(1)
    offer_answer.codecs = codecs
    return offer_answer.take_offer(_offer(formats))[1].codec


@pytest.mark.parametrize(
    ("codecs", "formats", "codec"),
    [
        ((), "8 0 9", "G722"),  # unset: the widest, whatever the offer's order
        ((), "8 0", "PCMA"),  # ... and among the G.711s the offer's order
        (("PCMU", "PCMA"), "8 0 9", "PCMU"),  # a list: its order, its codecs only
        (("PCMA",), "0 8", "PCMA"),
    ],
)
def test_a_list_is_our_order_and_unset_is_the_widest(codecs, formats, codec) -> None:
    assert _taken(codecs, formats) == codec


def test_an_offer_without_any_of_our_codecs_is_refused_naming_them() -> None:
    with pytest.raises(NotAcceptableHere, match="offered G722.*supported PCMU, PCMA"):
        _taken(("PCMU", "PCMA"), "9")


def test_our_offers_follow_the_list() -> None:
    offer_answer = OfferAnswer(1)
    offer_answer.codecs = ("PCMA", "PCMU")
    audio = parse_sdp(offer_answer.offer("127.0.0.1", 4000)).media[0]
    assert audio.formats[:2] == ["8", "0"] and "9" not in audio.formats
    unset = parse_sdp(OfferAnswer(1).offer("127.0.0.1", 4000)).media[0]
    assert unset.formats[:4] == ["111", "9", "0", "8"]  # widest first


def test_the_setting_is_read_checked_and_a_provider_s_own_wins(tmp_path) -> None:
    assert load_config(None, env={"SIPBRIDGE_CODECS": "pcma, g722"}).codecs == ("PCMA", "G722")
    with pytest.raises(ConfigError, match="codecs"):
        load_config(None, env={"SIPBRIDGE_CODECS": "G729"})
    own = ProviderConfig(name="pbx", type="generic", address=HostPort("127.0.0.1", 5070), codecs=("PCMU",))
    other = replace(own, name="trunk", codecs=None)
    config = replace(Config(), codecs=("G722", "PCMA"), providers=(own, other))
    assert codecs_for(config, "pbx") == ("PCMU",)
    assert codecs_for(config, "trunk") == codecs_for(config, None) == ("G722", "PCMA")
