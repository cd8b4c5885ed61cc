"""RTCP with the phone (RFC 3550 §6, sans-IO): our reports, when to send them, and what the phone's
reports say about the stream we send it.

aiortc's RTCP packet classes do the wire format (SR, RR, SDES, BYE, compound parsing); this module is
the product logic around them, clock-fed: ``now`` is the monotonic clock (scheduling, delays) and
``wall`` the Unix time (NTP timestamps), both given by the caller.

- Schedule (§6.3, two participants at 5 s, the minimum interval): a report every 5 s on average,
  each interval drawn uniformly from [0.5, 1.5] × 5 s, the first after half of one, so calls that
  start together do not report together. Not divided by e − 3/2: that compensates timer
  reconsideration, which two members do not need and we do not do.
- Our report: an SR while we send (NTP and RTP time, packets and octets), else an RR; one report
  block about the phone's stream once it has sent (fraction lost since the last report, cumulative
  loss, extended highest sequence number, interarrival jitter, and LSR/DLSR echoing the phone's last
  SR so it can measure the round trip); always an SDES CNAME (§6.1: every compound packet has one).
- The phone's report: its report block about our SSRC gives the loss and jitter it sees; the round
  trip is the arrival time less LSR (our SR it echoes) less DLSR (how long it held it) (§6.4.1).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from aiortc.rtp import (
    RtcpByePacket,
    RtcpPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpSdesPacket,
    RtcpSenderInfo,
    RtcpSourceInfo,
    RtcpSrPacket,
)

REPORT_INTERVAL_S = 5.0
NTP_OFFSET_S = 2208988800  # 1900 to 1970
SDES_CNAME = 1
MAX_LOST = (1 << 23) - 1  # cumulative loss is a signed 24-bit field


def ntp_time(wall: float) -> int:
    """64-bit NTP timestamp of Unix time ``wall``."""
    return int((wall + NTP_OFFSET_S) * (1 << 32)) & ((1 << 64) - 1)


def ntp_middle(ntp: int) -> int:
    """The middle 32 bits of an NTP timestamp: the LSR field, in 1/65536 s."""
    return (ntp >> 16) & 0xFFFFFFFF


@dataclass(frozen=True)
class Sending:
    """What we sent the phone so far."""

    rtp_timestamp: int  # the RTP timestamp that corresponds to ``wall``
    packets: int
    octets: int  # payload octets


@dataclass(frozen=True)
class Reception:
    """The phone's stream as we received it so far."""

    ssrc: int
    first_sequence: int  # extended sequence number of its first packet
    highest_sequence: int  # extended highest sequence number received
    received: int  # packets received (duplicates not counted)
    jitter: int  # interarrival jitter, in RTP timestamp units (§6.4.1)


@dataclass(frozen=True)
class PhoneReport:
    """What the phone's last report says about the stream we send it."""

    fraction_lost: float  # 0 to 1, over its last report interval
    cumulative_lost: int
    jitter_ms: float
    round_trip_ms: float | None  # None until it echoes one of our SRs


class RtcpReporter:
    def __init__(
        self, ssrc: int, cname: str, clock_rate: int, now: float, rng: random.Random | None = None
    ) -> None:
        self.ssrc = ssrc
        self.cname = cname
        self.clock_rate = clock_rate
        self._rng = rng or random.Random()
        self.next_at = now + self._interval() / 2
        self._prior = (0, 0)  # (expected, received) at our last report block
        self._phone_sr: tuple[int, float] | None = None  # its last SR: (LSR value, when it came)
        self.phone_report: PhoneReport | None = None
        self.reports_sent = 0
        self.reports_received = 0
        self.invalid = 0

    def _interval(self) -> float:
        return REPORT_INTERVAL_S * self._rng.uniform(0.5, 1.5)

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def report(self, now: float, wall: float, sending: Sending | None, reception: Reception | None) -> bytes:
        """Our compound report for now (SR or RR, SDES); schedules the next one."""
        self.next_at = now + self._interval()
        self.reports_sent += 1
        return b"".join(bytes(p) for p in self._compound(now, wall, sending, reception))

    def bye(self, now: float, wall: float, sending: Sending | None, reception: Reception | None) -> bytes:
        """The last report and an RTCP BYE (§6.6), for the end of the call."""
        packets = [*self._compound(now, wall, sending, reception), RtcpByePacket(sources=[self.ssrc])]
        return b"".join(bytes(p) for p in packets)

    def _compound(
        self, now: float, wall: float, sending: Sending | None, reception: Reception | None
    ) -> list[RtcpPacket]:
        blocks = [] if reception is None else [self._block(now, reception)]
        first: RtcpPacket
        if sending is not None and sending.packets:
            info = RtcpSenderInfo(
                ntp_timestamp=ntp_time(wall),
                rtp_timestamp=sending.rtp_timestamp & 0xFFFFFFFF,
                packet_count=sending.packets & 0xFFFFFFFF,
                octet_count=sending.octets & 0xFFFFFFFF,
            )
            first = RtcpSrPacket(ssrc=self.ssrc, sender_info=info, reports=blocks)
        else:
            first = RtcpRrPacket(ssrc=self.ssrc, reports=blocks)
        cname = RtcpSourceInfo(ssrc=self.ssrc, items=[(SDES_CNAME, self.cname.encode())])
        return [first, RtcpSdesPacket(chunks=[cname])]

    def _block(self, now: float, reception: Reception) -> RtcpReceiverInfo:
        expected = reception.highest_sequence - reception.first_sequence + 1
        expected_interval = expected - self._prior[0]
        lost_interval = expected_interval - (reception.received - self._prior[1])
        self._prior = (expected, reception.received)
        fraction = (
            0 if expected_interval <= 0 or lost_interval <= 0 else (lost_interval << 8) // expected_interval
        )
        lsr, dlsr = 0, 0
        if self._phone_sr is not None:
            lsr, at = self._phone_sr
            dlsr = int((now - at) * 65536) & 0xFFFFFFFF
        return RtcpReceiverInfo(
            ssrc=reception.ssrc,
            fraction_lost=min(fraction, 255),
            packets_lost=max(-MAX_LOST - 1, min(expected - reception.received, MAX_LOST)),
            highest_sequence=reception.highest_sequence & 0xFFFFFFFF,
            jitter=max(0, reception.jitter) & 0xFFFFFFFF,
            lsr=lsr,
            dlsr=dlsr,
        )

    def received(self, data: bytes, now: float, wall: float) -> PhoneReport | None:
        """Read a compound packet from the phone: remembers its SR (for our LSR/DLSR) and returns
        what its report block about our stream says (None when it has none). Malformed packets
        are counted in ``invalid`` and ignored."""
        try:
            packets = RtcpPacket.parse(data)
        except ValueError:
            packets = []
        if not packets:
            self.invalid += 1
            return None
        self.reports_received += 1
        report = None
        for packet in packets:
            if isinstance(packet, RtcpSrPacket):
                self._phone_sr = (ntp_middle(packet.sender_info.ntp_timestamp), now)
            if isinstance(packet, RtcpSrPacket | RtcpRrPacket):
                for block in packet.reports:
                    if block.ssrc == self.ssrc:
                        report = self._read_block(block, wall)
        if report is not None:
            self.phone_report = report
        return report

    def _read_block(self, block: RtcpReceiverInfo, wall: float) -> PhoneReport:
        round_trip = None
        if block.lsr:
            delay = (ntp_middle(ntp_time(wall)) - block.lsr - block.dlsr) & 0xFFFFFFFF
            if delay < 1 << 31:  # else the clocks disagree: no figure rather than a wrong one
                round_trip = delay / 65536 * 1000
        return PhoneReport(
            fraction_lost=block.fraction_lost / 256,
            cumulative_lost=block.packets_lost,
            jitter_ms=block.jitter / self.clock_rate * 1000,
            round_trip_ms=round_trip,
        )
