"""PolyphaseResampler: filter response, bit-exact chunking, one output chunk per input chunk,
a fixed delay that matches the measured one, no edge discontinuities, flush / reset, argument checks.
"""

import numpy as np
import pytest

from sipbridge.media.resample import PolyphaseResampler, lowpass

UP_DOWN = [(8000, 48000), (48000, 8000)]
ALL_RATIOS = UP_DOWN + [(16000, 48000), (48000, 16000), (8000, 16000), (16000, 8000)]
PASSBAND_HZ = [300, 1000, 2000, 3000, 3400]  # for an 8 kHz low side; scaled for 16 kHz


def sine(freq: float, rate: int, seconds: float, amplitude: float = 10000.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return np.round(amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def noise(rate: int, seconds: float, seed: int = 7) -> np.ndarray:
    pcm = np.random.default_rng(seed).normal(0, 6000, int(rate * seconds))
    return np.clip(np.round(pcm), -32768, 32767).astype(np.int16)


def chunked(res: PolyphaseResampler, pcm: np.ndarray, chunk: int) -> list[np.ndarray]:
    return [res.process(pcm[i : i + chunk]) for i in range(0, len(pcm), chunk)]


def rms(pcm: np.ndarray) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))


def gain_db(freq: float, in_rate: int, out_rate: int, amplitude: float = 10000.0) -> float:
    """Steady-state level of a tone through the resampler, relative to its input level."""
    pcm = sine(freq, in_rate, 1.0, amplitude)
    out = np.concatenate(chunked(PolyphaseResampler(in_rate, out_rate), pcm, in_rate // 50))
    return 20 * np.log10(max(rms(out[out_rate // 10 :]), 1e-3) / rms(pcm))


def response_db(taps: np.ndarray, rate: int, freqs: np.ndarray) -> np.ndarray:
    n = np.arange(len(taps))
    return 20 * np.log10(np.abs(np.exp(-2j * np.pi * np.outer(freqs, n) / rate) @ taps))


# --- polyphase: filter design ---


@pytest.mark.parametrize(("ratio", "low_rate"), [(6, 8000), (3, 16000), (2, 8000)])
def test_filter_design_meets_the_telephone_band_spec(ratio, low_rate):
    taps, nyquist = lowpass(ratio, low_rate), low_rate / 2
    assert len(taps) == 42 * ratio + 1
    assert np.array_equal(taps, taps[::-1])  # linear phase
    passband = response_db(taps, ratio * low_rate, np.linspace(0, 0.85 * nyquist, 200))
    stopband = response_db(taps, ratio * low_rate, np.linspace(nyquist, ratio * nyquist, 8000))
    assert response_db(taps, ratio * low_rate, np.array([1000.0]))[0] == pytest.approx(0, abs=1e-9)
    assert np.abs(passband).max() <= 0.45
    assert stopband.max() <= -60


@pytest.mark.parametrize(("in_rate", "out_rate"), ALL_RATIOS)
def test_passband_is_flat_through_the_resampler(in_rate, out_rate):
    scale = min(in_rate, out_rate) / 8000
    gains = [gain_db(f * scale, in_rate, out_rate) for f in PASSBAND_HZ]
    assert max(abs(g) for g in gains) <= 0.5
    assert abs(gains[1]) <= 0.01  # unity at 1 kHz


@pytest.mark.parametrize("freq", [5000, 7000, 10000, 15000])
def test_downsampling_rejects_aliases(freq):
    assert gain_db(freq, 48000, 8000, amplitude=20000) <= -55


@pytest.mark.parametrize("freq", [1000, 3000, 3400])
def test_upsampling_rejects_images(freq):
    out = np.concatenate(chunked(PolyphaseResampler(8000, 48000), sine(freq, 8000, 1.2), 160))[4800:]
    power = np.abs(np.fft.rfft(out * np.hanning(len(out)))) ** 2
    above = np.fft.rfftfreq(len(out), 1 / 48000) > 4000
    assert 10 * np.log10(power[above].sum() / power.sum()) <= -60


# --- polyphase: streaming ---


@pytest.mark.parametrize("chunk_ms", [20, 0.125, 7.5, 41.625])
@pytest.mark.parametrize(("in_rate", "out_rate"), ALL_RATIOS)
def test_chunked_is_bit_exact_with_one_shot(in_rate, out_rate, chunk_ms):
    pcm = np.concatenate([noise(in_rate, 0.5), sine(1000, in_rate, 0.5, 32767)])
    whole = PolyphaseResampler(in_rate, out_rate)
    one_shot = np.concatenate([whole.process(pcm), whole.flush()])
    streamed = PolyphaseResampler(in_rate, out_rate)
    got = np.concatenate(chunked(streamed, pcm, int(in_rate * chunk_ms / 1000)) + [streamed.flush()])
    assert len(one_shot) == len(pcm) * out_rate // in_rate + whole.delay_samples
    assert np.array_equal(got, one_shot)


@pytest.mark.parametrize(("in_rate", "out_rate"), ALL_RATIOS)
def test_every_20ms_chunk_returns_20ms_at_once(in_rate, out_rate):
    res = PolyphaseResampler(in_rate, out_rate)
    sizes = {len(piece) for piece in chunked(res, noise(in_rate, 0.5), in_rate // 50)}
    assert sizes == {out_rate // 50}  # from the first chunk on: 160 -> 960, 960 -> 160


def test_downsampler_returns_each_output_once_its_input_is_complete():
    res = PolyphaseResampler(48000, 8000)
    sizes = [len(res.process(np.ones(1, np.int16))) for _ in range(12)]
    assert sizes == [1, 0, 0, 0, 0, 0] * 2


@pytest.mark.parametrize(
    ("in_rate", "out_rate", "samples", "ms"),
    [
        (8000, 48000, 126, 2.625),
        (48000, 8000, 21, 2.625),
        (16000, 48000, 63, 1.3125),
        (48000, 16000, 21, 1.3125),
    ],
)
def test_delay_is_the_fixed_group_delay(in_rate, out_rate, samples, ms):
    res = PolyphaseResampler(in_rate, out_rate)
    assert (res.delay_samples, res.delay_ms) == (samples, ms)
    res.process(noise(in_rate, 0.1))
    assert (res.delay_samples, res.delay_ms) == (samples, ms)


def test_impulse_comes_out_after_the_delay():
    res, pcm = PolyphaseResampler(8000, 48000), np.zeros(800, np.int16)
    pcm[100] = 20000
    out = np.concatenate(chunked(res, pcm, 160))
    peak = 100 * 6 + res.delay_samples
    assert np.argmax(out) == peak
    assert np.array_equal(out[peak - 126 : peak], out[peak + 126 : peak : -1])  # linear phase: symmetric


@pytest.mark.parametrize(("in_rate", "out_rate"), ALL_RATIOS)
def test_measured_delay_of_a_chirp_equals_delay_samples(in_rate, out_rate):
    def chirp(rate: int) -> np.ndarray:
        t = np.arange(rate // 4) / rate  # 250 ms sweep over the passband
        low_side = min(in_rate, out_rate) / 8000
        return 10000 * np.sin(2 * np.pi * low_side * (300 * t + 6200 * t**2))

    res = PolyphaseResampler(in_rate, out_rate)
    pcm = np.round(np.pad(chirp(in_rate), (0, in_rate // 10))).astype(np.int16)
    out = np.concatenate(chunked(res, pcm, in_rate // 50)).astype(np.float64)
    lag = np.argmax(np.correlate(out, chirp(out_rate), "full")) - (out_rate // 4 - 1)
    assert lag == res.delay_samples


# --- streaming ---


@pytest.mark.parametrize(("in_rate", "out_rate"), UP_DOWN)
def test_no_discontinuity_at_chunk_edges(in_rate, out_rate):
    res = PolyphaseResampler(in_rate, out_rate)
    pieces = chunked(res, sine(440, in_rate, 2.0), in_rate // 50)
    out = np.concatenate(pieces).astype(np.float64)
    edges = np.cumsum([len(p) for p in pieces if len(p)])[:-1]
    second_diff = np.abs(np.diff(out, 2))
    # second_diff[k] is centred on sample k + 1; look at the two centred on each side of an edge.
    at_edges = np.concatenate([second_diff[edges - 2], second_diff[edges - 1]])
    interior = np.delete(second_diff, np.concatenate([edges - 2, edges - 1]))
    assert len(edges) > 3
    assert at_edges.max() <= interior.max() + 2


def test_polyphase_flush_returns_the_delayed_tail_and_allows_reuse():
    res = PolyphaseResampler(48000, 8000)
    pcm = sine(1000, 48000, 0.1)
    first = np.concatenate([res.process(pcm), res.flush()])
    second = np.concatenate([res.process(pcm), res.flush()])
    assert len(first) == 800 + res.delay_samples
    assert np.array_equal(first, second)
    assert np.abs(first[-res.delay_samples :]).max() > 1000  # the end of the tone, not silence


@pytest.mark.parametrize(("in_rate", "out_rate"), UP_DOWN)
def test_polyphase_reset_forgets_the_history(in_rate, out_rate):
    used, fresh = PolyphaseResampler(in_rate, out_rate), PolyphaseResampler(in_rate, out_rate)
    used.process(sine(1000, in_rate, 0.05)[:-1])
    used.reset()
    pcm = noise(in_rate, 0.1)
    assert np.array_equal(used.process(pcm), fresh.process(pcm))


def test_empty_input():
    res = PolyphaseResampler(8000, 48000)
    out = res.process(np.zeros(0, dtype=np.int16))
    assert len(out) == 0 and out.dtype == np.int16


@pytest.mark.parametrize("bad", [np.zeros(160, np.float32), np.zeros((1, 160), np.int16), [0] * 160])
def test_rejects_non_mono_int16(bad):
    with pytest.raises(TypeError):
        PolyphaseResampler(8000, 48000).process(bad)


@pytest.mark.parametrize(("in_rate", "out_rate"), [(44100, 48000), (48000, 44100), (8000, 12000), (8000, 0)])
def test_polyphase_rejects_non_integer_ratios(in_rate, out_rate):
    with pytest.raises(ValueError, match="integer multiple"):
        PolyphaseResampler(in_rate, out_rate)


def test_edge_check_detects_stateless_chunking():
    # Control: resampling each chunk on its own (no state) must fail the edge criterion above.
    pcm = sine(440, 8000, 2.0)
    pieces = [PolyphaseResampler(8000, 48000).process(pcm[i : i + 160]) for i in range(0, len(pcm), 160)]
    out = np.concatenate(pieces).astype(np.float64)
    edges = np.cumsum([len(p) for p in pieces])[:-1]
    second_diff = np.abs(np.diff(out, 2))
    assert (
        second_diff[edges - 1].max()
        > 2 * np.delete(second_diff, np.concatenate([edges - 2, edges - 1])).max()
    )
