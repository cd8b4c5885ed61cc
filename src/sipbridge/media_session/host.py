"""The media side of this process: what its calls' media share (the RTP ports, the agent's WHIP
client, the 20 ms clock), and the factory of each call's MediaSession."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..agent.whip import WhipClient
from ..rtp.clock import FrameClock
from ..rtp.ports import PortAllocator
from .messages import MediaEvent
from .session import MediaSession
from .shared import SharedMedia


class MediaHost:
    def __init__(self, config: Any, whip: WhipClient, ports: PortAllocator | None = None) -> None:
        self.ports = ports or PortAllocator(config.rtp_ports.low, config.rtp_ports.high)
        self.shared = SharedMedia(config, self.ports, whip, FrameClock(config.clock_slot_ms / 1000))

    def session(self, emit: Callable[[MediaEvent], None]) -> MediaSession:
        """A new call's media, whose events go to ``emit``."""
        return MediaSession(self.shared, emit)

    async def refresh(self) -> None:
        """In this process the stats are read fresh: nothing to pull."""

    def views(self) -> list[dict[str, object]]:
        return []  # no worker processes

    async def stop(self) -> None:
        pass

    @property
    def ports_in_use(self) -> int:
        return self.ports.in_use

    @property
    def ports_total(self) -> int:
        return self.ports.capacity
