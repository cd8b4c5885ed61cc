"""A tiny authoritative DNS server for tests: UDP on 127.0.0.1, answers from a table of records.

    with DnsServer({"trunk.test.": [("SRV", "10 60 5070 uas1.trunk.test.")],
                    "uas1.trunk.test.": [("A", "127.0.0.1")]}) as dns:
        ... point the bridge at ("127.0.0.1", dns.port) ...

Names it has no record of get NXDOMAIN; a known name without the asked type an empty NOERROR
answer. Every query is recorded in ``queries`` as (name, type). Use names under ``.test.`` only.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Mapping, Sequence

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

TTL = 300


class DnsServer:
    def __init__(self, zone: Mapping[str, Sequence[tuple[str, str]]], ttl: int = TTL) -> None:
        self.zone = {name.lower().rstrip(".") + ".": list(records) for name, records in zone.items()}
        self.ttl = ttl
        self.queries: list[tuple[str, str]] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.2)  # so that the thread sees ``close``
        self._stopped = threading.Event()
        self.port: int = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, name="test-dns", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def answer(self, wire: bytes) -> bytes:
        """The response to one query in wire format (the server's logic, usable without a socket)."""
        query = dns.message.from_wire(wire)
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        question = query.question[0]
        name = question.name.to_text().lower()
        kind = dns.rdatatype.to_text(question.rdtype)
        self.queries.append((name, kind))
        records = self.zone.get(name)
        if records is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
            return response.to_wire()
        values = [value for rtype, value in records if rtype == kind]
        if values:
            rrset = dns.rrset.from_text_list(question.name, self.ttl, dns.rdataclass.IN, kind, values)
            response.answer.append(rrset)
        return response.to_wire()

    def _serve(self) -> None:
        while not self._stopped.is_set():
            try:
                wire, peer = self._sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            try:
                self._sock.sendto(self.answer(wire), peer)
            except Exception:  # a malformed query: no answer, as a real server might do
                continue

    def close(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=2)
        self._sock.close()

    def __enter__(self) -> DnsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
