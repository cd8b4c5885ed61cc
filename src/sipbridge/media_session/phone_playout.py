"""Phone → agent: the phone's packets through the jitter buffer and concealment, a frame at a time.

Sans-IO and clock-fed: ``push`` takes a packet with its arrival time, ``tick`` (on the shared 20 ms
clock) returns the PCM to send the agent, and ``next_due`` says when the next frame falls due, so
the owner can move its tick there instead of up to 20 ms later at the clock's own phase.

For G.711 and G.722 the frames played are decoded PCM, concealed where lost (``media/plc.py``); for
Opus they are the phone's packets themselves (relayed to the agent), a lost one made by Opus's own
decoder (``media/opus_relay.py``). The buffer counts in the codec's RTP clock (Opus: 48000).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from ..media.opus_packet import packet_samples as opus_packet_samples
from ..media.opus_relay import OpusConcealer
from ..media.phone_codec import FRAME_MS, PhoneCodec
from ..media.plc import Concealer
from ..rtp.jitter import LOST, JitterBuffer, JitterConfig, JitterStats
from ..rtp.packet import RtpPacket

log = logging.getLogger(__name__)

PLAYOUT_MARGIN_S = 0.0002  # tick just after the due time, never just before it

Decoder = Callable[[bytes], np.ndarray]


class PhonePlayout:
    def __init__(self) -> None:
        self._jitter = JitterBuffer()
        self._concealer = Concealer()
        self._due = 0  # samples of phone audio owed to the agent, played a packet at a time
        self._other_size = 0  # a packet size other than the buffer's, seen once
        self._pcm_per_tick = 1  # decoded samples per RTP timestamp unit: 2 for G.722
        self._clock = 8000  # the codec's RTP clock
        self._relay: OpusConcealer | None = None  # Opus: packets relayed, a lost one made here

    @property
    def stats(self) -> JitterStats:
        return self._jitter.stats

    @property
    def packet_samples(self) -> int:
        """The size of the phone's packets the buffer plays (160: 20 ms)."""
        return self._jitter.config.frame_samples

    def use_codec(self, codec: PhoneCodec) -> None:
        """The phone's codec: its RTP clock (the buffer counts in it), how many samples it decodes
        per timestamp unit (G.711: 1; G.722: 2, 16 kHz audio on an 8000 clock: the concealer works
        on frames of that many), or that its packets are relayed (Opus)."""
        self._relay = OpusConcealer() if codec.relayed else None
        if codec.clock_rate != self._clock:
            self._clock = codec.clock_rate
            self._restart_buffer(codec.frame_ticks)
        if codec.samples_per_tick != self._pcm_per_tick:
            self._pcm_per_tick = codec.samples_per_tick
            self._concealer = self._new_concealer(self._jitter.config.frame_samples)

    def _new_concealer(self, frame_samples: int) -> Concealer:
        """Concealment at the decoded audio's rate (G.722: 16 kHz, its pitch range in samples doubled)."""
        per_tick = self._pcm_per_tick
        return Concealer(frame_samples=frame_samples * per_tick, rate=8000 * per_tick)

    @property
    def _tick_samples(self) -> int:
        """RTP timestamp units per 20 ms tick."""
        return self._clock * FRAME_MS // 1000

    def _packet_time_ok(self, samples: int) -> bool:
        """A packet of 10 to 60 ms, a whole number of 10 ms: one the buffer may follow."""
        ten_ms = self._clock // 100
        return samples % ten_ms == 0 and 1 <= samples // ten_ms <= 6

    def push(self, packet: RtpPacket, arrival: float) -> None:
        """An audio packet from the phone as it arrived (G.711, G.722: one byte per RTP timestamp
        unit; Opus: its TOC byte says how long it is)."""
        payload = packet.payload
        samples = opus_packet_samples(payload) if self._relay is not None else len(payload)
        if samples == self._jitter.config.frame_samples or not self._packet_time_ok(samples):
            self._other_size = 0
        elif self._other_size == samples or not self._jitter.started:  # two in a row: not a stray
            self._follow_packet_time(samples)
        else:
            self._other_size = samples
        self._jitter.push(packet, arrival)

    def _follow_packet_time(self, samples: int) -> None:
        """The phone packs another duration than the buffer expects (ptime 10 to 60 ms): follow it."""
        if self._jitter.started:
            log.info("phone packets now %d ms", samples * 1000 // self._clock)
        self._restart_buffer(samples)

    def _restart_buffer(self, frame_samples: int) -> None:
        stats = self._jitter.stats
        self._jitter = JitterBuffer(JitterConfig(frame_samples=frame_samples, clock_rate=self._clock))
        self._jitter.stats = stats
        self._concealer = self._new_concealer(frame_samples)
        self._due = self._other_size = 0

    def tick(self, frames: int, now: float, decode: Decoder | None) -> list[np.ndarray] | list[bytes]:
        """``frames`` 20 ms frame times passed: what to play to the agent (concealed where lost):
        PCM, or for Opus the packets to relay.

        Without a decoder (no codec yet) the buffer still plays out, and nothing is returned.
        """
        if self._relay is not None:
            return self._relayed(frames, now, self._relay)
        stats = self._jitter.stats
        per_packet = self._jitter.config.frame_samples
        self._due += frames * self._tick_samples
        out: list[np.ndarray] = []
        while self._due >= per_packet:
            self._due -= per_packet
            cuts = stats.shrunk + stats.overflow
            frame = self._jitter.pop(now)
            if frame is None or decode is None:
                continue
            if frame is LOST:
                out.append(self._concealer.lost())
            elif stats.shrunk + stats.overflow != cuts:  # frames were dropped before this one
                out.append(self._concealer.splice(decode(frame)))
            else:
                out.append(self._concealer.good(decode(frame)))
        return out

    def _relayed(self, frames: int, now: float, relay: OpusConcealer) -> list[bytes]:
        """The Opus packets due, as they came; one made by Opus concealment for each lost."""
        per_packet = self._jitter.config.frame_samples
        self._due += frames * self._tick_samples
        out: list[bytes] = []
        while self._due >= per_packet:
            self._due -= per_packet
            frame = self._jitter.pop(now)
            if frame is LOST:
                out += relay.conceal(max(1, per_packet // self._tick_samples))
            elif frame is not None:
                out.append(relay.good(frame))
        return out

    def next_due(self) -> float | None:
        """When to tick next so the next frame plays as it falls due (plus a margin); None: keep
        the clock's phase. Only for 20 ms packets, one per tick (the phone's usual size): the tick
        of other sizes pops as many as the samples owed, which a moved tick would not keep right."""
        if self._jitter.config.frame_samples != self._tick_samples:
            return None
        due = self._jitter.next_due()
        return None if due is None else due + PLAYOUT_MARGIN_S

    def loss(self) -> float | None:
        """Share of the phone's frames that were missing at their playout time; None before any."""
        stats = self._jitter.stats
        due = stats.played + stats.lost
        return stats.lost / due if due else None

    def jitter_s(self) -> float | None:
        stats = self._jitter.stats
        return stats.jitter_ms / 1000 if stats.received else None

    def view(self) -> dict[str, float | int]:
        stats = self._jitter.stats
        return {
            "packet_ms": self._jitter.config.frame_samples * 1000 // self._clock,
            "depth_ms": round(stats.depth_ms, 1),
            "target_ms": round(stats.target_ms, 1),
            "jitter_ms": round(stats.jitter_ms, 1),
            "played": stats.played,
            "concealed": stats.concealed,
            "lost": stats.lost,
            "late": stats.late,
            "duplicate": stats.duplicate,
            "stretched": stats.stretched,
            "shrunk": stats.shrunk,
            "overflow": stats.overflow,
            "resyncs": stats.resyncs,
        }
