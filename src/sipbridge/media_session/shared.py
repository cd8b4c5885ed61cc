"""What the media of all the calls of one process share: the bridge's Config (plain data), the RTP
ports, the agent's WHIP client and the 20 ms clock."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..agent.whip import WhipClient
from ..rtp.clock import FrameClock
from ..rtp.ports import PortAllocator


@dataclass(frozen=True)
class SharedMedia:
    config: Any  # rtp_host, the agent and Opus settings, rtp_timeout, rtp_latch, ...
    ports: PortAllocator
    whip: WhipClient
    clock: FrameClock
