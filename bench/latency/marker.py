"""The marked signal of the latency benchmark, and the detector that finds its onset.

A marker is a 60 ms burst of a 1 kHz tone at 8 kHz that starts at full amplitude (cosine phase) out
of digital silence, so its onset is a step: the first sample of the burst. The detector is fed the
stream frame by frame (any codec decoded to 8 kHz int16) and reports the sample of the frame where
``|x|`` first reaches THRESHOLD after at least QUIET_FRAMES quiet frames; on the clean signal that is
exactly the onset (``python -m bench.latency`` checks it on everything the phone sends). Through
Opus the step is smeared by the codec's own delay; ``codec_shift`` measures that offline.

Times follow one convention at both ends: sample ``i`` of a frame sent (or received) at time ``t``
happens at ``t + i / 8000``, so an onset's time is its packet's time plus its offset in the frame.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

RATE = 8000
FRAME = 160  # samples per 20 ms frame
FRAME_NS = 20_000_000
TONE_HZ = 1000
AMPLITUDE = 12000
BURST_FRAMES = 3
THRESHOLD = AMPLITUDE * 0.3
QUIET_FRAMES = 5  # the detector re-arms after 100 ms below THRESHOLD / 4


def onset_offset(index: int) -> int:
    """Where marker ``index`` starts in its first frame: spread over the frame, not always sample 0."""
    return (index * 37) % FRAME


def burst_frames(offset: int) -> list[np.ndarray]:
    """The frames (int16, FRAME samples each) of a marker whose onset is at ``offset`` in the first."""
    total = np.zeros((BURST_FRAMES + 1) * FRAME, dtype=np.float64)
    n = BURST_FRAMES * FRAME
    total[offset : offset + n] = AMPLITUDE * np.cos(2 * np.pi * TONE_HZ * np.arange(n) / RATE)
    pcm = total.astype(np.int16)
    return [pcm[i * FRAME : (i + 1) * FRAME] for i in range(BURST_FRAMES + 1)]


class OnsetDetector:
    """Feed 8 kHz frames in order; ``feed`` returns the onset's sample in the frame, or None."""

    def __init__(self) -> None:
        self._quiet = QUIET_FRAMES

    def feed(self, pcm: np.ndarray) -> int | None:
        loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) >= THRESHOLD)
        found = int(loud[0]) if len(loud) and self._quiet >= QUIET_FRAMES else None
        if np.max(np.abs(pcm.astype(np.int32)), initial=0) >= THRESHOLD / 4:
            self._quiet = 0
        else:
            self._quiet += 1
        return found


def codec_shift(frames: list[np.ndarray], through: Callable[[np.ndarray], np.ndarray]) -> list[int]:
    """Onsets (absolute sample numbers) the detector finds in ``frames`` after ``through(frame)``.

    ``through`` maps one 8 kHz frame to the 8 kHz frame that comes out (an offline codec chain).
    """
    detector = OnsetDetector()
    found: list[int] = []
    for k, frame in enumerate(frames):
        at = detector.feed(through(frame))
        if at is not None:
            found.append(k * FRAME + at)
    return found
