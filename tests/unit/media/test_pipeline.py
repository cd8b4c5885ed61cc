"""Per-call transcoders: the 1 kHz acceptance test both ways, framing, and AgentToPhone queueing."""

import numpy as np
import pytest

from sipbridge.media import g711
from sipbridge.media.opus import OpusDecoder, OpusEncoder, OpusSettings
from sipbridge.media.pipeline import MAX_BUFFER_MS, AgentToPhone, PhoneToAgent
from sipbridge.media.resample import PolyphaseResampler
from sipbridge.media.standing import STANDING_POPS

LEVEL_DBFS = -10.0
AMPLITUDE = 32767 * 10 ** (LEVEL_DBFS / 20)
WARM_UP_S = 0.1
CODECS = ["PCMU", "PCMA"]
# The polyphase resampler returns all its output at once, its first delay_ms being the filter
# filling up: its output is as long as its input, but lags it by delay_ms (2.625 ms).
PREROLL_MS = PolyphaseResampler(8000, 48000).delay_ms
# Opus at 48 kHz PCM: the path that resamples (the bridge's default, 8 kHz, needs no resampler).
WIDEBAND = OpusSettings(application="voip", complexity=9, fec=True, pcm_rate=48000)


def sine(rate: int, seconds: float, freq: float = 1000.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return np.round(AMPLITUDE * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def peak_hz(pcm: np.ndarray, rate: int) -> float:
    x = pcm.astype(np.float64) * np.hanning(len(pcm))
    spectrum = np.abs(np.fft.rfft(x, n=4 * len(x)))
    return float(np.argmax(spectrum)) * rate / (4 * len(x))


def level_dbfs(pcm: np.ndarray) -> float:
    rms = np.sqrt(np.mean(pcm.astype(np.float64) ** 2))
    return 20 * np.log10(rms * np.sqrt(2) / 32767)


def assert_1khz_at_level(pcm: np.ndarray, rate: int) -> None:
    steady = pcm[int(WARM_UP_S * rate) :]
    assert len(steady) >= rate  # at least 1 s left to measure
    assert abs(peak_hz(steady, rate) - 1000) <= 10
    assert abs(level_dbfs(steady) - LEVEL_DBFS) <= 1.0


@pytest.mark.parametrize("codec", CODECS)
def test_phone_to_agent_keeps_1khz_tone(codec):
    payload = g711.encode(codec, sine(8000, 1.5))
    pipe, decoder = PhoneToAgent(codec, WIDEBAND), OpusDecoder(48000)
    packets = [p for i in range(0, len(payload), 160) for p in pipe.push(payload[i : i + 160])]
    assert len(packets) >= 60
    assert_1khz_at_level(np.concatenate([decoder.decode(p) for p in packets]), 48000)


@pytest.mark.parametrize("codec", CODECS)
def test_agent_to_phone_keeps_1khz_tone(codec):
    pcm48 = sine(48000, 1.5)
    encoder, decoder, pipe = OpusEncoder(WIDEBAND), OpusDecoder(48000), AgentToPhone(codec, 48000)
    frames: list[bytes] = []
    for i in range(0, len(pcm48), 960):
        pipe.push_pcm(decoder.decode(encoder.encode(pcm48[i : i + 960])))
        while (frame := pipe.pop_frame()) is not None:
            frames.append(frame)
    assert pipe.dropped_ms == 0
    assert_1khz_at_level(g711.decode(codec, b"".join(frames)), 8000)


def test_phone_to_agent_gives_one_packet_per_20ms_from_the_start():
    pipe = PhoneToAgent("PCMU", WIDEBAND)
    payload = g711.encode("PCMU", sine(8000, 1.0))
    assert [len(pipe.push(payload[i : i + 160])) for i in range(0, len(payload), 160)] == [1] * 50
    assert pipe.delay_ms == PREROLL_MS == 2.625


def test_agent_to_phone_queues_20ms_per_20ms_pushed_from_the_start():
    pipe, pcm = AgentToPhone("PCMU", 48000), sine(48000, 1.0)
    for i in range(0, len(pcm), 960):
        pipe.push_pcm(pcm[i : i + 960])
        assert pipe.buffered_ms == 20
        assert len(pipe.pop_frame() or b"") == 160
    assert pipe.delay_ms == 2.625


def test_phone_to_agent_accepts_any_payload_length():
    pipe = PhoneToAgent("PCMA", WIDEBAND)
    payload = g711.encode("PCMA", sine(8000, 2.0))
    count = pushed = 0
    for size in (80, 160, 240, 320):
        for i in range(0, 8000, size):
            chunk = payload[i : i + size]
            count += len(pipe.push(chunk))
            pushed += len(chunk)
    # 20 ms packets out for all audio in, except what the resampler and the partial frame hold.
    assert count * 20 + pipe.delay_ms - PREROLL_MS == pytest.approx(pushed / 8, abs=0.01)


def test_phone_to_agent_rejects_unknown_codec():
    with pytest.raises(ValueError):
        PhoneToAgent("G729", OpusSettings())


def drain(pipe: AgentToPhone) -> list[bytes]:
    frames = []
    while (frame := pipe.pop_frame()) is not None:
        frames.append(frame)
    return frames


def test_agent_to_phone_frames_are_always_160_bytes():
    pipe = AgentToPhone("PCMU", 48000)
    assert pipe.pop_frame() is None
    frames: list[bytes] = []
    pcm = sine(48000, 2.0)
    for i in range(0, len(pcm), 1234):
        pipe.push_pcm(pcm[i : i + 1234])
        frames += drain(pipe)
        assert pipe.buffered_ms < 20
    assert frames and {len(f) for f in frames} == {160}
    assert len(frames) * 20 + pipe.delay_ms - PREROLL_MS == pytest.approx(2000, abs=1)


def test_agent_to_phone_overflow_drops_oldest_and_counts():
    pipe = AgentToPhone("PCMU", 48000)
    silence, tone = np.zeros(48000 * 3 // 10, np.int16), sine(48000, 0.5)
    for pcm in (silence, tone):
        for i in range(0, len(pcm), 960):
            pipe.push_pcm(pcm[i : i + 960])
            assert pipe.buffered_ms <= MAX_BUFFER_MS
    assert pipe.buffered_ms == MAX_BUFFER_MS
    assert pipe.dropped_ms > 0
    assert pipe.dropped_ms + pipe.delay_ms - PREROLL_MS == pytest.approx(800, abs=1)
    kept = g711.decode("PCMU", b"".join(drain(pipe)))
    assert np.abs(kept[:80]).max() > AMPLITUDE / 2  # the oldest kept audio is tone, not the silence


def test_agent_to_phone_clear_empties_queue_and_resampler():
    pipe = AgentToPhone("PCMA", 48000)
    tone = sine(48000, 0.3)
    for i in range(0, len(tone), 960):
        pipe.push_pcm(tone[i : i + 960])
    assert pipe.buffered_ms > 0
    pipe.clear()
    assert pipe.buffered_ms == 0 and pipe.delay_ms == PREROLL_MS and pipe.pop_frame() is None
    for _ in range(20):
        pipe.push_pcm(np.zeros(960, np.int16))
    after = drain(pipe)
    assert after and np.abs(g711.decode("PCMA", b"".join(after))).max() <= 8  # no old tone leaks out


@pytest.mark.parametrize("codec", CODECS)
def test_native_8khz_opus_path_keeps_1khz_tone_both_ways(codec):
    """libopus coding the telephone band itself: no resampler anywhere, still 48 kHz Opus on the wire."""
    payload = g711.encode(codec, sine(8000, 1.5))
    up = PhoneToAgent(codec, OpusSettings())
    packets = [p for i in range(0, len(payload), 160) for p in up.push(payload[i : i + 160])]
    assert len(packets) == 75 and up.delay_ms == 0
    decoder48 = OpusDecoder(48000)
    assert_1khz_at_level(np.concatenate([decoder48.decode(p) for p in packets]), 48000)

    down, decoder8 = AgentToPhone(codec, pcm_rate=8000), OpusDecoder(8000)
    frames = []
    for packet in packets:
        down.push_pcm(decoder8.decode(packet))
        frames.append(down.pop_frame())
    assert all(f is not None and len(f) == 160 for f in frames)
    assert_1khz_at_level(g711.decode(codec, b"".join(frames)), 8000)


def test_agent_to_phone_drops_a_backlog_that_stands_for_a_second():
    """Audio queued ahead (before the answer, or by a late packet) would delay the whole call."""
    pipe = AgentToPhone("PCMU", pcm_rate=8000)
    frame = np.full(160, 1000, np.int16)
    pipe.push_pcm(frame)  # one frame of backlog, then one frame in per frame out
    left = []
    for _ in range(STANDING_POPS + 5):
        pipe.push_pcm(frame)
        assert pipe.pop_frame() is not None
        left.append(pipe.buffered_ms)
    assert left[: STANDING_POPS - 1] == [20] * (STANDING_POPS - 1)
    assert left[STANDING_POPS - 1 :] == [0] * 6 and pipe.dropped_ms == 20


def test_agent_to_phone_keeps_a_queue_that_runs_dry_now_and_then():
    pipe = AgentToPhone("PCMU", pcm_rate=8000)
    frame = np.full(160, 1000, np.int16)
    for i in range(3 * STANDING_POPS):
        pipe.push_pcm(frame)
        if i % 40 == 0:
            pipe.push_pcm(frame)  # a burst: two frames at once ...
        if i % 40 == 39:
            assert pipe.pop_frame() is not None  # ... drawn on by a late packet
        pipe.pop_frame()
    assert pipe.dropped_ms == 0


def test_agent_to_phone_keeps_the_frames_the_agent_legs_jitter_needs():
    pipe = AgentToPhone("PCMU", pcm_rate=8000)
    pipe.keep_frames = 1
    frame = np.full(160, 1000, np.int16)
    pipe.push_pcm(frame)
    pipe.push_pcm(frame)  # two frames of backlog, one of them needed
    for _ in range(STANDING_POPS + 5):
        pipe.push_pcm(frame)
        assert pipe.pop_frame() is not None
    assert pipe.buffered_ms == 20 and pipe.dropped_ms == 20


# -- G.722: the phone's 16 kHz reaches the agent and comes back wideband ------------------------


def test_g722_from_the_phone_reaches_the_agent_wideband():
    """A 5.5 kHz tone, beyond G.711's band: with the bridge's default 8 kHz Opus settings the
    encoder still runs at G.722's 16 kHz, so the agent decodes the tone."""
    from sipbridge.media.g722 import G722Encoder

    encoder = G722Encoder()
    pcm16 = sine(16000, 1.5, freq=5500)
    pipe = PhoneToAgent("G722", OpusSettings())
    assert pipe.opus.pcm_rate == 16000 and pipe.codec == "G722"
    packets = [p for i in range(0, len(pcm16), 320) for p in pipe.push(encoder.encode(pcm16[i : i + 320]))]
    assert len(packets) == 75
    decoder = OpusDecoder(16000)
    heard = np.concatenate([decoder.decode(p) for p in packets])[int(WARM_UP_S * 16000) :]
    assert abs(peak_hz(heard, 16000) - 5500) <= 20
    assert abs(level_dbfs(heard) - LEVEL_DBFS) <= 2.0


def test_the_agents_audio_goes_to_a_g722_phone_wideband_and_silence_through_the_coder():
    from sipbridge.media.g722 import G722Decoder

    pipe, decoder = AgentToPhone("G722", 16000), G722Decoder()
    tone = sine(16000, 1.5, freq=5500)
    pipe.push_pcm(tone[:4800])
    assert pipe.queued_frames == 15 and pipe.buffered_ms == 300
    frames = [pipe.pop_frame() for _ in range(15)]
    for start in range(4800, len(tone), 320):  # then as the agent sends it: 20 ms in, 20 ms out
        pipe.push_pcm(tone[start : start + 320])
        frames.append(pipe.pop_frame())
    assert len(frames) == 75 and all(len(f) == 160 for f in frames) and pipe.pop_frame() is None
    assert pipe.dropped_ms == 0
    heard = decoder.decode(b"".join(frames))[int(WARM_UP_S * 16000) :]
    assert abs(peak_hz(heard, 16000) - 5500) <= 20
    quiet = [pipe.silence() for _ in range(3)]  # coded zeros: small codes, never a constant pattern
    assert all(len(q) == 160 for q in quiet)
    assert np.abs(decoder.decode(b"".join(quiet))[-320:]).max() < 200
