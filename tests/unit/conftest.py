"""Factories for unit tests of the call layer: a CallManager and Calls built through their public
constructors, with a leg that does no SIP and media that does no RTP (each layer's own tests
cover those)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from sipbridge.calls.call import Call, CallObserver
from sipbridge.calls.manager import CallManager
from sipbridge.calls.records import CallRecords
from sipbridge.config import Config
from sipbridge.media_session.host import MediaHost
from sipbridge.media_session.messages import (
    AgentConnected,
    MediaEvent,
    MediaOpened,
    MediaStats,
)
from sipbridge.rtp.ports import PortAllocator


class StubLeg:
    """A leg without SIP: its set-up ends at once, unanswered; what the call asks of it is noted."""

    direction = "inbound"

    def __init__(self, session: Any = None) -> None:
        self.session = session
        self.rejected: list[tuple[int, str]] = []
        self.signalling_ended: list[str] = []

    def identify(self, call: Call) -> None:
        pass

    async def establish(self, call: Call) -> None:
        return None

    def reject(self, call: Call, status: int, warning: str, reason: str) -> None:
        self.rejected.append((status, warning))
        call.mark_ended(reason)

    async def end_signalling(self, reason: str) -> None:
        self.signalling_ended.append(reason)

    def detach(self) -> None:
        pass

    def media_ip(self) -> str:
        return "127.0.0.1"

    def signalling_source(self) -> tuple[str, int] | None:
        return ("127.0.0.1", 5060)

    def max_duration(self, config: Config) -> float | None:
        return None


class StubMedia:
    """Media without sockets: answers each command at once; ``snapshot`` is what its stats say."""

    def __init__(self, emit: Callable[[MediaEvent], None]) -> None:
        self.emit = emit
        self.snapshot = MediaStats()
        self.opened = MediaOpened(40000)  # what open answers
        self.commands: list[Any] = []
        self.closed = False

    async def open(self, command: Any) -> MediaOpened:
        self.commands.append(command)
        return self.opened

    def update(self, command: Any) -> None:
        self.commands.append(command)

    start_sending = confirm_peer = answered = forward_digit = update

    async def connect_agent(self, command: Any) -> AgentConnected:
        self.commands.append(command)
        return AgentConnected()

    def send_digits(self, command: Any) -> None:
        self.commands.append(command)

    def stats(self, command: Any) -> MediaStats:
        return self.snapshot

    async def close(self, command: Any) -> MediaStats:
        self.closed = True
        return self.snapshot


def config(**settings: Any) -> Config:
    return replace(Config(), **settings)


@pytest.fixture
def make_manager() -> Callable[..., CallManager]:
    """A CallManager over real port bookkeeping (no socket is opened unless a call runs media)."""

    def make(
        records: CallRecords | None = None,
        ports: PortAllocator | None = None,
        on_event: CallObserver | None = None,
        **settings: Any,
    ) -> CallManager:
        cfg = config(**settings)
        host = MediaHost(cfg, whip=None, ports=ports or PortAllocator(40000, 40019))  # type: ignore[arg-type]
        return CallManager(cfg, host, records=records, on_event=on_event)

    return make


@pytest.fixture
def make_call() -> Callable[..., Call]:
    """A Call with a StubLeg (or ``leg``) and StubMedia, listed in ``manager`` when one is given (and
    telling the manager's observer of its events)."""

    def make(manager: CallManager | None = None, leg: Any = None, **settings: Any) -> Call:
        on_ended = manager.call_ended if manager is not None else (lambda call: None)
        cfg = manager.config if manager is not None else config(**settings)
        on_event = manager.on_event if manager is not None else None
        call = Call(leg or StubLeg(), cfg, StubMedia, on_ended, on_event)
        if manager is not None:
            manager.track(call)
        return call

    return make
