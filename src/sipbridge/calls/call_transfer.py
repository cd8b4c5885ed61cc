"""A call's transfers: asked by the agent (``{"type": "transfer", ...}``) or by the API, checked
(the mode, the call's state, the target against the provider's allow-list), run (``transfer.py``)
and told to the agent, the webhooks and the call's view at each step."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..media_session import messages as m
from .transfer import MODES, ReferTransfer, TransferRefused, TransferView

# The call (calls/call.py's Call, not imported: it holds one of these): its state, session, config,
# provider, media, log, spawn, hangup and notify are used.
Call = Any
Check = Callable[[Call, str], "str | None"]


class CallTransfers:
    def __init__(self, call: Call) -> None:
        self._call = call
        self.view: TransferView | None = None  # the last transfer, shown as the call's ``transfer``
        # Whether a target may be called (the providers' allow-lists): a refusal's reason or None.
        # Set by the manager; until then only SIP URIs pass (and those only on the call's peer).
        self.check: Check = _no_numbers

    def start(self, to: str, mode: str = "auto") -> TransferView:
        """Start handing the call to ``to``; raises TransferRefused (the reason) when it cannot."""
        call = self._call
        if mode not in MODES:
            raise TransferRefused(f"mode {mode!r}: one of {', '.join(MODES)}", 422)
        if call.state.value != "answered" or call.session is None:
            raise TransferRefused(f"the call is {call.state.value}, not answered", 409)
        if self.view is not None and self.view.state in ("trying", "ringing"):
            raise TransferRefused(f"a transfer to {self.view.to} is under way", 409)
        if mode == "auto" and not self._refer_allowed():
            mode = "bridge"  # the phone side does not take REFER (or its provider says not to)
        if mode == "bridge":
            raise TransferRefused("transfer by bridging is not available yet: use refer", 501)
        refusal = self.check(call, to)
        if refusal:
            raise TransferRefused(refusal)
        view = TransferView(to, "refer")
        transfer = ReferTransfer(view, call.session, self._tell)
        transfer.refer_to_for(to, call.session)  # a malformed target is refused now, not later
        self.view = view
        call.spawn(self._run(transfer))
        return view

    def from_agent(self, event: dict[str, Any]) -> None:
        """The agent asked: a refusal is told to it as a failed transfer."""
        to, mode = event.get("to"), event.get("mode", "auto")
        try:
            if not isinstance(to, str) or not isinstance(mode, str):
                raise TransferRefused("a transfer needs a text 'to' (and 'mode')")
            self.start(to, mode)
        except TransferRefused as exc:
            self._call.log.info("call %s: transfer refused: %s", self._call.id, exc)
            self._tell(TransferView(str(to)[:80], str(mode)[:10], "failed", str(exc)))

    def _refer_allowed(self) -> bool:
        """``auto`` transfers by REFER: the phone side lists it in Allow, its provider's ``refer``."""
        call = self._call
        own = next((p.refer for p in call.config.providers if p.name == call.provider), True)
        return own and call.session is not None and "REFER" in call.session.peer_allow

    async def _run(self, transfer: ReferTransfer) -> None:
        if await transfer.run():
            await self._call.hangup(f"transferred to {transfer.view.to}")

    def _tell(self, view: TransferView) -> None:
        call = self._call
        call.log.info("call %s: transfer to %s %s %s", call.id, view.to, view.state, view.reason or "")
        event = {"type": "transfer", "to": view.to, "state": view.state, "reason": view.reason}
        call.media.send_agent_event(m.SendAgentEvent(event))
        call.notify("transfer", to=view.to, mode=view.mode, state=view.state, reason=view.reason)


def _no_numbers(call: Call, to: str) -> str | None:
    return None if to.lower().startswith(("sip:", "sips:")) else "no provider to check the number against"
