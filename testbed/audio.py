"""Make speech, convert it for the peers, and tell whether what came back is what was sent.

Speech comes from espeak-ng, conversions from sox; the comparison is numpy only: FFT
cross-correlation to find the lag, then normalised correlation, SNR and gain over the part of the two
signals that overlap at that lag.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Frames quieter than this, relative to the loudest 20 ms frame, count as silence.
SILENCE_BELOW_DB = -40.0


def _run(argv: list[str], *, stdin: str | None = None) -> None:
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {' '.join(argv)}\n{done.stderr}")


def missing_tools(*names: str) -> list[str]:
    """Which of these programs are not on PATH (for ``pytest.skip``)."""
    return [n for n in names if shutil.which(n) is None]


# --------------------------------------------------------------------------------------------- making files


def make_speech(
    text: str,
    out_wav: Path,
    rate: int = 8000,
    pad_seconds: float = 0.0,
    *,
    voice: str | None = None,
    words_per_minute: int | None = None,
    lead_seconds: float = 0.0,
) -> Path:
    """Speak `text` with espeak-ng into a mono 16-bit WAV at `rate`, with optional silence around it.

    `pad_seconds` of silence go at the end (baresip hangs up when its input file ends), `lead_seconds`
    at the start. The output is deterministic: same text, same samples.
    """
    out_wav = Path(out_wav)
    out_wav.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="speech-") as tmp:
        raw = Path(tmp) / "espeak.wav"
        argv = ["espeak-ng", "-w", str(raw)]
        if voice:
            argv += ["-v", voice]
        if words_per_minute:
            argv += ["-s", str(words_per_minute)]
        _run([*argv, "--stdin"], stdin=text)
        # -D: no dither, so silence stays digital silence and files are reproducible
        _run(
            ["sox", "-D", str(raw), "-r", str(rate), "-c", "1", "-b", "16", "-e", "signed-integer",
             str(out_wav), "pad", f"{lead_seconds:g}", f"{pad_seconds:g}"]
        )  # fmt: skip
    return out_wav


def pad_wav(wav: Path, out_wav: Path, *, lead_seconds: float = 0.0, pad_seconds: float = 0.0) -> Path:
    """Copy of `wav` with silence added at the start and the end."""
    _run(["sox", "-D", str(wav), str(out_wav), "pad", f"{lead_seconds:g}", f"{pad_seconds:g}"])
    return Path(out_wav)


def wav_to_ulaw_raw(wav: Path, out: Path) -> Path:
    """Headerless 8 kHz mono μ-law (G.711 PCMU payload bytes), as sipp's ``rtp_stream`` wants.

    A WAV given to sipp 3.6.1's rtp_stream has its header sent as audio, so it has to be raw.
    """
    _run(["sox", "-D", str(wav), "-r", "8000", "-c", "1", "-t", "raw", "-e", "u-law", "-b", "8", str(out)])
    return Path(out)


def ulaw_raw_to_wav(raw: Path, out_wav: Path) -> Path:
    """Headerless 8 kHz μ-law (e.g. RTP payloads written back to back) to a 16-bit WAV."""
    _run(
        ["sox", "-t", "raw", "-r", "8000", "-c", "1", "-e", "u-law", "-b", "8", str(raw),
         "-b", "16", "-e", "signed-integer", str(out_wav)]
    )  # fmt: skip
    return Path(out_wav)


def resample_to(wav: Path, rate: int, out_wav: Path | None = None) -> Path:
    """A mono 16-bit PCM copy of `wav` at `rate` (next to it unless `out_wav` is given)."""
    wav = Path(wav)
    out = Path(out_wav) if out_wav is not None else wav.with_name(f"{wav.stem}.{rate}.wav")
    _run(["sox", "-D", str(wav), "-r", str(rate), "-c", "1", "-b", "16", "-e", "signed-integer", str(out)])
    return out


def wav_duration(wav: Path) -> float:
    with wave.open(str(wav), "rb") as w:
        return w.getnframes() / w.getframerate()


# --------------------------------------------------------------------------------------------- reading


def read_wav(path: Path, rate: int | None = None) -> tuple[np.ndarray, int]:
    """Samples as float32 in [-1, 1] (channels mixed to mono) and the sample rate.

    With `rate`, the file is first converted to that rate by sox. WAVs that the `wave` module cannot
    read (float, μ-law, ...) go through sox to 16-bit PCM too.
    """
    path = Path(path)
    try:
        with wave.open(str(path), "rb") as w:
            file_rate = w.getframerate()
            if rate is None or rate == file_rate:
                return _decode_pcm(w), file_rate
    except (wave.Error, EOFError):
        pass
    with tempfile.TemporaryDirectory(prefix="wav-") as tmp:
        converted = Path(tmp) / "converted.wav"
        _run(["sox", "-D", str(path), "-b", "16", "-e", "signed-integer", "-c", "1"]
             + (["-r", str(rate)] if rate else []) + [str(converted)])  # fmt: skip
        with wave.open(str(converted), "rb") as w:
            return _decode_pcm(w), w.getframerate()


def _decode_pcm(w: wave.Wave_read) -> np.ndarray:
    width, channels = w.getsampwidth(), w.getnchannels()
    data = w.readframes(w.getnframes())
    if width == 1:
        x = (np.frombuffer(data, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        x = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
    elif width == 3:
        b = np.frombuffer(data, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        x = (np.where(v >= 1 << 23, v - (1 << 24), v)).astype(np.float32) / float(1 << 23)
    elif width == 4:
        x = np.frombuffer(data, dtype="<i4").astype(np.float32) / float(1 << 31)
    else:  # pragma: no cover - wave rejects other widths itself
        raise wave.Error(f"unsupported sample width {width}")
    if channels > 1:
        x = x.reshape(-1, channels).mean(axis=1)
    return np.ascontiguousarray(x, dtype=np.float32)


# --------------------------------------------------------------------------------------------- comparing


def active_span(x: np.ndarray, rate: int, below_db: float = SILENCE_BELOW_DB) -> tuple[int, int]:
    """[start, end) sample indices from the first to the last 20 ms frame that is not silence.

    Silence is `below_db` under the loudest frame. (0, 0) for a signal that is silent throughout.
    """
    frame = max(1, rate // 50)
    n = len(x) // frame
    if n == 0:
        return (0, len(x)) if np.any(x) else (0, 0)
    rms = np.sqrt(np.mean(np.square(x[: n * frame].reshape(n, frame), dtype=np.float64), axis=1))
    peak = float(rms.max())
    if peak <= 0.0:
        return 0, 0
    loud = np.flatnonzero(rms >= peak * 10 ** (below_db / 20))
    return int(loud[0]) * frame, min(len(x), (int(loud[-1]) + 1) * frame)


@dataclass(frozen=True)
class AudioMatch:
    """How well `heard` reproduces `sent`, at the lag where they line up best.

    correlation: normalised cross-correlation over the overlap (1.0 = same waveform up to a gain).
    lag_seconds: how much later the sent audio appears in `heard` (negative: earlier).
    snr_db: sent-signal power against the residual after removing the best gain, over the overlap.
    gain: heard/sent amplitude ratio (least squares) over the overlap.
    overlap_seconds: length of the sent speech (silence trimmed) that falls inside `heard` at that lag.
    coverage: fraction of the sent speech's energy inside that overlap (1.0 = all of it was heard).
    """

    correlation: float
    lag_seconds: float
    snr_db: float
    gain: float
    overlap_seconds: float
    coverage: float

    def __str__(self) -> str:
        return (
            f"correlation {self.correlation:.4f} at lag {self.lag_seconds * 1000:.1f} ms, "
            f"SNR {self.snr_db:.1f} dB, gain {self.gain:.3f}, overlap {self.overlap_seconds:.2f} s, "
            f"coverage {self.coverage:.3f}"
        )


def compare(sent: np.ndarray, heard: np.ndarray, rate: int, max_lag_s: float = 2.0) -> AudioMatch:
    """Find `sent` inside `heard` (lags within ±`max_lag_s`) and measure the match there.

    Leading and trailing silence of `sent` is ignored (only its active span is searched for), so the
    speech itself decides the lag. The lag is the one that maximises correlation against the *whole*
    sent speech, so a lag where only a sliver overlaps cannot win by chance; the reported correlation
    is then normalised by the energies of the two overlapping parts only.
    """
    s_all = np.asarray(sent, dtype=np.float64)
    h = np.asarray(heard, dtype=np.float64)
    start, end = active_span(s_all, rate)
    if end <= start:
        raise ValueError("the sent signal is silent: nothing to look for")
    # Each side loses its own DC offset, taken over the whole signal (so identical inputs stay identical).
    s = s_all[start:end] - s_all.mean()
    h = h - h.mean() if len(h) else h
    ns, nh = len(s), len(h)
    none = AudioMatch(0.0, 0.0, float("-inf"), 0.0, 0.0, 0.0)
    if nh == 0 or not np.any(h):
        return none

    # c[k] = sum_m s[m] * h[m + k]: sent sample m (of the trimmed span) heard at index m + k.
    nfft = 1 << (ns + nh - 1).bit_length()
    full = np.fft.irfft(np.fft.rfft(h, nfft) * np.conj(np.fft.rfft(s, nfft)), nfft)
    max_lag = int(round(max_lag_s * rate))
    k = np.arange(max(start - max_lag, -(ns - 1)), min(start + max_lag, nh - 1) + 1)
    if len(k) == 0:
        return none
    c = full[k % nfft]

    # Energies of the overlapping parts for every shift k, from cumulative sums.
    s_cum = np.concatenate(([0.0], np.cumsum(s * s)))
    h_cum = np.concatenate(([0.0], np.cumsum(h * h)))
    m0 = np.maximum(0, -k)  # first sent index inside heard
    m1 = np.minimum(ns, nh - k)  # one past the last
    es_ov = s_cum[m1] - s_cum[m0]
    eh_ov = h_cum[m1 + k] - h_cum[m0 + k]
    es_all = s_cum[-1]
    tiny = 1e-20 * es_all + 1e-30

    score = c / np.sqrt(es_all * eh_ov + tiny)
    best = int(np.argmax(score))
    kb = int(k[best])
    a, b = int(m0[best]), int(m1[best])
    s_ov, h_ov = s[a:b], h[a + kb : b + kb]
    es, eh, cb = float(es_ov[best]), float(eh_ov[best]), float(c[best])
    correlation = cb / np.sqrt(es * eh + tiny)
    gain = cb / (es + tiny)
    residual = float(np.sum(np.square(h_ov - gain * s_ov)))
    signal = gain * gain * es
    snr_db = float("inf") if residual <= signal * 1e-15 else 10.0 * np.log10(signal / residual)
    return AudioMatch(
        correlation=float(correlation),
        lag_seconds=(kb - start) / rate,
        snr_db=float(snr_db),
        gain=float(gain),
        overlap_seconds=(b - a) / rate,
        coverage=float(es / es_all),
    )


def compare_files(sent_wav: Path, heard_wav: Path, rate: int = 8000, max_lag_s: float = 2.0) -> AudioMatch:
    """:func:`compare` on two WAV files, both read at `rate`."""
    sent, _ = read_wav(sent_wav, rate)
    heard, _ = read_wav(heard_wav, rate)
    return compare(sent, heard, rate, max_lag_s)


@dataclass(frozen=True)
class WindowedMatch:
    """How well `heard` reproduces `sent` second by second, each window at its own best lag.

    A receiver's adaptive jitter buffer moves the delay by whole frames during a call (it stretches
    while its target rises, drops a frame to come down, a phone may play a frame twice in place of a
    lost one and lose 20 ms at a double loss). Speech barely correlates with itself 20 ms later, so one
    such slip in the middle of the call halves the single-lag :func:`compare` figure although every
    second of speech came through. This measure follows the slips: it cuts the sent speech into
    windows, finds each one in `heard` within ±`search_s` of the overall lag, and summarises the
    windows' normalised correlations.

    median: median window correlation (the headline figure).
    p10: 10th percentile (the bad seconds: losses, the windows that straddle a slip).
    windows: number of windows measured (windows quieter than `floor_db` under the loudest are skipped).
    lag_min_seconds / lag_max_seconds: range of the windows' own lags (the time-warp seen).
    overall: the single-lag :func:`compare` result, for reference.
    per_window: (start from the beginning of the sent speech in s, correlation, lag in s) of each window.
    """

    median: float
    p10: float
    windows: int
    lag_min_seconds: float
    lag_max_seconds: float
    overall: AudioMatch
    per_window: tuple[tuple[float, float, float], ...]

    @property
    def lag_spread_seconds(self) -> float:
        return self.lag_max_seconds - self.lag_min_seconds

    @property
    def delay_moves(self) -> int:
        """How often the delay moved (by 5 ms or more) from one window to the next: the slips."""
        lags = [lag for _, _, lag in self.per_window]
        return sum(abs(b - a) >= 0.005 for a, b in zip(lags, lags[1:], strict=False))

    def __str__(self) -> str:
        return (
            f"windowed correlation median {self.median:.4f}, p10 {self.p10:.4f} over {self.windows} windows, "
            f"local lags {self.lag_min_seconds * 1000:.1f}..{self.lag_max_seconds * 1000:.1f} ms, "
            f"{self.delay_moves} delay moves (single lag: {self.overall})"
        )


def compare_windowed(
    sent: np.ndarray,
    heard: np.ndarray,
    rate: int,
    *,
    window_s: float = 1.0,
    hop_s: float = 0.5,
    search_s: float = 0.25,
    floor_db: float = -20.0,
    max_lag_s: float = 2.0,
) -> WindowedMatch:
    """Per-window correlation of `sent` against `heard`, each window at its best local lag.

    The overall lag comes from :func:`compare` (within ±`max_lag_s`); the active span of `sent` is cut
    into `window_s` windows every `hop_s`, windows more than `floor_db` below the loudest are left out
    (pauses say nothing about the match), and each remaining window is searched for in `heard` within
    ±`search_s` of the overall lag, wholly inside `heard`. A window's correlation is normalised by its
    own energy and that of the part of `heard` it lines up with. Unrelated speech scores about 0.13,
    noise about 0.04.
    """
    overall = compare(sent, heard, rate, max_lag_s)
    s_all = np.asarray(sent, dtype=np.float64)
    h = np.asarray(heard, dtype=np.float64)
    start, end = active_span(s_all, rate)
    s = s_all - s_all.mean()
    h = h - h.mean() if len(h) else h
    width, hop, reach = int(window_s * rate), max(1, int(hop_s * rate)), int(search_s * rate)
    lag = int(round(overall.lag_seconds * rate))
    starts = list(range(start, max(start + 1, end - width + 1), hop))
    energies = [float(np.sum(np.square(s[a : a + width]))) for a in starts]
    loudest = max(energies, default=0.0)
    found: list[tuple[float, float, float]] = []
    for a, energy in zip(starts, energies, strict=True):
        if loudest <= 0.0 or energy < loudest * 10 ** (floor_db / 10) or a + width > len(s):
            continue
        lo, hi = max(0, a + lag - reach), min(len(h), a + lag + reach + width)
        if hi - lo < width:
            continue
        window, part = s[a : a + width], h[lo:hi]
        shifts = len(part) - width + 1
        nfft = 1 << (len(part) + width).bit_length()
        c = np.fft.irfft(np.fft.rfft(part, nfft) * np.conj(np.fft.rfft(window, nfft)), nfft)[:shifts]
        cum = np.concatenate(([0.0], np.cumsum(part * part)))
        heard_energy = cum[width : width + shifts] - cum[:shifts]
        r = c / np.sqrt(energy * heard_energy + 1e-20 * energy + 1e-30)
        best = int(np.argmax(r))
        found.append(((a - start) / rate, float(r[best]), (lo + best - a) / rate))
    if not found:
        return WindowedMatch(0.0, 0.0, 0, 0.0, 0.0, overall, ())
    rs = np.array([r for _, r, _ in found])
    lags = [lag_s for _, _, lag_s in found]
    return WindowedMatch(
        median=float(np.median(rs)),
        p10=float(np.percentile(rs, 10)),
        windows=len(found),
        lag_min_seconds=min(lags),
        lag_max_seconds=max(lags),
        overall=overall,
        per_window=tuple(found),
    )


def compare_files_windowed(
    sent_wav: Path, heard_wav: Path, rate: int = 8000, **kwargs: float
) -> WindowedMatch:
    """:func:`compare_windowed` on two WAV files, both read at `rate`."""
    sent, _ = read_wav(sent_wav, rate)
    heard, _ = read_wav(heard_wav, rate)
    return compare_windowed(sent, heard, rate, **kwargs)
