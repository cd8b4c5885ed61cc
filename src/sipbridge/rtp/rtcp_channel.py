"""A call's RTCP socket with the phone (RFC 3550 §6, RFC 3551 §11: the RTP port + 1).

The asyncio shell around ``RtcpReporter`` (rtcp.py): it receives the phone's compound packets
(unprotected first with SRTCP when the call is SRTP), and on each ``tick`` sends our report when one
is due, to the phone's RTP address with port + 1 (where its RTCP socket is, by RFC 3551's rule);
``close`` sends our last report with a BYE. What it needs of the RTP stream comes as plain values
(``Sending``, ``Reception``), read by the caller when a report is due.

With rtcp-mux (RFC 5761) the reports go out of the RTP socket to the phone's RTP address itself
(``multiplex``), and the RTP socket hands the phone's RTCP to ``datagram_received``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import cast

from .rtcp import PhoneReport, Reception, RtcpReporter, Sending
from .srtp import Srtp, SrtpError

log = logging.getLogger(__name__)

Address = tuple[str, int]
SendTo = Callable[[bytes, Address], None]


class RtcpChannel(asyncio.DatagramProtocol):
    def __init__(self, reporter: RtcpReporter) -> None:
        self.reporter = reporter
        self.srtp: Srtp | None = None  # SRTCP with the call's keys, when the call is SRTP
        self.auth_failures = 0
        self.foreign = 0
        self._transport: asyncio.DatagramTransport | None = None
        self._phone: Address | None = None  # where the phone's RTCP socket is
        self._mux: SendTo | None = None  # RFC 5761: out of the RTP socket; None: out of ours

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    @property
    def port(self) -> int | None:
        """The local port (the call's RTP port + 1), once bound."""
        return None if self._transport is None else self._transport.get_extra_info("sockname")[1]

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        if self._phone is not None and addr[0] != self._phone[0]:
            self.foreign += 1  # only the call's peer reports on our stream
            return
        self.receive(data, time.monotonic(), time.time())

    def error_received(self, exc: Exception) -> None:
        log.debug("RTCP socket error: %s", exc)

    def receive(self, data: bytes, now: float, wall: float) -> PhoneReport | None:
        """A compound packet from the phone (SRTCP unprotected first); what its report says of us."""
        if self.srtp is not None:
            try:
                data = self.srtp.unprotect_rtcp(data)
            except SrtpError:
                self.auth_failures += 1
                return None
        return self.reporter.received(data, now, wall)

    @property
    def muxed(self) -> bool:
        return self._mux is not None

    def multiplex(self, send: SendTo | None) -> None:
        """RFC 5761: our reports go out through ``send`` (the RTP socket) to the phone's RTP port;
        None: out of this socket to its port + 1. Call ``follow`` after a change."""
        self._mux = send

    def follow(self, rtp_remote: Address | None) -> None:
        """The phone's RTP address (the latched one): its RTCP is there with rtcp-mux, else on the
        next port."""
        if rtp_remote is None:
            self._phone = None
        else:
            self._phone = (rtp_remote[0], rtp_remote[1] if self._mux else rtp_remote[1] + 1)

    def tick(self, now: float, wall: float, sending: Sending | None, reception: Reception | None) -> None:
        """Send our report if one is due (call on the media clock; cheap when none is)."""
        if self.reporter.due(now):
            self._send(self.reporter.report(now, wall, sending, reception))

    def close(self, now: float, wall: float, sending: Sending | None, reception: Reception | None) -> None:
        """Our last report and a BYE (§6.6), then the socket closes."""
        if self._transport is None or self._transport.is_closing():
            return
        self._send(self.reporter.bye(now, wall, sending, reception))
        self._transport.close()

    def _send(self, packet: bytes) -> None:
        if self._phone is None or self._transport is None or self._transport.is_closing():
            return
        if self.srtp is not None:
            packet = self.srtp.protect_rtcp(packet)
        (self._mux or self._transport.sendto)(packet, self._phone)
