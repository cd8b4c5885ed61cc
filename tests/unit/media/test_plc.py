"""G.711 Appendix I style concealment: periodic signals continue, fade out by 60 ms, never click."""

import time

import numpy as np
import pytest

from sipbridge.media.plc import HISTORY, Concealer, find_pitch

RATE = 8000
N = 160


def tone(freq, seconds, amplitude=8000.0, phase=0.3):
    t = np.arange(int(seconds * RATE)) / RATE
    return np.round(amplitude * np.sin(2 * np.pi * freq * t + phase)).astype(np.int16)


def vowel(f0=118.0, seconds=1.0, formants=(730, 1090, 2440), amplitude=9000.0):
    """Harmonics of f0 shaped by three formant resonances: a synthetic /a/, period 67.8 samples."""
    t = np.arange(int(seconds * RATE)) / RATE
    x = np.zeros_like(t)
    for k in range(1, int(3800 / f0)):
        f = k * f0
        gain = sum(1 / np.hypot(1, (f - fc) / 90) for fc in formants) / k**0.5
        x += gain * np.sin(2 * np.pi * f * t + 0.7 * k)
    return np.round(amplitude * x / np.abs(x).max()).astype(np.int16)


def frames(signal):
    return [signal[i : i + N] for i in range(0, len(signal) - N + 1, N)]


def feed(concealer, signal, good_frames):
    """Play the first ``good_frames`` frames of ``signal``; returns them (as returned)."""
    return [concealer.good(f) for f in frames(signal)[:good_frames]]


def correlation(a, b):
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def max_step(x):
    return int(np.abs(np.diff(x.astype(np.int32))).max())


@pytest.mark.parametrize(
    ("signal", "min_corr"),
    [(tone(200, 1.0), 0.99), (tone(310, 1.0), 0.95), (vowel(), 0.9), (vowel(f0=205.0), 0.9)],
    ids=["200Hz", "310Hz", "vowel-118Hz", "vowel-205Hz"],
)
def test_the_first_concealed_frame_continues_a_periodic_signal(signal, min_corr):
    plc = Concealer()
    feed(plc, signal, 10)
    concealed = plc.lost()
    truth = frames(signal)[10]
    assert concealed.dtype == np.int16 and len(concealed) == N
    assert correlation(concealed, truth) >= min_corr
    assert abs(np.std(concealed) / np.std(truth) - 1) < 0.25  # the first 10 ms are not attenuated


def test_the_pitch_found_is_the_period_or_a_multiple_of_it():
    assert find_pitch(tone(200, 0.05).astype(np.float32)[-HISTORY:]) == 40
    assert find_pitch(vowel().astype(np.float32)[-HISTORY:]) in (67, 68, 69)
    assert find_pitch(vowel(f0=300.0).astype(np.float32)[-HISTORY:]) in (53, 80, 107)


def test_energy_decays_and_is_silent_after_60ms():
    plc = Concealer()
    signal = vowel()
    feed(plc, signal, 10)
    out = np.concatenate([plc.lost() for _ in range(5)]).astype(np.float64)
    rms = [np.sqrt(np.mean(out[i : i + 80] ** 2)) for i in range(0, len(out), 80)]  # per 10 ms
    truth = np.sqrt(np.mean(frames(signal)[9].astype(np.float64) ** 2))
    assert rms[0] > 0.7 * truth
    assert all(later < earlier for earlier, later in zip(rms[1:6], rms[2:6], strict=False))
    assert rms[5] < 0.25 * truth
    assert not out[480:].any()  # silence from 60 ms on
    assert plc.concealed_frames == 5 and plc.concealing


@pytest.mark.parametrize("lost_frames", [1, 2, 3, 5])
@pytest.mark.parametrize("signal", [tone(200, 1.0), vowel()], ids=["200Hz", "vowel"])
def test_no_click_into_the_loss_between_frames_or_out_of_it(signal, lost_frames):
    plc = Concealer()
    played = feed(plc, signal, 10)
    played += [plc.lost() for _ in range(lost_frames)]
    played += [plc.good(f) for f in frames(signal)[10 + lost_frames : 14 + lost_frames]]
    out = np.concatenate(played)
    natural = max_step(signal)
    assert max_step(out) <= 1.3 * natural


@pytest.mark.parametrize(("freq", "dropped"), [(170, 2), (230, 1), (230, 2), (310, 1), (437, 2)])
def test_a_splice_after_dropped_frames_does_not_click(freq, dropped):
    """The jitter buffer shrinks by dropping frames: a bare cut jumps in phase, the splice does not."""
    signal = tone(freq, 1.0)
    f = frames(signal)
    kept = f[:10] + f[10 + dropped : 14]
    plc = Concealer()
    spliced = [plc.good(x) for x in f[:10]] + [plc.splice(f[10 + dropped])]
    spliced += [plc.good(x) for x in f[11 + dropped : 14]]
    natural = max_step(signal)
    assert max_step(np.concatenate(kept)) > 2.5 * natural  # these cuts would click
    out = np.concatenate(spliced)
    assert max_step(out) <= 1.1 * natural
    assert np.array_equal(out[10 * N + 80 :], np.concatenate(kept)[10 * N + 80 :])  # only the join


def test_a_splice_ending_a_loss_is_the_usual_end_of_loss():
    f = frames(vowel())
    a, b = Concealer(), Concealer()
    for x in f[:5]:
        a.good(x), b.good(x)
    a.lost(), b.lost()
    assert np.array_equal(a.splice(f[7]), b.good(f[7]))


def test_a_good_frame_is_untouched_unless_it_ends_a_loss():
    plc = Concealer()
    signal = vowel()
    f = frames(signal)
    assert plc.good(f[0]) is f[0] and plc.good(f[1]) is f[1]
    plc.lost()
    after = plc.good(f[3])
    assert after is not f[3] and np.array_equal(after[80:], f[3][80:])  # only its start is blended
    assert not plc.concealing
    assert plc.good(f[4]) is f[4]


def test_concealment_before_any_audio_is_silence_and_types_are_checked():
    plc = Concealer()
    assert not plc.lost().any()
    with pytest.raises(TypeError):
        plc.good(np.zeros(N, dtype=np.float32))


def test_full_scale_signals_saturate_instead_of_wrapping():
    plc = Concealer()
    square = np.where(np.sin(2 * np.pi * 100 * np.arange(RATE) / RATE) >= 0, 32767, -32768).astype(np.int16)
    feed(plc, square, 10)
    out = np.concatenate([plc.lost() for _ in range(3)] + [plc.good(frames(square)[13])])
    assert out.dtype == np.int16
    # A wrap around would turn +32767 into a large negative sample next to large positive ones.
    assert max_step(out) <= 65535 and np.corrcoef(out[:160], frames(square)[10])[0, 1] > 0.9


def test_cost_per_frame():
    plc = Concealer()
    good = frames(vowel(seconds=3.0))
    rounds = 300

    def per_call_us(step):
        start = time.perf_counter()
        for i in range(rounds):
            step(i)
        return (time.perf_counter() - start) / rounds * 1e6

    good_us = per_call_us(lambda i: plc.good(good[i % len(good)]))
    first_us = per_call_us(lambda i: (plc.good(good[i % len(good)]), plc.lost())) - good_us
    loss_us = per_call_us(lambda i: (plc.good(good[i % len(good)]), plc.lost(), plc.lost(), plc.lost()))
    later_us = (loss_us - good_us - first_us) / 2
    print(f"\n  plc good {good_us:.1f} us, first lost {first_us:.1f} us, later lost {later_us:.1f} us")
    assert first_us < 2000 and later_us < 500 and good_us < 500  # a 20 ms frame is 20000 us


def upsampled(signal: np.ndarray) -> np.ndarray:
    """The same signal at 16 kHz (band-limited interpolation), as G.722 decodes it."""
    spectrum = np.fft.rfft(signal.astype(np.float64))
    return np.round(np.fft.irfft(spectrum, 2 * len(signal)) * 2).astype(np.int16)


@pytest.mark.parametrize("f0", [118.0, 205.0, 90.0])
def test_at_16_khz_the_pitch_is_found_in_samples_of_that_rate(f0):
    wide = upsampled(vowel(f0=f0))
    plc = Concealer(frame_samples=2 * N, rate=16000)
    for frame in [wide[i : i + 2 * N] for i in range(0, 20 * N, 2 * N)]:
        plc.good(frame)
    concealed = plc.lost()
    truth = wide[20 * N : 22 * N]
    assert len(concealed) == 2 * N and correlation(concealed, truth) >= 0.9
    periods = plc.pitch / (16000 / f0)  # a period of the voice, or two when one is under 80 samples
    assert 80 <= plc.pitch <= 240 and abs(periods - round(periods)) < 0.05
