"""Streaming mono int16 resampling: a low-latency polyphase FIR.

``PolyphaseResampler(in_rate, out_rate)`` keeps its state across calls, so a
stream can be fed in chunks of any length (20 ms RTP payloads, Opus frames) with
no clicks at chunk edges. Integer ratios only (8k <-> 48k, 16k <-> 48k,
8k <-> 16k, ...). Every chunk returns its output at once: 160 samples in at
8 kHz give exactly 960 out at 48 kHz, 960 in give 160
out (for the downsampler: whenever the chunk length is a multiple of the ratio),
from the first chunk on. The only delay is the filter's fixed group delay,
``delay_samples`` output samples (2.625 ms at the 8 kHz side, 1.3 ms at 16 kHz):
the output is not shifted back, its first ``delay_samples`` are the filter
filling up and ``flush`` returns the last ones. Deterministic (no dither):
chunked output is bit-identical to one-shot output.

Filter: one linear-phase lowpass at the high rate, a Kaiser-windowed sinc
(beta 5.9) of ``2 * HALF_TAPS * ratio + 1`` taps (253 for a ratio of 6), cut
off (-6 dB) at 0.91 of the low rate's Nyquist frequency (3.64 kHz for 8 kHz),
unity gain at 1 kHz (times the ratio inside the upsampler). Design response,
for the 8 kHz side (all ratios are within 0.1 dB of this):

    passband   300 Hz - 3.4 kHz within -0.39 / +0.0 dB of the 1 kHz gain
    stopband   >= 62 dB down from 4 kHz up (images when upsampling, aliases
               when downsampling)
    delay      HALF_TAPS = 21 samples at the low rate: 126 samples at 48 kHz

Upsampling by L runs L sub-filters of 43 taps on the low-rate input and
interleaves their outputs; downsampling by M evaluates the full filter at every
M-th input position only. The arithmetic is exact: coefficients are rounded to
multiples of 2**-30 (error < 1e-9, far below int16 resolution), so with int16
input every product and partial sum is an exact float64, whatever order BLAS
adds them in. The result is then rounded to nearest and clipped to int16.
"""

from __future__ import annotations

from functools import cache

import numpy as np

HALF_TAPS = 21
"""Half the filter length (and its group delay), in samples at the low rate."""
CUTOFF = 0.91
"""The -6 dB point as a fraction of the low rate's Nyquist frequency."""
KAISER_BETA = 5.9
_UNITY_HZ = 1000.0
_COEF_STEP = 2.0**-30
_EMPTY = np.zeros(0, dtype=np.int16)


def lowpass(ratio: int, low_rate: int) -> np.ndarray:
    """Linear-phase lowpass at ``ratio * low_rate``: ``2 * HALF_TAPS * ratio + 1`` taps, unity at 1 kHz."""
    n = np.arange(-HALF_TAPS * ratio, HALF_TAPS * ratio + 1)
    taps = np.sinc(CUTOFF * n / ratio) * np.kaiser(len(n), KAISER_BETA)
    at_unity = np.exp(-2j * np.pi * _UNITY_HZ / (ratio * low_rate) * n) @ taps
    return taps / abs(at_unity)


@cache
def _filter_bank(up: int, down: int, low_rate: int) -> np.ndarray:
    """Coefficients as a (window, up) matrix: a window of input times it gives ``up`` outputs."""
    ratio = max(up, down)
    taps = lowpass(ratio, low_rate) * up
    taps = np.round(taps / _COEF_STEP) * _COEF_STEP  # exact products and sums, see the module doc
    width = -(-len(taps) // up)  # per sub-filter; zero-padded to a multiple of ``up``
    phases = np.pad(taps, (0, width * up - len(taps))).reshape(width, up)
    bank = np.ascontiguousarray(phases[::-1])  # windows run oldest -> newest
    bank.flags.writeable = False
    return bank


def integer_ratio(in_rate: int, out_rate: int) -> tuple[int, int]:
    """``(up, down)`` with one of them 1; ValueError unless one rate is a multiple of the other."""
    low, high = sorted((in_rate, out_rate))
    if low <= 0 or high % low:
        raise ValueError(
            f"the polyphase resampler needs one rate to be an integer multiple of the other, "
            f"got {in_rate} -> {out_rate} Hz"
        )
    return (high // low, 1) if out_rate >= in_rate else (1, high // low)


class PolyphaseResampler:
    """Integer-ratio streaming FIR resampler: output for every chunk at once, fixed delay."""

    __slots__ = ("in_rate", "out_rate", "up", "down", "delay_samples", "_bank", "_buf", "_held")

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self.up, self.down = integer_ratio(in_rate, out_rate)
        self._bank = _filter_bank(self.up, self.down, min(in_rate, out_rate))
        self.delay_samples = HALF_TAPS * self.up  # group delay, output samples
        self._buf = np.zeros(len(self._bank) - 1 + in_rate // 25, dtype=np.float64)
        self._held = len(self._bank) - 1

    @property
    def delay_ms(self) -> float:
        """``delay_samples`` in milliseconds."""
        return self.delay_samples * 1000.0 / self.out_rate

    def process(self, pcm: np.ndarray) -> np.ndarray:
        """Resample the next chunk (1-D int16); returns all the output it completes."""
        end = self._append(_check_mono_int16(pcm))
        width = len(self._bank)
        count = (end - width) // self.down + 1  # windows ending at the next output positions
        if count <= 0:
            self._held = end
            return _EMPTY.copy()
        out = np.matmul(self._windows(count, width), self._bank).ravel()
        self._keep_from(count * self.down, end)
        return _to_int16(out)

    def flush(self) -> np.ndarray:
        """Return the last ``delay_samples`` of output (the filter's tail) and reset."""
        tail = self.process(np.zeros(HALF_TAPS * self.down, dtype=np.int16))
        self.reset()
        return tail

    def reset(self) -> None:
        """Forget the input history, as for a new stream (e.g. on barge-in)."""
        self._held = len(self._bank) - 1
        self._buf[: self._held] = 0.0

    def _windows(self, count: int, width: int) -> np.ndarray:
        """Row k: the ``width`` inputs ending at output position k (a copy, so BLAS can run on it)."""
        step = self._buf.itemsize
        # = sliding_window_view(buf, width)[::down][:count], without its per-call overhead
        view = np.ndarray((count, width), self._buf.dtype, self._buf, 0, (step * self.down, step))
        return np.ascontiguousarray(view)

    def _append(self, pcm: np.ndarray) -> int:
        end = self._held + len(pcm)
        if end > len(self._buf):
            self._buf = np.concatenate([self._buf[: self._held], np.zeros(end, dtype=np.float64)])
        self._buf[self._held : end] = pcm
        return end

    def _keep_from(self, start: int, end: int) -> None:
        self._held = end - start
        self._buf[: self._held] = self._buf[start:end]


def _to_int16(out: np.ndarray) -> np.ndarray:
    np.rint(out, out=out)
    np.maximum(out, -32768.0, out=out)  # the ufuncs: np.clip costs several us more per call
    np.minimum(out, 32767.0, out=out)
    return out.astype(np.int16)


def _check_mono_int16(pcm: np.ndarray) -> np.ndarray:
    if type(pcm) is not np.ndarray or pcm.dtype != np.int16 or pcm.ndim != 1:
        raise TypeError("expected a 1-D numpy int16 array")
    return pcm
