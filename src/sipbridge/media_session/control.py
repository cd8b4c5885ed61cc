"""What the signalling side may ask of a call's media: the commands of ``messages.py``, one method each.

``MediaSession`` implements it in this process; a proxy to a media worker process implements the
same methods by sending the messages over its channel. Events come back through the ``emit``
callable the factory was given.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from .messages import (
    AgentConnected,
    AgentUnavailable,
    CallAnswered,
    CloseMedia,
    ConfirmPeer,
    ConnectAgent,
    DigitsSent,
    ForwardDigit,
    MediaEvent,
    MediaOpened,
    MediaRefused,
    MediaStats,
    OpenMedia,
    SendDigits,
    StartSending,
    StatsRequest,
    UpdateMedia,
)


class MediaControl(Protocol):
    async def open(self, command: OpenMedia) -> MediaOpened | MediaRefused: ...

    def update(self, command: UpdateMedia) -> None: ...

    def start_sending(self, command: StartSending) -> None: ...

    def confirm_peer(self, command: ConfirmPeer) -> None: ...

    def answered(self, command: CallAnswered) -> None: ...

    async def connect_agent(self, command: ConnectAgent) -> AgentConnected | AgentUnavailable: ...

    def send_digits(self, command: SendDigits) -> DigitsSent: ...

    def forward_digit(self, command: ForwardDigit) -> None: ...

    def stats(self, command: StatsRequest) -> MediaStats: ...

    async def close(self, command: CloseMedia) -> MediaStats: ...


# Makes a call's media, given where its events go.
MediaFactory = Callable[[Callable[[MediaEvent], None]], MediaControl]
