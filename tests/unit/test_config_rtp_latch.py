"""The rtp_latch setting: a safe default, the documented values, and a clear error for others."""

import pytest

from sipbridge.config import load_config
from sipbridge.settings.values import ConfigError


def test_default_accepts_the_sdp_address_or_the_signalling_ip():
    assert load_config(env={}).rtp_latch == "sdp-or-signalling"


@pytest.mark.parametrize("value", ["sdp-or-signalling", "sdp", "ANY"])
def test_documented_values(value):
    assert load_config(env={"SIPBRIDGE_RTP_LATCH": value}).rtp_latch == value.lower()


def test_bad_value_names_the_setting():
    with pytest.raises(ConfigError, match="rtp_latch.*expected one of"):
        load_config(env={"SIPBRIDGE_RTP_LATCH": "first"})
