"""Our reliable 18x to one incoming INVITE (RFC 3262 §3), on the UA's timers: each sent through the
INVITE's transaction, sent again as ``ReliableSender`` says until its PRACK, given up at 64·T1.

``InviteSession`` owns one when the caller requires 100rel; its 2xx waits for ``settled``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from .message import SipRequest, SipResponse
from .reliable_provisional import ReliableSender
from .session_ua import SessionHost
from .transaction import ServerInviteTransaction, State


class ReliableProvisionals:
    def __init__(self, ua: SessionHost, tx: ServerInviteTransaction, on_gave_up: Callable[[], None]) -> None:
        self._ua = ua
        self._tx = tx
        self._sender = ReliableSender(tx.request, ua.timers)
        self._on_gave_up = on_gave_up
        self._settled = asyncio.Event()  # set while none of ours waits for its PRACK
        self._settled.set()

    def send(self, response: SipResponse) -> bool:
        """Send ``response`` reliably; False (nothing sent) while an earlier one awaits its PRACK."""
        if self._sender.stamp(response, self._ua.now()) is None:
            return False
        self._settled.clear()
        self._ua.respond(self._tx, response)
        self._ua.arm(self._sender, self._on_timer)
        return True

    def _on_timer(self, sender: ReliableSender) -> None:
        if self._tx.state is not State.PROCEEDING:
            return
        response = sender.on_timer(self._ua.now())
        if response is not None:
            self._ua.respond(self._tx, response)
        if sender.gave_up:
            self._settled.set()
            self._on_gave_up()
        else:
            self._ua.arm(sender, self._on_timer)

    def prack(self, request: SipRequest) -> bool:
        """Whether ``request`` (a PRACK) acknowledges our pending 18x; it is then done."""
        if not self._sender.prack(request):
            return False
        self._ua.disarm(self._sender)
        self._settled.set()
        return True

    async def settled(self) -> None:
        """Until no 18x of ours awaits its PRACK (acknowledged, given up on, or stopped)."""
        await self._settled.wait()

    def stop(self) -> None:
        """The INVITE has its final response (or is being answered): nothing more goes reliably."""
        self._sender.stop()
        self._ua.disarm(self._sender)
        self._settled.set()
