"""Locating SIP servers (RFC 3263 §4) from DNS records: which transports and names to try, in what order.

Sans-IO: the records come in as plain data, the time (``now``) and the random source are passed in,
and what comes out is the ordered list of names to look up next. ``locator.ServerLocator`` does the
DNS queries around it.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from dataclasses import dataclass
from typing import Generic, TypeVar

# NAPTR services for SIP (RFC 3263 §4.1) and the transport each stands for.
SERVICES = {"SIP+D2U": "UDP", "SIP+D2T": "TCP", "SIPS+D2T": "TLS"}
# SRV owner-name prefixes when no NAPTR names one (§4.1), and the ports without SRV (§4.2).
SRV_PREFIXES = {"UDP": "_sip._udp.", "TCP": "_sip._tcp.", "TLS": "_sips._tcp."}
DEFAULT_PORTS = {"UDP": 5060, "TCP": 5060, "TLS": 5061}
TRANSPORTS = ("UDP", "TCP", "TLS")  # our preference when DNS leaves the choice to us


@dataclass(frozen=True)
class Target:
    """One place to send a request to: an IP address, a port, a transport (UDP, TCP, TLS)."""

    host: str
    port: int
    transport: str


@dataclass(frozen=True)
class Naptr:
    order: int
    preference: int
    flags: str
    service: str
    replacement: str  # an SRV owner name for flag "s"


@dataclass(frozen=True)
class Srv:
    priority: int
    weight: int
    port: int
    target: str


def srv_names(naptrs: list[Naptr], transports: tuple[str, ...]) -> list[tuple[str, str]]:
    """(transport, SRV name) to query, best first: from NAPTRs for SIP services (flag ``s``) when any
    are for one of ``transports``, else the ``_sip._udp.`` style names of ``transports`` (empty
    domain part: the caller appends the domain)."""
    usable = [
        record
        for record in naptrs
        if record.flags.lower() == "s" and SERVICES.get(record.service.upper()) in transports
    ]
    usable.sort(key=lambda record: (record.order, record.preference))
    return [(SERVICES[record.service.upper()], record.replacement) for record in usable]


def default_srv_names(domain: str, transports: tuple[str, ...]) -> list[tuple[str, str]]:
    """§4.1 without NAPTRs: an SRV query for each transport, in our order of preference."""
    return [(transport, SRV_PREFIXES[transport] + domain) for transport in transports]


def order_srv(records: list[Srv], rng: random.Random) -> list[Srv]:
    """RFC 2782: lowest priority first; within a priority, a weighted random draw without replacement
    (weight 0 records first in the running sum, so they are picked rarely but can be). A lone "."
    target means the service is not offered there: such records are left out."""
    ordered: list[Srv] = []
    for priority in sorted({record.priority for record in records}):
        group = [r for r in records if r.priority == priority and r.target not in (".", "")]
        group.sort(key=lambda record: record.weight != 0)  # zero weights first (RFC 2782)
        while group:
            total = sum(record.weight for record in group)
            threshold = rng.randint(0, total)
            running = 0
            for index, record in enumerate(group):
                running += record.weight
                if running >= threshold:
                    ordered.append(group.pop(index))
                    break
    return ordered


V = TypeVar("V")


@dataclass(frozen=True)
class _Cached(Generic[V]):
    value: V
    expires: float


class TtlCache(Generic[V]):
    """DNS answers by (name, type), each for its TTL (clamped to [min_ttl, max_ttl]); at most
    ``max_entries``, the least recently used out first. An empty answer is cached too (negative)."""

    def __init__(self, min_ttl: float = 0.0, max_ttl: float = 3600.0, max_entries: int = 1024) -> None:
        self.min_ttl, self.max_ttl, self.max_entries = min_ttl, max_ttl, max_entries
        self._entries: OrderedDict[tuple[str, str], _Cached[V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: tuple[str, str], now: float) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires <= now:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry.value

    def put(self, key: tuple[str, str], value: V, ttl: float, now: float) -> None:
        ttl = min(max(ttl, self.min_ttl), self.max_ttl)
        if ttl <= 0:
            return
        self._entries[key] = _Cached(value, now + ttl)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
