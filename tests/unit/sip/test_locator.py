"""ServerLocator against a tiny DNS server on 127.0.0.1: NAPTR → SRV → A/AAAA (RFC 3263 §4)."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from sipbridge.sip.locating import Target, TtlCache
from sipbridge.sip.locator import ServerLocator
from testbed.dns_server import DnsServer

ZONE = {
    "trunk.test.": [
        ("NAPTR", '10 50 "s" "SIP+D2T" "" _sip._tcp.trunk.test.'),
        ("NAPTR", '20 50 "s" "SIP+D2U" "" _sip._udp.trunk.test.'),
    ],
    "_sip._udp.trunk.test.": [("SRV", "10 0 5070 a.trunk.test."), ("SRV", "20 0 5071 b.trunk.test.")],
    "_sip._tcp.trunk.test.": [("SRV", "10 0 5072 a.trunk.test.")],
    "a.trunk.test.": [("A", "127.0.0.1")],
    "b.trunk.test.": [("A", "127.0.0.2"), ("AAAA", "::1")],
    "srv-only.test.": [("A", "127.0.0.9")],
    "_sips._tcp.srv-only.test.": [("SRV", "0 0 5081 a.trunk.test.")],
    "plain.test.": [("A", "127.0.0.3")],
}


@pytest.fixture(scope="module")
def dns() -> Iterator[DnsServer]:
    with DnsServer(ZONE) as server:
        yield server


def locator(dns: DnsServer, cache: TtlCache | None = None) -> ServerLocator:
    return ServerLocator([("127.0.0.1", dns.port)], rng=random.Random(1), cache=cache)


async def test_naptrs_choose_transports_and_srv_names(dns):
    assert await locator(dns).locate("trunk.test") == [
        Target("127.0.0.1", 5072, "TCP"),
        Target("127.0.0.1", 5070, "UDP"),
        Target("127.0.0.2", 5071, "UDP"),
        Target("::1", 5071, "UDP"),
    ]


async def test_a_configured_transport_takes_only_its_naptrs(dns):
    assert await locator(dns).locate("trunk.test.", "udp") == [
        Target("127.0.0.1", 5070, "UDP"),
        Target("127.0.0.2", 5071, "UDP"),
        Target("::1", 5071, "UDP"),
    ]


async def test_without_naptrs_the_transports_srv_names_are_asked(dns):
    assert await locator(dns).locate("srv-only.test") == [Target("127.0.0.1", 5081, "TLS")]


async def test_without_srv_the_address_on_the_transports_port(dns):
    assert await locator(dns).locate("plain.test") == [Target("127.0.0.3", 5060, "UDP")]
    assert await locator(dns).locate("plain.test", "TLS") == [Target("127.0.0.3", 5061, "TLS")]


async def test_a_name_nobody_knows_has_no_targets(dns):
    assert await locator(dns).locate("nowhere.test") == []


async def test_answers_are_kept_for_their_ttl(dns):
    kept = locator(dns)
    await kept.locate("trunk.test")
    asked = kept.queries
    await kept.locate("trunk.test")
    assert asked > 0 and kept.queries == asked
    forgetful = locator(dns, cache=TtlCache(max_ttl=0))
    await forgetful.locate("trunk.test")
    once = forgetful.queries
    await forgetful.locate("trunk.test")
    assert forgetful.queries == 2 * once


async def test_no_dns_server_falls_back_to_the_system_resolver():
    unreachable = ServerLocator([("127.0.0.1", 9)], timeout=0.2)  # the discard port: no answer
    assert Target("127.0.0.1", 5060, "UDP") in await unreachable.locate("localhost")
    assert unreachable.queries == 1  # the NAPTR query: no answer, so no SRV queries either
