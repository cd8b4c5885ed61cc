"""DTMF as RFC 4733 telephone-events: the payload codec, a receiver and a sender.

Sans-IO like the rest of ``rtp/``: ``DtmfReceiver`` is fed the telephone-event packets the session
receives (and, if it wants timeouts, the time) and hands back the digits; ``DtmfSender`` is asked
once per 20 ms tick for the packet that replaces that tick's audio frame, or ``None`` to send audio.

Payload (RFC 4733 section 2.3): event (8 bits) | E (end) | R (reserved) | volume (6 bits, -dBm0) |
duration (16 bits, in RTP timestamp units). Every packet of one event carries the event's start as
its RTP timestamp; the duration grows; the last report has E set and is sent three times.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass, field

from .packet import RtpPacket

DIGITS = "0123456789*#ABCD"
EVENT_FLASH = 16
CLOCK_RATE = 8000
SAMPLES_PER_PACKET = 160  # 20 ms at 8 kHz
MAX_DURATION = 0xFFFF
DEFAULT_VOLUME = 10
END_REPEATS = 3
END_TIMEOUT_S = 0.5  # an event with no packet for this long has ended (its end packets were lost)
MEMORY_S = 1.0  # how long a finished event's timestamp is remembered (its stragglers dropped)
REORDER_WINDOW = 64  # sequence numbers behind the current event that may belong to an earlier one
TONE_MS = 100  # a digit we send, unless send() says otherwise ...
GAP_MS = 100  # ... and the pause after it

_EVENT = struct.Struct("!BBH")
_TIMESTAMP_MASK = 0xFFFFFFFF
# A long event goes on in a new segment whose timestamp is the old one's plus 0xFFFF (section 2.5.1.3);
# accept a segment boundary up to 200 ms short of that, for senders that stop at a whole packet.
_SEGMENT_SLACK = 1600
_FINISHED_KEPT = 16


class DtmfError(ValueError):
    """A telephone-event payload that cannot be parsed, or a digit or event that cannot be sent."""


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """One 4-octet event report. ``duration`` is in RTP timestamp units (samples at 8 kHz)."""

    event: int
    end: bool
    volume: int
    duration: int

    @property
    def digit(self) -> str | None:
        """The DTMF digit of events 0-15; ``None`` for a flash (16) or any other event."""
        return digit_for_event(self.event)

    def to_bytes(self) -> bytes:
        if not 0 <= self.event <= 255:
            raise DtmfError(f"event {self.event} out of range 0-255")
        if not 0 <= self.volume <= 63:
            raise DtmfError(f"volume {self.volume} out of range 0-63")
        if not 0 <= self.duration <= MAX_DURATION:
            raise DtmfError(f"duration {self.duration} out of range 0-65535")
        return _EVENT.pack(self.event, (0x80 if self.end else 0) | self.volume, self.duration)


@dataclass(frozen=True, slots=True)
class DtmfDigit:
    """A digit received, with how long it was held."""

    digit: str
    duration_ms: int


def digit_for_event(event: int) -> str | None:
    return DIGITS[event] if 0 <= event < len(DIGITS) else None


def event_for_digit(digit: str) -> int:
    """The event code of a DTMF digit (``a``-``d`` taken as ``A``-``D``); raises ``DtmfError``."""
    index = DIGITS.find(digit.upper()) if len(digit) == 1 else -1
    if index < 0:
        raise DtmfError(f"not a DTMF digit: {digit!r}")
    return index


def parse_events(payload: bytes) -> list[TelephoneEvent]:
    """Every event report of a payload (one, unless several are packed as in section 2.5.1.5)."""
    if len(payload) < _EVENT.size or len(payload) % _EVENT.size:
        raise DtmfError(f"telephone-event payload of {len(payload)} octets, expected a multiple of 4")
    return [
        TelephoneEvent(event, bool(flags & 0x80), flags & 0x3F, duration)
        for event, flags, duration in _EVENT.iter_unpack(payload)
    ]


def parse_event(payload: bytes) -> TelephoneEvent:
    """The (first) event report of a payload; raises ``DtmfError`` if it is malformed."""
    return parse_events(payload)[0]


@dataclass(slots=True)
class _Incoming:
    """The event being received: ``timestamp`` and ``duration`` are those of its current segment."""

    code: int
    timestamp: int
    duration: int
    sequence: int
    last_at: float | None
    earlier: int = 0  # the samples of its earlier segments (long events)
    segments: list[int] = field(default_factory=list)


class DtmfReceiver:
    """Turns the telephone-event packets of one RTP stream into digits, each reported once.

    A digit is reported when its event ends: at the first packet with the E bit (the two usual
    retransmissions, and any late packet of that event, are ignored), or, when all its end packets
    are lost, when a packet of another event arrives or ``END_TIMEOUT_S`` pass without a packet
    (only when the caller passes ``now``: call ``poll(now)`` by ``deadline``). Events are told apart
    by their RTP timestamp, so the same digit twice is two events. A finished event's timestamp is
    remembered (the last 16, and with ``now`` for ``MEMORY_S``) so its stragglers are dropped.
    A new SSRC (when given) is a new stream: what was remembered of the old one is dropped, and an
    event of the old one still going is reported.
    A packet whose sequence number is at most ``REORDER_WINDOW`` behind the current event's and whose
    timestamp is new belongs to an earlier event: it only counts if it ends that event.
    Malformed payloads are dropped and counted in ``invalid``.
    """

    def __init__(self) -> None:
        self.invalid = 0
        self._current: _Incoming | None = None
        self._finished: dict[int, float | None] = {}
        self._ssrc: int | None = None
        self._event_rate = CLOCK_RATE  # the telephone-event's clock: what durations count in

    def use_clock(self, event_rate: int) -> None:
        """The negotiated telephone-event's clock rate (8000 usually; 48000 beside Opus)."""
        self._event_rate = event_rate

    @property
    def deadline(self) -> float | None:
        """When ``poll`` should next be called: the timeout of an event whose end has not come."""
        current = self._current
        if current is None or current.last_at is None:
            return None
        return current.last_at + END_TIMEOUT_S

    def receive_packet(self, packet: RtpPacket, now: float | None = None) -> list[DtmfDigit]:
        return self.receive(
            packet.timestamp, packet.marker, packet.sequence, packet.payload, now, ssrc=packet.ssrc
        )

    def receive(
        self,
        timestamp: int,
        marker: bool,
        sequence: int,
        payload: bytes,
        now: float | None = None,
        *,
        ssrc: int | None = None,
    ) -> list[DtmfDigit]:
        """Feed one telephone-event packet; returns the digits that ended (usually none or one)."""
        digits = self.poll(now) if now is not None else []
        try:
            events = parse_events(payload)
        except DtmfError:
            self.invalid += 1
            return digits
        if ssrc is not None and ssrc != self._ssrc:
            if self._ssrc is not None:
                digits += self._finish(now)
                self._finished.clear()
            self._ssrc = ssrc
        self._forget(now)
        for index, event in enumerate(events):
            digits += self._receive_one(
                timestamp & _TIMESTAMP_MASK, marker and index == 0, sequence, event, now
            )
            # Packed events follow each other without a gap (section 2.5.1.5).
            timestamp += event.duration
        return digits

    def poll(self, now: float) -> list[DtmfDigit]:
        """Report the current event if nothing has come for it for ``timeout`` seconds."""
        current = self._current
        if current is None or current.last_at is None or now - current.last_at < END_TIMEOUT_S:
            return []
        return self._finish(now)

    def _receive_one(
        self, timestamp: int, marker: bool, sequence: int, event: TelephoneEvent, now: float | None
    ) -> list[DtmfDigit]:
        if timestamp in self._finished:
            return []
        current = self._current
        if current is not None and timestamp == current.timestamp:
            current.duration = max(current.duration, event.duration)
            current.sequence = _later_sequence(current.sequence, sequence)
            current.last_at = now
            return self._finish(now) if event.end else []
        digits: list[DtmfDigit] = []
        if current is not None:
            if self._continues(current, timestamp, marker, event):
                current.earlier += (timestamp - current.timestamp) & _TIMESTAMP_MASK
                current.timestamp, current.duration, current.last_at = timestamp, event.duration, now
                current.sequence = _later_sequence(current.sequence, sequence)
                current.segments.append(timestamp)
                return self._finish(now) if event.end else []
            if 0 < (current.sequence - sequence) & 0xFFFF <= REORDER_WINDOW:
                return self._straggler(timestamp, event, now)
            digits = self._finish(now)  # its end packets were lost
        self._current = _Incoming(event.event, timestamp, event.duration, sequence, now, segments=[timestamp])
        if event.end:
            digits += self._finish(now)
        return digits

    @staticmethod
    def _continues(current: _Incoming, timestamp: int, marker: bool, event: TelephoneEvent) -> bool:
        """A new segment of a long event: same event, no marker, about 0xFFFF after the last one."""
        step = (timestamp - current.timestamp) & _TIMESTAMP_MASK
        return not marker and event.event == current.code and 0 <= MAX_DURATION - step <= _SEGMENT_SLACK

    def _straggler(self, timestamp: int, event: TelephoneEvent, now: float | None) -> list[DtmfDigit]:
        """A late packet of an event older than the current one: report it only if it ends it."""
        if not event.end:
            return []
        self._remember([timestamp], now)
        digit = event.digit
        return [DtmfDigit(digit, self._ms(event.duration))] if digit is not None else []

    def _finish(self, now: float | None) -> list[DtmfDigit]:
        current = self._current
        if current is None:
            return []
        self._current = None
        self._remember(current.segments, now)
        digit = digit_for_event(current.code)
        if digit is None:
            return []
        return [DtmfDigit(digit, self._ms(current.earlier + current.duration))]

    def _remember(self, timestamps: list[int], now: float | None) -> None:
        for timestamp in timestamps:
            self._finished.pop(timestamp, None)
            self._finished[timestamp] = now
        while len(self._finished) > _FINISHED_KEPT:
            del self._finished[next(iter(self._finished))]

    def _forget(self, now: float | None) -> None:
        if now is None:
            return
        expired = [ts for ts, at in self._finished.items() if at is not None and now - at >= MEMORY_S]
        for timestamp in expired:
            del self._finished[timestamp]

    def _ms(self, samples: int) -> int:
        return samples * 1000 // self._event_rate


def _later_sequence(a: int, b: int) -> int:
    """The later of two 16-bit sequence numbers (RFC 3550 serial arithmetic)."""
    return b if 0 < (b - a) & 0xFFFF < 0x8000 else a


@dataclass(frozen=True, slots=True)
class DtmfPacket:
    """A telephone-event packet to send in place of this tick's audio frame.

    ``timestamp`` is the RTP timestamp to send it with (the event's start: the same for every packet
    of the event); ``marker`` is set on its first packet; ``end`` on the three end packets.
    """

    payload: bytes
    marker: bool
    timestamp: int
    end: bool


@dataclass(slots=True)
class _Outgoing:
    code: int
    tone: int  # samples
    gap: int  # samples
    start: int = 0
    final: bytes | None = None  # the end packet's payload, once the tone is over
    ends_sent: int = 0


class DtmfSender:
    """Turns digits into telephone-event packets, driven by the 20 ms clock of the audio stream.

    ``send("123#")`` queues digits. On every tick the session calls ``next_packet(timestamp)`` with the
    RTP timestamp its audio frame would carry: a ``DtmfPacket`` means send that instead of the audio
    frame (same SSRC and sequence numbering, the DTMF payload type, ``packet.timestamp``); ``None``
    means send audio, as during the gap between digits. Each digit is ``tone_ms`` of packets whose
    duration grows by one frame (160) a tick, the first marked, the last with the E bit, that end
    packet sent three times on three ticks; the next digit starts ``gap_ms`` after the tone ended (at
    least after the three end packets). Durations follow the timestamps, so a late tick that skips
    frames still reports the real length.
    """

    def __init__(self) -> None:
        self._queue: deque[_Outgoing] = deque()
        self._current: _Outgoing | None = None
        self._not_before: int | None = None  # the earliest timestamp for the next digit's start
        # Timestamps follow the audio stream's clock, durations the telephone-event's (RFC 4733 wants
        # them equal; phones offer telephone-event/8000 beside opus/48000 all the same).
        self._stream_rate = self._event_rate = CLOCK_RATE

    def use_clock(self, event_rate: int, stream_rate: int) -> None:
        """The telephone-event's clock rate and the audio stream's (Opus: 48000)."""
        self._event_rate, self._stream_rate = event_rate, stream_rate

    @property
    def busy(self) -> bool:
        """Digits are queued or an event is being sent."""
        return self._current is not None or bool(self._queue)

    def send(self, digits: str, *, tone_ms: int = TONE_MS, gap_ms: int = GAP_MS) -> None:
        """Queue ``digits`` (``0-9 * # A-D``); raises ``DtmfError`` and queues nothing if one is not."""
        tone_ms, gap_ms = self._checked(tone_ms, gap_ms)
        codes = [event_for_digit(digit) for digit in digits]
        tone, gap = self._samples(tone_ms, self._event_rate), self._samples(gap_ms, self._stream_rate)
        self._queue.extend(_Outgoing(code, tone, gap) for code in codes)

    def cancel(self) -> None:
        """Drop the queued digits; an event already started still ends with its three end packets."""
        self._queue.clear()

    def next_packet(self, timestamp: int) -> DtmfPacket | None:
        """The packet for the tick whose audio frame would carry RTP timestamp ``timestamp``."""
        timestamp &= _TIMESTAMP_MASK
        current = self._current
        marker = False
        if current is None:
            if self._waiting(timestamp):
                return None
            self._not_before = None
            if not self._queue:
                return None
            current = self._current = self._queue.popleft()
            current.start, marker = timestamp, True
        if current.final is None:
            elapsed = ((timestamp - current.start) & _TIMESTAMP_MASK) + self._stream_rate // 50
            duration = min(elapsed * self._event_rate // self._stream_rate, MAX_DURATION)
            if duration < current.tone:
                payload = TelephoneEvent(current.code, False, DEFAULT_VOLUME, duration).to_bytes()
                return DtmfPacket(payload, marker, current.start, False)
            current.final = TelephoneEvent(current.code, True, DEFAULT_VOLUME, duration).to_bytes()
            ended = duration * self._stream_rate // self._event_rate + current.gap
            self._not_before = (current.start + ended) & _TIMESTAMP_MASK
        current.ends_sent += 1
        if current.ends_sent >= END_REPEATS:
            self._current = None
        return DtmfPacket(current.final, marker, current.start, True)

    def _waiting(self, timestamp: int) -> bool:
        if self._not_before is None:
            return False
        return 0 < (self._not_before - timestamp) & _TIMESTAMP_MASK < 0x80000000

    def _samples(self, ms: int, rate: int) -> int:
        return ms * rate // 1000

    def _checked(self, tone_ms: int, gap_ms: int) -> tuple[int, int]:
        longest = MAX_DURATION * 1000 // self._event_rate
        if not 20 <= tone_ms <= longest:
            raise DtmfError(f"tone of {tone_ms} ms: must be 20 to {longest} ms")
        if gap_ms < 0:
            raise DtmfError(f"gap of {gap_ms} ms: must not be negative")
        return tone_ms, gap_ms
