"""RFC 3261 §17 transactions as pure state machines.

Each transaction is fed messages and the current time and returns the messages to transmit; it never
touches a socket or a clock. ``next_deadline`` says when ``on_timer`` must be called next. The 2xx
response to an INVITE is retransmitted by the UA core (``OkRetransmitter``), not by the transaction
(RFC 6026 "Accepted" state). Times are floats from one monotonic clock.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from enum import Enum

from .message import Headers, SipRequest, SipResponse

MAGIC_COOKIE = "z9hG4bK"


@dataclass(frozen=True)
class Timers:
    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0

    @property
    def b(self) -> float:
        """Timer B/F/H/J/L: 64·T1, how long a transaction waits before giving up."""
        return 64 * self.t1

    @property
    def d(self) -> float:
        """Timer D on unreliable transports: how long retransmitted non-2xx finals are re-ACKed.

        RFC 3261 asks for "at least 32 seconds"; 64·T1 is exactly 32 s at the default T1, covers a peer's
        whole Timer G/H span at the same T1, and lets tests shrink it with T1.
        """
        return 64 * self.t1

    @property
    def m(self) -> float:
        """Timer M (RFC 6026): how long an INVITE client transaction absorbs 2xx retransmissions."""
        return 64 * self.t1


class State(Enum):
    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    ACCEPTED = "accepted"
    TERMINATED = "terminated"


def _earliest(*deadlines: float | None) -> float | None:
    present = [d for d in deadlines if d is not None]
    return min(present) if present else None


def transaction_key(request: SipRequest) -> tuple[str, ...]:
    """Server-transaction matching key (RFC 3261 §17.2.3); ACK and CANCEL map as the RFC says.

    ACK matches the INVITE transaction; CANCEL has a transaction of its own (method "CANCEL") and
    finds its INVITE through ``invite_key_for_cancel``.
    """
    via = request.via[0]
    method = "INVITE" if request.method == "ACK" else request.method
    branch = via.branch or ""
    sent_by = f"{via.host}:{via.port or 5060}".lower()
    if branch.startswith(MAGIC_COOKIE):
        return (branch, sent_by, method)
    # RFC 2543 peers: no usable branch, fall back to the dialog-ish identifiers.
    cseq_num, _ = request.cseq
    return ("2543", request.call_id, request.from_.tag or "", str(cseq_num), sent_by, method)


def client_transaction_key(message: SipRequest | SipResponse) -> tuple[str, str]:
    """Client-transaction matching (§17.1.3): top Via branch and CSeq method."""
    return (message.via[0].branch or "", message.cseq[1])


def invite_key_for_cancel(cancel: SipRequest) -> tuple[str, ...]:
    key = transaction_key(cancel)
    return (*key[:-1], "INVITE")


class _Transaction:
    """What every transaction holds: its request, the timers, whether the transport is reliable
    (then nothing is retransmitted and the waits for retransmissions are zero), and its state."""

    def __init__(self, request: SipRequest, timers: Timers, reliable: bool, state: State) -> None:
        self.request = request
        self.timers = timers
        self.reliable = reliable
        self.state = state


class _ServerTransaction(_Transaction):
    def __init__(self, request: SipRequest, timers: Timers, reliable: bool, state: State) -> None:
        super().__init__(request, timers, reliable, state)
        self.last_response: SipResponse | None = None

    def _repeat_last_response(self) -> list[SipResponse]:
        """A retransmitted request gets the last response again (§17.2.1, §17.2.2)."""
        if self.state in (State.PROCEEDING, State.COMPLETED) and self.last_response is not None:
            return [self.last_response]
        return []


class _ClientTransaction(_Transaction):
    """Sends its request again (Timer A/E, not over a reliable transport) until a response comes,
    gives up at Timer B/F, and once answered lingers to absorb retransmissions (Timer D/K/M)."""

    def __init__(self, request: SipRequest, timers: Timers, now: float, reliable: bool, state: State) -> None:
        super().__init__(request, timers, reliable, state)
        self.final_response: SipResponse | None = None
        self.timed_out = False
        self._retransmit_interval = timers.t1
        self._retransmit_at: float | None = None if reliable else now + timers.t1
        self._give_up_at: float | None = now + timers.b
        self._end_at: float | None = None

    @property
    def key(self) -> tuple[str, str]:
        return client_transaction_key(self.request)

    @property
    def next_deadline(self) -> float | None:
        if self.state is State.TERMINATED:
            return None
        return _earliest(self._retransmit_at, self._give_up_at, self._end_at)

    def _next_interval(self) -> float:
        """The wait before the retransmission after this one (Timer A doubles, E is capped)."""
        raise NotImplementedError

    def on_timer(self, now: float) -> list[SipRequest]:
        if self._end_at is not None and now >= self._end_at:
            self.state = State.TERMINATED
            self._end_at = None
            return []
        if self._give_up_at is not None and now >= self._give_up_at:
            self.state = State.TERMINATED
            self.timed_out = True
            self._retransmit_at = self._give_up_at = None
            return []
        if self._retransmit_at is not None and now >= self._retransmit_at:
            self._retransmit_interval = self._next_interval()
            self._retransmit_at = now + self._retransmit_interval
            return [self.request]
        return []


class ServerInviteTransaction(_ServerTransaction):
    """INVITE server transaction, RFC 3261 §17.2.1 as amended by RFC 6026."""

    def __init__(self, request: SipRequest, timers: Timers, reliable: bool = False) -> None:
        super().__init__(request, timers, reliable, State.PROCEEDING)
        self.timed_out = False
        self._g_interval = timers.t1
        self._g_at: float | None = None
        self._end_at: float | None = None

    @property
    def next_deadline(self) -> float | None:
        if self.state is State.TERMINATED:
            return None
        return _earliest(self._g_at, self._end_at)

    def send_response(self, response: SipResponse, now: float) -> list[SipResponse]:
        """The TU answers; returns what to transmit."""
        if self.state is State.ACCEPTED and 200 <= response.status < 300:
            return [response]  # the UA core retransmitting its 2xx
        if self.state is not State.PROCEEDING:
            return []
        self.last_response = response
        if response.status < 200:
            return [response]
        if response.status < 300:
            self.state = State.ACCEPTED
            self._end_at = now + self.timers.b
            return [response]
        self.state = State.COMPLETED
        self._end_at = now + self.timers.b
        if not self.reliable:
            self._g_at = now + self._g_interval
        return [response]

    def receive_request(self, request: SipRequest, now: float) -> list[SipResponse]:
        """A retransmitted INVITE, or an ACK that matched this transaction."""
        if request.method == "ACK":
            if self.state is State.COMPLETED:
                self.state = State.CONFIRMED
                self._g_at = None
                self._end_at = now + (0 if self.reliable else self.timers.t4)
            return []
        return self._repeat_last_response()

    def on_timer(self, now: float) -> list[SipResponse]:
        if self._end_at is not None and now >= self._end_at:
            self.timed_out = self.state is State.COMPLETED
            self.state = State.TERMINATED
            self._g_at = self._end_at = None
            return []
        if self._g_at is not None and now >= self._g_at and self.last_response is not None:
            self._g_interval = min(2 * self._g_interval, self.timers.t2)
            self._g_at = now + self._g_interval
            return [self.last_response]
        return []


class ServerNonInviteTransaction(_ServerTransaction):
    """Non-INVITE server transaction, RFC 3261 §17.2.2."""

    def __init__(self, request: SipRequest, timers: Timers, reliable: bool = False) -> None:
        super().__init__(request, timers, reliable, State.TRYING)
        self._end_at: float | None = None

    @property
    def next_deadline(self) -> float | None:
        return None if self.state is State.TERMINATED else self._end_at

    def send_response(self, response: SipResponse, now: float) -> list[SipResponse]:
        if self.state not in (State.TRYING, State.PROCEEDING):
            return []
        self.last_response = response
        if response.status < 200:
            self.state = State.PROCEEDING
        else:
            self.state = State.COMPLETED
            self._end_at = now + (0 if self.reliable else self.timers.b)
        return [response]

    def receive_request(self, request: SipRequest, now: float) -> list[SipResponse]:
        return self._repeat_last_response()

    def on_timer(self, now: float) -> list[SipResponse]:
        if self._end_at is not None and now >= self._end_at:
            self.state = State.TERMINATED
            self._end_at = None
        return []


class ClientNonInviteTransaction(_ClientTransaction):
    """Non-INVITE client transaction, RFC 3261 §17.1.2 (BYE, OPTIONS, ... that we send)."""

    def __init__(self, request: SipRequest, timers: Timers, now: float, reliable: bool = False) -> None:
        super().__init__(request, timers, now, reliable, State.TRYING)

    def receive_response(self, response: SipResponse, now: float) -> bool:
        """Returns True when this response is final and new (to hand to the TU)."""
        if self.state not in (State.TRYING, State.PROCEEDING):
            return False
        if response.status < 200:
            self.state = State.PROCEEDING
            return False
        self.state = State.COMPLETED
        self.final_response = response
        self._retransmit_at = self._give_up_at = None
        self._end_at = now + (0 if self.reliable else self.timers.t4)  # Timer K
        return True

    def _next_interval(self) -> float:
        cap = self.timers.t2
        return cap if self.state is State.PROCEEDING else min(2 * self._retransmit_interval, cap)


class OkRetransmitter:
    """The UA core's retransmission of a 2xx to INVITE until the ACK (RFC 3261 §13.3.1.4)."""

    def __init__(self, timers: Timers, now: float) -> None:
        self.timers = timers
        self._interval = timers.t1
        self._next_at: float | None = now + timers.t1
        self._give_up_at = now + timers.b
        self.acked = False
        self.gave_up = False

    @property
    def next_deadline(self) -> float | None:
        if self.acked or self.gave_up:
            return None
        return min(self._next_at or self._give_up_at, self._give_up_at)

    def ack_received(self) -> None:
        self.acked = True

    def on_timer(self, now: float) -> bool:
        """True when the 2xx must be sent again now; sets ``gave_up`` after 64·T1 without ACK."""
        if self.acked or self.gave_up:
            return False
        if now >= self._give_up_at:
            self.gave_up = True
            return False
        if self._next_at is not None and now >= self._next_at:
            self._interval = min(2 * self._interval, self.timers.t2)
            self._next_at = now + self._interval
            return True
        return False


def build_ack_for_non2xx(invite: SipRequest, response: SipResponse) -> SipRequest:
    """The ACK an INVITE client transaction sends for a 300-699 response (RFC 3261 §17.1.1.3).

    Hop-by-hop, so it reuses the INVITE's top Via (same branch), Request-URI and Route set; the To
    comes from the response to carry the tag of whoever rejected the call.
    """
    headers = Headers()
    headers.add("Via", invite.headers.get_all("Via")[0])
    headers.add("Max-Forwards", "70")
    for name, value in invite.headers.items():
        if name == "Route":
            headers.add(name, value)
    headers.add("From", invite._required("From"))
    headers.add("To", response._required("To"))
    headers.add("Call-ID", invite.call_id)
    headers.add("CSeq", f"{invite.cseq[0]} ACK")
    return SipRequest("ACK", invite.uri, headers)


@dataclass(frozen=True)
class ClientInviteOutcome:
    """What a response to our INVITE asks of the caller.

    ``to_tu``: the response to hand to the UA core (None: absorbed). ``to_send``: requests to
    transmit now (the ACK of a non-2xx final response).
    """

    to_tu: SipResponse | None = None
    to_send: list[SipRequest] = field(default_factory=list)


class ClientInviteTransaction(_ClientTransaction):
    """INVITE client transaction, RFC 3261 §17.1.1 as amended by RFC 6026 (Accepted state).

    The ACK for a 2xx is end-to-end and belongs to the UA core; every 2xx (retransmission or another
    fork's) received in ACCEPTED is passed up so the core can (re-)ACK it. Timer B only guards
    CALLING: once a provisional arrived the TU ends the wait itself (CANCEL, RFC 3261 §9.1).
    """

    def __init__(self, request: SipRequest, timers: Timers, now: float, reliable: bool = False) -> None:
        super().__init__(request, timers, now, reliable, State.CALLING)
        self.ack: SipRequest | None = None

    def receive_response(self, response: SipResponse, now: float) -> ClientInviteOutcome:
        if self.state in (State.CALLING, State.PROCEEDING):
            return self._first_response(response, now)
        if self.state is State.ACCEPTED and 200 <= response.status < 300:
            return ClientInviteOutcome(to_tu=response)
        if self.state is State.COMPLETED and response.status >= 300 and self.ack is not None:
            return ClientInviteOutcome(to_send=[self.ack])
        return ClientInviteOutcome()

    def _first_response(self, response: SipResponse, now: float) -> ClientInviteOutcome:
        self._retransmit_at = self._give_up_at = None  # Timer B only guards CALLING
        if response.status < 200:
            self.state = State.PROCEEDING
            return ClientInviteOutcome(to_tu=response)
        self.final_response = response
        if response.status < 300:
            self.state = State.ACCEPTED
            self._end_at = now + self.timers.m
            return ClientInviteOutcome(to_tu=response)
        self.state = State.COMPLETED
        self.ack = build_ack_for_non2xx(self.request, response)
        self._end_at = now + (0 if self.reliable else self.timers.d)
        return ClientInviteOutcome(to_tu=response, to_send=[self.ack])

    def _next_interval(self) -> float:
        return 2 * self._retransmit_interval  # no T2 cap for INVITE: Timer B ends it


_MergeIdentity = tuple[str, str, int, str]


def _merge_identity(request: SipRequest) -> _MergeIdentity | None:
    """(From tag, Call-ID, CSeq number, CSeq method) of a request outside a dialog, else None.

    ACK is left out: it gets no response, so there is no 482 to send.
    """
    if request.method == "ACK" or request.to.tag is not None:
        return None
    number, method = request.cseq
    return (request.from_.tag or "", request.call_id, number, method)


class MergedRequestDetector:
    """Merged-request detection, RFC 3261 §8.2.2.2.

    A request forked upstream can reach us along two paths: same From tag, Call-ID and CSeq but a
    different transaction (branch or sent-by). The first copy is served; the later ones are merged
    and get 482 (Loop Detected). Entries live ``ttl`` seconds (64·T1, the life of a server
    transaction's retransmission window; 32 s at the default T1) and at most ``max_entries`` are
    kept, oldest evicted first. ``now`` must not go backwards: entries are kept in expiry order.
    """

    def __init__(self, ttl: float = 32.0, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._seen: OrderedDict[_MergeIdentity, tuple[tuple[str, ...], float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def is_merged(self, request: SipRequest, key: tuple[str, ...], now: float) -> bool:
        """True when ``request`` is a merged copy (answer 482); otherwise ``key`` is remembered as
        the transaction that took it. Call it once per new server transaction (not for ACK)."""
        identity = _merge_identity(request)
        entry = None if identity is None else self._seen.get(identity)
        if entry is not None and entry[1] > now and entry[0] != key:
            return True
        self.remember(request, key, now)
        return False

    def remember(self, request: SipRequest, key: tuple[str, ...], now: float) -> None:
        """Record ``key`` as the transaction that took ``request``; the first live taker is kept.

        Seeing the same transaction again (a retransmission) extends its entry.
        """
        identity = _merge_identity(request)
        if identity is None:
            return
        self.expire(now)
        entry = self._seen.get(identity)
        if entry is not None and entry[0] != key:
            return
        self._seen.pop(identity, None)  # re-inserted last: the order stays the expiry order
        self._seen[identity] = (key, now + self.ttl)
        while len(self._seen) > self.max_entries:
            self._seen.popitem(last=False)

    def expire(self, now: float) -> None:
        while self._seen:
            identity, (_, expires_at) = next(iter(self._seen.items()))
            if expires_at > now:
                return
            del self._seen[identity]
