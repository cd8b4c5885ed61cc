"""Opus relayed on the phone leg: packet durations from the TOC byte, concealment made on demand,
and the packet queue towards the phone."""

import numpy as np
import pytest

from sipbridge.media.opus import OpusDecoder, OpusEncoder, OpusSettings
from sipbridge.media.opus_packet import packet_samples
from sipbridge.media.opus_relay import MAX_CONCEALED, OpusConcealer, OpusToPhone, silence_packet


def speech_like(frames: int) -> list[bytes]:
    encoder = OpusEncoder(OpusSettings(pcm_rate=48000, application="audio", fec=True))
    t = np.arange(frames * 960) / 48000
    signal = (np.sin(2 * np.pi * 300 * t) * (1 + np.sin(2 * np.pi * 3 * t)) * 6000).astype(np.int16)
    return [encoder.encode(signal[k * 960 : (k + 1) * 960]) for k in range(frames)]


@pytest.mark.parametrize(
    ("payload", "samples"),
    [
        (bytes([0b00001_0_00, 1]), 960),  # SILK NB 20 ms, one frame
        (bytes([0b00011_0_00, 1]), 2880),  # SILK NB 60 ms
        (bytes([0b01111_0_01, 1, 2]), 1920),  # hybrid FB 20 ms, two frames
        (bytes([0b11111_0_00]), 960),  # CELT FB 20 ms
        (bytes([0b10000_0_00]), 120),  # CELT NB 2.5 ms
        (bytes([0b11111_0_11, 3]), 2880),  # CELT 20 ms, code 3 with three frames
        (bytes([0b11111_0_11, 7]), 0),  # 140 ms: more than RFC 6716 allows
        (bytes([0b11111_0_11]), 0),  # code 3 without its frame count
        (b"", 0),
    ],
)
def test_a_packets_duration_comes_from_its_toc(payload, samples):
    assert packet_samples(payload) == samples


def test_real_packets_are_20_ms():
    assert {packet_samples(p) for p in speech_like(5)} == {960}


def test_a_lost_packet_is_made_from_the_one_before_and_decodes():
    packets = speech_like(10)
    concealer = OpusConcealer()
    for packet in packets[:5]:
        assert concealer.good(packet) is packet  # nothing coded while nothing is lost
    [made] = concealer.conceal(1)
    assert made not in packets and packet_samples(made) == 960
    assert len(OpusDecoder(48000).decode(made)) == 960
    [from_fec] = concealer.conceal(1, next_payload=packets[7])
    assert (concealer.concealed, concealer.recovered_fec) == (1, 1)
    assert from_fec != made


def test_a_long_gap_becomes_silence_after_the_concealed_frames():
    concealer = OpusConcealer()
    concealer.good(speech_like(1)[0])
    made = concealer.conceal(MAX_CONCEALED + 3)
    assert made[MAX_CONCEALED:] == [silence_packet()] * 3 and silence_packet() not in made[:MAX_CONCEALED]
    assert OpusConcealer().conceal(1) == [silence_packet()]  # nothing came yet: silence


def test_the_queue_to_the_phone_keeps_packets_whole_and_bounded():
    queue = OpusToPhone()
    packets = speech_like(30)
    for packet in packets:
        queue.push_packet(packet)
    assert queue.buffered_ms == 400 and queue.dropped_ms == 200  # the oldest 10 dropped
    assert queue.pop_frame() == packets[10] and queue.queued_frames == 19
    queue.clear()
    assert queue.pop_frame() is None and queue.underruns == 1
