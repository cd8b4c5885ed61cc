"""One call's recording: the caller on the left, the agent on the right, 20 ms of each per tick.

Each side's audio comes in as it is played: the caller's as the phone playout hands it to the agent
(PCM, or the Opus packets relayed), the agent's as the phone gets it (the PCM each 20 ms frame is
coded from, or the Opus packet relayed). Each side is queued, and every tick of the call's playout
clock writes 20 ms of both to the file, silence for a side with nothing queued: the two channels stay
aligned in time whatever each side's packet size or clock phase. A side's backlog that stood for a
second (the agent's frames come on their own clock, whose phase may move against the playout's) is
dropped, so neither channel drifts behind the other.

Relayed Opus is decoded only here, only while a call is recorded, straight at the recording's rate.
The file is at the phone codec's rate (G.711: 8 kHz; G.722: 16 kHz; Opus: 16 kHz, the band speech
needs); audio at another rate (a re-INVITE changed the codec) is resampled to it.

Sans-IO but for the writer (``media/recording_file.py``), and clock-fed: ``tick`` is the clock.
A write that fails (a full disk) ends the recording, never the call: ``on_failed`` says why.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

import numpy as np

from ..media.opus import OpusDecoder, OpusError
from ..media.phone_codec import FRAME_MS, phone_codec
from ..media.recording_file import WRITE_ERRORS, RecordingWriter, open_writer
from ..media.resample import PolyphaseResampler
from ..media.standing import StandingBacklog

log = logging.getLogger(__name__)

MAX_RATE = 16000  # speech needs no more: Opus phones are recorded in the wideband too
MAX_QUEUED_MS = 200  # a side's queue at most; older audio is dropped


def recording_rate(codec: str) -> int:
    """The sample rate a call on ``codec`` is recorded at."""
    return min(phone_codec(codec).pcm_rate, MAX_RATE)


class _Side:
    """One channel: audio queued as it comes, taken 20 ms at a time."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.frame = rate * FRAME_MS // 1000
        self._queue = np.zeros(0, dtype=np.int16)
        self._resamplers: dict[int, PolyphaseResampler] = {}
        self._decoder: OpusDecoder | None = None
        self._standing = StandingBacklog()
        self.dropped_ms = 0  # audio dropped: over the cap, or a backlog that stood
        self.silent_frames = 0  # frames written as silence: nothing was queued

    def pcm(self, pcm: np.ndarray, rate: int) -> None:
        if rate != self.rate:
            resampler = self._resamplers.get(rate)
            if resampler is None:
                resampler = self._resamplers[rate] = PolyphaseResampler(rate, self.rate)
            pcm = resampler.process(pcm)
        self._queue = np.concatenate((self._queue, pcm))
        excess = len(self._queue) - MAX_QUEUED_MS * self.rate // 1000
        if excess > 0:
            self._drop(excess)

    def opus(self, packet: bytes) -> None:
        if self._decoder is None:
            self._decoder = OpusDecoder(self.rate)
        try:
            self.pcm(self._decoder.decode(packet), self.rate)
        except OpusError as exc:
            log.debug("recording: undecodable Opus packet: %s", exc)

    def take(self, out: np.ndarray) -> None:
        """Fill ``out`` (a strided view: one channel of the stereo frames) with 20 ms frames."""
        for start in range(0, len(out), self.frame):
            if len(self._queue) < self.frame:
                out[start : start + self.frame] = 0
                self.silent_frames += 1
                self._standing.reset()
                continue
            out[start : start + self.frame] = self._queue[: self.frame]
            self._queue = self._queue[self.frame :]
            stood = self._standing.popped(len(self._queue))
            if stood is not None and stood >= self.frame:
                self._drop(stood - stood % self.frame)

    def _drop(self, samples: int) -> None:
        self._queue = self._queue[samples:]
        self.dropped_ms += samples * 1000 // self.rate


class CallRecorder:
    def __init__(self, writer: RecordingWriter, on_failed: Callable[[str], None] | None = None) -> None:
        self._writer: RecordingWriter | None = writer
        self.rate = writer.rate
        self.caller = _Side(self.rate)
        self.agent = _Side(self.rate)
        self._on_failed = on_failed
        self.frames = 0  # 20 ms stereo frames written
        self.failed: str | None = None

    @classmethod
    def open(cls, path: str, codec: str, on_failed: Callable[[str], None] | None = None) -> CallRecorder:
        """A new recording file at ``path`` for a call on ``codec``; raises one of ``WRITE_ERRORS``."""
        return cls(open_writer(path, recording_rate(codec)), on_failed)

    @property
    def active(self) -> bool:
        return self._writer is not None

    # -- what each side said ---------------------------------------------------------------------

    def caller_pcm(self, pcm: np.ndarray, rate: int) -> None:
        if self._writer is not None:
            self.caller.pcm(pcm, rate)

    def caller_opus(self, packet: bytes) -> None:
        if self._writer is not None:
            self.caller.opus(packet)

    def agent_pcm(self, pcm: np.ndarray, rate: int) -> None:
        if self._writer is not None:
            self.agent.pcm(pcm, rate)

    def agent_opus(self, packet: bytes) -> None:
        if self._writer is not None:
            self.agent.opus(packet)

    # -- the clock ------------------------------------------------------------------------------

    def tick(self, frames: int = 1) -> None:
        """``frames`` 20 ms frame times passed: write that many frames of both sides."""
        if self._writer is None:
            return
        stereo = np.empty(2 * frames * self.caller.frame, dtype=np.int16)
        self.caller.take(stereo[0::2])
        self.agent.take(stereo[1::2])
        try:
            self._writer.write(stereo)
        except WRITE_ERRORS as exc:
            writer, self._writer = self._writer, None
            with contextlib.suppress(*WRITE_ERRORS):
                writer.close()
            self._report(f"recording stopped: {_reason(exc)}")
            return
        self.frames += frames

    def close(self) -> None:
        """Finish the file (idempotent)."""
        writer, self._writer = self._writer, None
        if writer is None:
            return
        try:
            writer.close()
        except WRITE_ERRORS as exc:
            self._report(f"recording not finished: {_reason(exc)}")

    def _report(self, reason: str) -> None:
        self.failed = reason
        if self._on_failed is not None:
            self._on_failed(reason)  # the call logs and shows it
        else:
            log.error("%s", reason)


def _reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
