"""Which address a call's RTP is accepted from, and where ours goes (symmetric RTP, closed to strangers).

Symmetric RTP sends to where the phone's packets come from, which is what makes phones behind NAT
work, and what let a stranger who spoke first take a call's audio. So a source is trusted only when
the call's signalling vouches for it, per ``mode`` (the ``rtp_latch`` setting):

``sdp-or-signalling`` (default)
    the address and port the SDP names, or the signalling source's IP on any port (a NAT rewrites
    the port, and a NATed phone's SDP names an address we cannot reach).
``sdp``
    only exactly the address and port the SDP names (no NAT traversal).
``any``
    any source, as before this module existed: for carriers whose media comes from other IPs than
    their signalling and their SDP names. Unsafe: a stranger can take a call that is quiet.

The first packet from a trusted source latches: from then on our RTP goes to that source. Other
trusted sources are still heard (a phone may send its RFC 4733 events from another port than its
audio), never answered; anyone else is refused. Another source allowed by the mode takes over only
after ``CONFIRM_PACKETS``
consecutive in-sequence packets (each sequence number the previous + 1 mod 2^16), and only once
the current source has been quiet for ``QUIET_S``: a NAT that moved the phone's port, or media that
moved to another server. Packets from anyone else are refused (the caller counts and drops them).
A new address in the SDP (a re-INVITE) starts over.

Pure: time comes in as ``now``.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Literal

log = logging.getLogger(__name__)

Address = tuple[str, int]
LatchMode = Literal["sdp-or-signalling", "sdp", "any"]
LATCH_MODES: tuple[LatchMode, ...] = ("sdp-or-signalling", "sdp", "any")

# A stream, not a lucky or replayed packet: 100 ms of 20 ms packets in an unbroken sequence.
CONFIRM_PACKETS = 5
# A source that sent anything this recently is alive and none may take its place: a stream's
# jitter never pauses it this long, while a NAT that rebound the phone's port leaves it for good.
QUIET_S = 1.0


class RtpLatch:
    def __init__(self, mode: LatchMode = "sdp-or-signalling") -> None:
        if mode not in LATCH_MODES:
            raise ValueError(f"unknown RTP latch mode {mode!r}")
        self.mode = mode
        # The latched source exactly as the socket reports it (compared per packet), its canonical
        # (host, port) and where we answer it; None until the first trusted packet.
        self.source: tuple | None = None
        self._source: Address | None = None
        self._reply_to: Address | None = None
        self._heard_at = float("-inf")
        self._expected: Address | None = None  # what the SDP names (None: nothing, or c=0.0.0.0)
        self._signalling_ip: str | None = None
        self._candidate: Address | None = None  # a source on its way to taking over
        self._candidate_seq = 0
        self._run = 0
        self.moves = 0  # times the latch went from one source to another

    @property
    def latched(self) -> bool:
        return self.source is not None

    @property
    def remote(self) -> Address | None:
        """Where to send: the latched source, else what the SDP names."""
        return self._reply_to if self._reply_to is not None else self._expected

    def expect(self, sdp: Address | None, signalling: Address | None = None) -> None:
        """Start over for the address an SDP names (None: none, e.g. hold with c=0.0.0.0)."""
        self._expected = (_canonical(sdp[0]), sdp[1]) if sdp is not None else None
        self.from_signalling(signalling)
        self.source = self._source = self._reply_to = self._candidate = None
        self._heard_at = float("-inf")
        self._run = 0

    def from_signalling(self, signalling: Address | None) -> None:
        """The address the call's SIP comes from (only its IP counts)."""
        self._signalling_ip = _canonical(signalling[0]) if signalling is not None else None

    def admit(self, addr: tuple, sequence: int, now: float) -> bool:
        """Whether a packet from ``addr`` belongs to the call (and may be played); may move the latch."""
        if addr == self.source:  # nearly every packet: one tuple comparison
            self._heard_at = now
            return True
        return self._admit_other(addr, sequence, now)

    def _admit_other(self, addr: tuple, sequence: int, now: float) -> bool:
        host = addr[0]
        peer = (_canonical(host) if ":" in host else host, addr[1])  # a socket's IPv4 is canonical
        if peer == self._source:  # the same source spelt otherwise (an IPv6 scope, a mapped IPv4)
            self.source, self._heard_at = addr, now
            return True
        if self._source is None and self._trusted(peer):
            self._latch(addr, peer, now)
            return True
        trusted = self._trusted(peer)
        if not (trusted or self.mode == "any"):
            return False
        if peer == self._candidate and sequence == (self._candidate_seq + 1) & 0xFFFF:
            self._run += 1
        else:
            self._candidate, self._run = peer, 1
        self._candidate_seq = sequence
        if self._run < CONFIRM_PACKETS or now - self._heard_at < QUIET_S:
            # A source the signalling vouches for is heard though we answer another (a phone whose
            # RFC 4733 events leave from another port than its audio); the rest only once it takes over.
            return trusted
        self._latch(addr, peer, now)
        return True

    def _trusted(self, peer: Address) -> bool:
        """Vouched for by the signalling: what the SDP names, or (per mode) the signalling IP."""
        if peer == self._expected:
            return True
        return self.mode != "sdp" and self._signalling_ip is not None and peer[0] == self._signalling_ip

    def _latch(self, addr: tuple, peer: Address, now: float) -> None:
        if self._source is not None:
            self.moves += 1
            log.info("RTP source moved from %s:%s to %s:%s", *self._source, *peer)
        self.source, self._source, self._heard_at = addr, peer, now
        self._reply_to = (addr[0], addr[1])
        self._candidate, self._run = None, 0


def _canonical(host: str) -> str:
    """One spelling per address: compressed lower-case IPv6, IPv4 for an IPv4-mapped IPv6."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host  # not an IP literal: compared as written
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)
