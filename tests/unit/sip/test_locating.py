"""RFC 3263 §4 choices and RFC 2782 SRV order from plain records, and the TTL cache (time passed in)."""

from __future__ import annotations

import random
from collections import Counter

from sipbridge.sip.locating import Naptr, Srv, TtlCache, default_srv_names, order_srv, srv_names


def test_srv_priority_comes_before_weight():
    records = [Srv(20, 100, 5062, "c.test"), Srv(10, 0, 5060, "a.test"), Srv(10, 0, 5061, "b.test")]
    ordered = order_srv(records, random.Random(1))
    assert {r.target for r in ordered[:2]} == {"a.test", "b.test"} and ordered[2].target == "c.test"


def test_srv_weights_share_the_first_place_in_proportion():
    records = [Srv(10, 60, 5060, "a.test"), Srv(10, 30, 5060, "b.test"), Srv(10, 10, 5060, "c.test")]
    rng = random.Random(42)
    firsts = Counter(order_srv(records, rng)[0].target for _ in range(10_000))
    assert 5_600 < firsts["a.test"] < 6_400 and 2_600 < firsts["b.test"] < 3_400
    assert 700 < firsts["c.test"] < 1_300


def test_every_record_of_a_priority_is_tried_once():
    records = [Srv(10, w, 5060 + w, f"{w}.test") for w in (0, 1, 5, 50)]
    for seed in range(50):
        ordered = order_srv(records, random.Random(seed))
        assert sorted(ordered, key=lambda r: r.weight) == sorted(records, key=lambda r: r.weight)


def test_zero_weight_is_rarely_first_but_can_be():
    records = [Srv(10, 0, 5060, "zero.test"), Srv(10, 100, 5060, "heavy.test")]
    rng = random.Random(7)
    firsts = Counter(order_srv(records, rng)[0].target for _ in range(5_000))
    assert 0 < firsts["zero.test"] < 200


def test_a_dot_target_means_no_service():
    assert order_srv([Srv(0, 0, 0, ".")], random.Random(1)) == []


def test_the_order_is_the_same_for_the_same_seed():
    records = [Srv(10, w, 5060, f"{w}.test") for w in (10, 20, 30, 40)]
    assert order_srv(records, random.Random(3)) == order_srv(records, random.Random(3))


NAPTRS = [
    Naptr(20, 10, "s", "SIP+D2U", "_sip._udp.trunk.test"),
    Naptr(10, 20, "S", "SIPS+D2T", "_sips._tcp.trunk.test"),
    Naptr(10, 10, "s", "SIP+D2T", "_sip._tcp.trunk.test"),
    Naptr(5, 10, "u", "E2U+sip", "!^.*$!sip:info@trunk.test!"),  # not a SIP service: ignored
]


def test_naptr_order_then_preference_picks_the_srv_names():
    assert srv_names(NAPTRS, ("UDP", "TCP", "TLS")) == [
        ("TCP", "_sip._tcp.trunk.test"),
        ("TLS", "_sips._tcp.trunk.test"),
        ("UDP", "_sip._udp.trunk.test"),
    ]


def test_a_configured_transport_keeps_only_its_naptrs():
    assert srv_names(NAPTRS, ("UDP",)) == [("UDP", "_sip._udp.trunk.test")]
    assert srv_names([NAPTRS[0]], ("TLS",)) == []


def test_without_naptrs_each_transport_has_its_srv_name():
    assert default_srv_names("trunk.test", ("UDP", "TCP", "TLS")) == [
        ("UDP", "_sip._udp.trunk.test"),
        ("TCP", "_sip._tcp.trunk.test"),
        ("TLS", "_sips._tcp.trunk.test"),
    ]


def test_cache_keeps_an_answer_for_its_ttl():
    cache: TtlCache[list[str]] = TtlCache()
    cache.put(("a.test", "A"), ["127.0.0.1"], ttl=60, now=100.0)
    assert cache.get(("a.test", "A"), now=159.9) == ["127.0.0.1"]
    assert cache.get(("a.test", "A"), now=160.0) is None and len(cache) == 0


def test_cache_keeps_empty_answers_too():
    cache: TtlCache[list[str]] = TtlCache()
    cache.put(("none.test", "SRV"), [], ttl=30, now=0.0)
    assert cache.get(("none.test", "SRV"), now=10.0) == []


def test_cache_clamps_the_ttl():
    cache: TtlCache[list[str]] = TtlCache(min_ttl=5, max_ttl=60)
    cache.put(("short", "A"), ["x"], ttl=0, now=0.0)
    cache.put(("long", "A"), ["y"], ttl=86_400, now=0.0)
    assert cache.get(("short", "A"), now=4.0) == ["x"] and cache.get(("long", "A"), now=61.0) is None


def test_a_zero_ttl_is_not_cached():
    cache: TtlCache[list[str]] = TtlCache()
    cache.put(("a.test", "A"), ["x"], ttl=0, now=0.0)
    assert len(cache) == 0


def test_cache_drops_the_least_recently_used():
    cache: TtlCache[int] = TtlCache(max_entries=2)
    cache.put(("a", "A"), 1, ttl=60, now=0.0)
    cache.put(("b", "A"), 2, ttl=60, now=0.0)
    assert cache.get(("a", "A"), now=1.0) == 1
    cache.put(("c", "A"), 3, ttl=60, now=1.0)
    assert cache.get(("b", "A"), now=1.0) is None and cache.get(("a", "A"), now=1.0) == 1
