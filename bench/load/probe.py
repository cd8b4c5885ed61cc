"""The RTP probe: the media side of every benchmark call, one UDP socket per call on 127.0.0.1.

sipp does the signalling; the SDP of call i names ``probe.ports[i]``. The bridge starts sending its
RTP (silence until the agent speaks) to that port when it answers, from the port of its SDP answer.
The first packet latches the probe's call to that source (symmetric RTP, as the bridge does): from
then on the probe sends 20 ms frames of speech to it at 50 packets per second, from the same socket,
and records every packet that comes back, as it came, with the kernel's receive timestamp
(SO_TIMESTAMPNS), so a busy probe does not inflate the measured round trip.

The speech is sent in the codec of the level (bench.load.wire: PCMU, G.722 or Opus), coded once for
the whole loop before the calls; with SRTP (``srtp=True``) each call has its own SDES key (in its
offer) and every packet is protected with it before it is sent. What comes back is kept raw (still
SRTP-protected, still coded): unprotecting and decoding, in sequence order per call, happen in the
analysis after the measurement (bench.load.received), with the key of the bridge's answer.

Pacing: call i sends on slot ``i % SLOTS`` of a 20 ms cycle (slots 2 ms apart), so the calls' packets
are spread over the cycle as independent phones' would be, not sent in one burst. When the loop is
late it catches up (sends the frames that were due, with their real send times), and at most
MAX_BURST frames at once: beyond that the missed frames are skipped and counted, never sent late.
The cost per packet is one ``sendmsg``/``recvmsg`` and a few list appends (and with SRTP one
libsrtp ``protect``); the analysis (numpy) runs after the measurement.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import struct
import time
from dataclasses import dataclass, field

import pylibsrtp

from sipbridge.rtp.srtp import PROFILES

from ..common import SO_TIMESTAMPNS, TIMESTAMP_ANCILLARY, kernel_time
from . import offer
from .speech import Speech
from .wire import PCMU, WireCodec

FRAME_NS = 20_000_000
SLOTS = 10
SLOT_NS = FRAME_NS // SLOTS
MAX_BURST = 5
_RTP = struct.Struct("!BBHII")
RTCP_TYPES = range(200, 205)  # the second byte of an RTCP packet (SR, RR, SDES, BYE, APP)


@dataclass
class ProbeCall:
    """The media of one call, as the probe saw it."""

    index: int
    sock: socket.socket
    offset: int  # speech frame sent first (calls start at different places in the speech)
    remote: tuple[str, int] | None = None
    latched_ns: int | None = None
    ended_ns: int | None = None
    next_k: int = 0  # frames scheduled so far (sent or skipped)
    due_ns: int = 0  # send time of frame next_k
    sent_k: list[int] = field(default_factory=list)  # frame numbers actually sent ...
    sent_ns: list[int] = field(default_factory=list)  # ... and when (CLOCK_REALTIME ns)
    late_ns: list[int] = field(default_factory=list)  # how late each was sent
    skipped: int = 0
    recv_ns: list[int] = field(default_factory=list)  # kernel arrival of each packet ...
    recv_packets: list[bytes] = field(default_factory=list)  # ... and the packet, as it came
    ssrc: int = field(default_factory=lambda: secrets.randbits(32))
    srtp_key: bytes | None = None  # SRTP: our master key and salt (in our offer)
    answer_key: bytes | None = None  # SRTP: the bridge's (from its answer), set after the calls
    protect: pylibsrtp.Session | None = field(default=None, repr=False)

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]


class RtpProbe:
    """`n` per-call sockets on 127.0.0.1; :meth:`run` serves them until `stop` is set.

    `payloads`: the speech loop coded in `codec` (bench.load.wire.encode_loop); the speech's own
    μ-law frames by default."""

    def __init__(
        self,
        n: int,
        speech: Speech,
        host: str = "127.0.0.1",
        *,
        codec: WireCodec = PCMU,
        payloads: list[bytes] | None = None,
        srtp: bool = False,
    ) -> None:
        self.speech = speech
        self.codec = codec
        self.payloads = payloads if payloads is not None else list(speech.frames)
        if len(self.payloads) != speech.count:
            raise ValueError("one payload per speech frame")
        self.srtp = srtp
        self.calls = [self._open(i, host) for i in range(n)]
        self._slots: list[list[ProbeCall]] = [[] for _ in range(SLOTS)]
        self._origin_ns = time.time_ns()

    def _open(self, index: int, host: str) -> ProbeCall:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 18)
        sock.bind((host, 0))
        sock.setblocking(False)
        call = ProbeCall(index, sock, offset=(index * 37) % 500)
        if self.srtp:
            call.srtp_key = offer.new_key()
            policy = pylibsrtp.Policy(
                key=call.srtp_key,
                ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
                srtp_profile=PROFILES[offer.SUITE],
            )
            call.protect = pylibsrtp.Session(policy)
        return call

    @property
    def ports(self) -> list[int]:
        return [c.port for c in self.calls]

    def latched(self) -> list[ProbeCall]:
        return [c for c in self.calls if c.latched_ns is not None]

    def close(self) -> None:
        for call in self.calls:
            call.sock.close()

    # -- running ---------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        for call in self.calls:
            loop.add_reader(call.sock.fileno(), self._readable, call)
        try:
            await self._send_loop(stop)
        finally:
            for call in self.calls:
                loop.remove_reader(call.sock.fileno())

    async def _send_loop(self, stop: asyncio.Event) -> None:
        tick = 0
        while not stop.is_set():
            tick = self._next_busy_tick(tick)
            now = time.time_ns()
            target = self._origin_ns + tick * SLOT_NS
            if target > now:
                await asyncio.sleep((target - now) / 1e9)
                continue
            for call in self._slots[tick % SLOTS]:
                self._send_due(call, time.time_ns())
            tick += 1

    def _next_busy_tick(self, tick: int) -> int:
        """The first tick from `tick` on whose slot has calls (or a cycle on, when none has any yet):
        no wake-up for an empty slot."""
        for ahead in range(SLOTS):
            if self._slots[(tick + ahead) % SLOTS]:
                return tick + ahead
        return tick + SLOTS

    def _send_due(self, call: ProbeCall, now: int) -> None:
        if call.ended_ns is not None:
            return
        behind = (now - call.due_ns) // FRAME_NS
        if behind >= MAX_BURST:  # too late: skip, never send stale audio in a long burst
            call.skipped += behind - 1
            call.next_k += behind - 1
            call.due_ns += (behind - 1) * FRAME_NS
        while call.due_ns <= now and call.ended_ns is None:
            self._send(call, call.next_k, now)
            call.next_k += 1
            call.due_ns += FRAME_NS

    def _send(self, call: ProbeCall, k: int, now: int) -> None:
        payload = self.payloads[(call.offset + k) % len(self.payloads)]
        marker = 0x80 if k == 0 else 0
        stamp = (k * self.codec.timestamp_step) & 0xFFFFFFFF
        packet = _RTP.pack(0x80, self.codec.payload_type | marker, k & 0xFFFF, stamp, call.ssrc) + payload
        if call.protect is not None:
            packet = call.protect.protect(packet)
        try:
            call.sock.send(packet)
        except BlockingIOError:  # our send buffer is full: the frame is not sent
            call.skipped += 1
            return
        except OSError:
            call.ended_ns = now  # the bridge closed the port (after the BYE): this call is over
            return
        sent = time.time_ns()
        call.sent_k.append(k)
        call.sent_ns.append(sent)
        call.late_ns.append(sent - call.due_ns)

    def _readable(self, call: ProbeCall) -> None:
        while True:
            try:
                data, ancillary, _flags, addr = call.sock.recvmsg(2048, TIMESTAMP_ANCILLARY)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                call.ended_ns = call.ended_ns or time.time_ns()
                return
            self._record(call, data, kernel_time(ancillary), addr)

    def _record(self, call: ProbeCall, data: bytes, at: int, addr: tuple[str, int]) -> None:
        if call.remote is None:
            if len(data) < 12 or data[1] in RTCP_TYPES:
                return  # the bridge's RTCP to our port + 1 (another call's socket): not a stream to latch to
            self._latch(call, addr, at)
        call.recv_ns.append(at)
        call.recv_packets.append(data)

    def _latch(self, call: ProbeCall, addr: tuple[str, int], at: int) -> None:
        call.remote = (addr[0], addr[1])
        call.latched_ns = at
        with contextlib.suppress(OSError):
            call.sock.connect(call.remote)  # then an ICMP "port unreachable" ends the call
        # first frame on the call's slot of the cycle, at least one slot from now
        slot = call.index % SLOTS
        cycles = (time.time_ns() - self._origin_ns) // FRAME_NS + 1
        call.due_ns = self._origin_ns + cycles * FRAME_NS + slot * SLOT_NS
        self._slots[slot].append(call)
