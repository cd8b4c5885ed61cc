"""One call's RTP stream: receive G.711 payloads, send paced 20 ms packets, symmetric RTP."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from .packet import RtpParseError, build_rtp_header, is_rtcp, parse_rtp

log = logging.getLogger(__name__)

Address = tuple[str, int]
FRAME_SECONDS = 0.020
SAMPLES_PER_FRAME = 160  # 20 ms at 8 kHz


@dataclass
class RtpStats:
    packets_in: int = 0
    packets_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    invalid_in: int = 0
    late_ticks: int = 0
    last_packet_at: float | None = None


class RtpSession(asyncio.DatagramProtocol):
    """Receives RTP on one local port and sends to the peer (latched to where its packets come from)."""

    def __init__(
        self,
        on_payload: Callable[[bytes], None] | None = None,
        on_event_payload: Callable[[bytes], None] | None = None,
    ) -> None:
        self.on_payload = on_payload
        self.on_event_payload = on_event_payload
        self.payload_type = 0
        self.dtmf_payload_type: int | None = None
        self.remote: Address | None = None
        self.latched = False
        self.ssrc = secrets.randbits(32)
        self.stats = RtpStats()
        self._sequence = secrets.randbits(16)
        self._timestamp = secrets.randbits(32)
        self._transport: asyncio.DatagramTransport | None = None
        self._sender: asyncio.Task | None = None

    def configure(self, payload_type: int, dtmf_payload_type: int | None, remote: Address | None) -> None:
        self.payload_type = payload_type
        self.dtmf_payload_type = dtmf_payload_type
        if not self.latched:
            self.remote = remote

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        if is_rtcp(data):
            return
        try:
            packet = parse_rtp(data)
        except RtpParseError:
            self.stats.invalid_in += 1
            return
        self.stats.packets_in += 1
        self.stats.bytes_in += len(data)
        self.stats.last_packet_at = time.monotonic()
        if not self.latched:
            self.remote = (addr[0], addr[1])
            self.latched = True
        if packet.payload_type == self.payload_type:
            if self.on_payload is not None:
                self.on_payload(packet.payload)
        elif packet.payload_type == self.dtmf_payload_type and self.on_event_payload is not None:
            self.on_event_payload(packet.payload)

    def error_received(self, exc: Exception) -> None:
        log.debug("RTP socket error: %s", exc)

    def send_frame(self, payload: bytes, marker: bool = False) -> None:
        """Send one 20 ms frame; sequence and timestamp advance even when nobody is there to send to."""
        header = build_rtp_header(self.payload_type, self._sequence, self._timestamp, self.ssrc, marker)
        self._sequence = (self._sequence + 1) & 0xFFFF
        self._timestamp = (self._timestamp + SAMPLES_PER_FRAME) & 0xFFFFFFFF
        if self.remote is None or self._transport is None or self._transport.is_closing():
            return
        data = header + payload
        self._transport.sendto(data, self.remote)
        self.stats.packets_out += 1
        self.stats.bytes_out += len(data)

    def start_sending(self, next_frame: Callable[[], bytes]) -> None:
        """Send ``next_frame()`` every 20 ms on a monotonic schedule, for the life of the session."""
        if self._sender is None:
            self._sender = asyncio.get_running_loop().create_task(self._send_loop(next_frame))

    async def _send_loop(self, next_frame: Callable[[], bytes]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        first = True
        while True:
            self.send_frame(next_frame(), marker=first)
            first = False
            deadline += FRAME_SECONDS
            delay = deadline - loop.time()
            if delay < -0.1:  # the loop stalled: restart the schedule rather than burst
                self.stats.late_ticks += 1
                deadline = loop.time()
                delay = 0
            await asyncio.sleep(delay)

    def close(self) -> None:
        if self._sender is not None:
            self._sender.cancel()
            self._sender = None
        if self._transport is not None:
            self._transport.close()
