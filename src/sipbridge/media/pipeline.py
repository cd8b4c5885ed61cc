"""Per-call transcoders between the phone's codec (G.711 at 8 kHz, G.722 at 16 kHz) and mono Opus
(or PCM) for the agent.

``PhoneToAgent``: phone RTP payloads -> PCM -> 20 ms Opus packets. The Opus encoder runs at
``opus.pcm_rate`` or at the phone codec's own rate when that is higher, so G.722's 16 kHz reaches the
agent as wideband Opus (no 8 kHz bottleneck on the way).
``AgentToPhone``: mono PCM at ``pcm_rate`` -> the phone codec's rate, queued as PCM and coded 20 ms
at a time as each frame is popped: G.722's ADPCM state then follows exactly the frames the phone
gets, even when a backlog or a barge-in drops queued audio.

Opus on the wire always runs on a 48 kHz clock, but libopus encodes from and decodes to 8, 12, 16,
24 or 48 kHz itself: at the phone's own rate no resampling happens at all. At any other rate the
pipelines resample with the polyphase FIR of ``media/resample.py``, which returns the output of
every chunk at once and adds a fixed 2.625 ms (its group delay) each way: every 20 ms pushed to
``PhoneToAgent`` gives exactly one Opus packet, every 20 ms pushed to ``AgentToPhone`` queues
exactly one frame. ``delay_ms`` counts the resampler's delay.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from sipbridge.media.opus import OpusEncoder, OpusSettings
from sipbridge.media.phone_codec import phone_codec
from sipbridge.media.resample import PolyphaseResampler
from sipbridge.media.standing import StandingBacklog

FRAME_MS = 20
MAX_BUFFER_MS = 400  # queued towards the phone at most; older audio is dropped
_SAMPLE_BYTES = 2  # the queue holds int16 PCM


class PhoneToAgent:
    """The phone's payloads to 20 ms mono Opus packets (48 kHz clock) for the agent."""

    def __init__(self, codec: str, opus: OpusSettings) -> None:
        self.phone = phone_codec(codec)
        self.codec = self.phone.name
        self.opus = (
            opus if opus.pcm_rate >= self.phone.pcm_rate else replace(opus, pcm_rate=self.phone.pcm_rate)
        )
        self._decode = self.phone.decoder()
        self._resampler = _resampler_or_none(self.phone.pcm_rate, self.opus.pcm_rate)
        self._encoder = OpusEncoder(self.opus)
        self._frame_samples = self.opus.pcm_rate * FRAME_MS // 1000
        self._pcm = np.zeros(self._frame_samples * 16, dtype=np.int16)
        self._fill = 0

    @property
    def delay_ms(self) -> float:
        """Audio received but not yet encoded: the resampler's delay plus the partial frame."""
        resampler_ms = self._resampler.delay_ms if self._resampler else 0.0
        return resampler_ms + self._fill * 1000.0 / self.opus.pcm_rate

    def push(self, payload: bytes) -> list[bytes]:
        """Feed one RTP payload (any length); returns the Opus packets now complete."""
        return self.push_pcm(self._decode(payload))

    def decode(self, payload: bytes) -> np.ndarray:
        """A payload to PCM at the phone codec's rate (for a caller that conceals losses first)."""
        return self._decode(payload)

    def push_pcm(self, pcm: np.ndarray) -> list[bytes]:
        """Feed PCM at the phone codec's rate (a decoded or concealed frame); returns the Opus
        packets now complete."""
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
    """Mono PCM from the agent to a bounded queue of the phone's audio, popped and coded 20 ms at a time.

    A backlog left over from a burst, a late packet or audio queued before the call was answered
    would otherwise delay everything after it for the rest of the call (the queue drains only as
    fast as it is filled). When at least a whole frame was still queued after every pop for
    ``STANDING_POPS`` pops in a row, those whole frames are dropped (counted in ``dropped_ms``),
    but for the ``keep_frames`` the agent leg's jitter needs (set by the caller).
    """

    def __init__(self, codec: str, pcm_rate: int) -> None:
        self.phone = phone_codec(codec)
        self.codec = self.phone.name
        self.pcm_rate = pcm_rate
        self._encode = self.phone.encoder()
        self._resampler = _resampler_or_none(pcm_rate, self.phone.pcm_rate)
        self._bytes_per_ms = self.phone.pcm_rate // 1000 * _SAMPLE_BYTES
        self._frame_bytes = FRAME_MS * self._bytes_per_ms
        self._silence = np.zeros(self.phone.frame_samples, dtype=np.int16)
        # a stateless codec's silence is always the same bytes: coded once, not on every quiet tick
        self._silence_payload = None if self.phone.stateful else self._encode(self._silence)
        self._queue = bytearray()
        self._max_bytes = MAX_BUFFER_MS * self._bytes_per_ms
        self.dropped_ms = 0
        self.keep_frames = 0
        self.underruns = 0  # pops that found less than a frame, once audio had come
        self._started = False
        self._standing = StandingBacklog()
        # each frame's PCM as it is coded for the phone (a recording); a view: copy what is kept
        self.on_frame: Callable[[np.ndarray], None] | None = None

    @property
    def buffered_ms(self) -> float:
        """Audio waiting in the queue (the resampler's delay is not counted)."""
        return len(self._queue) / self._bytes_per_ms

    @property
    def queued_frames(self) -> int:
        """Whole 20 ms frames waiting in the queue."""
        return len(self._queue) // self._frame_bytes

    @property
    def delay_ms(self) -> float:
        """Audio pushed but not yet popped: the resampler's delay plus ``buffered_ms``."""
        return (self._resampler.delay_ms if self._resampler else 0.0) + self.buffered_ms

    def push_pcm(self, pcm: np.ndarray) -> None:
        """Queue mono int16 audio at ``pcm_rate`` of any length; drops the oldest beyond ``MAX_BUFFER_MS``."""
        phone_pcm = self._resampler.process(pcm) if self._resampler else pcm
        if len(phone_pcm):
            self._queue += np.asarray(phone_pcm, dtype=np.int16).tobytes()
            self._trim()

    def pop_frame(self) -> bytes | None:
        """The next 20 ms coded for the phone, or None when less than that is queued."""
        if len(self._queue) < self._frame_bytes:
            self._standing.reset()
            self.underruns += self._started
            return None
        self._started = True
        frame = np.frombuffer(self._queue, dtype=np.int16, count=self.phone.frame_samples)
        payload = self._encode(frame)
        if self.on_frame is not None:
            self.on_frame(frame)
        del frame  # the view must go before the bytearray can shrink
        del self._queue[: self._frame_bytes]
        self._track_standing()
        return payload

    def silence(self) -> bytes:
        """20 ms of silence coded for the phone, for a tick with nothing queued (through the encoder:
        G.722's state must follow every frame the phone gets)."""
        return self._silence_payload or self._encode(self._silence)

    def _track_standing(self) -> None:
        least = self._standing.popped(len(self._queue))
        if least is None:
            return
        whole = least - least % self._frame_bytes
        standing = whole - self.keep_frames * self._frame_bytes
        if standing > 0:
            del self._queue[:standing]
            self.dropped_ms += standing // self._bytes_per_ms

    def clear(self) -> None:
        """Drop all queued audio, including what the resampler holds back (barge-in)."""
        self._queue.clear()
        self._standing.reset()
        if self._resampler:
            self._resampler.reset()

    def _trim(self) -> None:
        excess = len(self._queue) - self._max_bytes
        if excess > 0:
            drop_ms = -(-excess // self._bytes_per_ms)  # whole milliseconds, rounded up
            del self._queue[: drop_ms * self._bytes_per_ms]
            self.dropped_ms += drop_ms


def _resampler_or_none(in_rate: int, out_rate: int) -> PolyphaseResampler | None:
    return None if in_rate == out_rate else PolyphaseResampler(in_rate, out_rate)
