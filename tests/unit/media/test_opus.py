"""OpusEncoder / OpusDecoder over PyAV libopus, and audio_frame_to_mono."""

from dataclasses import replace

import av
import numpy as np
import pytest
from aiortc.codecs.opus import OpusDecoder as AiortcOpusDecoder
from aiortc.jitterbuffer import JitterFrame

from sipbridge.media.opus import OpusDecoder, OpusEncoder, OpusError, OpusSettings, audio_frame_to_mono

# Full band in voip mode with FEC: a wideband agent's settings (the bridge's own default is 8 kHz lowdelay).
WIDEBAND = OpusSettings(application="voip", complexity=9, fec=True, pcm_rate=48000)


def noise(samples: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    smooth = np.convolve(rng.standard_normal(samples), np.ones(12) / 12, "same")
    return (smooth / np.abs(smooth).max() * 8000).astype(np.int16)


def encode_all(encoder: OpusEncoder, pcm: np.ndarray) -> list[bytes]:
    packets = [encoder.encode(pcm[i : i + 960]) for i in range(0, len(pcm), 960)]
    return [p for p in packets if p is not None]


def test_one_packet_per_frame_from_the_first_call():
    encoder = OpusEncoder(WIDEBAND)
    packets = [encoder.encode(np.zeros(960, np.int16)) for _ in range(5)]
    assert all(isinstance(p, bytes) and 0 < len(p) < 400 for p in packets)
    assert encoder.delay_samples == 312  # libopus look-ahead: 6.5 ms at 48 kHz


def test_round_trip_lags_by_the_encoder_delay():
    pcm = noise(48000)
    encoder, decoder = OpusEncoder(WIDEBAND), OpusDecoder(48000)
    decoded = [decoder.decode(p) for p in encode_all(encoder, pcm)]
    assert all(d.shape == (960,) and d.dtype == np.int16 for d in decoded)
    out = np.concatenate(decoded).astype(np.float64)
    ref = pcm.astype(np.float64)
    corr = [np.dot(ref[4800:40000], out[4800 + lag : 40000 + lag]) for lag in range(600)]
    assert abs(int(np.argmax(corr)) - encoder.delay_samples) <= 2


def test_bitrate_is_roughly_respected():
    packets = encode_all(OpusEncoder(WIDEBAND), noise(48000 * 2))
    kbps = sum(len(p) for p in packets) * 8 / 2 / 1000
    assert 16 < kbps < 48


def test_encode_rejects_wrong_frame_size():
    with pytest.raises(OpusError):
        OpusEncoder(WIDEBAND).encode(np.zeros(480, np.int16))


def test_decode_rejects_garbage_and_recovers():
    encoder, decoder = OpusEncoder(WIDEBAND), OpusDecoder(48000)
    for garbage in (b"\xff\xff\xff", b""):
        with pytest.raises(OpusError):
            decoder.decode(garbage)
    assert decoder.decode(encoder.encode(np.zeros(960, np.int16))).shape == (960,)


def test_frame_to_mono_from_aiortc_decoder():
    packet = OpusEncoder(WIDEBAND).encode(noise(960))
    frames = AiortcOpusDecoder().decode(JitterFrame(data=packet, timestamp=0))
    assert frames[0].to_ndarray().shape == (1, 1920)  # s16 packed stereo, as aiortc delivers
    mono = audio_frame_to_mono(frames[0])
    assert mono.shape == (960,) and mono.dtype == np.int16 and mono.flags.c_contiguous


def _frame(data: np.ndarray, fmt: str, layout: str) -> av.AudioFrame:
    frame = av.AudioFrame.from_ndarray(data, format=fmt, layout=layout)
    frame.sample_rate = 48000
    return frame


def test_frame_to_mono_averages_packed_stereo():
    left = np.array([100, -200, 300], np.int16)
    right = np.array([300, 200, -301], np.int16)
    packed = np.stack([left, right], axis=1).reshape(1, -1)
    assert audio_frame_to_mono(_frame(packed, "s16", "stereo")).tolist() == [200, 0, -1]


def test_frame_to_mono_planar_mono_and_float():
    planar = np.array([[1000, 2000], [3000, 4000]], np.int16)
    assert audio_frame_to_mono(_frame(planar, "s16p", "stereo")).tolist() == [2000, 3000]
    mono = np.array([[5, -5]], np.int16)
    assert audio_frame_to_mono(_frame(mono, "s16", "mono")).tolist() == [5, -5]
    flt = np.array([[0.5, -1.5], [0.5, -1.5]], np.float32)
    assert audio_frame_to_mono(_frame(flt, "fltp", "stereo")).tolist() == [16383, -32767]


@pytest.mark.parametrize(
    "kwargs", [{"fec": False}, {"complexity": 0}, {"application": "audio", "bitrate": 64000}]
)
def test_encoder_options_are_accepted(kwargs):
    encoder, decoder = OpusEncoder(replace(WIDEBAND, **kwargs)), OpusDecoder(48000)
    assert decoder.decode(encoder.encode(noise(960))).shape == (960,)


def test_the_default_settings_are_the_bridges_8_khz_lowdelay_coding():
    encoder, decoder = OpusEncoder(OpusSettings()), OpusDecoder(OpusSettings().pcm_rate)
    assert encoder.frame_samples == 160 and encoder.delay_samples == 20  # 2.5 ms lookahead at 8 kHz
    assert decoder.decode(encoder.encode(noise(960)[::6].copy())).shape == (160,)


def test_bad_application_is_rejected():
    with pytest.raises(ValueError):
        OpusEncoder(replace(WIDEBAND, application="music"))
