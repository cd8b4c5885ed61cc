"""What the signalling side may ask of a call's media: the commands of ``messages.py``, one method each.

``MediaSession`` implements it in this process; a proxy to a media worker process implements the
same methods by sending the messages over its channel. Events come back through the ``emit``
callable the factory was given.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from . import messages as m


class MediaControl(Protocol):
    async def open(self, command: m.OpenMedia) -> m.MediaOpened | m.MediaRefused: ...

    def update(self, command: m.UpdateMedia) -> None: ...

    def start_sending(self, command: m.StartSending) -> None: ...

    def confirm_peer(self, command: m.ConfirmPeer) -> None: ...

    def answered(self, command: m.CallAnswered) -> None: ...

    async def connect_agent(self, command: m.ConnectAgent) -> m.AgentConnected | m.AgentUnavailable: ...

    def send_digits(self, command: m.SendDigits) -> None: ...

    def forward_digit(self, command: m.ForwardDigit) -> None: ...

    def send_agent_event(self, command: m.SendAgentEvent) -> None: ...

    def stats(self, command: m.StatsRequest) -> m.MediaStats: ...

    async def close(self, command: m.CloseMedia) -> m.MediaStats: ...


# Makes a call's media, given where its events go.
MediaFactory = Callable[[Callable[[m.MediaEvent], None]], MediaControl]


class MediaProvider(Protocol):
    """Where calls get their media: the worker pool, or this process (``MediaHost``)."""

    def session(self, emit: Callable[[m.MediaEvent], None]) -> MediaControl: ...

    async def refresh(self) -> None:
        """Bring every call's stats snapshot up to date (before a view or a scrape reads them)."""

    def views(self) -> list[dict[str, object]]:
        """The worker processes, as /health lists them."""

    async def stop(self) -> None: ...

    @property
    def ports_in_use(self) -> int: ...

    @property
    def ports_total(self) -> int: ...


# Each command and the MediaControl method that takes it: how a worker dispatches what a proxy sent.
# The awaited ones (and stats) answer with a reply; the rest are sent without waiting.
METHODS: dict[type, str] = {
    m.OpenMedia: "open",
    m.UpdateMedia: "update",
    m.StartSending: "start_sending",
    m.ConfirmPeer: "confirm_peer",
    m.CallAnswered: "answered",
    m.ConnectAgent: "connect_agent",
    m.SendDigits: "send_digits",
    m.ForwardDigit: "forward_digit",
    m.SendAgentEvent: "send_agent_event",
    m.StatsRequest: "stats",
    m.CloseMedia: "close",
}
ANSWERED = frozenset({m.OpenMedia, m.ConnectAgent, m.StatsRequest, m.CloseMedia})
