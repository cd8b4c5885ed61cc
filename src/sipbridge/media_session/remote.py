"""The control process's end of a media worker: one channel to the worker, and a ``MediaControl``
per call that speaks over it, so a ``Call`` drives media in another process as it would here.

Nothing here waits without a deadline: a command that wants an answer gets ``WorkerLost`` when the
worker goes away or does not answer in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from . import messages as m
from . import wire

log = logging.getLogger(__name__)

READ_SIZE = 1 << 16
ANSWER_TIMEOUT_S = 5.0  # a worker that takes longer to answer a plain command is stuck


class WorkerLost(Exception):
    """The worker went away (or stopped answering) before it answered."""


class WorkerLink:
    """One worker's channel: commands out, replies matched to them, events to each call's handler."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        on_lost: Callable[[str], None] | None = None,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._on_lost = on_lost
        self._seq = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._handlers: dict[str, Callable[[m.MediaEvent], None]] = {}
        self.placed = 0  # calls placed here whose media is not open yet (placement counts them)
        self.snapshots: dict[str, m.MediaStats] = {}  # the last stats pulled, by call
        self.status: m.WorkerStatus | None = None
        self.last_beat = time.monotonic()
        self.lost: str | None = None
        self._task = asyncio.get_running_loop().create_task(self._read(), name="worker-link")

    # -- sending -------------------------------------------------------------------------------

    def send(self, call: str, command: Any) -> None:
        if self.lost is None:
            self._writer.write(wire.encode(wire.Envelope(wire.COMMAND, 0, call, command)))

    async def request(self, call: str, command: Any, timeout: float = ANSWER_TIMEOUT_S) -> Any:
        """Send ``command`` and wait for the worker's answer; WorkerLost when there is none in time."""
        if self.lost is not None:
            raise WorkerLost(self.lost)
        seq = next(self._seq)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[seq] = future
        self._writer.write(wire.encode(wire.Envelope(wire.COMMAND, seq, call, command)))
        try:
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError as exc:
            raise WorkerLost(f"no answer to {type(command).__name__} within {timeout:g} s") from exc
        finally:
            self._pending.pop(seq, None)

    def listen(self, call: str, handler: Callable[[m.MediaEvent], None]) -> None:
        self._handlers[call] = handler

    def forget(self, call: str) -> None:
        self._handlers.pop(call, None)
        self.snapshots.pop(call, None)

    async def pull_stats(self) -> None:
        """Every call's stats of this worker in one request (what /metrics and the API read)."""
        if not self._handlers or self.lost is not None:
            return
        with contextlib.suppress(WorkerLost):
            reply = await self.request("", m.StatsBatch(list(self._handlers)))
            if isinstance(reply, m.StatsBatchReply):
                self.snapshots.update(reply.stats)

    # -- receiving -----------------------------------------------------------------------------

    async def _read(self) -> None:
        frames = wire.FrameReader()
        reason = "media worker closed its channel"
        try:
            while data := await self._reader.read(READ_SIZE):
                for frame in frames.feed(data):
                    self._received(wire.decode(frame))
        except (ConnectionError, wire.WireError) as exc:
            reason = f"media worker channel broken: {exc}"
        self.lose(reason)

    def _received(self, envelope: wire.Envelope) -> None:
        if envelope.kind == wire.HEARTBEAT:
            self.status, self.last_beat = envelope.message, time.monotonic()
        elif envelope.kind == wire.REPLY:
            future = self._pending.get(envelope.seq)
            if future is not None and not future.done():
                future.set_result(envelope.message)
        elif envelope.kind == wire.EVENT:
            handler = self._handlers.get(envelope.call)
            if handler is not None:
                try:
                    handler(envelope.message)
                except Exception:  # one call's handler must not stop the channel
                    log.exception("media event handler failed for call %s", envelope.call)

    def lose(self, reason: str) -> None:
        """The worker is gone (its channel closed, or the supervisor gave up on it): fail what waits."""
        if self.lost is not None:
            return
        self.lost = reason
        for future in self._pending.values():
            if not future.done():
                future.set_exception(WorkerLost(reason))
        self._writer.close()
        handlers, self._handlers = self._handlers, {}
        for call, handler in handlers.items():  # each call on this worker hears that its media is gone
            try:
                handler(m.MediaFailed(reason))
            except Exception:
                log.exception("media event handler failed for call %s", call)
        if self._on_lost is not None:
            self._on_lost(reason)

    @property
    def calls(self) -> int:
        """Calls whose media this worker holds, is opening, or is about to open."""
        return len(self._handlers) + self.placed

    async def close(self) -> None:
        self.lose("closed by the control process")
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class RemoteMedia:
    """A call's media in a worker process: the ``MediaControl`` methods as messages on ``link``."""

    def __init__(
        self, link: WorkerLink, emit: Callable[[m.MediaEvent], None], agent_timeout: float, worker: int = 0
    ) -> None:
        self._link = link
        self._worker = worker  # the index of the worker behind ``link``: the call's view names it
        self._emit = emit
        self._agent_timeout = agent_timeout
        self._call = ""
        self._stats = m.MediaStats()
        self._closed = False
        link.placed += 1  # counted where it will open from now on: calls placed at once spread

    async def open(self, command: m.OpenMedia) -> m.MediaOpened | m.MediaRefused:
        self._call = command.call_id
        self._link.listen(self._call, self._emit)
        self._link.placed -= 1
        try:
            reply = await self._link.request(self._call, command)
        except WorkerLost as exc:
            return m.MediaRefused(f"media worker unavailable: {exc}")
        if isinstance(reply, m.MediaOpened):
            return replace(reply, worker=self._worker)
        self._link.forget(self._call)
        return reply if isinstance(reply, m.MediaRefused) else m.MediaRefused(str(reply))

    def update(self, command: m.UpdateMedia) -> None:
        self._link.send(self._call, command)

    def start_sending(self, command: m.StartSending) -> None:
        self._link.send(self._call, command)

    def confirm_peer(self, command: m.ConfirmPeer) -> None:
        self._link.send(self._call, command)

    def answered(self, command: m.CallAnswered) -> None:
        self._link.send(self._call, command)

    def send_digits(self, command: m.SendDigits) -> None:
        self._link.send(self._call, command)

    def forward_digit(self, command: m.ForwardDigit) -> None:
        self._link.send(self._call, command)

    def send_agent_event(self, command: m.SendAgentEvent) -> None:
        self._link.send(self._call, command)

    async def connect_agent(self, command: m.ConnectAgent) -> m.AgentConnected | m.AgentUnavailable:
        # The worker waits up to agent_timeout for the agent: give it that and a margin.
        try:
            reply = await self._link.request(self._call, command, self._agent_timeout + ANSWER_TIMEOUT_S)
        except WorkerLost as exc:
            return m.AgentUnavailable(f"media worker unavailable: {exc}")
        return (
            reply
            if isinstance(reply, m.AgentConnected | m.AgentUnavailable)
            else m.AgentUnavailable(str(reply))
        )

    def stats(self, command: m.StatsRequest) -> m.MediaStats:
        """The last snapshot the worker's batch brought (``WorkerLink.pull_stats``): never waits."""
        return self._link.snapshots.get(self._call, self._stats)

    async def close(self, command: m.CloseMedia) -> m.MediaStats:
        """Close the media (once; again returns the last stats)."""
        if self._closed:
            return self._stats
        self._closed = True
        if not self._call:  # placed but never opened (the call was refused before)
            self._link.placed -= 1
            return self._stats
        with contextlib.suppress(WorkerLost):
            reply = await self._link.request(self._call, command)
            if isinstance(reply, m.MediaStats):
                self._stats = reply
        self._link.forget(self._call)
        return self._stats
