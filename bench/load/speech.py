"""The caller's audio: espeak-ng speech as 20 ms G.711 μ-law frames, and μ-law to linear in numpy."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from testbed import audio

FRAME_BYTES = 160  # 20 ms of 8 kHz μ-law
RATE = 8000

# About 11 s of speech with the usual pauses between words and sentences. Longer than the widest lag
# the analysis searches (bench.load.echo.MAX_RTT_S), so a repeat of the loop can never be taken for an echo.
TEXT = (
    "Thank you for calling. Please tell me the number of your account, then the reason for your call. "
    "Seven, four, one, nine, two. The quick brown fox jumps over the lazy dog, "
    "and a journey of a thousand miles begins with a single step."
)


def _ulaw_table() -> np.ndarray:
    """The 256 G.711 μ-law code words decoded to linear 16-bit values (ITU-T G.711, as in sox)."""
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (u >> 4) & 0x07
    magnitude = ((((u & 0x0F) << 3) + 0x84) << exponent) - 0x84
    return np.where(u & 0x80, -magnitude, magnitude).astype(np.float32)


ULAW_TO_LINEAR = _ulaw_table()


def ulaw_to_float(data: bytes | bytearray | np.ndarray) -> np.ndarray:
    """μ-law bytes to float32 samples in [-1, 1]."""
    codes = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data
    return ULAW_TO_LINEAR[codes] / 32768.0


@dataclass(frozen=True)
class Speech:
    """The looped caller audio: `frames[i]` is the i-th 20 ms μ-law payload; `linear` all of it."""

    frames: list[bytes]
    linear: np.ndarray

    @property
    def count(self) -> int:
        return len(self.frames)

    @property
    def seconds(self) -> float:
        return self.count * FRAME_BYTES / RATE


def make(folder: Path) -> Speech:
    """Speak TEXT with espeak-ng (deterministic), as whole 20 ms μ-law frames."""
    wav = audio.make_speech(TEXT, folder / "speech.wav", rate=RATE, pad_seconds=0.2)
    raw = audio.wav_to_ulaw_raw(wav, folder / "speech.ul").read_bytes()
    raw = raw[: len(raw) - len(raw) % FRAME_BYTES]
    frames = [raw[i : i + FRAME_BYTES] for i in range(0, len(raw), FRAME_BYTES)]
    return Speech(frames, ulaw_to_float(raw))
