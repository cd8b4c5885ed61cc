"""An impairing UDP relay for RTP on loopback: loss, bursts, delay, jitter, duplicates, reordering.

``tc netem`` is not available on these machines, so tests put this relay in the media path instead.
It runs in a background thread of the test process (plain sockets, one selector, one heap of
scheduled sends) and is used as a context manager::

    with ImpairingRelay(target=(LOOPBACK, far_port), to_target=Impairment(loss=0.05), seed=1) as relay:
        ...  # send to relay.address; the far end's answers come back to wherever you sent from
        relay.stats().to_target.dropped, relay.records("to_target")

Two directions
    ``to_target``: datagrams received on the listening ("front") socket are sent on to the target from
    a socket of the relay's own (the "back" socket), so the target sees, and latches to, the relay.
    ``to_caller``: datagrams the back socket receives go back, from the front socket, to the last
    address a datagram came from on the front socket (symmetric RTP). Before anything arrived there,
    they have nowhere to go and are counted as ``unroutable``.

Impairments (:class:`Impairment`, one per direction, each drawn from its own ``random.Random``
seeded from ``seed`` and the direction's name, so both directions are independent and a run is
repeatable). For every routable datagram the same draws are made in the same order, whatever the
outcome and whatever the timing, so the n-th datagram of a direction meets the same fate in every
run with the same seed (the counts are deterministic):

    loss           independent loss probability
    burst          Gilbert-Elliott two-state loss (:class:`GilbertElliott`), on top of ``loss``
    delay_ms       fixed delay
    jitter_ms      per-datagram delay variation: ``uniform`` in [-jitter, +jitter] around ``delay_ms``
                   (as netem's ``delay D J``), or ``normal`` with that standard deviation; the total
                   is clipped at 0. Each datagram is scheduled at arrival + delay + jitter, so when the
                   jitter exceeds the packet spacing, reordering simply emerges.
    duplicate      probability that a datagram is sent twice (the copy right after the original)
    reorder        probability that a datagram is held back and sent right after the next datagram of
                   its direction (or after ``reorder_timeout_ms`` if none comes): an explicit swap

What happened is counted (:class:`DirectionStats`) and logged per datagram (:class:`PacketRecord`:
RTP sequence number, arrival, due and actual send time, dropped/duplicate/held), so a test states the
impairment that really happened rather than the one it asked for. Timing: the relay adds about 0.1 ms
when it delays nothing, and sends a delayed datagram a fraction of a millisecond after it is due (a
few ms under load); the log has the real send times.

Putting the relay between a caller and the bridge (or any callee)
    A caller sends its RTP to the address in the callee's SDP, and the bridge latches its own RTP to
    where the caller's packets come from. So the relay has to stand where the *callee's* SDP points,
    and the callee must advertise an address it does not itself listen on. Loopback is all of
    127.0.0.0/8: the callee keeps its sockets on 127.0.0.1 and advertises an alias, ``127.0.0.2``
    (:data:`ALIAS_HOST`); the relay listens on ``127.0.0.2:P`` and forwards to ``127.0.0.1:P`` for each
    of the callee's media ports (:meth:`ImpairingRelay.mirror`). Callers need no change at all: sipp
    with any scenario (``uac_pcmu_audio``...), baresip, linphone all just send where the SDP says.

    - The bridge: ``SIPBRIDGE_MEDIA_PUBLIC_IP=127.0.0.2`` (:func:`bridge_env`) makes it write that
      address into its SDP while its RTP sockets stay on the SIP listen address (127.0.0.1), and a
      small ``rtp_ports`` range bounds what to mirror (:func:`bridge_rtp_ports`)::

          bridge = start_bridge(logdir, agent.whip_url, rtp_ports=2, env=impair.bridge_env())
          ports = impair.bridge_rtp_ports(bridge.rtp_low, bridge.rtp_high)
          with ImpairingRelay.mirror(ports, to_target=Impairment(loss=0.05), seed=3) as relay:
              sipp.run_scenario("uac_pcmu_audio", bridge.sip_target, ...)  # or baresip.run_call(...)

      The bridge's outbound calls offer the same address (not exercised by the self-checks). Until the
      first caller packet has come through the relay, the bridge sends to the caller's SDP address
      directly (it has not latched yet): those first packets bypass the relay.
    - sipp's echoing UAS as a stand-in callee: sipp advertises the address it binds (``-mi``), so
      the scenario ``uas_echo_media_alias`` writes ``[media_alias]`` into its SDP while ``-rtp_echo``
      echoes on 127.0.0.1: :func:`sipp_echo_uas_behind_relay`.

    Why not a relay in front of the caller (the caller advertising the relay's port)? Only the
    callee-to-caller direction would pass it, and only until the callee latches onto the caller's
    real source port, which it does at the caller's first packet (sipp's ``-rtp_echo`` answers the
    source from the start): the caller-to-callee direction can only be diverted by the callee's SDP.

Run on its own for manual experiments: ``python -m testbed.impair --listen 127.0.0.2:PORT
--target 127.0.0.1:PORT --loss 0.05 --jitter-ms 30`` (stats printed as JSON at Ctrl-C / SIGTERM).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import heapq
import itertools
import json
import math
import random
import selectors
import signal
import socket
import statistics
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

from . import sipp
from .procs import LOOPBACK, free_port_block, udp_port_bound

Address = tuple[str, int]
Direction = Literal["to_target", "to_caller"]
DIRECTIONS: tuple[Direction, Direction] = ("to_target", "to_caller")

# The loopback alias a callee advertises in its SDP while its sockets stay on 127.0.0.1.
ALIAS_HOST = "127.0.0.2"

_RECV_SIZE = 65535
_SOCKET_BUFFER = 1 << 20  # ask for 1 MiB each way: a burst from a fast sender must not overflow
_FD_SETSIZE = 1024  # select() takes no higher descriptor
_STANDARD_NORMAL = statistics.NormalDist()


# --------------------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class GilbertElliott:
    """Two-state burst loss: Good and Bad, a transition decided before every datagram.

    p: P(Good -> Bad); r: P(Bad -> Good); loss_good / loss_bad: loss probability in each state
    (0 and 1: the simple Gilbert model). Long-run loss: (p * loss_bad + r * loss_good) / (p + r);
    bursts in Bad last 1 / r datagrams on average.
    """

    p: float
    r: float
    loss_good: float = 0.0
    loss_bad: float = 1.0

    def __post_init__(self) -> None:
        for name in ("p", "r", "loss_good", "loss_bad"):
            _check_probability(name, getattr(self, name))
        if self.p + self.r <= 0:
            raise ValueError("p + r must be > 0")

    @property
    def mean_loss(self) -> float:
        return (self.p * self.loss_bad + self.r * self.loss_good) / (self.p + self.r)


@dataclass(frozen=True)
class Impairment:
    """What one direction of the relay does to the datagrams it forwards (see the module docstring)."""

    loss: float = 0.0
    burst: GilbertElliott | None = None
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    jitter_distribution: Literal["uniform", "normal"] = "uniform"
    duplicate: float = 0.0
    reorder: float = 0.0
    reorder_timeout_ms: float = 200.0

    def __post_init__(self) -> None:
        for name in ("loss", "duplicate", "reorder"):
            _check_probability(name, getattr(self, name))
        if self.delay_ms < 0 or self.jitter_ms < 0 or self.reorder_timeout_ms < 0:
            raise ValueError("delay_ms, jitter_ms and reorder_timeout_ms must be >= 0")
        if self.jitter_distribution not in ("uniform", "normal"):
            raise ValueError("jitter_distribution must be 'uniform' or 'normal'")


def _check_probability(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], not {value!r}")


# --------------------------------------------------------------------------------------------- results


@dataclass
class PacketRecord:
    """One datagram received in one direction, and what became of it.

    index: its place in the direction's arrivals (0, 1, ...; routable datagrams only). seq: the RTP
    sequence number (None for RTCP or anything that is not RTP v2). arrival, due, sent:
    time.monotonic() when it was read, when it was scheduled to leave, when it did leave (None while
    pending, and for a dropped datagram). A duplicate's copy has a record of its own, with the same
    index and seq and ``duplicate=True``. held: delayed by an explicit reorder decision.
    """

    index: int
    seq: int | None
    size: int
    arrival: float
    due: float | None = None
    sent: float | None = None
    dropped: bool = False
    duplicate: bool = False
    held: bool = False

    @property
    def delay(self) -> float | None:
        """Seconds the relay kept it (sent - arrival), None unless sent."""
        return None if self.sent is None else self.sent - self.arrival


@dataclass
class DirectionStats:
    """Counters of one direction (datagrams).

    received: read from the socket (unroutable ones included). forwarded: sent on, duplicate copies
    included. dropped: lost by the impairment. duplicated: extra copies sent. reordered: sent after a
    datagram that arrived later than it did (whatever the cause: jitter or an explicit reorder).
    held: explicit reorder decisions. unroutable: to_caller before any caller was seen. pending:
    scheduled, not sent yet. discarded: still pending when the relay stopped. send_errors: sendto
    failed. When idle: received == forwarded - duplicated + dropped + unroutable + discarded.
    """

    received: int = 0
    forwarded: int = 0
    dropped: int = 0
    duplicated: int = 0
    reordered: int = 0
    held: int = 0
    unroutable: int = 0
    pending: int = 0
    discarded: int = 0
    send_errors: int = 0

    @property
    def loss_rate(self) -> float:
        """dropped / routable datagrams received (0.0 when nothing came)."""
        routable = self.received - self.unroutable
        return self.dropped / routable if routable else 0.0


@dataclass
class RelayStats:
    to_target: DirectionStats
    to_caller: DirectionStats

    def __getitem__(self, direction: Direction) -> DirectionStats:
        return getattr(self, direction)

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {d: dataclasses.asdict(self[d]) for d in DIRECTIONS}

    def __str__(self) -> str:
        parts = []
        for d in DIRECTIONS:
            s = self[d]
            parts.append(
                f"{d}: received {s.received}, forwarded {s.forwarded}, dropped {s.dropped} "
                f"({s.loss_rate:.2%}), duplicated {s.duplicated}, reordered {s.reordered}, held {s.held}"
                + (f", unroutable {s.unroutable}" if s.unroutable else "")
                + (f", pending {s.pending}" if s.pending else "")
            )
        return "; ".join(parts)


def rtp_sequence(data: bytes) -> int | None:
    """The sequence number of an RTP v2 packet; None for RTCP (packet types 192-223) or non-RTP."""
    if len(data) < 12 or data[0] >> 6 != 2 or 192 <= data[1] <= 223:
        return None
    return int.from_bytes(data[2:4], "big")


# --------------------------------------------------------------------------------------------- the relay


@dataclass
class _Mapping:
    front: socket.socket  # bound to the listen address: the caller's side
    back: socket.socket  # the relay's own socket towards the target
    target: Address
    caller: Address | None = None  # last source seen on `front`


@dataclass(order=True)
class _Scheduled:
    due: float
    order: int
    data: bytes = field(compare=False)
    sock: socket.socket = field(compare=False)
    dest: Address = field(compare=False)
    record: PacketRecord = field(compare=False)
    direction: Direction = field(compare=False)


@dataclass
class _Held:
    """Datagram copies held back by an explicit reorder decision, until the next one is scheduled."""

    items: list[_Scheduled]
    deadline: float


class _DirectionState:
    def __init__(self, name: Direction, impairment: Impairment, seed: int | str, log_limit: int) -> None:
        self.name = name
        self.impairment = impairment
        self.rng = random.Random(f"{seed}/{name}")
        self.bad = False  # Gilbert-Elliott state
        self.stats = DirectionStats()
        self.records: list[PacketRecord] = []
        self.log_limit = log_limit
        self.index = 0
        self.max_index_sent = -1
        self.held: _Held | None = None

    def log(self, record: PacketRecord) -> None:
        if len(self.records) < self.log_limit:
            self.records.append(record)


class ImpairingRelay:
    """The relay (see the module docstring). Bound at :meth:`start` (or ``with``), stopped at
    :meth:`stop`; ``mappings`` are (listen address, target address) pairs sharing the two
    directions' impairments, counters and random draws.

    target / listen: a single mapping (listen on 127.0.0.1, a free port, by default).
    seed: the random draws of both directions derive from it (str or int).
    log_limit: records kept per direction (the counters go on after it).
    """

    def __init__(
        self,
        target: Address | None = None,
        *,
        listen: Address = (LOOPBACK, 0),
        mappings: Sequence[tuple[Address, Address]] | None = None,
        to_target: Impairment | None = None,
        to_caller: Impairment | None = None,
        seed: int | str = 0,
        log_limit: int = 200_000,
        name: str = "impair",
    ) -> None:
        if (target is None) == (mappings is None):
            raise ValueError("give either target (and listen) or mappings")
        self._wanted = list(mappings) if mappings is not None else [(listen, target)]
        if not self._wanted:
            raise ValueError("no mappings")
        self.seed = seed
        self.name = name
        self._dirs: dict[Direction, _DirectionState] = {
            "to_target": _DirectionState("to_target", to_target or Impairment(), seed, log_limit),
            "to_caller": _DirectionState("to_caller", to_caller or Impairment(), seed, log_limit),
        }
        self._maps: list[_Mapping] = []
        self._by_sock: dict[socket.socket, tuple[_Mapping, Direction]] = {}
        self._heap: list[_Scheduled] = []
        self._order = itertools.count()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._selector: selectors.BaseSelector | None = None
        self._error: BaseException | None = None
        self._front_addrs: list[Address] = []
        self._back_addrs: list[Address] = []
        self._last_arrival: float | None = None
        self._sockets: list[socket.socket] = []  # every one opened, to close them all

    @classmethod
    def mirror(
        cls,
        ports: Iterable[int],
        *,
        listen_host: str = ALIAS_HOST,
        target_host: str = LOOPBACK,
        **kwargs: object,
    ) -> ImpairingRelay:
        """A relay listening on ``listen_host:P`` and forwarding to ``target_host:P`` for every port P:
        for a callee that advertises ``listen_host`` in its SDP (see the module docstring)."""
        mappings = [((listen_host, p), (target_host, p)) for p in ports]
        return cls(mappings=mappings, **kwargs)  # type: ignore[arg-type]

    # -- lifecycle

    def start(self) -> Self:
        if self._maps:
            raise RuntimeError("a relay starts once")
        try:
            for listen, target in self._wanted:
                front = _udp_socket(listen)
                self._sockets.append(front)
                back = _udp_socket((_source_host_for(target[0]), 0))
                self._sockets.append(back)
                m = _Mapping(front, back, target)
                self._maps.append(m)
                self._by_sock[front] = (m, "to_target")
                self._by_sock[back] = (m, "to_caller")
                self._front_addrs.append(front.getsockname()[:2])
                self._back_addrs.append(back.getsockname()[:2])
            self._wake_r, self._wake_w = socket.socketpair()
            self._wake_r.setblocking(False)
            # select() waits to the microsecond; epoll and poll round timeouts up to whole milliseconds
            fds = [self._wake_r.fileno(), *(sock.fileno() for sock in self._by_sock)]
            fine = max(fds) < _FD_SETSIZE
            self._selector = selectors.SelectSelector() if fine else selectors.DefaultSelector()
            self._selector.register(self._wake_r, selectors.EVENT_READ)
            for sock in self._by_sock:
                self._selector.register(sock, selectors.EVENT_READ)
        except BaseException:
            self._close_sockets()
            raise
        self._thread = threading.Thread(target=self._run, name=f"{self.name}-relay", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread, discard what is still scheduled (counted as ``discarded``), close the
        sockets. Safe to call twice. Raises if the relay thread died of an exception."""
        if self._thread is not None:
            self._stopping.set()
            if self._wake_w is not None:
                with contextlib.suppress(OSError):
                    self._wake_w.send(b"x")
            self._thread.join(timeout)
            if self._thread.is_alive():  # pragma: no cover - the loop wakes at least every 0.5 s
                raise RuntimeError(f"{self.name} relay thread did not stop")
            self._thread = None
            with self._lock:
                for item in self._heap:
                    self._dirs[item.direction].stats.discarded += 1
                for d in self._dirs.values():
                    if d.held is not None:
                        d.stats.discarded += len(d.held.items)
                        d.held = None
                    d.stats.pending = 0
                self._heap.clear()
        self._close_sockets()
        if self._error is not None:
            error, self._error = self._error, None
            raise RuntimeError(f"{self.name} relay thread failed: {error!r}") from error

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _close_sockets(self) -> None:
        if self._selector is not None:
            self._selector.close()
            self._selector = None
        for sock in [*self._sockets, self._wake_r, self._wake_w]:
            if sock is not None:
                sock.close()
        self._sockets.clear()
        self._wake_r = self._wake_w = None

    # -- addresses

    @property
    def addresses(self) -> list[Address]:
        """The listening (front) addresses, in mapping order: where callers send."""
        if not self._front_addrs:
            raise RuntimeError("relay not started")
        return list(self._front_addrs)

    @property
    def address(self) -> Address:
        """The first listening address."""
        return self.addresses[0]

    @property
    def port(self) -> int:
        return self.address[1]

    @property
    def source_addresses(self) -> list[Address]:
        """The relay's own (back) addresses: where the targets see the relayed packets come from."""
        if not self._back_addrs:
            raise RuntimeError("relay not started")
        return list(self._back_addrs)

    def callers(self) -> list[Address | None]:
        """Per mapping, the last source seen on the listening socket (where to_caller goes)."""
        with self._lock:
            return [m.caller for m in self._maps]

    # -- results and control

    def stats(self) -> RelayStats:
        """A snapshot of both directions' counters."""
        with self._lock:
            return RelayStats(
                to_target=dataclasses.replace(self._dirs["to_target"].stats),
                to_caller=dataclasses.replace(self._dirs["to_caller"].stats),
            )

    def records(self, direction: Direction) -> list[PacketRecord]:
        """Copies of the datagram log of one direction, in arrival order (a duplicate's copy right
        after its original)."""
        with self._lock:
            return [dataclasses.replace(r) for r in self._dirs[direction].records]

    def impairment(self, direction: Direction) -> Impairment:
        return self._dirs[direction].impairment

    def set_impairment(self, direction: Direction, impairment: Impairment) -> None:
        """Change one direction's impairment from the next datagram on (its random draws go on)."""
        with self._lock:
            self._dirs[direction].impairment = impairment

    def idle(self) -> bool:
        """Nothing scheduled or held."""
        with self._lock:
            return not self._heap and all(d.held is None for d in self._dirs.values())

    def wait_idle(self, timeout: float = 5.0, quiet: float = 0.0) -> bool:
        """Wait until nothing is scheduled or held and, with `quiet`, nothing arrived for that long."""
        deadline = time.monotonic() + timeout
        while True:
            if self.idle() and (quiet <= 0 or self._quiet_for() >= quiet):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)

    def _quiet_for(self) -> float:
        with self._lock:
            last = self._last_arrival
        return math.inf if last is None else time.monotonic() - last

    # -- the thread

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # noqa: BLE001 - reported by stop()
            self._error = exc

    def _loop(self) -> None:
        assert self._selector is not None
        while not self._stopping.is_set():
            timeout = self._next_wakeup()
            for key, _ in self._selector.select(timeout):
                sock = key.fileobj
                if sock is self._wake_r:
                    with contextlib.suppress(OSError):
                        self._wake_r.recv(64)  # type: ignore[union-attr]
                    continue
                self._drain(sock)  # type: ignore[arg-type]
            self._send_due()

    def _next_wakeup(self) -> float:
        now = time.monotonic()
        with self._lock:
            times = [self._heap[0].due] if self._heap else []
            times += [d.held.deadline for d in self._dirs.values() if d.held is not None]
        if not times:
            return 0.5
        return min(0.5, max(0.0, min(times) - now))

    def _drain(self, sock: socket.socket) -> None:
        mapping, direction = self._by_sock[sock]
        while True:
            try:
                data, addr = sock.recvfrom(_RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. ECONNREFUSED for an earlier send: the selector wakes us for the rest
                return
            self._arrived(mapping, direction, data, addr[:2], time.monotonic())

    def _arrived(self, m: _Mapping, direction: Direction, data: bytes, source: Address, now: float) -> None:
        with self._lock:
            d = self._dirs[direction]
            d.stats.received += 1
            self._last_arrival = now
            if direction == "to_target":
                m.caller = source
                sock, dest = m.back, m.target
            else:
                if m.caller is None:
                    d.stats.unroutable += 1
                    return
                sock, dest = m.front, m.caller
            imp = d.impairment
            rng = d.rng
            # The same draws, in the same order, for every datagram: its fate depends on its index only.
            u_loss = rng.random()
            u_state = rng.random()
            u_burst = rng.random()
            u_dup = rng.random()
            u_reorder = rng.random()
            u_jitter = rng.random()
            if imp.jitter_distribution == "normal":
                z = _STANDARD_NORMAL.inv_cdf(min(max(u_jitter, 1e-12), 1.0 - 1e-12))
            else:
                z = 2.0 * u_jitter - 1.0

            lost = u_loss < imp.loss
            if imp.burst is not None:
                ge = imp.burst
                d.bad = (u_state >= ge.r) if d.bad else (u_state < ge.p)
                lost = lost or u_burst < (ge.loss_bad if d.bad else ge.loss_good)
            record = PacketRecord(index=d.index, seq=rtp_sequence(data), size=len(data), arrival=now)
            d.index += 1
            d.log(record)
            if lost:
                record.dropped = True
                d.stats.dropped += 1
                return

            delay_s = max(0.0, imp.delay_ms + z * imp.jitter_ms) / 1000.0
            due = now + delay_s
            copies = [_Scheduled(due, next(self._order), data, sock, dest, record, direction)]
            if u_dup < imp.duplicate:
                copy = dataclasses.replace(record, duplicate=True)
                d.log(copy)
                copies.append(_Scheduled(due, next(self._order), data, sock, dest, copy, direction))
                d.stats.duplicated += 1
            for c in copies:
                c.record.due = c.due
            d.stats.pending += len(copies)

            held, d.held = d.held, None
            if u_reorder < imp.reorder:
                for c in copies:
                    c.record.held = True
                d.stats.held += 1
                d.held = _Held(copies, deadline=now + imp.reorder_timeout_ms / 1000.0)
                copies = []
            for c in copies:
                heapq.heappush(self._heap, c)
            if held is not None:
                # right after this datagram (or when it was due itself, if that is later)
                after = copies[-1] if copies else None
                self._release(held, after)

    def _release(self, held: _Held, after: _Scheduled | None) -> None:
        """Schedule held copies after `after` (a datagram just scheduled) or now (timeout)."""
        floor = after.due if after is not None else time.monotonic()
        for c in held.items:
            c.due = max(c.due, floor)
            c.order = next(self._order)  # after `after` at equal due times
            c.record.due = c.due
            heapq.heappush(self._heap, c)

    def _send_due(self) -> None:
        with self._lock:
            now = time.monotonic()
            for d in self._dirs.values():
                if d.held is not None and now >= d.held.deadline:
                    held, d.held = d.held, None
                    self._release(held, None)
            due: list[_Scheduled] = []
            while self._heap and self._heap[0].due <= now:
                due.append(heapq.heappop(self._heap))
        sent: list[tuple[_Scheduled, float | None]] = []
        for item in due:
            try:
                item.sock.sendto(item.data, item.dest)
                sent.append((item, time.monotonic()))
            except OSError:
                sent.append((item, None))
        if not due:
            return
        with self._lock:
            for item, at in sent:
                d = self._dirs[item.direction]
                d.stats.pending -= 1
                if at is None:
                    d.stats.send_errors += 1
                    continue
                item.record.sent = at
                d.stats.forwarded += 1
                if item.record.index < d.max_index_sent:
                    d.stats.reordered += 1
                d.max_index_sent = max(d.max_index_sent, item.record.index)


def _udp_socket(address: Address) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in address[0] else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, opt, _SOCKET_BUFFER)
        sock.bind(address)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _source_host_for(target_host: str) -> str:
    """Where the back socket binds: loopback of the target's family."""
    return "::1" if ":" in target_host else LOOPBACK


# --------------------------------------------------------------------------------------------- peers


def bridge_env(alias: str = ALIAS_HOST) -> dict[str, str]:
    """Environment for ``start_bridge(..., env=...)``: the bridge advertises `alias` in its SDP (its
    RTP sockets stay on the SIP listen address), so callers send their RTP to a mirroring relay."""
    return {"SIPBRIDGE_MEDIA_PUBLIC_IP": alias}


def bridge_rtp_ports(low: int, high: int) -> list[int]:
    """The ports the bridge's allocator hands out from its ``rtp_ports`` range LOW-HIGH (even ones)."""
    first = low + (low % 2)
    return list(range(first, high + 1, 2)) or [low]


@contextlib.contextmanager
def sipp_echo_uas_behind_relay(
    *,
    to_target: Impairment | None = None,
    to_caller: Impairment | None = None,
    seed: int | str = 0,
    alias: str = ALIAS_HOST,
    workdir: Path | None = None,
    **uas_kwargs: object,
) -> Iterator[tuple[sipp.SippServer, ImpairingRelay]]:
    """sipp's echoing UAS (``-rtp_echo``) with an impairing relay in front of its media port.

    The UAS (scenario ``uas_echo_media_alias``) binds its media on 127.0.0.1 and advertises `alias`
    in its SDP; the relay listens on ``alias:media_port`` and forwards to ``127.0.0.1:media_port``.
    Any caller then sends its RTP through the relay and gets the echo back through it. Yields
    ``(SippServer, ImpairingRelay)``; more ``sipp_uas`` arguments in `uas_kwargs`.
    """
    keys = {"media_alias": alias, **dict(uas_kwargs.pop("keys", None) or {})}  # type: ignore[call-overload]
    for _ in range(20):
        media_port = free_port_block(4)
        if not udp_port_bound(media_port, alias):
            break
    relay = ImpairingRelay.mirror(
        [media_port], listen_host=alias, to_target=to_target, to_caller=to_caller, seed=seed, name="uas-media"
    )
    with (
        relay,
        sipp.sipp_uas(
            "uas_echo_media_alias",
            media_port=media_port,
            rtp_echo=True,
            keys=keys,
            workdir=workdir,
            **uas_kwargs,  # type: ignore[arg-type]
        ) as uas,
    ):
        yield uas, relay


# --------------------------------------------------------------------------------------------- command line


def _host_port(text: str) -> Address:
    host, _, port = text.rpartition(":")
    return host.strip("[]") or LOOPBACK, int(port)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m testbed.impair", description="An impairing UDP relay (RTP) on loopback."
    )
    parser.add_argument("--listen", type=_host_port, default=(LOOPBACK, 0), metavar="HOST:PORT")
    parser.add_argument("--target", type=_host_port, required=True, metavar="HOST:PORT")
    parser.add_argument("--direction", choices=["both", *DIRECTIONS], default="both")
    parser.add_argument("--loss", type=float, default=0.0)
    parser.add_argument("--burst", type=float, nargs=2, metavar=("P", "R"), help="Gilbert-Elliott p, r")
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--jitter-ms", type=float, default=0.0)
    parser.add_argument("--jitter-distribution", choices=["uniform", "normal"], default="uniform")
    parser.add_argument("--duplicate", type=float, default=0.0)
    parser.add_argument("--reorder", type=float, default=0.0)
    parser.add_argument("--seed", default="0")
    args = parser.parse_args(argv)
    imp = Impairment(
        loss=args.loss,
        burst=GilbertElliott(*args.burst) if args.burst else None,
        delay_ms=args.delay_ms,
        jitter_ms=args.jitter_ms,
        jitter_distribution=args.jitter_distribution,
        duplicate=args.duplicate,
        reorder=args.reorder,
    )
    both = args.direction == "both"
    relay = ImpairingRelay(
        args.target,
        listen=args.listen,
        to_target=imp if both or args.direction == "to_target" else None,
        to_caller=imp if both or args.direction == "to_caller" else None,
        seed=args.seed,
    )
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    with relay:
        host, port = relay.address
        print(f"listening on {host}:{port}, forwarding to {args.target[0]}:{args.target[1]}", flush=True)
        while not done.wait(0.5):
            pass
    print(json.dumps(relay.stats().as_dict()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
