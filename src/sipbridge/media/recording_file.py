"""A call's recording file, written as the call goes: stereo 16-bit audio, WAV or Ogg/Opus.

Both writers take interleaved stereo int16 (left, right, left, ...) a few frames at a time and get
what they were given to the kernel within ``FLUSH_S``, so a crash of the process loses at most the
last second or two; a power cut may lose what the kernel had not yet written (no ``fsync``: it
would stall the event loop for a disk flush).

- ``WavWriter``: PCM as it is. The header's sizes are patched each time a second of audio is
  written (``os.pwrite``: no seek), so the file on disk is a valid WAV at every moment, only its
  last second (or less) missing, and complete once closed.
- ``OggWriter``: Ogg/Opus through PyAV (FFmpeg's muxer and libopus); an Ogg page goes out each
  second (``page_duration``), written through at once (``flush_packets``). About 16 times smaller,
  and per call about 10 times the CPU of WAV (docs/measurements.md, ``bench.micro.recording_cost``).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Protocol

import av
import numpy as np

FORMATS = {"wav": ".wav", "ogg": ".ogg"}  # the recording_format setting -> the file's suffix
MEDIA_TYPES = {"wav": "audio/wav", "ogg": "audio/ogg"}
FLUSH_S = 1.0
FILE_MODE = 0o640  # recordings are personal data: not for every user of the machine
FRAME_MS = 20
OGG_BITRATE = 32000  # both channels together: speech in the wideband, about 240 kB a minute
# what writing or finishing a recording may raise (PyAV: FFmpeg's errors; a full disk is an OSError)
WRITE_ERRORS: tuple[type[Exception], ...] = (OSError, av.FFmpegError)
_WAV_HEADER = struct.Struct("<4sI4s4sIHHIIHH4sI")
_SAMPLE_BYTES = 2
_CHANNELS = 2


class RecordingWriter(Protocol):
    rate: int

    def write(self, stereo: np.ndarray) -> None:
        """Interleaved stereo int16 samples (any whole number of sample pairs)."""

    def close(self) -> None:
        """Write what is left and finish the file (idempotent)."""


def format_of(path: str | Path) -> str:
    """The format a recording's file name says (``.wav`` or ``.ogg``); ValueError otherwise."""
    suffix = Path(path).suffix.lower()
    for name, known in FORMATS.items():
        if suffix == known:
            return name
    raise ValueError(f"a recording is a .wav or an .ogg file, not {Path(path).name!r}")


def open_writer(path: str | Path, rate: int) -> RecordingWriter:
    """A new recording at ``path`` (its suffix says the format); raises OSError."""
    if format_of(path) == "ogg":
        return OggWriter(path, rate)
    return WavWriter(path, rate)


class WavWriter:
    def __init__(self, path: str | Path, rate: int) -> None:
        self.rate = rate
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        self._pending = bytearray()
        self._flush_bytes = int(rate * FLUSH_S) * _CHANNELS * _SAMPLE_BYTES
        self.data_bytes = 0  # on disk, after the header
        os.write(self._fd, self._header())

    def _header(self) -> bytes:
        block = _CHANNELS * _SAMPLE_BYTES
        return _WAV_HEADER.pack(
            b"RIFF", 36 + self.data_bytes, b"WAVE", b"fmt ", 16, 1, _CHANNELS, self.rate,
            self.rate * block, block, 8 * _SAMPLE_BYTES, b"data", self.data_bytes,
        )  # fmt: skip

    def write(self, stereo: np.ndarray) -> None:
        self._pending += stereo.astype("<i2", copy=False).tobytes()
        if len(self._pending) >= self._flush_bytes:
            self.flush()

    def flush(self) -> None:
        """The audio written so far to the kernel, and a header that counts it."""
        if self._fd < 0 or not self._pending:
            return
        os.write(self._fd, self._pending)
        self.data_bytes += len(self._pending)
        self._pending.clear()
        os.pwrite(self._fd, self._header(), 0)

    def close(self) -> None:
        if self._fd < 0:
            return
        try:
            self.flush()
        finally:
            os.close(self._fd)
            self._fd = -1


class OggWriter:
    def __init__(self, path: str | Path, rate: int) -> None:
        self.rate = rate
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE))  # our mode, not FFmpeg's
        self._container = av.open(
            str(path),
            "w",
            format="ogg",
            options={"page_duration": str(int(FLUSH_S * 1_000_000))},
            container_options={"flush_packets": "1"},
        )
        stream = self._container.add_stream("libopus", rate=rate, layout="stereo")
        stream.bit_rate = OGG_BITRATE
        stream.codec_context.options = {"application": "audio", "compression_level": "0"}
        self._stream = stream
        self._frame_samples = rate * FRAME_MS // 1000
        self._pts = 0
        self._closed = False

    def write(self, stereo: np.ndarray) -> None:
        """libopus takes 20 ms frames: the samples go 20 ms at a time."""
        step = self._frame_samples * _CHANNELS
        for start in range(0, len(stereo), step):
            self._encode(stereo[start : start + step])

    def _encode(self, stereo: np.ndarray) -> None:
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(stereo, dtype=np.int16).reshape(1, -1), format="s16", layout="stereo"
        )
        frame.sample_rate = self.rate
        frame.pts = self._pts
        self._pts += len(stereo) // _CHANNELS
        self._container.mux(self._stream.encode(frame))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._container.mux(self._stream.encode(None))
        finally:
            self._container.close()
