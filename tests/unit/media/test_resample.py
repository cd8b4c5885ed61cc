"""StreamResampler: chunked streaming equals one-shot, no edge discontinuities, delay bookkeeping."""

import numpy as np
import pytest
import soxr

from sipbridge.media.resample import StreamResampler

DIRECTIONS = [(8000, 48000), (48000, 8000)]


def sine(freq: float, rate: int, seconds: float, amplitude: float = 10000.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return np.round(amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def chunked(res: StreamResampler, pcm: np.ndarray, chunk: int) -> list[np.ndarray]:
    return [res.process(pcm[i : i + chunk]) for i in range(0, len(pcm), chunk)]


@pytest.mark.parametrize("quality", ["MQ", "HQ"])
@pytest.mark.parametrize(("in_rate", "out_rate"), DIRECTIONS)
def test_chunked_equals_one_shot(in_rate, out_rate, quality):
    pcm = sine(1000, in_rate, 1.0)
    streamed = StreamResampler(in_rate, out_rate, quality)
    pieces = chunked(streamed, pcm, in_rate // 50) + [streamed.flush()]
    whole = StreamResampler(in_rate, out_rate, quality)
    one_shot = np.concatenate([whole.process(pcm), whole.flush()])
    got = np.concatenate(pieces)
    assert len(got) == len(one_shot) == len(pcm) * out_rate // in_rate
    assert np.abs(got.astype(np.int32) - one_shot).max() <= 2


@pytest.mark.parametrize(("in_rate", "out_rate"), DIRECTIONS)
def test_no_discontinuity_at_chunk_edges(in_rate, out_rate):
    res = StreamResampler(in_rate, out_rate, "MQ")
    pieces = chunked(res, sine(440, in_rate, 2.0), in_rate // 50)
    out = np.concatenate(pieces).astype(np.float64)
    edges = np.cumsum([len(p) for p in pieces if len(p)])[:-1]
    second_diff = np.abs(np.diff(out, 2))
    # second_diff[k] is centred on sample k + 1; look at the two centred on each side of an edge.
    at_edges = np.concatenate([second_diff[edges - 2], second_diff[edges - 1]])
    interior = np.delete(second_diff, np.concatenate([edges - 2, edges - 1]))
    assert len(edges) > 3
    assert at_edges.max() <= interior.max() + 2


def test_delay_samples_tracks_held_back_output():
    res = StreamResampler(8000, 48000, "HQ")
    produced = 0
    for n in range(1, 30):
        produced += len(res.process(np.zeros(160, dtype=np.int16)))
        assert res.delay_samples == n * 960 - produced
        assert res.delay_ms == pytest.approx(res.delay_samples / 48)
    assert produced > 0


def test_first_chunk_is_held_back_then_released():
    res = StreamResampler(8000, 48000, "HQ")
    assert len(res.process(sine(1000, 8000, 0.02))) == 0
    assert res.delay_samples == 960


def test_flush_returns_tail_and_allows_reuse():
    res = StreamResampler(48000, 8000)
    pcm = sine(1000, 48000, 0.1)
    first = np.concatenate([res.process(pcm), res.flush()])
    second = np.concatenate([res.process(pcm), res.flush()])
    assert len(first) == len(second) == 800
    assert np.abs(first.astype(np.int32) - second).max() <= 2  # libsoxr dithers its int16 output


def test_reset_drops_held_back_audio():
    res = StreamResampler(8000, 48000)
    res.process(sine(1000, 8000, 0.02))
    res.reset()
    assert res.delay_samples == 0


def test_empty_input():
    res = StreamResampler(8000, 48000)
    assert len(res.process(np.zeros(0, dtype=np.int16))) == 0


@pytest.mark.parametrize("bad", [np.zeros(160, np.float32), np.zeros((1, 160), np.int16), [0] * 160])
def test_rejects_non_mono_int16(bad):
    with pytest.raises(TypeError):
        StreamResampler(8000, 48000).process(bad)


def test_rejects_unknown_quality():
    with pytest.raises(ValueError):
        StreamResampler(8000, 48000, "best")


def test_edge_check_detects_stateless_chunking():
    # Control: resampling each chunk on its own (no state) must fail the edge criterion above.
    pcm = sine(440, 8000, 2.0)
    pieces = [soxr.resample(pcm[i : i + 160], 8000, 48000, quality="MQ") for i in range(0, len(pcm), 160)]
    out = np.concatenate(pieces).astype(np.float64)
    edges = np.cumsum([len(p) for p in pieces])[:-1]
    second_diff = np.abs(np.diff(out, 2))
    assert (
        second_diff[edges - 1].max()
        > 2 * np.delete(second_diff, np.concatenate([edges - 2, edges - 1])).max()
    )
