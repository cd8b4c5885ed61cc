"""Where a provider's requests go: as configured, or located through DNS when a domain names no port."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from sipbridge.providers.policy import Refused
from sipbridge.providers.provider import DialRequest, Provider
from sipbridge.settings.provider import ProviderConfig
from sipbridge.settings.values import HostPort
from sipbridge.sip.locating import Target
from sipbridge.sip.locator import ServerLocator
from testbed.dns_server import DnsServer

ZONE = {
    "trunk.test.": [("NAPTR", '10 50 "s" "SIP+D2U" "" _sip._udp.trunk.test.')],
    "_sip._udp.trunk.test.": [("SRV", "10 0 5070 a.trunk.test."), ("SRV", "20 0 5071 b.trunk.test.")],
    "_sip._tcp.trunk.test.": [("SRV", "10 0 5072 a.trunk.test.")],
    "a.trunk.test.": [("A", "127.0.0.1")],
    "b.trunk.test.": [("A", "127.0.0.2")],
}


@pytest.fixture(scope="module")
def dns() -> Iterator[DnsServer]:
    with DnsServer(ZONE) as server:
        yield server


def provider(dns: DnsServer, address: HostPort, **fields: object) -> Provider:
    config = ProviderConfig(name="trunk", type="generic", address=address, **fields)  # type: ignore[arg-type]
    return Provider(config, ServerLocator([("127.0.0.1", dns.port)], rng=random.Random(1)))


async def test_a_domain_without_a_port_is_located(dns):
    trunk = provider(dns, HostPort("trunk.test", 5060, port_given=False))
    assert await trunk.targets() == [Target("127.0.0.1", 5070, "UDP"), Target("127.0.0.2", 5071, "UDP")]
    target = await trunk.target("1001", DialRequest(to="1001"))
    assert target.destination == ("127.0.0.1", 5070)
    assert target.fallbacks == (Target("127.0.0.2", 5071, "UDP"),)
    assert target.request_uri == "sip:1001@trunk.test" and target.server_name == "trunk.test"


async def test_a_configured_transport_is_kept(dns):
    trunk = provider(dns, HostPort("trunk.test", 5060, port_given=False), transport="tcp", transport_set=True)
    assert await trunk.targets() == [Target("127.0.0.1", 5072, "TCP")]
    tls = provider(dns, HostPort("trunk.test", 5061, port_given=False), transport="tls", transport_set=True)
    assert tls.request_uri("1001") == "sip:1001@trunk.test;transport=tls"  # no :5061: SRV may say another


async def test_an_explicit_port_or_address_is_used_as_it_is(dns):
    assert await provider(dns, HostPort("127.0.0.1", 5999)).targets() == [Target("127.0.0.1", 5999, "UDP")]
    assert await provider(dns, HostPort("127.0.0.1", 5060, port_given=False)).targets() == [
        Target("127.0.0.1", 5060, "UDP")
    ]
    located = provider(dns, HostPort("trunk.test", 5080))
    assert not located.located and located.locator.queries == 0


async def test_an_unknown_domain_is_refused_with_502(dns):
    with pytest.raises(Refused) as info:
        await provider(dns, HostPort("nowhere.test", 5060, port_given=False)).targets()
    assert info.value.status == 502 and "nowhere.test" in str(info.value)
