"""Transferring a call to a person, asked by the agent or the API (issue 17).

``refer`` (blind transfer, RFC 3515 / RFC 5589): the phone side is asked by REFER to call the
target itself; its NOTIFYs say how that goes. On a 2xx the bridge's part is over: it hangs up its
dialog and the agent's session. On a refusal or a failed attempt the call stays with the agent,
which is told. Each step goes to the agent as ``{"type": "transfer", "state": ..., "reason": ...}``
and shows on the call as ``transfer``.

Which targets are allowed is the caller's business (``check``: the provider's ``destinations``
allow-list, as for ``POST /calls``): a transfer is never a way around toll-fraud rules.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..sip.errors import SipParseError
from ..sip.message import SipRequest, SipResponse
from ..sip.refer import TransferTargetError, answer_notify, peer_hostport, progress, refer_request, refer_to
from ..sip.responses import make_response

MODES = ("auto", "refer", "bridge")
NOTIFY_TIMEOUT_S = 60.0  # no final NOTIFY within this: the transfer is given up (the call stays)


@dataclass
class TransferView:
    to: str
    mode: str
    state: str = "trying"
    reason: str | None = None
    started_at: float = field(default_factory=time.time)
    states: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "to": self.to,
            "mode": self.mode,
            "state": self.state,
            "reason": self.reason,
            "started_at": self.started_at,
            "states": list(self.states),
        }


class TransferRefused(Exception):
    """A transfer that cannot start (its message says why: for the API's 4xx and the agent)."""

    def __init__(self, reason: str, status: int = 403) -> None:
        super().__init__(reason)
        self.status = status  # the API's answer: 403 not allowed, 409 not now, 422 malformed, 501


class ReferTransfer:
    """One blind transfer of an answered call's phone side."""

    def __init__(
        self,
        view: TransferView,
        session: Any,  # the call's InviteSession
        tell: Callable[[TransferView], None],
    ) -> None:
        self.view = view
        self._session = session
        self._tell = tell
        self._final: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    @staticmethod
    def refer_to_for(to: str, session: Any) -> str:
        try:
            return refer_to(to, peer_hostport(session.dialog.remote_target))
        except (TransferTargetError, SipParseError) as exc:
            raise TransferRefused(str(exc), 422) from None

    async def run(self) -> bool:
        """True when the target took the call (the bridge then hangs up), False otherwise."""
        session = self._session
        target = self.refer_to_for(self.view.to, session)
        session.on_notify = self._notify
        try:
            self._step("trying")
            response = await session.request_in_dialog(refer_request(session.dialog, target))
            if response is None or response.status >= 300:
                answer = "no answer" if response is None else f"{response.status} {response.reason}"
                self._step("failed", f"REFER refused: {answer}")
                return False
            try:
                state = await asyncio.wait_for(self._final, NOTIFY_TIMEOUT_S)
            except TimeoutError:
                self._step("failed", f"no final progress within {NOTIFY_TIMEOUT_S:g} s")
                return False
            return state == "answered"
        finally:
            session.on_notify = None

    def _notify(self, request: SipRequest) -> SipResponse:
        answered = answer_notify(request)
        if answered is None:
            return make_response(request, 489)  # Bad Event: only the refer event is ours
        response, status, over = answered
        self._progress(status, over)
        return response

    def _progress(self, status: int | None, over: bool) -> None:
        state = progress(status)
        if self._final.done():
            return
        if state in ("answered", "failed"):
            self._step(state, None if state == "answered" else f"the target answered {status}")
            self._final.set_result(state)
        elif over:  # the subscription ended without a final answer
            self._step("failed", "the transfer ended without an answer")
            self._final.set_result("failed")
        elif state != self.view.state:
            self._step(state)

    def _step(self, state: str, reason: str | None = None) -> None:
        self.view.state, self.view.reason = state, reason
        self.view.states.append({"state": state, "reason": reason, "at": time.time()})
        self._tell(self.view)
