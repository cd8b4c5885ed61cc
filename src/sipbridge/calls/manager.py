"""All calls of the bridge: admission, lookup by id, history of ended calls, shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from ..agent.whip import WhipClient
from ..rtp.clock import FrameClock
from ..rtp.ports import PortAllocator
from ..sip.invite_session import InviteSession
from ..sip.useragent import UserAgent
from .call import Call, CallSettings
from .outbound import OutboundCall, OutboundTarget

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


class CallManager:
    def __init__(
        self,
        settings: CallSettings,
        ports: PortAllocator,
        whip: WhipClient,
        max_calls: int = 500,
        clock: FrameClock | None = None,
    ) -> None:
        self.settings = settings
        self.ports = ports
        self.whip = whip
        self.max_calls = max_calls
        self.active: dict[str, Call] = {}
        self.history: OrderedDict[str, EndedCall] = OrderedDict()
        self._tasks: set[asyncio.Task] = set()
        self.clock = clock or FrameClock()
        self.total_calls = 0
        self.rejected_busy = 0

    def place_outbound(self, ua: UserAgent, target: OutboundTarget) -> OutboundCall:
        """Start dialling ``target``; the call is listed at once, in state ``dialing``."""
        call = OutboundCall(ua, target, self.settings, self.ports, self.whip, self.clock, self._call_ended)
        self.active[call.id] = call
        self.total_calls += 1
        self._run(call)
        return call

    def outbound_active(self, provider: str) -> int:
        return sum(
            1 for call in self.active.values() if call.direction == "outbound" and call.provider == provider
        )

    def _run(self, call: Call) -> None:
        task = asyncio.get_running_loop().create_task(call.run(), name=f"call-{call.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def handle_invite(self, session: InviteSession) -> Call | None:
        if len(self.active) >= self.max_calls:
            self.rejected_busy += 1
            warning = f"call limit of {self.max_calls} reached"
            session.reject(503, warning=warning, retry_after=BUSY_RETRY_AFTER_S)
            return None
        call = Call(session, self.settings, self.ports, self.whip, self.clock, self._call_ended)
        self.active[call.id] = call
        self.total_calls += 1
        self._run(call)

    def _call_ended(self, call: Call) -> None:
        self.active.pop(call.id, None)
        self.history[call.id] = EndedCall.of(call)
        while len(self.history) > HISTORY_SIZE:
            self.history.popitem(last=False)

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
            task = asyncio.get_running_loop().create_task(call.hangup(reason))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            await asyncio.wait({task}, timeout=HANGUP_WAIT_S)
        return call

    async def shutdown(self) -> None:
        await asyncio.gather(*(c.hangup("bridge shutting down") for c in list(self.active.values())))
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
