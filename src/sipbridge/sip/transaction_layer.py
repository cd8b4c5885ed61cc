"""The transaction layer (RFC 3261 §17): the tables of live server and client transactions, the
flow each one uses, their timers, response matching and merged-request detection.

The transactions themselves are the pure state machines of ``transaction.py``; this layer feeds them
messages and the time, sends what they return through the transport layer, and arms an event-loop
timer at each one's next deadline. ``arm``/``disarm`` serve any object with a ``next_deadline``
(an INVITE session's 2xx retransmitter and session timer, a registration).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

from .errors import SipParseError
from .message import SipRequest, SipResponse
from .transaction import (
    ClientInviteTransaction,
    ClientNonInviteTransaction,
    MergedRequestDetector,
    ServerInviteTransaction,
    ServerNonInviteTransaction,
    State,
    Timers,
    client_transaction_key,
    transaction_key,
)
from .transport import Flow
from .transport_layer import TransportLayer

log = logging.getLogger(__name__)

ServerTx = ServerInviteTransaction | ServerNonInviteTransaction
ClientTx = ClientInviteTransaction | ClientNonInviteTransaction
TxKey = tuple[str, ...]


class Timed(Protocol):
    @property
    def next_deadline(self) -> float | None: ...


class TransactionLayer:
    def __init__(
        self,
        transport: TransportLayer,
        timers: Timers,
        server: str,
        on_server_tx_ended: Callable[[TxKey], None],
    ) -> None:
        self.timers = timers
        self._transport = transport
        self._server = server  # our Server header
        self._on_server_tx_ended = on_server_tx_ended
        self._server_txs: dict[TxKey, ServerTx] = {}
        self._client_txs: dict[tuple[str, str], tuple[ClientTx, asyncio.Future]] = {}
        self._flows: dict[int, Flow] = {}
        self._observers: dict[int, Callable[[SipResponse], None]] = {}
        self._merged = MergedRequestDetector(ttl=timers.b)
        self._handles: dict[int, asyncio.TimerHandle] = {}

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    def close(self) -> None:
        for handle in self._handles.values():
            handle.cancel()
        self._handles.clear()

    @property
    def server_transactions(self) -> int:
        """Server transactions alive (answering, absorbing retransmissions, waiting for an ACK)."""
        return len(self._server_txs)

    @property
    def client_transactions(self) -> int:
        return len(self._client_txs)

    # -- server transactions -------------------------------------------------------------------

    def server_tx(self, key: TxKey) -> ServerTx | None:
        return self._server_txs.get(key)

    def flow_of(self, tx: ServerTx) -> Flow | None:
        return self._flows.get(id(tx))

    def is_merged(self, request: SipRequest, key: TxKey) -> bool:
        """§8.2.2.2: the same request reaching us a second way (another branch); remembers it."""
        return self._merged.is_merged(request, key, self.now())

    def new_server_tx(self, request: SipRequest, key: TxKey, flow: Flow) -> ServerTx:
        cls = ServerInviteTransaction if request.method == "INVITE" else ServerNonInviteTransaction
        tx = cls(request, self.timers, flow.reliable)
        self._server_txs[key] = tx
        self._flows[id(tx)] = flow
        return tx

    def respond(self, tx: ServerTx, response: SipResponse) -> None:
        response.headers.set("Server", self._server)
        flow = self._flows.get(id(tx))
        for message in tx.send_response(response, self.now()):
            self._transport.send_response(message, flow)
        self.arm(tx, self._on_server_tx_timer)

    def send_stateless(self, response: SipResponse, flow: Flow) -> None:
        """A refusal sent once, with no transaction (RFC 3261 §8.2.7: a request refused before any
        processing, e.g. unauthenticated, may be answered statelessly). A retransmitted request gets
        it again; nothing is retransmitted towards a source that never ACKs, so a spoofed flood is
        not amplified, and nothing is kept."""
        response.headers.set("Server", self._server)
        self._transport.send_response(response, flow)

    def request_retransmitted(self, tx: ServerTx, request: SipRequest) -> None:
        """A request matching ``tx`` (a retransmission, or the ACK of a non-2xx): what it resends."""
        for message in tx.receive_request(request, self.now()):
            self._transport.send_response(message, self._flows.get(id(tx)))
        self.arm(tx, self._on_server_tx_timer)

    def _on_server_tx_timer(self, tx: ServerTx) -> None:
        flow = self._flows.get(id(tx))
        for message in tx.on_timer(self.now()):
            self._transport.send_response(message, flow)
        if tx.state is State.TERMINATED:
            self._forget_server_tx(tx)
        else:
            self.arm(tx, self._on_server_tx_timer)

    def _forget_server_tx(self, tx: ServerTx) -> None:
        key = transaction_key(tx.request)
        if self._server_txs.get(key) is tx:
            del self._server_txs[key]
        self._flows.pop(id(tx), None)
        self._on_server_tx_ended(key)

    # -- client transactions -------------------------------------------------------------------

    async def send_request(
        self, request: SipRequest, flow: Flow, on_response: Callable[[SipResponse], None] | None
    ) -> SipResponse | None:
        """Send ``request`` over ``flow`` in a new client transaction: its final response, or None.

        For an INVITE, ``on_response`` sees every response the transaction passes up (1xx,
        retransmitted 2xx).
        """
        if request.method == "INVITE":
            tx: ClientTx = ClientInviteTransaction(request, self.timers, self.now(), flow.reliable)
        else:
            tx = ClientNonInviteTransaction(request, self.timers, self.now(), flow.reliable)
        future: asyncio.Future[SipResponse | None] = asyncio.get_running_loop().create_future()
        self._client_txs[tx.key] = (tx, future)
        self._flows[id(tx)] = flow
        if on_response is not None:
            self._observers[id(tx)] = on_response
        flow.send(request.to_bytes())
        self.arm(tx, self._on_client_tx_timer)
        if request.method != "INVITE":
            return await future
        try:  # after a 1xx nothing in the INVITE transaction ends the wait: a refresh must not hang
            return await asyncio.wait_for(future, self.timers.b)
        except TimeoutError:
            self._forget_client_tx(tx)
            return None
        except asyncio.CancelledError:  # given up (another server is tried): no more retransmissions
            self._forget_client_tx(tx)
            raise

    def response_received(self, response: SipResponse) -> None:
        """§17.1.3: to the client transaction with the top Via's branch and the CSeq method."""
        try:
            key = client_transaction_key(response)
        except (SipParseError, IndexError):
            return
        entry = self._client_txs.get(key)
        if entry is None:
            log.debug("%s %s for %s matches no transaction of ours", response.status, response.reason, key)
            return
        tx, future = entry
        if isinstance(tx, ClientInviteTransaction):
            self._invite_response(tx, future, response)
        elif tx.receive_response(response, self.now()) and not future.done():
            future.set_result(response)
        self.arm(tx, self._on_client_tx_timer)

    def _invite_response(
        self, tx: ClientInviteTransaction, future: asyncio.Future, response: SipResponse
    ) -> None:
        outcome = tx.receive_response(response, self.now())
        flow = self._flows.get(id(tx))
        for request in outcome.to_send:
            if flow is not None:
                flow.send(request.to_bytes())
        passed = outcome.to_tu
        if passed is None:
            return
        if passed.status >= 200 and not future.done():
            future.set_result(passed)
        else:
            observer = self._observers.get(id(tx))
            if observer is not None:
                observer(passed)

    def _on_client_tx_timer(self, tx: ClientTx) -> None:
        flow = self._flows.get(id(tx))
        for request in tx.on_timer(self.now()):
            if flow is not None:
                flow.send(request.to_bytes())
        if tx.state is State.TERMINATED:
            self._forget_client_tx(tx)
        else:
            self.arm(tx, self._on_client_tx_timer)

    def _forget_client_tx(self, tx: ClientTx) -> None:
        self.disarm(tx)
        self._observers.pop(id(tx), None)
        self._flows.pop(id(tx), None)
        entry = self._client_txs.pop(tx.key, None)
        if entry is not None and not entry[1].done():
            entry[1].set_result(None)

    # -- timers --------------------------------------------------------------------------------

    def arm(self, obj: Timed, callback: Callable) -> None:
        """Call ``callback(obj)`` at ``obj.next_deadline`` (replacing any earlier arming of ``obj``)."""
        self.disarm(obj)
        deadline = obj.next_deadline
        if deadline is not None:
            loop = asyncio.get_running_loop()
            self._handles[id(obj)] = loop.call_at(deadline, self._fire, obj, callback)

    def disarm(self, obj: object | None) -> None:
        handle = self._handles.pop(id(obj), None) if obj is not None else None
        if handle is not None:
            handle.cancel()

    def _fire(self, obj: Timed, callback: Callable) -> None:
        self._handles.pop(id(obj), None)
        callback(obj)
