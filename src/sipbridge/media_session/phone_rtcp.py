"""RTCP with the phone for one call's media: the socket on the RTP port + 1, our reports on the
media clock, the phone's read, and what both say in the call's view (RFC 3550, RFC 3551 §11).
With rtcp-mux negotiated (RFC 5761) the same reports and reads go through the RTP socket instead.

The two ports are taken together (``PortAllocator.open_pair``): a call never runs with an RTP port
whose RTCP port is another process's (rtcp-mux or not: we offer port + 1 before we know whether the
answer multiplexes).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

from ..media.phone_codec import RTP_CLOCK  # every phone codec here: G.722 included
from ..rtp.rtcp import Reception, RtcpReporter, Sending
from ..rtp.rtcp_channel import RtcpChannel
from ..rtp.session import RtpSession
from ..rtp.srtp import Srtp

log = logging.getLogger(__name__)

Jitter = Callable[[], float | None]  # the phone stream's interarrival jitter in seconds, read when due


class PhoneRtcp:
    def __init__(self, rtp: RtpSession, channel: RtcpChannel, jitter_s: Jitter) -> None:
        self._rtp = rtp
        self._channel = channel
        self._jitter_s = jitter_s
        self._clock = RTP_CLOCK

    @staticmethod
    def channel_for(rtp: RtpSession, host: str) -> RtcpChannel:
        """The protocol for the call's RTCP socket (bound by the port allocator with the RTP one)."""
        cname = f"sipbridge-{secrets.token_hex(4)}@{host}"
        return RtcpChannel(RtcpReporter(rtp.ssrc, cname, RTP_CLOCK, time.monotonic()))

    def use_clock(self, clock_rate: int) -> None:
        """The phone codec's RTP clock (Opus: 48000): our jitter and the phone's count in it."""
        self._clock = self._channel.reporter.clock_rate = clock_rate

    def use_keys(self, srtp: Srtp | None) -> None:
        """SRTCP with the keys the call's RTP uses from now on (None: plain RTCP)."""
        self._channel.srtp = srtp

    def multiplex(self, mux: bool) -> None:
        """RTCP on the RTP port (offer/answer agreed a=rtcp-mux) or on port + 1 (RFC 5761 §5.1.1).

        The port + 1 socket stays open while muxed: it keeps the call's port pair whole, and a later
        offer or answer without a=rtcp-mux moves RTCP back to it with nothing to rebind.
        """
        if mux == self._channel.muxed:
            return
        self._rtp.on_rtcp = self._channel.datagram_received if mux else None
        self._channel.multiplex(self._rtp.send_rtcp if mux else None)
        self._channel.follow(self._rtp.remote)

    def tick(self) -> None:
        """On the media clock: our report when one is due (a comparison when none is)."""
        now = time.monotonic()
        if not self._channel.reporter.due(now):
            return
        self._channel.follow(self._rtp.remote)
        self._channel.tick(now, time.time(), self._sending(), self._reception())

    def close(self) -> None:
        self._channel.follow(self._rtp.remote)
        self._channel.close(time.monotonic(), time.time(), self._sending(), self._reception())

    def _sending(self) -> Sending | None:
        return self._rtp.sent() if self._rtp.stats.packets_out else None

    def _reception(self) -> Reception | None:
        return self._rtp.reception(round((self._jitter_s() or 0.0) * self._clock))

    def view(self) -> dict[str, Any]:
        reporter, phone = self._channel.reporter, self._channel.reporter.phone_report
        round_trip = phone.round_trip_ms if phone else None
        return {
            "mux": self._channel.muxed,  # RFC 5761: on the RTP port; false: on port + 1
            "on_rtp_port": self._rtp.stats.rtcp_in,  # RTCP packets that came to the RTP port
            "reports_sent": reporter.reports_sent,
            "reports_received": reporter.reports_received,
            "invalid": reporter.invalid + self._channel.auth_failures,
            # our stream as the phone sees it, from its last report
            "phone_fraction_lost": round(phone.fraction_lost, 4) if phone else None,
            "phone_cumulative_lost": phone.cumulative_lost if phone else None,
            "phone_jitter_ms": round(phone.jitter_ms, 1) if phone else None,
            "round_trip_ms": None if round_trip is None else round(round_trip, 1),
        }
