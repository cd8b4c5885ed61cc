"""Destination allow-lists, premium/international refusal and attempt caps, without a network."""

from __future__ import annotations

import pytest

from sipbridge.config import HostPort, ProviderConfig
from sipbridge.providers.policy import AttemptLimiter, DestinationPolicy, Refused, normalise
from sipbridge.providers.provider import DialRequest, Provider


@pytest.mark.parametrize(("raw", "clean"), [("+1 (415) 555-0100", "+14155550100"), ("1001", "1001")])
def test_numbers_are_normalised(raw, clean):
    assert normalise(raw) == clean


@pytest.mark.parametrize("raw", ["", "abc", "+", "1", "12345678901234567", "sip:1001@x", "10 01#"])
def test_malformed_numbers_are_422(raw):
    with pytest.raises(Refused) as info:
        normalise(raw)
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


async def test_twilio_defaults_to_its_signalling_ranges_for_inbound():
    provider = _provider(type="twilio", address=HostPort("127.0.0.1", 5061))
    assert provider.accepts_source("54.172.60.1") and not provider.accepts_source("192.0.2.1")
    assert "password" not in provider.to_dict()
