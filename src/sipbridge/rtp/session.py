"""One call's RTP stream: receive G.711 payloads, send paced 20 ms packets, symmetric RTP.

RTCP that comes on this socket (RFC 5761 §4: the second octet 192-223) never reaches the jitter
buffer: it goes to ``on_rtcp`` when the call multiplexes RTCP here (a=rtcp-mux), else it is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from .clock import FrameClock
from .dtmf import DtmfPacket
from .latch import LatchMode, RtpLatch
from .packet import HEADER_SIZE, RtpPacket, RtpParseError, build_rtp_header, is_rtcp, parse_rtp
from .rtcp import Reception, Sending
from .srtp import Srtp, SrtpError

log = logging.getLogger(__name__)

Address = tuple[str, int]
SAMPLES_PER_FRAME = 160  # 20 ms at 8 kHz, the clock of G.711 and G.722


@dataclass
class RtpStats:
    packets_in: int = 0
    packets_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    invalid_in: int = 0
    foreign_in: int = 0  # RTP from others than the call's peer: dropped, never played or answered
    srtp_auth_failures: int = 0  # SRTP packets that did not authenticate (or replayed): dropped
    rtcp_in: int = 0  # RTCP on the RTP port (RFC 5761 demux): read with rtcp-mux, else dropped
    late_ticks: int = 0
    last_packet_at: float | None = None


class RtpSession(asyncio.DatagramProtocol):
    """Receives RTP on one local port and sends to the peer (latched to where its packets come from).

    Only the call's peer is heard: see rtp/latch.py for who that is (``latch`` is its mode).
    """

    def __init__(
        self,
        on_event_packet: Callable[[RtpPacket], None] | None = None,
        on_packet: Callable[[RtpPacket, float], None] | None = None,
        latch: LatchMode = "sdp-or-signalling",
    ) -> None:
        # Audio packets with their arrival time (for a jitter buffer).
        self.on_packet = on_packet
        self.on_event_packet = on_event_packet
        # RFC 5761: the phone's RTCP on this port, with its sender (None: RTCP here is dropped)
        self.on_rtcp: Callable[[bytes, tuple], None] | None = None
        # Called each tick with the frame's timestamp: a telephone-event packet replaces the audio.
        self.dtmf_source: Callable[[int], DtmfPacket | None] | None = None
        self.payload_type = 0
        self.dtmf_payload_type: int | None = None
        self._latch = RtpLatch(latch)
        # False while the caller holds the call (we answered recvonly/inactive): nothing is sent.
        self.sending = True
        self._signalled: Address | None = None
        self.ssrc = secrets.randbits(32)
        self.stats = RtpStats()
        self._sequence = secrets.randbits(16)
        self._timestamp = secrets.randbits(32)
        self._frame_ticks = SAMPLES_PER_FRAME  # timestamp units per 20 ms frame (Opus: 960)
        self._transport: asyncio.DatagramTransport | None = None
        self._clock: FrameClock | None = None
        self._clock_token: int | None = None
        self.clock_rate = self.dtmf_clock_rate = 8000
        self.srtp: Srtp | None = None  # SRTP protection of both directions; None: plain RTP
        # the phone's stream for RTCP's report block: its SSRC, first and highest extended sequence
        self._rx_ssrc: int | None = None
        self._rx_first = 0
        self._rx_highest = 0

    @property
    def remote(self) -> Address | None:
        """Where our RTP goes: the latched source, else the address the SDP names."""
        return self._latch.remote

    @property
    def latched(self) -> bool:
        return self._latch.latched

    def configure(
        self,
        payload_type: int,
        dtmf_payload_type: int | None,
        remote: Address | None,
        signalling: Address | None = None,
        *,
        clock_rate: int = 8000,
        dtmf_clock_rate: int = 8000,
    ) -> None:
        """Payload types, the address the SDP names and where the call's SIP comes from, and the
        codec's RTP clock (and the telephone-event's: DTMF durations count in it).

        A new address in the SDP ends the latch; ``signalling`` vouches (per the latch mode) for its
        IP on any port, the way a phone behind NAT sends.
        """
        self.payload_type = payload_type
        self.dtmf_payload_type = dtmf_payload_type
        self._frame_ticks = clock_rate // 50
        self.clock_rate, self.dtmf_clock_rate = clock_rate, dtmf_clock_rate
        if remote != self._signalled:
            self._signalled = remote
            self._latch.expect(None if remote is None or _unspecified(remote[0]) else remote, signalling)
        else:
            self._latch.from_signalling(signalling)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.receive(data, addr, time.monotonic())

    def receive(self, data: bytes, addr: tuple, arrival: float) -> None:
        """One datagram from ``addr`` that arrived at ``arrival`` (monotonic seconds)."""
        # RFC 5761 §4 demux on one octet: the RTP path pays a comparison, nothing more.
        if len(data) < HEADER_SIZE or 192 <= data[1] <= 223:
            self._not_rtp(data, addr)
            return
        if self.srtp is not None:
            # Authenticated before the latch sees it: a packet without the key moves nothing.
            try:
                data = self.srtp.unprotect(data)
            except SrtpError:
                self.stats.srtp_auth_failures += 1
                return
        # Who sent it is decided on the header's sequence number alone: a sprayer's packets cost a
        # comparison or two, not a parse.
        if not self._latch.admit(addr, (data[2] << 8) | data[3], arrival):
            self._foreign(addr)
            return
        try:
            packet = parse_rtp(data)
        except RtpParseError:
            self.stats.invalid_in += 1
            return
        self.stats.packets_in += 1
        self.stats.bytes_in += len(data)
        self.stats.last_packet_at = arrival
        self._count_sequence(packet.ssrc, packet.sequence)
        if packet.payload_type == self.payload_type:
            if self.on_packet is not None:
                self.on_packet(packet, arrival)
        elif packet.payload_type == self.dtmf_payload_type and self.on_event_packet is not None:
            self.on_event_packet(packet)

    def _not_rtp(self, data: bytes, addr: tuple) -> None:
        """RTCP (SRTCP: unprotected by its reader) to ``on_rtcp`` when it listens; the rest invalid.

        An RTCP compound packet may be shorter than an RTP header (an RR alone is 8 octets).
        """
        if not is_rtcp(data):
            self.stats.invalid_in += 1
            return
        self.stats.rtcp_in += 1
        if self.on_rtcp is not None:
            self.on_rtcp(data, addr)

    def send_rtcp(self, packet: bytes, to: Address) -> None:
        """An RTCP compound packet out of this socket (RFC 5761 mux); not counted as RTP."""
        if self._transport is not None and not self._transport.is_closing():
            self._transport.sendto(packet, to)

    def _count_sequence(self, ssrc: int, sequence: int) -> None:
        """The extended highest sequence number (RFC 3550 A.1, without probation): a new SSRC
        starts over; a step forward of less than half the space advances, counting wraps."""
        if ssrc != self._rx_ssrc:
            self._rx_ssrc, self._rx_first, self._rx_highest = ssrc, sequence, sequence
            return
        step = (sequence - self._rx_highest) & 0xFFFF
        if 0 < step < 0x8000:
            self._rx_highest += step

    def reception(self, jitter: int) -> Reception | None:
        """The phone's stream as RTCP reports it (``jitter`` in timestamp units); None before any."""
        if self._rx_ssrc is None:
            return None
        return Reception(self._rx_ssrc, self._rx_first, self._rx_highest, self.stats.packets_in, jitter)

    def sent(self) -> Sending:
        """What we sent so far, for an RTCP sender report."""
        stats = self.stats
        octets = stats.bytes_out - HEADER_SIZE * stats.packets_out
        return Sending(self._timestamp, stats.packets_out, octets)

    def _foreign(self, addr: tuple) -> None:
        self.stats.foreign_in += 1
        if self.stats.foreign_in == 1:  # once per call: a sprayer sends thousands
            log.info("RTP from %s:%s dropped: not this call's peer", addr[0], addr[1])

    def error_received(self, exc: Exception) -> None:
        log.debug("RTP socket error: %s", exc)

    def send_frame(self, payload: bytes, marker: bool = False, frames: int = 1) -> None:
        """Send one 20 ms frame, ``frames`` frame times after the previous one (more after a stall).

        Sequence and timestamp advance even when nobody is there to send to yet. While a DTMF
        event is being sent, its packet goes out instead of the audio.
        """
        timestamp = (self._timestamp + self._frame_ticks * (frames - 1)) & 0xFFFFFFFF
        self._timestamp = (timestamp + self._frame_ticks) & 0xFFFFFFFF
        event = self.dtmf_source(timestamp) if self.dtmf_source is not None else None
        if event is not None and self.dtmf_payload_type is not None:
            self._transmit(self.dtmf_payload_type, event.timestamp & 0xFFFFFFFF, event.payload, event.marker)
        else:
            self._transmit(self.payload_type, timestamp, payload, marker)

    def _transmit(self, payload_type: int, timestamp: int, payload: bytes, marker: bool) -> None:
        header = build_rtp_header(payload_type, self._sequence, timestamp, self.ssrc, marker)
        self._sequence = (self._sequence + 1) & 0xFFFF
        if not self.sending or self.remote is None or self._transport is None or self._transport.is_closing():
            return
        data = header + payload if self.srtp is None else self.srtp.protect(header + payload)
        self._transport.sendto(data, self.remote)
        self.stats.packets_out += 1
        self.stats.bytes_out += len(data)

    def start_sending(self, clock: FrameClock, next_frame: Callable[[], bytes]) -> None:
        """Send ``next_frame()`` on every tick of ``clock`` until closed; the first frame is marked."""
        if self._clock_token is not None:
            return
        first = [True]

        def tick(frames: int) -> None:
            self.send_frame(next_frame(), marker=first[0], frames=frames)
            if frames > 1:
                self.stats.late_ticks += 1
            first[0] = False

        self._clock, self._clock_token = clock, clock.subscribe(tick)

    @property
    def next_send_at(self) -> float | None:
        """When the next frame is sent (loop time), if sending has started."""
        if self._clock is None or self._clock_token is None:
            return None
        return self._clock.next_tick(self._clock_token)

    def align_sending(self, at: float) -> None:
        """Send the next frame at ``at`` (loop time) instead of at the clock's own phase."""
        if self._clock is not None and self._clock_token is not None:
            self._clock.align(self._clock_token, at)

    def close(self) -> None:
        if self._clock is not None and self._clock_token is not None:
            self._clock.unsubscribe(self._clock_token)
            self._clock_token = None
        if self._transport is not None:
            self._transport.close()


def _unspecified(host: str) -> bool:
    """RFC 2543-style hold (c=0.0.0.0): no address to send to."""
    return host in ("0.0.0.0", "::")
