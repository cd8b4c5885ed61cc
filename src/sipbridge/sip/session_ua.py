"""What an INVITE session, an outgoing INVITE and a dialog's requests need of their user agent.

``UserAgent`` provides it; the session side depends on these protocols only, never on the UA's
module, so the layers stay one-way: the UA knows sessions, sessions know this contract.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from .dialog import Dialog
from .message import SipRequest, SipResponse
from .transaction import Timers
from .transaction_layer import ServerTx, Timed
from .transport import Address, Flow
from .transport_layer import TransportLayer


class RequestSender(Protocol):
    """Sending requests of ours: client transactions, and the transport layer for flows, our Via
    and Contact."""

    @property
    def timers(self) -> Timers: ...

    @property
    def session_min_se(self) -> int: ...

    @property
    def transport(self) -> TransportLayer:
        """Our addresses (Via, Contact, SDP), and the flow a request goes over."""
        ...

    def now(self) -> float: ...

    async def send_request(
        self,
        request: SipRequest,
        destination: Address,
        transport: str | None = None,
        prefer: Flow | None = None,
        on_response: Callable[[SipResponse], None] | None = None,
        keep_via: bool = False,
        server_name: str | None = None,
    ) -> SipResponse | None: ...


class DialogUsage(Protocol):
    """What the UA asks of the session that owns a dialog in its table."""

    dialog: Dialog | None
    peer_ips: set[str]
    admitted_as: str | None
    log_extra: dict[str, str]

    def request_received(self, request: SipRequest, tx: ServerTx) -> None: ...

    def ack_received(self, ack: SipRequest) -> None: ...


class SessionHost(RequestSender, Protocol):
    """All an INVITE session needs: sending, answering through its transactions, timers and the
    dialog table."""

    def respond(self, tx: ServerTx, response: SipResponse) -> None: ...

    def arm(self, obj: Timed, callback: Callable) -> None: ...

    def disarm(self, obj: object | None) -> None: ...

    def register_dialog(self, session: DialogUsage) -> None: ...

    def unregister_dialog(self, session: DialogUsage) -> None: ...
