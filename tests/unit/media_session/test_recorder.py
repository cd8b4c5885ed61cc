"""A call's recorder: caller left and agent right, 20 ms of each per tick, aligned and flushed."""

from __future__ import annotations

import errno
import wave
from pathlib import Path

import av
import numpy as np
import pytest

from sipbridge.media.opus import OpusEncoder, OpusSettings
from sipbridge.media_session.recorder import CallRecorder, recording_rate

RATE = 8000
FRAME = RATE // 50


def frame(value: int, samples: int = FRAME) -> np.ndarray:
    return np.full(samples, value, dtype=np.int16)


def read_stereo(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """The two channels of a WAV as written (the header's count of frames), and its rate."""
    with wave.open(str(path), "rb") as w:
        assert w.getnchannels() == 2 and w.getsampwidth() == 2
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        return data[0::2], data[1::2], w.getframerate()


def frames_of(channel: np.ndarray, samples: int = FRAME) -> list[int]:
    """Each 20 ms frame's value (the test frames are constant)."""
    return [int(channel[i]) for i in range(0, len(channel), samples)]


def test_the_caller_is_left_and_the_agent_right(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    recorder = CallRecorder.open(str(path), "PCMU")
    for n in range(1, 4):
        recorder.caller_pcm(frame(100 * n), RATE)
        recorder.agent_pcm(frame(-100 * n), RATE)
        recorder.tick()
    recorder.close()
    left, right, rate = read_stereo(path)
    assert rate == 8000 and len(left) == 3 * FRAME
    assert frames_of(left) == [100, 200, 300] and frames_of(right) == [-100, -200, -300]


def test_a_side_with_nothing_queued_is_silence_and_later_audio_lands_at_its_tick(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    recorder = CallRecorder.open(str(path), "PCMA")
    for n in range(6):
        recorder.caller_pcm(frame(n + 1), RATE)  # the caller speaks from the start
        if n >= 4:
            recorder.agent_pcm(frame(50 + n), RATE)  # the agent from the fifth tick
        recorder.tick()
    recorder.close()
    left, right, _ = read_stereo(path)
    assert frames_of(left) == [1, 2, 3, 4, 5, 6]
    assert frames_of(right) == [0, 0, 0, 0, 54, 55]
    assert recorder.agent.silent_frames == 4 and recorder.caller.silent_frames == 0


def test_packets_of_30_ms_keep_their_place_on_the_20_ms_grid(tmp_path: Path) -> None:
    """The phone playout hands 30 ms packets to two ticks of three: the channel is continuous."""
    path = tmp_path / "call.wav"
    recorder = CallRecorder.open(str(path), "PCMU")
    ramp = np.arange(12 * FRAME, dtype=np.int16)
    packets = [ramp[i : i + 240] for i in range(0, len(ramp), 240)]
    pattern = [0, 1, 1] * 4  # packets per tick, as PhonePlayout's due-count gives them
    for count in pattern:
        for _ in range(count):
            recorder.caller_pcm(packets.pop(0), RATE)
        recorder.tick()
    recorder.tick()
    recorder.close()
    left, _, _ = read_stereo(path)
    assert np.array_equal(left[:FRAME], np.zeros(FRAME))  # before the first packet
    assert np.array_equal(left[FRAME : FRAME + len(ramp)], ramp)  # then every sample, in order
    assert recorder.caller.dropped_ms == 0


def test_a_backlog_that_stands_a_second_is_dropped_so_the_sides_stay_aligned(tmp_path: Path) -> None:
    """The agent's clock ticked twice before one playout tick: its extra frame does not stay."""
    path = tmp_path / "call.wav"
    recorder = CallRecorder.open(str(path), "PCMU")
    recorder.agent_pcm(frame(7), RATE)
    for n in range(120):
        recorder.agent_pcm(frame(n % 100 + 10), RATE)
        recorder.caller_pcm(frame(n % 100 + 10), RATE)
        recorder.tick()
    recorder.close()
    left, right, _ = read_stereo(path)
    assert recorder.agent.dropped_ms == 20
    assert frames_of(right)[-60:] == frames_of(left)[-60:]  # in step again once it was dropped
    assert frames_of(right)[:3] == [7, 10, 11]  # a frame late before


def test_audio_at_another_rate_is_resampled_to_the_recording_rate(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    recorder = CallRecorder.open(str(path), "G722")  # 16 kHz
    assert recorder.rate == 16000
    tone = (8000 * np.sin(2 * np.pi * 500 * np.arange(8000 * 2) / 8000)).astype(np.int16)
    for n in range(100):
        recorder.caller_pcm(tone[n * FRAME : (n + 1) * FRAME], 8000)  # a re-INVITE to G.711
        recorder.tick()
    recorder.close()
    left, _, rate = read_stereo(path)
    assert rate == 16000 and len(left) == 2 * 16000
    spectrum = np.abs(np.fft.rfft(left[8000:].astype(float)))
    assert abs(np.argmax(spectrum) * 16000 / len(left[8000:]) - 500) < 5


def test_relayed_opus_is_decoded_at_the_recording_rate_on_both_sides(tmp_path: Path) -> None:
    assert recording_rate("OPUS") == 16000
    path = tmp_path / "call.wav"
    recorder = CallRecorder.open(str(path), "OPUS")
    encoder = OpusEncoder(OpusSettings(pcm_rate=48000, application="audio", complexity=5))
    t = np.arange(48000) / 48000
    tones = {side: (8000 * np.sin(2 * np.pi * hz * t)).astype(np.int16) for side, hz in ((0, 440), (1, 1000))}
    packets = {
        side: [encoder.encode(tones[side][i : i + 960]) for i in range(0, 48000, 960)] for side in tones
    }
    for caller, agent in zip(packets[0], packets[1], strict=True):
        recorder.caller_opus(caller)
        recorder.agent_opus(agent)
        recorder.tick()
    recorder.caller_opus(b"\xff\xff")  # undecodable: skipped, the recording goes on
    recorder.tick()
    recorder.close()
    left, right, rate = read_stereo(path)
    assert rate == 16000 and len(left) == 51 * 320
    for channel, hz in ((left, 440), (right, 1000)):
        part = channel[3200:16000].astype(float)
        assert abs(np.argmax(np.abs(np.fft.rfft(part))) * 16000 / len(part) - hz) < 5


def test_the_wav_on_disk_is_readable_while_the_call_goes_on_and_lags_by_under_a_second(
    tmp_path: Path,
) -> None:
    path = tmp_path / "call.wav"
    recorder = CallRecorder.open(str(path), "PCMU")
    seen = []
    for n in range(160):  # 3.2 s
        recorder.caller_pcm(frame(n), RATE)
        recorder.tick()
        with wave.open(str(path), "rb") as w:  # a crash now leaves this file
            seen.append(w.getnframes())
    assert seen[48] == 0 and seen[49] == 8000 and seen[-1] == 3 * 8000  # whole seconds, as they fill
    assert all((n + 1) * FRAME - frames < 8000 for n, frames in enumerate(seen))
    left, _, _ = read_stereo(path)
    assert frames_of(left) == list(range(150))
    recorder.close()
    assert frames_of(read_stereo(path)[0]) == list(range(160))


def test_the_ogg_on_disk_decodes_while_the_call_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "call.ogg"
    recorder = CallRecorder.open(str(path), "G722")
    tone = (8000 * np.sin(2 * np.pi * 300 * np.arange(320) / 16000)).astype(np.int16)
    for _ in range(200):  # 4 s
        recorder.caller_pcm(tone, 16000)
        recorder.tick()
    so_far = _decoded_seconds(path)  # not closed: what a crash would leave
    assert 2.0 <= so_far <= 4.0
    recorder.close()
    assert _decoded_seconds(path) == pytest.approx(4.0, abs=0.03)
    with av.open(str(path)) as container:
        assert container.streams.audio[0].codec_context.channels == 2


def _decoded_seconds(path: Path) -> float:
    with av.open(str(path)) as container:
        return sum(f.samples for f in container.decode(audio=0)) / 48000


class FullDisk:
    """A writer whose disk fills after ``good`` writes (the recorder's own errors are under test)."""

    rate = 8000

    def __init__(self, good: int) -> None:
        self.good = good
        self.closed = False

    def write(self, stereo: np.ndarray) -> None:
        self.good -= 1
        if self.good < 0:
            raise OSError(errno.ENOSPC, "No space left on device")

    def close(self) -> None:
        self.closed = True


def test_a_write_that_fails_stops_the_recording_once_and_says_why() -> None:
    reasons: list[str] = []
    writer = FullDisk(good=3)
    recorder = CallRecorder(writer, reasons.append)
    for _ in range(10):
        recorder.caller_pcm(frame(1), RATE)
        recorder.tick()
    assert recorder.frames == 3 and not recorder.active and writer.closed
    assert reasons == ["recording stopped: No space left on device"] and recorder.failed == reasons[0]
    recorder.close()
    assert reasons == ["recording stopped: No space left on device"]
