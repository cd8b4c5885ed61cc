"""Packet loss concealment for G.711 at 8 kHz (and G.722 at 16 kHz), after ITU-T G.711 Appendix I,
on linear PCM.

``Concealer.good(pcm)`` is given every frame that arrived (decoded to int16) and returns it, changed
only at its start when it ends a loss; ``Concealer.lost()`` returns a frame to play in place of a
missing one; ``Concealer.splice(pcm)`` is for a good frame that does not continue the one before it
(the jitter buffer dropped frames to shrink its delay): its start is blended from the previous
frame's pitch-repeated continuation, as after a loss, so the cut does not click. Like Appendix I:

- a history of the last 48.75 ms (390 samples) is kept;
- at the first lost frame the pitch period is found in 40-120 samples (200-66 Hz; a higher voice is
  repeated two or three periods at a time) by normalised cross-correlation of the last 20 ms with the
  history before it;
- the gap is filled by repeating the last pitch period for the first 10 ms, the last two periods for
  the next 10 ms, the last three periods after that, each pitch buffer's end overlap-added (1/4 of a
  period) with the samples before its start so that it loops without a click, and the switch from
  one buffer to the next overlap-added too;
- the signal is attenuated by 20 % per 10 ms from 10 ms into the loss, and silent after 60 ms;
- the first good frame after a loss starts with an overlap-add from the concealed signal continued:
  1/4 of a period plus 4 ms per 10 ms lost past the first 10 ms, at most 10 ms.

Appendix I delays its output by 3.75 ms so that it can overlap-add the real signal's last quarter
period with the synthetic one. This adds no delay instead: the first quarter period of the synthetic
signal is corrected by the real signal's last deviation from the period it repeats, fading out,
which joins the last real sample without a step. Everything is vectorised: the whole 60 ms of
concealment is built at the first lost frame with a few numpy index operations, no Python loop runs
per sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, cached_property

import numpy as np

RATE = 8000
PITCH_MIN = 40  # 200 Hz
PITCH_MAX = 120  # 66.7 Hz
CORR_LEN = 160  # 20 ms compared with the history one period earlier
HISTORY = 3 * PITCH_MAX + PITCH_MAX // 4  # 390 samples, 48.75 ms
BLOCK = 80  # 10 ms: the period count and the attenuation change per block
CONCEAL_BLOCKS = 6  # 60 ms, then silence
END_OLA_STEP = 32  # the final overlap-add grows 4 ms per extra 10 ms lost ...
END_OLA_MAX = 80  # ... up to 10 ms
SPLICE_MIN = 40  # a splice blends at least 5 ms
_SYNTH = CONCEAL_BLOCKS * BLOCK  # 480 samples

# Per block, in periods: where its pitch buffer starts in the bank of buffers, and its length.
_STARTS = (0, 1, 3, 3, 3, 3)
_LENGTHS = (1, 2, 3, 3, 3, 3)


@dataclass(frozen=True)
class Geometry:
    """The sample counts above at one sample rate (8 kHz: as named; 16 kHz: each doubled, so the
    same durations and pitch range in Hz)."""

    rate: int
    pitch_min: int
    pitch_max: int
    corr_len: int
    history: int
    block: int
    end_ola_step: int
    end_ola_max: int
    splice_min: int

    @property
    def synth(self) -> int:
        return CONCEAL_BLOCKS * self.block

    @cached_property
    def gain(self) -> np.ndarray:
        """1 for the first 10 ms, then down 20 % per 10 ms (linearly, per sample) to 0 at 60 ms."""
        ramp = np.maximum(np.arange(self.synth) - self.block + 1, 0) * (0.2 / self.block)
        return np.clip(1.0 - ramp, 0.0, 1.0).astype(np.float32)

    @cached_property
    def block_index(self) -> np.ndarray:
        return np.arange(self.block)


@cache
def geometry(rate: int) -> Geometry:
    if rate % RATE or not RATE <= rate <= 48000:
        raise ValueError(f"concealment runs at 8000 Hz or a multiple up to 48000, not {rate}")
    k = rate // RATE
    return Geometry(
        rate, PITCH_MIN * k, PITCH_MAX * k, CORR_LEN * k, HISTORY * k, BLOCK * k, END_OLA_STEP * k,
        END_OLA_MAX * k, SPLICE_MIN * k,
    )  # fmt: skip


class Concealer:
    """G.711 Appendix I style concealment for one mono stream of int16 frames at ``rate``."""

    def __init__(self, frame_samples: int = 160, rate: int = RATE) -> None:
        self.frame_samples = frame_samples
        self._g = g = geometry(rate)
        self._history = np.zeros(g.history, dtype=np.float32)
        self._synth = np.zeros(g.synth + max(frame_samples, g.end_ola_max), dtype=np.float32)
        self._lost = 0  # samples concealed in the current loss
        self.pitch = 0  # the period of the current (or last) loss, in samples
        self.concealed_frames = 0

    @property
    def concealing(self) -> bool:
        """The last frame returned was concealed."""
        return self._lost > 0

    def good(self, pcm: np.ndarray) -> np.ndarray:
        """A frame that arrived; returned as is, or blended from the concealment at its start."""
        samples = np.asarray(pcm)
        if samples.dtype != np.int16:
            raise TypeError(f"concealment needs int16 samples, got {samples.dtype}")
        if self._lost:
            samples = self._end_loss(samples)
        self._remember(samples)
        return samples

    def splice(self, pcm: np.ndarray) -> np.ndarray:
        """A good frame that follows a cut (frames were dropped before it): joined without a step."""
        if self._lost:
            return self.good(pcm)
        samples = np.asarray(pcm)
        if samples.dtype != np.int16:
            raise TypeError(f"concealment needs int16 samples, got {samples.dtype}")
        if not np.any(self._history):
            return self.good(samples)
        self._start_loss()
        length = min(max(self.pitch // 4, self._g.splice_min), len(samples))
        ramp = np.arange(1, length + 1, dtype=np.float32) / length
        out = samples.copy()
        out[:length] = _to_int16(self._synth[:length] * (1 - ramp) + samples[:length] * ramp)
        self._remember(out)
        return out

    def lost(self) -> np.ndarray:
        """A frame to play in place of a missing one."""
        n = self.frame_samples
        if self._lost == 0:
            self._start_loss()
        start = self._lost
        self._lost += n
        self.concealed_frames += 1
        if start >= self._g.synth:
            out = np.zeros(n, dtype=np.int16)
        else:
            out = _to_int16(self._synth[start : start + n])
        self._remember(out)
        return out

    def reset(self) -> None:
        """Forget the history (a new stream)."""
        self._history[:] = 0
        self._lost = 0

    def _remember(self, pcm: np.ndarray) -> None:
        n = len(pcm)
        if n >= self._g.history:
            self._history[:] = pcm[-self._g.history :]
        else:
            self._history[:-n] = self._history[n:]
            self._history[-n:] = pcm

    def _start_loss(self) -> None:
        """Build the whole concealment (60 ms, then the zeros after it) from the history."""
        h = self._history
        synth = self._synth
        synth[:] = 0
        if not np.any(h):
            self.pitch = self._g.pitch_min
            return
        p = self.pitch = find_pitch(h, self._g)
        q = p // 4
        ramp = np.arange(1, q + 1, dtype=np.float32) / q  # the overlap-add weights of the new signal
        # Pitch buffers of 1, 2 and 3 periods side by side, each ending like the history, its last
        # quarter period blended into the samples before its start so that it loops smoothly.
        bank = np.concatenate((h[-p:], h[-2 * p :], h[-3 * p :]))
        fade_out = h[-q:] * (1 - ramp)
        for periods, end in ((1, p), (2, 3 * p), (3, 6 * p)):
            bank[end - q : end] = fade_out + h[-periods * p - q : -periods * p] * ramp
        # Where each 10 ms block reads: one more period for the second and third blocks, at the same
        # phase one period further back; the buffers loop.
        starts = [periods * p for periods in _STARTS]
        lengths = [periods * p for periods in _LENGTHS]
        offsets, tails = [], []
        offset = 0
        for block in range(CONCEAL_BLOCKS):
            if 0 < block <= 2:
                tails.append(starts[block - 1] + (offset + self._g.block_index[:q]) % lengths[block - 1])
                offset %= p
            offsets.append(offset)
            offset = (offset + self._g.block) % lengths[block]
        column = np.array([starts, offsets, lengths])[:, :, None]
        where = column[0] + (column[1] + self._g.block_index) % column[2]
        synth[: self._g.synth] = bank[where.ravel()]
        for block, tail in ((1, tails[0]), (2, tails[1])):  # blend the switch to more periods
            at = block * self._g.block
            synth[at : at + q] = bank[tail] * (1 - ramp) + synth[at : at + q] * ramp
        # Join the last real sample: where it is off the period just repeated, take that offset
        # from the first quarter period, fading (nothing to do for an exactly periodic signal).
        synth[:q] += (h[-1] - h[-1 - p]) * (1 - ramp)
        synth[: self._g.synth] *= self._g.gain

    def _end_loss(self, pcm: np.ndarray) -> np.ndarray:
        """Overlap-add the concealment, continued, into the start of the first good frame."""
        blocks = -(-self._lost // self._g.block)
        length = min(self.pitch // 4 + (blocks - 1) * self._g.end_ola_step, self._g.end_ola_max, len(pcm))
        start = self._lost
        self._lost = 0
        if start >= self._g.synth:
            continued = np.zeros(length, dtype=np.float32)
        else:
            continued = self._synth[start : start + length]
        ramp = np.arange(1, length + 1, dtype=np.float32) / length
        out = pcm.copy()
        out[:length] = _to_int16(continued * (1 - ramp) + pcm[:length] * ramp)
        return out


def find_pitch(history: np.ndarray, g: Geometry | None = None) -> int:
    """The lag in pitch_min..pitch_max at which the last corr_len samples best match the history."""
    g = g or geometry(RATE)
    template = history[-g.corr_len :]
    # corr[j] and energy[j]: the corr_len samples starting pitch_max - j before the template.
    earlier = history[-g.corr_len - g.pitch_max : len(history) - g.pitch_min]
    corr = np.correlate(earlier, template, mode="valid")
    squares = np.concatenate(([0.0], np.cumsum(earlier.astype(np.float64) ** 2)))
    energy = squares[g.corr_len :] - squares[: -g.corr_len]
    score = np.where(corr > 0, corr / np.sqrt(energy + 1e-3), 0.0)
    # Scan from the shortest lag so that, among equal scores, one period wins over two.
    return g.pitch_min + int(np.argmax(score[::-1]))


def _to_int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)
