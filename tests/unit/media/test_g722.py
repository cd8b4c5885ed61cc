"""G.722 through FFmpeg's codec: 20 ms frames in and out, the wideband survives, bad input is refused."""

from __future__ import annotations

import numpy as np
import pytest

from sipbridge.media.g722 import FRAME_BYTES, FRAME_SAMPLES, PCM_RATE, G722Decoder, G722Encoder, G722Error


def _tones(seconds: float = 1.0) -> np.ndarray:
    """1 kHz (telephone band) plus 5.5 kHz (wideband only: gone at 8 kHz sampling)."""
    t = np.arange(int(PCM_RATE * seconds)) / PCM_RATE
    return (np.sin(2 * np.pi * 1000 * t) * 6000 + np.sin(2 * np.pi * 5500 * t) * 4000).astype(np.int16)


def _round_trip(pcm: np.ndarray) -> np.ndarray:
    encoder, decoder = G722Encoder(), G722Decoder()
    out = []
    for start in range(0, len(pcm), FRAME_SAMPLES):
        payload = encoder.encode(pcm[start : start + FRAME_SAMPLES])
        assert len(payload) == FRAME_BYTES
        out.append(decoder.decode(payload))
    return np.concatenate(out)


def _band_energy(x: np.ndarray, low: float, high: float) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / PCM_RATE)
    return float(spectrum[(freqs >= low) & (freqs < high)].sum())


def test_a_round_trip_keeps_the_waveform_and_the_band_above_4_khz() -> None:
    sent = _tones()
    got = _round_trip(sent)
    assert got.dtype == np.int16 and len(got) == len(sent)
    # the codec's QMF filters delay the signal by a few samples: find the lag, then compare
    window = sent[2000:10000].astype(np.float64)
    lags = range(0, 40)
    scores = [np.dot(got[2000 + lag : 10000 + lag], window) for lag in lags]
    lag = lags[int(np.argmax(scores))]
    back = got[2000 + lag : 10000 + lag].astype(np.float64)
    correlation = np.dot(back, window) / np.sqrt(np.dot(back, back) * np.dot(window, window))
    assert correlation > 0.95, (lag, correlation)
    # the 5.5 kHz tone (beyond G.711's 4 kHz) is there, as loud as sent within 3 dB
    ratio = _band_energy(back, 4000, 7000) / _band_energy(window, 4000, 7000)
    assert 0.5 < ratio < 2.0, ratio


def test_packets_of_other_durations_decode_to_their_length() -> None:
    encoder, decoder = G722Encoder(), G722Decoder()
    payload = encoder.encode(_tones(0.02))
    assert len(decoder.decode(payload[:80])) == 160  # 10 ms
    assert len(decoder.decode(payload + payload)) == 2 * FRAME_SAMPLES  # 40 ms
    assert len(decoder.decode(b"")) == 0


@pytest.mark.parametrize("samples", [0, 160, 319, 640])
def test_a_frame_of_the_wrong_size_is_refused(samples: int) -> None:
    with pytest.raises(G722Error, match="320 samples"):
        G722Encoder().encode(np.zeros(samples, dtype=np.int16))
