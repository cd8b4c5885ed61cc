"""SDES crypto lines (RFC 4568): which we take, which we skip."""

from __future__ import annotations

import base64

import pytest

from sipbridge.sip.sdes import SUITES, Crypto, choose, new_crypto, offered_cryptos, parse_crypto

KEY30 = base64.b64encode(bytes(range(30))).decode()


def test_a_plain_line_gives_tag_suite_and_key():
    crypto = parse_crypto(f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}")
    assert crypto == Crypto(1, "AES_CM_128_HMAC_SHA1_80", bytes(range(30)))
    assert crypto.attribute() == ("crypto", f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}")


@pytest.mark.parametrize("lifetime", ["2^31", "2^48", "2147483648"])
def test_a_lifetime_of_at_least_2_to_the_31_is_honoured(lifetime):
    assert parse_crypto(f"2 AES_CM_128_HMAC_SHA1_32 inline:{KEY30}|{lifetime}") is not None


@pytest.mark.parametrize(
    "value",
    [
        f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}|2^20",  # would need rekeying within the call
        f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}|1:4",  # an MKI
        f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}|2^31|1:4",
        f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30};inline:{KEY30}",  # two keys need MKIs
        f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30} UNENCRYPTED_SRTP",  # session parameters
        f"1 F8_128_HMAC_SHA1_80 inline:{KEY30}",  # a suite we do not have
        "1 AES_CM_128_HMAC_SHA1_80 inline:AAAA",  # too short
        "1 AES_CM_128_HMAC_SHA1_80 inline:not*base64",
        f"x AES_CM_128_HMAC_SHA1_80 inline:{KEY30}",
        "1 AES_CM_128_HMAC_SHA1_80",
    ],
)
def test_forms_we_cannot_honour_are_skipped(value):
    assert parse_crypto(value) is None


def test_the_first_usable_line_in_the_offer_s_order_is_chosen():
    gcm = base64.b64encode(bytes(28)).decode()
    attributes = [
        ("crypto", f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}|1:4"),
        ("crypto", f"2 AEAD_AES_128_GCM inline:{gcm}"),
        ("crypto", f"3 AES_CM_128_HMAC_SHA1_80 inline:{KEY30}"),
        ("rtpmap", "0 PCMU/8000"),
    ]
    offered = offered_cryptos(attributes)
    assert [c.tag for c in offered] == [2, 3]
    assert choose(offered).tag == 2
    assert choose(offered, ("AES_CM_128_HMAC_SHA1_80",)).tag == 3


@pytest.mark.parametrize("suite", list(SUITES))
def test_a_new_key_is_random_and_as_long_as_its_suite_wants(suite):
    one, two = new_crypto(1, suite), new_crypto(1, suite)
    assert len(one.key) == sum(SUITES[suite]) and one.key != two.key
    assert parse_crypto(one.attribute()[1]) == one
    assert one.inline not in repr(one)
