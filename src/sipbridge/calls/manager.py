"""All calls of the bridge: admission, lookup by id, history of ended calls, drain and shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, OrderedDict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from .. import logs, metrics
from ..config import Config
from ..media_session.control import MediaProvider
from ..sip.invite_session import InviteSession
from ..sip.useragent import UserAgent
from .call import Call, CallObserver
from .inbound import InboundLeg
from .outbound import OutboundLeg, OutboundTarget
from .records import CallRecords

log = logging.getLogger(__name__)

HISTORY_SIZE = 1000
BUSY_RETRY_AFTER_S = 5
HANGUP_WAIT_S = 2.0


@dataclass(frozen=True)
class EndedCall:
    """An ended call as the API keeps showing it: its final view, without the objects it ran on.

    Keeping the Call itself kept its codecs, jitter buffer and closed peer connection (0.15-0.3 MiB
    a call: 250 MiB or more once HISTORY_SIZE calls had ended).
    """

    id: str
    view: dict[str, Any]

    @classmethod
    def of(cls, call: Call) -> EndedCall:
        return cls(call.id, call.to_dict())

    def to_dict(self) -> dict[str, Any]:
        return self.view

    async def hangup(self, reason: str) -> None:
        """Already ended: nothing to do."""


class OutboundSlot:
    """A place for one outbound call, taken the moment the call is admitted: the caps count it while
    the provider's address is resolved and until the call is listed (or placing it fails)."""

    def __init__(self, provider: str, held: Counter[str]) -> None:
        self.provider = provider
        self._held = held
        self._released = False
        held[provider] += 1

    def release(self) -> None:
        """Give the place back (again: nothing); the call that took it holds its own from then on."""
        if self._released:
            return
        self._released = True
        self._held[self.provider] -= 1
        if self._held[self.provider] <= 0:
            del self._held[self.provider]


class CallManager:
    def __init__(
        self,
        config: Config,
        media: MediaProvider,
        records: CallRecords | None = None,
        on_event: CallObserver | None = None,
    ) -> None:
        self.config = config
        self.on_event = on_event  # told of each call's events (the webhooks)
        self.media = media
        self.max_calls = config.max_calls
        # Inbound calls at once from one address that no trunk admitted (0: no cap): one stranger
        # cannot take the capacity that trunks' calls need.
        self.max_calls_per_source = config.max_calls_per_source
        self.rejected_source_cap = 0
        self.active: dict[str, Call] = {}
        # Whether a call may be transferred to a target (the providers' allow-lists): set by the
        # bridge; a refusal's reason or None.
        self.transfer_check: Callable[[Call, str], str | None] | None = None
        # Outbound calls admitted but not listed yet (their trunk's address being resolved), by
        # provider: counted against max_calls and max_outbound_calls like the calls up.
        self._held: Counter[str] = Counter()
        self.history: OrderedDict[str, EndedCall] = OrderedDict()
        self._tasks: set[asyncio.Task] = set()
        self.total_calls = 0
        self.rejected_busy = 0
        self.records = records or CallRecords(None)
        self.ended_media = metrics.MediaCounters()  # what ended calls carried, added once per call
        self.draining = False
        self.drain_retry_after = BUSY_RETRY_AFTER_S
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def calls_in_use(self) -> int:
        """Calls up, and outbound calls admitted but not placed yet: what max_calls caps."""
        return len(self.active) + sum(self._held.values())

    def reserve_outbound(self, provider: str) -> OutboundSlot | None:
        """Take a place for an outbound call of ``provider`` now, in the same step as the checks that
        admitted it (nothing awaited in between), so concurrent requests cannot all pass the caps
        before any of them is placed; None (counted as busy) once max_calls are in use."""
        if self.calls_in_use >= self.max_calls:
            self.rejected_busy += 1
            metrics.call_refused("call_limit")
            return None
        return OutboundSlot(provider, self._held)

    def place_outbound(self, ua: UserAgent, target: OutboundTarget, slot: OutboundSlot) -> Call:
        """Start dialling ``target`` in the place ``slot`` held; the call is listed at once, in state
        ``dialing``, and counts against the caps as an active call from then on."""
        call = Call(OutboundLeg(ua, target), self.config, self.media.session, self.call_ended, self.on_event)
        slot.release()
        self._admit(call)
        return call

    def outbound_active(self, provider: str) -> int:
        """Outbound calls of ``provider`` up or being placed (slots held)."""
        up = sum(
            1 for call in self.active.values() if call.direction == "outbound" and call.provider == provider
        )
        return up + self._held[provider]

    def _admit(self, call: Call) -> None:
        if self.transfer_check is not None:
            call.transfers.check = self.transfer_check
        self.track(call)
        self.total_calls += 1
        self._spawn(call, call.run(), name=f"call-{call.id}")

    def track(self, call: Call) -> None:
        """List ``call`` as active until it ends (its ``on_ended`` is ``call_ended``)."""
        self.active[call.id] = call
        self._idle.clear()

    def _spawn(self, call: Call, coro: Coroutine[Any, Any, None], name: str | None = None) -> asyncio.Task:
        """A task working for ``call``: its log lines carry the call's id."""
        task = asyncio.get_running_loop().create_task(coro, name=name, context=logs.call_context(call.id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def handle_invite(self, session: InviteSession) -> Call | None:
        if self.draining:
            metrics.call_refused("draining")
            warning = "draining: the bridge is shutting down"
            session.reject(503, warning=warning, retry_after=self.drain_retry_after)
            return None
        if self.calls_in_use >= self.max_calls:
            self.rejected_busy += 1
            metrics.call_refused("call_limit")
            warning = f"call limit of {self.max_calls} reached"
            session.reject(503, warning=warning, retry_after=BUSY_RETRY_AFTER_S)
            return None
        if session.admitted_as is None and self._over_source_cap(session.source[0]):
            self.rejected_source_cap += 1
            metrics.call_refused("source_cap")
            warning = f"{self.max_calls_per_source} calls from {session.source[0]} are up already"
            session.reject(503, warning=warning, retry_after=BUSY_RETRY_AFTER_S)
            return None
        call = Call(InboundLeg(session), self.config, self.media.session, self.call_ended, self.on_event)
        self._admit(call)
        return call

    def _over_source_cap(self, source: str) -> bool:
        """Whether the calls up from ``source`` that no trunk admitted reach max_calls_per_source."""
        if not self.max_calls_per_source:
            return False
        up = sum(1 for call in self.active.values() if _stranger_address(call) == source)
        return up >= self.max_calls_per_source

    def call_ended(self, call: Call) -> None:
        """Once per call, as it ends: out of the active list, counted, recorded."""
        self.active.pop(call.id, None)
        self.history[call.id] = EndedCall.of(call)
        while len(self.history) > HISTORY_SIZE:
            self.history.popitem(last=False)
        if not self.active:
            self._idle.set()
        try:
            stats = call.media_stats()
            self.ended_media.add(stats.counters)
            metrics.call_ended(
                call.direction, call.provider, call.end_reason, stats.rtp_jitter_s, stats.rtp_loss
            )
            _count_phone_reports(stats.rtp or {})
            self.records.write(call)
        except Exception:  # the bookkeeping must never keep a call from ending
            log.exception(
                "call %s: counting or recording its end failed", call.id, extra={"call_id": call.id}
            )

    async def refresh_stats(self) -> None:
        """The calls' media figures as they are now (pulled from the media workers in one go)."""
        await self.media.refresh()

    def media_totals(self) -> metrics.MediaCounters:
        """RTP and agent-leg counters of every call so far: the ended ones' and the active ones' now."""
        totals = metrics.MediaCounters()
        totals.add(self.ended_media)
        for call in self.active.values():
            totals.add(call.media_counters())
        return totals

    @property
    def load(self) -> float:
        """Active calls as a share of the configured maximum."""
        return len(self.active) / self.max_calls

    def get(self, call_id: str) -> Call | EndedCall | None:
        return self.active.get(call_id) or self.history.get(call_id)

    def list_active(self) -> list[Call]:
        return list(self.active.values())

    async def hangup(self, call_id: str, reason: str = "hung up through the API") -> Call | EndedCall | None:
        """End a call; returns once it is marked ended (its BYE/CANCEL goes on in the background)."""
        call = self.get(call_id)
        if call is not None:
            task = self._spawn(call, call.hangup(reason))
            await asyncio.wait({task}, timeout=HANGUP_WAIT_S)
        return call

    def start_draining(self, retry_after: int) -> None:
        """From now on new INVITEs get 503 with ``Retry-After``; running calls go on."""
        self.draining = True
        self.drain_retry_after = retry_after

    async def drained(self, grace: float, interrupt: asyncio.Event) -> bool:
        """Wait until no call is active, for up to ``grace`` seconds or until ``interrupt`` is set.

        True when every call ended by itself.
        """
        idle = asyncio.ensure_future(self._idle.wait())
        stop = asyncio.ensure_future(interrupt.wait())
        try:
            await asyncio.wait({idle, stop}, timeout=grace, return_when=asyncio.FIRST_COMPLETED)
        finally:
            idle.cancel()
            stop.cancel()
        return not self.active

    async def shutdown(self) -> None:
        await asyncio.gather(*(c.hangup("bridge shutting down") for c in list(self.active.values())))
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _stranger_address(call: Call) -> str | None:
    """Where an inbound call that no trunk admitted comes from (None for any other call)."""
    if call.direction != "inbound" or call.provider is not None or call.session is None:
        return None
    return call.session.source[0]


def _count_phone_reports(rtp: dict) -> None:
    """The phone leg's RTCP and SRTP figures of an ended call, into /metrics."""
    rtcp = rtp.get("rtcp") or {}
    round_trip = rtcp.get("round_trip_ms")
    metrics.call_media_reports(
        None if round_trip is None else round_trip / 1000,
        rtcp.get("phone_fraction_lost"),
        rtp.get("srtp_auth_failures", 0),
    )
