"""Per-call transcoders between G.711 at 8 kHz and mono Opus (or PCM) for the agent.

``PhoneToAgent``: G.711 RTP payloads -> PCM at ``opus.pcm_rate`` -> 20 ms Opus packets.
``AgentToPhone``: mono PCM at ``pcm_rate`` -> 8 kHz -> G.711, queued, popped 20 ms at a time.

Opus on the wire always runs on a 48 kHz clock, but libopus encodes from and decodes to 8, 12, 16,
24 or 48 kHz itself: at 8 kHz (the bridge's default) no resampling happens at all and libopus codes
the telephone band natively, which is both cheaper and exactly what the phone carries. At any other
rate the pipelines resample with the polyphase FIR of ``media/resample.py``, which returns the
output of every chunk at once and adds a fixed 2.625 ms (its group delay) each way: every 20 ms
pushed to ``PhoneToAgent`` gives exactly one Opus packet, every 20 ms pushed to ``AgentToPhone``
queues exactly 160 bytes. ``delay_ms`` counts the resampler's delay.
"""

from __future__ import annotations

import numpy as np

from sipbridge.media import g711
from sipbridge.media.opus import OpusEncoder, OpusSettings
from sipbridge.media.resample import PolyphaseResampler

PHONE_RATE = 8000
FRAME_MS = 20
PHONE_FRAME_BYTES = PHONE_RATE * FRAME_MS // 1000  # 160: one G.711 byte per sample
_BYTES_PER_MS = PHONE_RATE // 1000
MAX_BUFFER_MS = 400  # queued towards the phone at most; older audio is dropped
STANDING_POPS = 50  # 1 s of 20 ms pops: a backlog never drawn on for that long is dropped


class PhoneToAgent:
    """G.711 payloads from the phone to 20 ms mono Opus packets (48 kHz clock) for the agent."""

    def __init__(self, codec: str, opus: OpusSettings) -> None:
        self.codec = codec.upper()
        self.opus = opus
        self._decode = g711.decoder_for(self.codec)
        self._resampler = _resampler_or_none(PHONE_RATE, opus.pcm_rate)
        self._encoder = OpusEncoder(opus)
        self._frame_samples = opus.pcm_rate * FRAME_MS // 1000
        self._pcm = np.zeros(self._frame_samples * 16, dtype=np.int16)
        self._fill = 0

    @property
    def queued_frames(self) -> int:
        """Whole 20 ms frames waiting in the queue."""
        return len(self._queue) // PHONE_FRAME_BYTES

    @property
    def delay_ms(self) -> float:
        """Audio received but not yet encoded: the resampler's delay plus the partial frame."""
        resampler_ms = self._resampler.delay_ms if self._resampler else 0.0
        return resampler_ms + self._fill * 1000.0 / self.opus.pcm_rate

    def push(self, payload: bytes) -> list[bytes]:
        """Feed one RTP payload of G.711 (any length); returns the Opus packets now complete."""
        return self.push_pcm(self._decode(payload))

    def decode(self, payload: bytes) -> np.ndarray:
        """G.711 bytes to 8 kHz PCM (for a caller that conceals losses before ``push_pcm``)."""
        return self._decode(payload)

    def push_pcm(self, pcm: np.ndarray) -> list[bytes]:
        """Feed 8 kHz PCM (a decoded or concealed frame); returns the Opus packets now complete."""
        self._append(self._resampler.process(pcm) if self._resampler else pcm)
        return self._drain()

    def reset(self) -> None:
        """Drop buffered audio and resampler state (e.g. after a long gap)."""
        if self._resampler:
            self._resampler.reset()
        self._fill = 0

    def _append(self, pcm: np.ndarray) -> None:
        end = self._fill + len(pcm)
        if end > len(self._pcm):
            self._pcm = np.concatenate([self._pcm[: self._fill], np.zeros(end, dtype=np.int16)])
        self._pcm[self._fill : end] = pcm
        self._fill = end

    def _drain(self) -> list[bytes]:
        packets: list[bytes] = []
        start = 0
        frame = self._frame_samples
        while self._fill - start >= frame:
            packet = self._encoder.encode(self._pcm[start : start + frame])
            if packet is not None:
                packets.append(packet)
            start += frame
        if start:
            rest = self._fill - start
            self._pcm[:rest] = self._pcm[start : self._fill]
            self._fill = rest
        return packets


class AgentToPhone:
    """Mono PCM from the agent to a bounded queue of G.711 bytes, popped 20 ms at a time.

    A backlog left over from a burst, a late packet or audio queued before the call was answered
    would otherwise delay everything after it for the rest of the call (the queue drains only as
    fast as it is filled). When at least a whole frame was still queued after every pop for
    ``STANDING_POPS`` pops in a row, those whole frames are dropped (counted in ``dropped_ms``),
    but for the ``keep_frames`` the agent leg's jitter needs (set by the caller).
    """

    def __init__(self, codec: str, pcm_rate: int) -> None:
        self.codec = codec.upper()
        self.pcm_rate = pcm_rate
        self._encode = g711.encoder_for(self.codec)
        self._resampler = _resampler_or_none(pcm_rate, PHONE_RATE)
        self._queue = bytearray()
        self._max_bytes = MAX_BUFFER_MS * _BYTES_PER_MS
        self.dropped_ms = 0
        self.keep_frames = 0
        self.underruns = 0  # pops that found less than a frame, once audio had come
        self._started = False
        self._pops = 0  # pops in a row that left something queued ...
        self._least_left = 0  # ... and the least they left

    @property
    def buffered_ms(self) -> float:
        """Encoded audio waiting in the queue (the resampler's delay is not counted)."""
        return len(self._queue) / _BYTES_PER_MS

    @property
    def queued_frames(self) -> int:
        """Whole 20 ms frames waiting in the queue."""
        return len(self._queue) // PHONE_FRAME_BYTES

    @property
    def delay_ms(self) -> float:
        """Audio pushed but not yet popped: the resampler's delay plus ``buffered_ms``."""
        return (self._resampler.delay_ms if self._resampler else 0.0) + self.buffered_ms

    def push_pcm(self, pcm: np.ndarray) -> None:
        """Queue mono int16 audio at ``pcm_rate`` of any length; drops the oldest beyond ``MAX_BUFFER_MS``."""
        pcm8 = self._resampler.process(pcm) if self._resampler else pcm
        if len(pcm8):
            self._queue += self._encode(pcm8)
            self._trim()

    def pop_frame(self) -> bytes | None:
        """The next 160 bytes (20 ms) of G.711, or None when less than that is queued."""
        if len(self._queue) < PHONE_FRAME_BYTES:
            self._pops = 0
            self.underruns += self._started
            return None
        self._started = True
        frame = bytes(self._queue[:PHONE_FRAME_BYTES])
        del self._queue[:PHONE_FRAME_BYTES]
        self._track_standing()
        return frame

    def _track_standing(self) -> None:
        left = len(self._queue)
        self._least_left = left if self._pops == 0 else min(self._least_left, left)
        self._pops += 1
        if self._pops < STANDING_POPS:
            return
        whole = self._least_left - self._least_left % PHONE_FRAME_BYTES
        standing = whole - self.keep_frames * PHONE_FRAME_BYTES
        if standing > 0:
            del self._queue[:standing]
            self.dropped_ms += standing // _BYTES_PER_MS
        self._pops = 0

    def clear(self) -> None:
        """Drop all queued audio, including what the resampler holds back (barge-in)."""
        self._queue.clear()
        self._pops = 0
        if self._resampler:
            self._resampler.reset()

    def _trim(self) -> None:
        excess = len(self._queue) - self._max_bytes
        if excess > 0:
            drop_ms = -(-excess // _BYTES_PER_MS)  # whole milliseconds, rounded up
            del self._queue[: drop_ms * _BYTES_PER_MS]
            self.dropped_ms += drop_ms


def _resampler_or_none(in_rate: int, out_rate: int) -> PolyphaseResampler | None:
    return None if in_rate == out_rate else PolyphaseResampler(in_rate, out_rate)
