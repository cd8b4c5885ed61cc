"""How much of the caller's speech reaches the agent above the telephone band: a measuring agent's
meter (the reference agent keeps one per session, shown on ``GET /sessions``).

The energy of the audio between 4 and 7 kHz against that between 300 Hz and 3.4 kHz, over the whole
call, in dB: speech through G.711 has next to nothing above 4 kHz (below -40 dB), wideband speech
keeps its fricatives there (espeak-ng's voice: about -20 dB).
"""

from __future__ import annotations

import math

import numpy as np

LOW_BAND = (300.0, 3400.0)
HIGH_BAND = (4000.0, 7000.0)


class BandMeter:
    def __init__(self, rate: int = 48000, frame: int = 960) -> None:
        self.rate, self.frame = rate, frame
        freqs = np.fft.rfftfreq(frame, 1 / rate)
        self._low = (freqs >= LOW_BAND[0]) & (freqs < LOW_BAND[1])
        self._high = (freqs >= HIGH_BAND[0]) & (freqs < HIGH_BAND[1])
        self._window = np.hanning(frame)
        self.low_energy = 0.0
        self.high_energy = 0.0

    def add(self, pcm: np.ndarray) -> None:
        """Mono int16 audio at ``rate``; whole frames are measured, a partial one is not."""
        for start in range(0, len(pcm) - self.frame + 1, self.frame):
            power = np.abs(np.fft.rfft(pcm[start : start + self.frame] * self._window)) ** 2
            self.low_energy += float(power[self._low].sum())
            self.high_energy += float(power[self._high].sum())

    @property
    def high_band_db(self) -> float | None:
        """The 4-7 kHz energy against the 0.3-3.4 kHz energy in dB; None before any speech."""
        if self.low_energy <= 0:
            return None
        return round(10 * math.log10(max(self.high_energy, 1e-12) / self.low_energy), 1)
