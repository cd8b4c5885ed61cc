"""Adaptive jitter buffer for the phone's RTP stream (sans-IO: packets and times in, frames out).

``push(packet, arrival)`` stores a parsed ``RtpPacket`` of the audio payload type (DTMF events go
elsewhere); ``pop(now)``, called once per 20 ms by the sender clock, returns what to play for that
frame time::

    frame = jitter.pop(now)
    if frame is None:      # nothing to play: not started yet, or the stream is idle (silence suppression)
        pcm = silence
    elif frame is LOST:    # this frame is missing, or late and waited for: the caller conceals it
        pcm = concealer.lost()
    else:                  # the payload of the next packet, in sequence order
        pcm = concealer.good(decode(frame))

Timing model. ``d = arrival - timestamp / 8000`` is a packet's transit time plus an unknown constant;
its minimum over the last 4 to 8 s is the reference ``d_ref`` (the earliest a packet can arrive), and
``v = d - d_ref >= 0`` its delay variation. A frame "expected" at ``d_ref + ts / 8000`` is played once
``delay = now - expected`` reaches the target: the first frame of the stream and of every talkspurt is
held until then (the fill), and a missing frame is waited for until then (the buffer stretches; the
caller conceals meanwhile) and given up (LOST) after. A packet that arrives after its frame was given
up is late and dropped. The target is the largest ``v`` of the last 4 to 8 s plus a 5 ms margin (a late
packet counts one frame more), clamped to [min_ms, max_ms]: it rises at once and falls by at most
10 ms per second. When the delay has stayed more than a frame above the target for 0.5 s, one frame is
dropped; far above (by more than max_ms), the buffer skips ahead at once.

Sequence numbers and timestamps are extended past their wrap; a packet is stored in a fixed array
slot ``seq % capacity`` (no per-packet allocation beyond the packet; O(1) per push and per pop).
A new SSRC or a sequence jump, once the next packet confirms it (RFC 3550 A.1; a lone stray packet
changes nothing), restarts the stream: the frames held are dropped, the buffer fills again, the
target is kept. A talkspurt start (a timestamp that jumped relative to the sequence number, marker
bit or not) is played after a fresh fill at the current target; if its timestamp is implausible
(ahead of real time, or more than max_ms behind it) the timing reference restarts from it, so no
long gap is ever played. While the buffer is empty the cursor keeps advancing in real time: LOST for
``idle_ms``, then None; frames given up that way are counted lost only once a later packet shows
they were sent (not when the next one starts a talkspurt). After a stall of the caller's clock, pop
once per frame time missed.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final, TypeAlias

from .packet import RtpPacket

_SEQ_MOD = 1 << 16
_TS_MOD = 1 << 32
_EXT_BASE = 1 << 24  # extended sequence numbers start here, so they never go negative
_MAX_DROPOUT = 3000  # RFC 3550 A.1: a larger jump forward, or
_MAX_MISORDER = 100  # ... backward, needs the next packet in sequence to be believed
_LATE_RUN_RESTART_S = 0.5  # packets arriving only late for this long restart the stream


class Lost(enum.Enum):
    """The type of ``LOST``."""

    LOST = "LOST"


LOST: Final = Lost.LOST
"""Returned by ``pop`` for a frame the caller must conceal."""

Frame: TypeAlias = bytes | Lost | None
"""What ``pop`` returns: a payload to play, ``LOST`` (conceal) or None (nothing to play)."""


@dataclass(frozen=True, slots=True)
class JitterConfig:
    min_ms: float = 20.0
    max_ms: float = 120.0
    initial_ms: float | None = None  # target before anything is measured; None: min_ms
    capacity: int = 64  # frames held at most (1.28 s); a newer packet beyond it drops the oldest
    margin_ms: float = 5.0  # added to the largest delay variation
    window_s: float = 4.0  # the transit minimum and the variation peak cover the last 1 to 2 windows
    fall_ms_per_s: float = 10.0  # how fast the target may come down
    shrink_after_s: float = 0.5  # the delay stays a frame above the target this long: drop one frame
    idle_ms: float = 200.0  # an empty buffer returns LOST this long, then None
    resync_ms: float = 1000.0  # a transit change larger than this restarts the timing reference
    clock_rate: int = 8000
    frame_samples: int = 160

    def __post_init__(self) -> None:
        initial = self.min_ms if self.initial_ms is None else self.initial_ms
        if not 0 < self.min_ms <= initial <= self.max_ms:
            raise ValueError("need 0 < min_ms <= initial_ms <= max_ms")
        frame_ms = 1000 * self.frame_samples / self.clock_rate
        if self.capacity * frame_ms < self.max_ms + 2 * frame_ms:
            raise ValueError(f"capacity of {self.capacity} frames cannot hold max_ms plus two frames")
        if self.window_s <= 0 or self.fall_ms_per_s < 0 or self.shrink_after_s < 0 or self.idle_ms < 0:
            raise ValueError("window_s must be positive, the other durations not negative")


@dataclass(slots=True)
class JitterStats:
    received: int = 0  # packets pushed
    played: int = 0  # payloads returned
    concealed: int = 0  # LOST returned (the caller concealed these frames)
    lost: int = 0  # frames given up because their packet had not come by their playout time
    stretched: int = 0  # LOST returned while waiting for a missing frame (the delay grew a frame)
    late: int = 0  # packets dropped because their frame had been given up already
    duplicate: int = 0
    overflow: int = 0  # frames dropped because the buffer was full or far deeper than the target
    shrunk: int = 0  # frames dropped to bring the delay down to the target
    resyncs: int = 0  # new SSRC, sequence jump, timing reference restarted, talkspurt refilled
    depth_ms: float = 0.0  # span of sequence numbers buffered, from the next frame to the newest
    delay_ms: float = 0.0  # how late the last frame popped plays after its earliest possible arrival
    target_ms: float = 0.0
    jitter_ms: float = 0.0  # RFC 3550 section 6.4.1 interarrival jitter


class JitterBuffer:
    """Adaptive playout of one RTP stream: ``push(packet, arrival)``, ``pop(now)`` every frame time."""

    def __init__(self, config: JitterConfig | None = None) -> None:
        self.config = cfg = config or JitterConfig()
        self.stats = JitterStats()
        self._rate = cfg.clock_rate
        self._spf = cfg.frame_samples
        self._frame_s = cfg.frame_samples / cfg.clock_rate
        self._cap = cfg.capacity
        self._min_s = cfg.min_ms / 1000
        self._max_s = cfg.max_ms / 1000
        self._initial_s = (cfg.min_ms if cfg.initial_ms is None else cfg.initial_ms) / 1000
        self._idle_frames = round(cfg.idle_ms / 1000 / self._frame_s)
        self._seqs = [-1] * self._cap  # extended sequence number each slot was last given
        self._payloads: list[bytes | None] = [None] * self._cap  # None once played or dropped
        self._tss = [0] * self._cap  # extended timestamps
        self._ssrc: int | None = None
        self._next: int | None = None
        self._target = self._initial_s
        self.stats.target_ms = self._target * 1000
        self._jitter = 0.0
        self._dry = self._idle_frames  # pops in a row with nothing played, up to idle_frames
        self._restart_state(0, 0, 0.0)

    # --- push ----------------------------------------------------------------------------------

    def push(self, packet: RtpPacket, arrival: float) -> None:
        """Store one packet that arrived at ``arrival`` (seconds, the clock ``pop`` is given)."""
        self.stats.received += 1
        if self._ssrc is None:
            self._restart(packet, arrival)
        elif packet.ssrc != self._ssrc or not (
            -_MAX_MISORDER <= self._extend_seq(packet.sequence) - self._high <= _MAX_DROPOUT
        ):
            # A new source, or the sender restarted its sequence numbers: believed if the next
            # packet follows this one (then both are kept), so a stray packet changes nothing.
            stray = self._probe_packet
            if stray is None or self._probe != (packet.ssrc, packet.sequence):
                self._probe = (packet.ssrc, (packet.sequence + 1) & 0xFFFF)
                self._probe_packet = (packet, arrival)
                return
            self._restart(*stray)
            self._accept(*stray)
        self._probe, self._probe_packet = None, None
        self._accept(packet, arrival)

    def _accept(self, packet: RtpPacket, arrival: float) -> None:
        seq = self._extend_seq(packet.sequence)
        ts = self._ts_last + _signed32(packet.timestamp - self._ts_last)
        reset = self._measure(seq, ts, packet.marker, arrival) if seq >= self._ref_from else False
        if not self._store(seq, ts, packet.payload, reset):
            return
        if self._late_since is None:
            self._late_since = arrival
        elif arrival - self._late_since >= _LATE_RUN_RESTART_S:  # nothing but late packets
            self._restart(packet, arrival)
            self._accept(packet, arrival)
            return
        self._vmax_cur = max(self._vmax_cur, self._v + self._frame_s)  # grow a frame more than needed
        self._retarget(arrival)

    def _restart(self, packet: RtpPacket, arrival: float) -> None:
        """A new stream: forget every frame held and the timing reference, keep the target."""
        if self._ssrc is not None:
            self.stats.resyncs += 1
        self._ssrc = packet.ssrc
        self._seqs = [-1] * self._cap
        self._payloads = [None] * self._cap
        self._restart_state(_EXT_BASE + packet.sequence, _TS_MOD + packet.timestamp, arrival)

    def _restart_state(self, seq: int, ts: int, arrival: float) -> None:
        self._next = seq if self._ssrc is not None else None  # the frame the next pop plays
        self._next_ts = ts  # its timestamp (extrapolated while it is missing)
        self._high, self._high_ts = seq - 1, ts - self._spf  # the newest packet received
        self._ts_last = ts
        self._ts_base = ts
        self._filling = True  # the frame at the cursor waits for the target delay before it plays
        self._pending_lost = 0  # frames given up on an empty buffer since: lost, or silence?
        self._late_since: float | None = None  # arrival of the first of the late packets in a row
        self._excess_since: float | None = None
        self._probe: tuple[int, int] | None = None  # (ssrc, sequence) that would confirm a restart
        self._probe_packet: tuple[RtpPacket, float] | None = None
        self._ref_valid = False
        self._ref_from = seq  # frames before it were timed by an older reference: no timing logic
        self._d_ref = 0.0
        self._d_prev = 0.0
        self._v = 0.0
        self._win_start = arrival
        self._dmin_cur = self._dmin_prev = float("inf")
        self._vmax_cur = self._vmax_prev = 0.0
        self._target_at = arrival

    def _extend_seq(self, seq: int) -> int:
        delta = (seq - self._high) & 0xFFFF
        return self._high + (delta - _SEQ_MOD if delta >= 0x8000 else delta)

    def _measure(self, seq: int, ts: int, marker: bool, arrival: float) -> bool:
        """Update the transit reference, the jitter and the target; True if the reference restarted."""
        d = arrival - (ts - self._ts_base) / self._rate
        offset = d - self._d_ref
        jumped = marker or abs(ts - self._high_ts - (seq - self._high) * self._spf) > self._spf // 2
        if (
            not self._ref_valid
            or abs(offset) > self.config.resync_ms / 1000
            or (jumped and not -self._frame_s <= offset <= self._max_s)
        ):
            if self._ref_valid:
                self.stats.resyncs += 1
            self._ref_valid = True
            self._ref_from = seq
            self._d_ref = self._d_prev = self._dmin_cur = d
            self._dmin_prev = float("inf")
            self._win_start = arrival
            self._v = 0.0
            return True
        self._jitter += (abs(d - self._d_prev) - self._jitter) / 16
        self._d_prev = d
        self.stats.jitter_ms = self._jitter * 1000
        if arrival - self._win_start >= self.config.window_s:
            stale = arrival - self._win_start >= 2 * self.config.window_s
            self._dmin_prev = float("inf") if stale else self._dmin_cur
            self._vmax_prev = 0.0 if stale else self._vmax_cur
            self._dmin_cur, self._vmax_cur = d, 0.0
            self._win_start = arrival
        elif d < self._dmin_cur:
            self._dmin_cur = d
        self._d_ref = min(self._dmin_cur, self._dmin_prev)
        self._v = v = d - self._d_ref
        if v > self._vmax_cur:
            self._vmax_cur = v
        self._retarget(arrival)
        return False

    def _retarget(self, arrival: float) -> None:
        """Target: the variation peak plus the margin; rises at once, falls at most fall_ms_per_s."""
        wanted = max(self._vmax_cur, self._vmax_prev) + self.config.margin_ms / 1000
        floor = self._target - self.config.fall_ms_per_s / 1000 * (arrival - self._target_at)
        self._target = min(self._max_s, max(self._min_s, wanted, floor))
        self._target_at = arrival
        self.stats.target_ms = self._target * 1000

    def _store(self, seq: int, ts: int, payload: bytes, reset: bool) -> bool:
        """Keep the frame in its slot; True if it is late (dropped)."""
        nxt = self._next
        assert nxt is not None
        slot = seq % self._cap
        if seq < nxt:
            if self._seqs[slot] == seq:
                self.stats.duplicate += 1
                return False
            dev = ts - (self._next_ts - (nxt - seq) * self._spf)
            if nxt - seq < self._cap and self._filling and abs(dev) <= self._spf // 2:
                if self._ref_from == nxt:  # an earlier packet of the frames still filling
                    self._ref_from = seq
            elif self._high < nxt and (dev > self._spf // 2 or reset):
                # A talkspurt after silence: the cursor ran on while the sender was quiet.
                self.stats.resyncs += not reset  # a restarted reference was counted already
                self._pending_lost = 0
                self._filling = True
            else:
                self._commit_lost(seq)
                self.stats.late += 1
                return True
            self._next, self._next_ts = seq, ts
            nxt = seq
        elif self._seqs[slot] == seq:
            self.stats.duplicate += 1
            return False
        self._late_since = None
        if self._pending_lost:
            self._commit_lost(seq)
        if seq - nxt >= self._cap:
            self._drop_oldest(seq - self._cap + 1 - nxt)
        self._seqs[slot] = seq
        self._payloads[slot] = payload
        self._tss[slot] = ts
        if seq > self._high:
            self._high, self._high_ts = seq, ts
            self._ts_last = ts
        return False

    def _commit_lost(self, seq: int) -> None:
        """Frames given up on an empty buffer, numbered up to ``seq``, were sent: count them lost."""
        assert self._next is not None
        first = self._next - self._pending_lost
        count = min(self._pending_lost, max(0, seq + 1 - first))
        self.stats.lost += count
        self._pending_lost -= count

    def _drop_oldest(self, count: int) -> None:
        """Advance the cursor ``count`` frames, dropping those held (overflow), the rest lost."""
        nxt = self._next
        assert nxt is not None
        held = 0
        for seq in range(nxt, nxt + min(count, self._cap)):
            slot = seq % self._cap
            if self._seqs[slot] == seq and self._payloads[slot] is not None:
                self._payloads[slot] = None
                held += 1
        self.stats.overflow += held
        self.stats.lost += count - held
        self._next = nxt + count
        self._next_ts += count * self._spf
        self._excess_since = None

    # --- pop -----------------------------------------------------------------------------------

    def pop(self, now: float) -> Frame:
        """What to play for the frame time starting at ``now``: a payload, ``LOST`` or None."""
        nxt = self._next
        if nxt is None:
            return None
        stats = self.stats
        stats.depth_ms = max(0, self._high - nxt + 1) * self._frame_s * 1000
        slot = nxt % self._cap
        payload = self._payloads[slot]
        if payload is None or self._seqs[slot] != nxt:
            return self._missing(now, nxt)
        ts = self._tss[slot]
        if nxt >= self._ref_from:
            delay = now - self._d_ref - (ts - self._ts_base) / self._rate
            stats.delay_ms = delay * 1000
            if delay > self._target + self._max_s:  # far too deep: skip to the target at once
                self._drop_oldest(int((delay - self._target) / self._frame_s))
                return self.pop(now)
            if self._filling or abs(ts - self._next_ts) > self._spf // 2:
                if delay < self._target:
                    if not self._filling:
                        self._filling = True
                        stats.resyncs += 1
                    self._next_ts = ts
                    return self._wait()
            elif delay > self._target + self._frame_s:
                if self._excess_since is None:
                    self._excess_since = now
                elif now - self._excess_since >= self.config.shrink_after_s and self._shrink(nxt, ts):
                    return self.pop(now)
            else:
                self._excess_since = None
        self._filling = False
        self._payloads[slot] = None
        self._next = nxt + 1
        self._next_ts = ts + self._spf
        self._dry = 0
        self._pending_lost = 0
        stats.played += 1
        return payload

    def _missing(self, now: float, nxt: int) -> Frame:
        """The frame at the cursor is not here: wait for it (hold the cursor) or give it up."""
        stats = self.stats
        if nxt >= self._ref_from:
            delay = now - self._d_ref - (self._next_ts - self._ts_base) / self._rate
            stats.delay_ms = delay * 1000
            if delay < self._target:
                return self._wait()
        self._next = nxt + 1
        self._next_ts += self._spf
        self._excess_since = None
        if self._high > nxt:  # a gap: a later packet is here
            stats.lost += 1
            self._dry = min(self._dry + 1, self._idle_frames)
            stats.concealed += 1
            return LOST
        self._pending_lost += 1  # lost if a later packet comes, silence if a talkspurt starts
        if self._dry < self._idle_frames:
            self._dry += 1
            stats.concealed += 1
            return LOST
        return None

    def _wait(self) -> Frame:
        """Hold the cursor one frame: LOST while the stream is live, None once it has been idle."""
        if self._dry < self._idle_frames:
            self._dry += 1
            self.stats.concealed += 1
            self.stats.stretched += 1
            return LOST
        return None

    def _shrink(self, nxt: int, ts: int) -> bool:
        """Drop the frame at the cursor if the next one is here and continues it."""
        following = (nxt + 1) % self._cap
        if self._seqs[following] != nxt + 1 or self._payloads[following] is None:
            return False
        if self._tss[following] != ts + self._spf:
            return False
        self._payloads[nxt % self._cap] = None
        self._next = nxt + 1
        self._next_ts = ts + self._spf
        self._excess_since = None
        self.stats.shrunk += 1
        return True

    def next_due(self) -> float | None:
        """When the frame at the cursor reaches the target delay (on ``pop``'s clock); None if unknown.

        A caller that pops right then plays each frame the target after its earliest arrival, instead
        of up to a frame later at whatever phase its clock happens to tick.
        """
        if self._next is None or self._next < self._ref_from:
            return None
        return self._d_ref + (self._next_ts - self._ts_base) / self._rate + self._target

    # --- state ---------------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        """A packet has arrived since the buffer was made or reset."""
        return self._next is not None

    def reset(self) -> None:
        """Forget the stream (e.g. the call was put on hold); the statistics are kept."""
        self._ssrc = None
        self._next = None
        self._seqs = [-1] * self._cap
        self._payloads = [None] * self._cap
        self._target = self._initial_s
        self.stats.target_ms = self._target * 1000
        self._dry = self._idle_frames


def _signed32(delta: int) -> int:
    delta &= 0xFFFFFFFF
    return delta - _TS_MOD if delta >= 0x80000000 else delta
