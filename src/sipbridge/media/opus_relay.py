"""Opus relayed on the phone leg: loss concealment on demand, and the packet queue to the phone.

When the phone speaks Opus its packets go to the agent as they are, and the agent's come back as
they are: no decoder or encoder runs while nothing is lost. Only when a packet is missing does
``OpusConcealer`` make one: a decoder is primed with the last packet that came, conceals (or, when
the packet after the gap is at hand, decodes its in-band FEC, which carries the lost frame at a
lower rate), and an encoder turns that audio back into a packet. A loss thus costs one decode and
one encode per missing frame, for at most ``MAX_CONCEALED`` frames in a row; beyond that a silence
packet goes, made once.

``OpusToPhone`` is the agent → phone queue of whole packets, with the interface of
``pipeline.AgentToPhone`` (popped a frame a tick, bounded, a standing backlog dropped, cleared on
barge-in), so the playout around it does not care which it holds.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

import numpy as np

from .opus import OpusDecoder, OpusEncoder, OpusError, OpusSettings
from .opus_packet import CLOCK_RATE, packet_samples
from .standing import StandingBacklog

log = logging.getLogger(__name__)

FRAME_SAMPLES = 960  # 20 ms at 48 kHz
MAX_CONCEALED = 5  # 100 ms of concealment, then silence packets
MAX_BUFFER_MS = 400  # queued towards the phone at most; older packets are dropped
# What concealed frames are coded with: the agent (or the phone) decodes them once, so a
# middling setting will do; 48 kHz keeps the band of the packets around them.
CONCEAL_OPUS = OpusSettings(bitrate=32000, application="audio", complexity=3, fec=False, pcm_rate=48000)

_silence: bytes | None = None


def silence_packet() -> bytes:
    """20 ms of digital silence as an Opus packet (coded once per process)."""
    global _silence
    if _silence is None:
        _silence = OpusEncoder(CONCEAL_OPUS).encode(np.zeros(FRAME_SAMPLES, dtype=np.int16))
    return _silence


class OpusConcealer:
    """Packets for lost ones, made by Opus's own decoder only when a loss happens."""

    def __init__(self) -> None:
        self._decoder: OpusDecoder | None = None
        self._encoder: OpusEncoder | None = None
        self._last: bytes | None = None  # the last packet that came
        self._primed = False  # the decoder has decoded ``_last`` (and what was concealed since)
        self._run = 0  # frames concealed since the last packet that came
        self.concealed = 0
        self.recovered_fec = 0

    def good(self, payload: bytes) -> bytes:
        """A packet that came; returned as it is."""
        self._last, self._primed, self._run = payload, False, 0
        return payload

    def conceal(self, frames: int = 1, next_payload: bytes | None = None) -> list[bytes]:
        """``frames`` packets of 20 ms for as many lost; the last from ``next_payload``'s FEC when
        given (the packet just after the gap)."""
        out = []
        for index in range(frames):
            fec = next_payload if index == frames - 1 else None
            out.append(self._one(fec))
        return out

    def _one(self, fec: bytes | None) -> bytes:
        self._run += 1
        if self._last is None or self._run > MAX_CONCEALED:
            return silence_packet()
        try:
            pcm = self._decoded_lost(fec)
            packet = self._coder().encode(pcm)
        except OpusError as exc:
            log.debug("opus concealment: %s", exc)
            return silence_packet()
        self.recovered_fec += fec is not None
        self.concealed += fec is None
        return packet

    def _decoded_lost(self, fec: bytes | None) -> np.ndarray:
        if self._decoder is None:
            self._decoder = OpusDecoder(CLOCK_RATE)
        if not self._primed and self._last is not None:
            self._decoder.decode(self._last)  # state from the audio just before the gap
            self._primed = True
        return self._decoder.decode_lost(fec)

    def _coder(self) -> OpusEncoder:
        if self._encoder is None:
            self._encoder = OpusEncoder(CONCEAL_OPUS)
        return self._encoder


class OpusToPhone:
    """The agent's Opus packets queued for the phone, popped one per 20 ms tick (``AgentToPhone``'s
    interface: ``keep_frames`` is set by the caller, ``dropped_ms`` counts what a backlog or the
    bound dropped)."""

    codec = "OPUS"

    def __init__(self) -> None:
        self._queue: deque[tuple[bytes, int]] = deque()  # each packet with its length (48 kHz samples)
        self._queued_samples = 0
        self.dropped_ms = 0
        self.keep_frames = 0
        self.underruns = 0
        self._started = False
        self._standing = StandingBacklog()
        self.on_frame: Callable[[bytes], None] | None = None  # each packet as the phone gets it

    @property
    def buffered_ms(self) -> float:
        return self._queued_samples * 1000 / CLOCK_RATE

    @property
    def queued_frames(self) -> int:
        return len(self._queue)

    @property
    def delay_ms(self) -> float:
        return self.buffered_ms

    def push_packet(self, payload: bytes) -> None:
        """Queue one packet (drops the oldest beyond ``MAX_BUFFER_MS``)."""
        samples = packet_samples(payload) or FRAME_SAMPLES
        self._queue.append((payload, samples))
        self._queued_samples += samples
        while self.buffered_ms > MAX_BUFFER_MS and len(self._queue) > 1:
            self._drop_oldest()

    def pop_frame(self) -> bytes | None:
        """The next packet for the phone, or None when none is queued."""
        if not self._queue:
            self._standing.reset()
            self.underruns += self._started
            return None
        self._started = True
        payload, samples = self._queue.popleft()
        self._queued_samples -= samples
        self._track_standing()
        if self.on_frame is not None:
            self.on_frame(payload)
        return payload

    def silence(self) -> bytes:
        return silence_packet()

    def clear(self) -> None:
        self._queue.clear()
        self._queued_samples = 0
        self._standing.reset()

    def _track_standing(self) -> None:
        least = self._standing.popped(len(self._queue))
        for _ in range(0 if least is None else least - self.keep_frames):
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        _, samples = self._queue.popleft()
        self._queued_samples -= samples
        self.dropped_ms += samples * 1000 // CLOCK_RATE
