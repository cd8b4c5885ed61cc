"""Host names in SIP targets (Contact, Record-Route, a trunk's address) to addresses, never blocking.

A name in a request we must send to (a Contact's host when we send BYE, a Record-Route) is chosen by
the peer. Handing it to the socket layer (``sendto((name, port))``) runs a blocking ``getaddrinfo`` on
the event loop: one slow name stalls every call. Here a name is looked up off the loop, with a
deadline, on a small pool of threads of its own (a peer's slow names cannot take the threads the rest
of the process resolves with), and the answer, or the failure, is kept for a short while (RFC 3263
leaves caching to the DNS TTL; getaddrinfo does not tell it, so a fixed short TTL stands in).

``DnsCache`` is the pure part (time passed in); ``Resolver`` the asyncio shell around it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

POSITIVE_TTL_S = 30.0
NEGATIVE_TTL_S = 10.0
LOOKUP_TIMEOUT_S = 2.0
MAX_ENTRIES = 1024
MAX_PENDING = 16  # lookups running at once; beyond that a new name fails at once
THREADS = 4


class ResolveError(Exception):
    """A name that did not resolve (in time); the message is fit for a log line."""


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class _Entry:
    address: str | None  # None: the name did not resolve
    error: str
    expires: float


class DnsCache:
    """Answers and failures by name, each for its TTL; at most ``max_entries``, least recent first out."""

    def __init__(
        self,
        positive_ttl: float = POSITIVE_TTL_S,
        negative_ttl: float = NEGATIVE_TTL_S,
        max_entries: int = MAX_ENTRIES,
    ) -> None:
        self.positive_ttl = positive_ttl
        self.negative_ttl = negative_ttl
        self.max_entries = max_entries
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, name: str, now: float) -> _Entry | None:
        entry = self._entries.get(name)
        if entry is None:
            return None
        if entry.expires <= now:
            del self._entries[name]
            return None
        self._entries.move_to_end(name)
        return entry

    def found(self, name: str, address: str, now: float) -> None:
        self._put(name, _Entry(address, "", now + self.positive_ttl))

    def failed(self, name: str, error: str, now: float) -> None:
        self._put(name, _Entry(None, error, now + self.negative_ttl))

    def _put(self, name: str, entry: _Entry) -> None:
        self._entries[name] = entry
        self._entries.move_to_end(name)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


class Resolver:
    """``await resolve(host)``: an IP literal as it is, a name through the cache or a bounded lookup."""

    def __init__(
        self,
        cache: DnsCache | None = None,
        timeout: float = LOOKUP_TIMEOUT_S,
        max_pending: int = MAX_PENDING,
        lookup: Callable[[str], str] | None = None,
    ) -> None:
        self.cache = cache or DnsCache()
        self._lookup_blocking = lookup or first_address
        self.timeout = timeout
        self.max_pending = max_pending
        self.lookups = 0
        self.failures = 0
        self._pending: dict[str, asyncio.Future[str]] = {}
        self._executor: ThreadPoolExecutor | None = None

    async def resolve(self, host: str) -> str:
        host = host.strip("[]")
        if is_ip(host):
            return host
        name = host.lower()
        loop = asyncio.get_running_loop()
        entry = self.cache.get(name, loop.time())
        if entry is not None:
            if entry.address is None:
                raise ResolveError(entry.error)
            return entry.address
        pending = self._pending.get(name)
        if pending is None:
            if len(self._pending) >= self.max_pending:
                self.failures += 1
                raise ResolveError(f"cannot resolve {host}: too many lookups in progress")
            pending = self._pending[name] = loop.create_task(self._lookup(name))
            pending.add_done_callback(lambda _: self._pending.pop(name, None))
        return await asyncio.shield(pending)

    async def _lookup(self, name: str) -> str:
        loop = asyncio.get_running_loop()
        self.lookups += 1
        try:
            address = await asyncio.wait_for(
                loop.run_in_executor(self._pool(), self._lookup_blocking, name), self.timeout
            )
        except (OSError, IndexError, UnicodeError) as exc:
            error = f"cannot resolve {name}: {exc}"
        except TimeoutError:
            error = f"cannot resolve {name}: no answer within {self.timeout:g} s"
        else:
            self.cache.found(name, address, loop.time())
            return address
        self.failures += 1
        self.cache.failed(name, error, loop.time())
        raise ResolveError(error)

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(THREADS, thread_name_prefix="sip-dns")
        return self._executor

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


def first_address(name: str) -> str:
    """The system resolver's first address for ``name`` (blocking: run it off the event loop)."""
    return str(socket.getaddrinfo(name, None, type=socket.SOCK_DGRAM)[0][4][0])
