"""A trunk's domain to the servers to try, in order (RFC 3263 §4): NAPTR → SRV → A/AAAA, never blocking.

The asyncio shell around ``locating``: queries go out through dnspython's asynchronous resolver (to
the configured servers, else those of /etc/resolv.conf), every answer, and every "no such record",
is kept for its TTL. A domain with neither NAPTR nor SRV records is looked up as an address, by DNS
first and then by the system's resolver (so /etc/hosts names keep working), on the transport's port.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from collections.abc import Sequence

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver

from .locating import (
    DEFAULT_PORTS,
    TRANSPORTS,
    Naptr,
    Srv,
    Target,
    TtlCache,
    default_srv_names,
    order_srv,
    srv_names,
)

log = logging.getLogger(__name__)

QUERY_TIMEOUT_S = 2.0
NEGATIVE_TTL_S = 30.0  # how long "no such record" is believed (RFC 2308 caps the SOA's at hours)
Record = Naptr | Srv | str


class ServerLocator:
    """``await locate(domain, transport)``: the targets for a SIP domain, best first."""

    def __init__(
        self,
        nameservers: Sequence[tuple[str, int]] = (),
        timeout: float = QUERY_TIMEOUT_S,
        rng: random.Random | None = None,
        cache: TtlCache[list[Record]] | None = None,
    ) -> None:
        self.nameservers = tuple(nameservers)
        self.timeout = timeout
        self.rng = rng or random.Random()
        self.cache: TtlCache[list[Record]] = cache if cache is not None else TtlCache()
        self.queries = 0
        self._resolver: dns.asyncresolver.Resolver | None = None

    async def locate(self, domain: str, transport: str | None = None) -> list[Target]:
        """Every target, in the order to try them. ``transport`` (UDP, TCP, TLS): only that one, as
        the operator configured it; None lets the domain's NAPTRs choose. Empty: nothing found."""
        domain = domain.rstrip(".").lower()
        transports = (transport.upper(),) if transport else TRANSPORTS
        try:
            naptrs = [r for r in await self._query(domain, "NAPTR", strict=True) if isinstance(r, Naptr)]
        except dns.exception.DNSException:  # no DNS server answers: the system's resolver may
            port = DEFAULT_PORTS[transports[0]]
            return [Target(address, port, transports[0]) for address in await _system_addresses(domain)]
        names = srv_names(naptrs, transports) or default_srv_names(domain, transports)
        answers = await asyncio.gather(*(self._query(name, "SRV") for _, name in names))
        targets: list[Target] = []
        for (chosen, _), records in zip(names, answers, strict=True):
            for srv in order_srv([r for r in records if isinstance(r, Srv)], self.rng):
                targets += [Target(a, srv.port, chosen) for a in await self._addresses(srv.target)]
        if any(answers):
            return list(dict.fromkeys(targets))
        chosen = names[0][0] if naptrs and names else transports[0]  # §4.1: else UDP
        addresses = await self._addresses(domain) or await _system_addresses(domain)
        return [Target(address, DEFAULT_PORTS[chosen], chosen) for address in addresses]

    async def _addresses(self, name: str) -> list[str]:
        found = []
        for rdtype in ("A", "AAAA"):
            found += [r for r in await self._query(name, rdtype) if isinstance(r, str)]
        return found

    async def _query(self, name: str, rdtype: str, strict: bool = False) -> list[Record]:
        """The records, [] when there are none; a query that got no answer at all is [] too, or
        raises when ``strict`` (and is not cached: asked again next time)."""
        name = name.rstrip(".").lower()
        loop = asyncio.get_running_loop()
        cached = self.cache.get((name, rdtype), loop.time())
        if cached is not None:
            return cached
        self.queries += 1
        try:
            answer = await self._dns().resolve(name + ".", rdtype, raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN as exc:
            log.debug("DNS %s %s: %s", rdtype, name, exc)
            self.cache.put((name, rdtype), [], NEGATIVE_TTL_S, loop.time())
            return []
        except dns.exception.DNSException as exc:  # no answer in time, servers failing
            log.info("DNS %s %s: %s", rdtype, name, exc)
            if strict:
                raise
            return []
        records = [_record(rdata) for rdata in answer.rrset or ()]
        ttl = answer.rrset.ttl if answer.rrset is not None else NEGATIVE_TTL_S
        self.cache.put((name, rdtype), records, ttl, loop.time())
        return records

    def _dns(self) -> dns.asyncresolver.Resolver:
        if self._resolver is None:
            resolver = dns.asyncresolver.Resolver(configure=not self.nameservers)
            if self.nameservers:
                resolver.nameservers = [dns.nameserver.Do53Nameserver(h, p) for h, p in self.nameservers]
            resolver.lifetime = self.timeout
            resolver.cache = None  # ours keeps the answers (and the negative ones)
            self._resolver = resolver
        return self._resolver


def _record(rdata: object) -> Record:
    """A NAPTR, SRV or address rdata as plain data."""
    kind = getattr(rdata, "rdtype", None)
    if kind == dns.rdatatype.NAPTR:
        return Naptr(
            rdata.order,  # type: ignore[attr-defined]
            rdata.preference,  # type: ignore[attr-defined]
            rdata.flags.decode(),  # type: ignore[attr-defined]
            rdata.service.decode(),  # type: ignore[attr-defined]
            rdata.replacement.to_text(omit_final_dot=True),  # type: ignore[attr-defined]
        )
    if kind == dns.rdatatype.SRV:
        target = rdata.target.to_text(omit_final_dot=True) or "."  # type: ignore[attr-defined]
        return Srv(rdata.priority, rdata.weight, rdata.port, target)  # type: ignore[attr-defined]
    return str(rdata.address)  # type: ignore[attr-defined]


async def _system_addresses(name: str) -> list[str]:
    """The system resolver's addresses (/etc/hosts too), looked up off the event loop."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(name, None, type=socket.SOCK_DGRAM)
    except OSError:
        return []
    return list(dict.fromkeys(str(info[4][0]) for info in infos))
