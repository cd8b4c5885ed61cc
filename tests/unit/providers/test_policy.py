"""Destination allow-lists, premium/international refusal and attempt caps, without a network."""

from __future__ import annotations

import asyncio
import re

import pytest

from sipbridge.providers.policy import (
    DEFAULT_DESTINATIONS,
    DIALLING_PLANS,
    NANP_ABROAD,
    AttemptLimiter,
    Destination,
    DestinationPolicy,
    Refused,
    normalise,
    read_number,
)
from sipbridge.providers.provider import DialRequest, Provider
from sipbridge.settings.provider import ProviderConfig
from sipbridge.settings.values import HostPort


@pytest.mark.parametrize(("raw", "clean"), [("+1 (415) 555-0100", "+14155550100"), ("1001", "1001")])
def test_numbers_are_normalised(raw, clean):
    assert normalise(raw) == clean


@pytest.mark.parametrize(
    "raw", ["", "abc", "+", "1", "12345678901234567", "sip:1001@x", "10 01#", "+1234567890123456"]
)
def test_malformed_numbers_are_422(raw):
    # normalise() alone lets 16-19 digits through (0011 and 15 digits is a number); reading it does not
    with pytest.raises(Refused) as info:
        DestinationPolicy((r".*",), allow_premium=True).check(raw)
    assert info.value.status == 422


@pytest.mark.parametrize(
    ("number", "allowed"),
    [
        ("+14155550100", True),
        ("+19005550100", False),  # NANP premium
        ("+19765550100", False),
        ("19005550100", False),
        ("+447700900123", False),  # international
        ("+8819876543", False),  # satellite
        ("5550100", False),  # not in the allow-list
    ],
)
def test_premium_and_international_are_refused_unless_allowed(number, allowed):
    policy = DestinationPolicy((r"^\+?1?[0-9]{10}$", r"^\+[0-9]{8,15}$"))
    if allowed:
        assert policy.check(number) == number
    else:
        with pytest.raises(Refused) as info:
            policy.check(number)
        assert info.value.status == 403


def test_allow_premium_opens_the_ranges_but_not_the_allow_list():
    policy = DestinationPolicy((r"^\+[0-9]{8,15}$",), allow_premium=True)
    assert policy.check("+447700900123") == "+447700900123"
    with pytest.raises(Refused):
        policy.check("1001")


def test_attempt_limiter_is_a_sliding_minute():
    limiter = AttemptLimiter(2)
    assert limiter.allow(0) and limiter.allow(10) and not limiter.allow(59)
    assert limiter.retry_after(59) == 2
    assert limiter.allow(60.5) and not limiter.allow(61)


def _provider(**kwargs) -> Provider:  # noqa: ANN003
    fields = {"name": "pbx", "type": "asterisk", "address": HostPort("127.0.0.1", 5070)} | kwargs
    return Provider(ProviderConfig(**fields))


def test_provider_caps_concurrency_and_attempts():
    provider = _provider(max_outbound_calls=1, max_attempts_per_minute=2)
    assert provider.admit("1001", outbound_active=0, now=0) == "1001"
    with pytest.raises(Refused, match="cap") as info:
        provider.admit("1001", outbound_active=1, now=1)
    assert info.value.status == 429
    provider.admit("1001", outbound_active=0, now=2)
    with pytest.raises(Refused, match="in a minute"):
        provider.admit("1001", outbound_active=0, now=3)
    assert provider.calls_refused == 2


async def test_target_for_an_extension_on_a_pbx():
    provider = _provider(username="bridge", password="pw-123456", caller_id="agent", transport="tcp")
    target = await provider.target("1001", DialRequest("1001", ring_timeout=12))
    assert target.request_uri == "sip:1001@127.0.0.1:5070;transport=tcp"
    assert target.from_uri == "sip:agent@127.0.0.1" and target.destination == ("127.0.0.1", 5070)
    assert target.transport == "TCP" and target.ring_timeout == 12 and target.authenticator is not None


async def test_a_call_whose_destination_does_not_resolve_is_not_counted_as_placed(monkeypatch):
    async def no_dns(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise OSError("Name or service not known")

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", no_dns)
    provider = _provider(address=HostPort("pbx.invalid", 5060))
    with pytest.raises(Refused, match="cannot resolve pbx.invalid") as info:
        await provider.target("1001", DialRequest("1001"))
    assert info.value.status == 502
    assert provider.calls_placed == 0 and provider.to_dict()["calls_placed"] == 0
    resolved = _provider()  # a literal address: nothing to resolve, the call is placed
    await resolved.target("1001", DialRequest("1001"))
    assert resolved.to_dict()["calls_placed"] == 1


async def test_twilio_defaults_to_its_signalling_ranges_for_inbound():
    provider = _provider(type="twilio", address=HostPort("127.0.0.1", 5061))
    assert provider.accepts_source("54.172.60.1") and not provider.accepts_source("192.0.2.1")
    assert "password" not in provider.to_dict()


# -- every dialling form is read as E.164 before it is judged ------------------------------------

TWILIO = DestinationPolicy(DEFAULT_DESTINATIONS["twilio"])


@pytest.mark.parametrize(
    ("dialled", "reason"),
    [
        ("00441234567890", "+441234567890 (dialled as 00441234567890) is international"),
        ("011441234567890", "+441234567890 (dialled as 011441234567890) is international"),
        ("0019005551234", "+19005551234 (dialled as 0019005551234) is a premium-rate range"),
        ("00882123456", "+882123456 (dialled as 00882123456) is a premium-rate range"),
        ("+18765551234", "+18765551234 is international (+1 876 is Jamaica, not the US or Canada)"),
        ("1-876-555-1234", "is international (+1 876 is Jamaica"),
        ("8095551234", "is international (+1 809 is the Dominican Republic"),
        ("19765551234", "+19765551234 (dialled as 19765551234) is a premium-rate range"),
    ],
)
def test_fraud_numbers_are_refused_in_every_form_with_the_reason(dialled, reason):
    with pytest.raises(Refused) as info:
        TWILIO.check(dialled)
    assert info.value.status == 403 and reason in info.value.reason
    assert "(allow_premium is off)" in info.value.reason


@pytest.mark.parametrize("dialled", ["+14155550123", "4155550123", "1 (415) 555-0123", "011 1 415 555 0123"])
def test_a_us_number_goes_out_in_e164_whatever_the_form(dialled):
    assert TWILIO.check(dialled) == "+14155550123"


@pytest.mark.parametrize(
    ("country", "dialled", "e164"),
    [
        ("US", "0015145550123", "+15145550123"),  # 00 is read as international everywhere
        ("CA", "6135550123", "+16135550123"),
        ("GB", "020 7946 0000", "+442079460000"),
        ("GB", "0044 20 7946 0000", "+442079460000"),
        ("DE", "030 1234567", "+49301234567"),
        ("FR", "01 23 45 67 89", "+33123456789"),
        ("AU", "0011 44 20 7946 0000", "+442079460000"),
        ("JP", "010 1 415 555 0123", "+14155550123"),
        ("IT", "06 1234 5678", "+390612345678"),  # no trunk prefix: the 0 is part of the number
    ],
)
def test_national_and_international_forms_become_e164(country, dialled, e164):
    assert DestinationPolicy((r"^\+[0-9]+$",), allow_premium=True, country=country).check(dialled) == e164


@pytest.mark.parametrize(
    ("country", "dialled"),
    [("US", "1001"), ("US", "5550100"), ("GB", "7946 0000"), ("DE", "1234567"), ("GB", "1180")],
)
def test_extensions_and_local_numbers_stay_as_dialled_and_are_not_international(country, dialled):
    policy = DestinationPolicy((r"^[0-9]+$",), country=country)
    assert policy.check(dialled) == dialled.replace(" ", "")


@pytest.mark.parametrize(
    ("country", "dialled", "reason"),
    [
        ("GB", "09001234567", "premium-rate range"),
        ("GB", "070 1234 5678", "premium-rate range"),  # UK personal numbers
        ("GB", "118 118", "premium-rate short code"),  # directory enquiries: pounds a call
        ("DE", "0900 1234567", "premium-rate range"),
        ("DE", "11833", "premium-rate short code"),
        ("FR", "0033 899 12 34 56", "+33899123456 (dialled as 0033899123456) is a premium-rate range"),
        ("GB", "0033 1 23 45 67 89", "is international"),
    ],
)
def test_premium_ranges_of_the_home_country_in_national_form(country, dialled, reason):
    policy = DestinationPolicy((r"^\+?[0-9]+$",), country=country)
    with pytest.raises(Refused, match=re.escape(reason)):
        policy.check(dialled)


def test_fr_3389_is_premium_but_a_plain_paris_number_is_not():
    policy = DestinationPolicy((r"^\+33[0-9]{9}$",), country="FR")
    assert policy.check("01 23 45 67 89") == "+33123456789"
    with pytest.raises(Refused, match="premium"):
        policy.check("08 99 12 34 56")


@pytest.mark.parametrize("area", sorted(NANP_ABROAD))
@pytest.mark.parametrize("home", ["US", "CA"])
def test_every_non_us_nanp_country_is_international(area, home):
    with pytest.raises(Refused, match=re.escape(f"international (+1 {area} is ")):
        DestinationPolicy((r"^\+1[0-9]{10}$",), country=home).check(f"+1{area}5550123")


@pytest.mark.parametrize(
    "area",
    ["787", "939", "340", "671", "670", "684"]  # PR, USVI, Guam, CNMI, American Samoa: the US
    + ["416", "604", "514"],  # Canada: rated and permitted with the US
)
def test_us_territories_and_canada_are_domestic(area):
    assert TWILIO.check(f"+1{area}5550123") == f"+1{area}5550123"


def test_allow_premium_opens_the_caribbean_but_the_allow_list_still_holds():
    policy = DestinationPolicy((r"^\+1876[0-9]{7}$",), allow_premium=True)
    assert policy.check("011 1 876 555 1234") == "+18765551234"
    with pytest.raises(Refused, match="not in this provider's allowed destinations"):
        policy.check("+441234567890")


def test_patterns_see_the_e164_form_and_the_refusal_shows_both():
    policy = DestinationPolicy((r"^\+1415[0-9]{7}$",))
    assert policy.check("415 555 0123") == "+14155550123"
    with pytest.raises(Refused) as info:
        policy.check("628 555 0123")
    assert info.value.reason == (
        "destination +16285550123 (dialled as 6285550123) is not in this provider's allowed destinations"
    )


@pytest.mark.parametrize(
    ("country", "dialled", "says"),
    [
        ("US", "0123456789", "North American"),  # 0 + ...: the operator, not a number
        ("US", "12345678", "North American"),
        ("US", "1 015 555 0123", "North American"),
        ("US", "+1876555", "+1 and 10 digits"),
        ("US", "00012345678", "full number"),
        ("GB", "+44123", "full number"),
        ("GB", "12345678901", "nor a local one"),
    ],
)
def test_numbers_that_cannot_be_read_are_422(country, dialled, says):
    with pytest.raises(Refused, match=re.escape(says)) as info:
        DestinationPolicy((r".*",), allow_premium=True, country=country).check(dialled)
    assert info.value.status == 422


def test_read_number_says_what_a_number_is():
    us = DIALLING_PLANS["US"]
    assert read_number("011441234567890", us) == Destination("011441234567890", "+441234567890", "e164")
    assert read_number("1001", us).kind == "extension" and read_number("5550100", us).kind == "local"
    assert str(read_number("+14155550123", us)) == "+14155550123"


def test_provider_home_country_defaults_by_type_and_is_shown():
    assert _provider(type="twilio").country == "US"
    provider = _provider(type="generic", country="GB", destinations=(r"^\+44[0-9]{10}$",))
    assert provider.to_dict()["country"] == "GB"
    assert provider.admit("020 7946 0000", outbound_active=0, now=0) == "+442079460000"
