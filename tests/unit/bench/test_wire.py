"""bench.load.wire and bench.load.received: the speech coded once for each codec of the axis, and
what comes back unprotected and decoded in sequence order, on a synthetic voice (no espeak-ng)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

import numpy as np
import pylibsrtp
import pytest

from bench.load import offer, wire
from bench.load.probe import ProbeCall, RtpProbe
from bench.load.received import rtp_payload, stream_of
from bench.load.reference import best_match, similarity
from bench.load.speech import Speech, ulaw_to_float
from sipbridge.media import g711
from sipbridge.rtp.srtp import PROFILES

FRAMES = 100  # 2 s


@pytest.fixture(scope="module")
def voice() -> Speech:
    """Voiced-like audio: a 140 Hz pulse train with moving formant-like tones, loud and soft parts."""
    t = np.arange(FRAMES * 160) / 8000.0
    envelope = 0.3 + 0.25 * np.sin(2 * np.pi * 1.0 * t)  # periodic over the loop, as the speech
    tones = ((1, 140), (2, 560), (3, 1210), (4, 2300))
    signal = sum(np.sin(2 * np.pi * f * t + np.sin(2 * np.pi * 0.5 * t)) / n for n, f in tones)
    pcm = np.rint(envelope * signal / 2.2 * 32767).astype(np.int16)
    raw = g711.encoder_for("PCMU")(pcm)
    return Speech([raw[i : i + 160] for i in range(0, len(raw), 160)], ulaw_to_float(raw))


def _decoded(codec: wire.WireCodec, payloads: list[bytes], loops: int = 2) -> np.ndarray:
    decoder = wire.StreamDecoder(codec)
    frames = [decoder.decode(payloads[k % len(payloads)]) for k in range(loops * len(payloads))]
    assert all(f is not None and len(f) == 160 for f in frames)
    audio = np.concatenate(frames)
    return audio[decoder.delay_samples :]


def test_codec_names_are_read_in_any_case_once_each() -> None:
    assert [c.name for c in wire.codecs_from("pcmu, G722,opus,PCMU")] == ["PCMU", "G722", "OPUS"]
    with pytest.raises(SystemExit):
        wire.codecs_from("PCMU,GSM")
    with pytest.raises(SystemExit):
        wire.codecs_from(",")


def test_pcmu_sends_the_speech_frames_themselves(voice: Speech) -> None:
    assert wire.encode_loop(wire.PCMU, voice) == voice.frames


@pytest.mark.parametrize(("codec", "lag_at_most", "match"), [(wire.G722, 16, 0.95), (wire.OPUS, 60, 0.7)])
def test_a_coded_loop_decodes_to_the_speech_it_holds_frame_for_frame(
    voice: Speech, codec: wire.WireCodec, lag_at_most: int, match: float
) -> None:
    payloads = wire.encode_loop(codec, voice)

    assert len(payloads) == voice.count
    assert all(len(p) == 160 for p in payloads) if codec.fixed_size else all(payloads)
    heard = _decoded(codec, payloads, loops=3)
    n = len(voice.linear)
    lag, _ = best_match(voice.linear[:4000], heard[n : n + 4000 + 200])
    # payload k holds frame k: only the codec's own delay (G.722's filter bank, Opus's look-ahead)
    assert 0 <= lag <= lag_at_most, lag
    frames = voice.linear.reshape(-1, 160)
    loop = similarity(frames, heard[n + lag : 2 * n + lag].reshape(-1, 160))
    assert loop.min() > match, loop.min()
    # where the probe wraps around (the second loop into the third), as good as anywhere else
    seam = similarity(frames[[-2, -1, 0, 1]], heard[2 * n - 320 + lag : 2 * n + 320 + lag].reshape(-1, 160))
    assert seam.min() >= np.percentile(loop, 5) - 0.02, (seam, np.percentile(loop, 5))


def test_the_periodic_upsampled_loop_has_no_delay_and_no_seam() -> None:
    t = np.arange(8000) / 8000.0
    tone = np.rint(8000 * np.sin(2 * np.pi * 250 * t)).astype(np.int16)  # whole cycles per loop

    up = wire.periodic_at(tone, 16000)

    ideal = 8000 * np.sin(2 * np.pi * 250 * np.arange(16000) / 16000.0)
    assert len(up) == 16000 and np.max(np.abs(up - ideal)) < 40


def test_coders_with_state_code_the_loop_twice_and_keep_the_second_pass() -> None:
    seen: list[int] = []

    def encode(frame: np.ndarray) -> bytes:  # codes each frame with the one before it as state
        coded = bytes([seen[-1] if seen else 255, int(frame[0])])
        seen.append(int(frame[0]))
        return coded

    coded = wire.code_twice(encode, np.repeat(np.arange(4, dtype=np.int16), 2), frame=2)

    assert coded == [bytes([3, 0]), bytes([0, 1]), bytes([1, 2]), bytes([2, 3])]


def test_payloads_the_codec_cannot_take_are_refused_and_a_gap_is_silence() -> None:
    for codec in (wire.PCMU, wire.G722):
        assert wire.StreamDecoder(codec).decode(b"\x00" * 80) is None
    opus = wire.StreamDecoder(wire.OPUS)
    assert opus.decode(b"\xff\xff\xff") is None  # not an Opus packet
    assert not opus.missing().any() and len(opus.missing()) == 160


# -- received: parsing, SRTP, sequence order -------------------------------------------------------


def rtp(seq: int, payload: bytes, pt: int = 0, first: int = 0x80, extra: bytes = b"") -> bytes:
    return struct.pack("!BBHII", first, pt, seq & 0xFFFF, seq * 160, 4321) + extra + payload


def test_the_payload_is_found_after_csrcs_and_an_extension_and_before_padding() -> None:
    body = b"\x11" * 10
    assert rtp_payload(rtp(1, body)) == body
    assert rtp_payload(rtp(1, body, first=0x82, extra=b"\x00" * 8)) == body  # two CSRCs
    extension = b"\xbe\xde\x00\x01" + b"\x00" * 4
    assert rtp_payload(rtp(1, body, first=0x90, extra=extension)) == body
    assert rtp_payload(rtp(1, body + b"\x00\x00\x03", first=0xA0)) == body  # 3 bytes of padding
    assert rtp_payload(b"\x00" * 20) is None  # not RTP version 2


def _call(packets: list[bytes]) -> ProbeCall:
    call = ProbeCall(0, None, offset=0)  # type: ignore[arg-type]  # no socket: nothing is sent
    call.recv_packets = packets
    call.recv_ns = [1_000_000 * (i + 1) for i in range(len(packets))]
    return call


def test_returned_packets_are_laid_out_by_sequence_number_across_the_wrap(voice: Speech) -> None:
    frames = voice.frames
    packets = [
        rtp(65534, frames[0]),
        rtp(65535, frames[1]),
        rtp(0, frames[2]),
        rtp(0, frames[5]),  # a duplicate: the first one counts
        rtp(2, frames[4]),  # 1 is missing
        rtp(3, frames[3], pt=8),  # not the call's codec
        bytes([0x81, 200]) + b"\x00" * 26,  # RTCP (to our port + 1): ignored
    ]

    stream = stream_of(_call(packets), wire.PCMU)

    assert (stream.packets, stream.missing, stream.other, stream.auth_failed) == (4, 1, 1, 0)
    expected = np.concatenate([voice.linear[:480], np.zeros(160), voice.linear[640:800]])
    assert np.array_equal(stream.audio, expected)
    assert stream.arrival_ns.tolist() == [1_000_000, 2_000_000, 3_000_000, -1, 5_000_000]


def _protector(key: bytes) -> pylibsrtp.Session:
    policy = pylibsrtp.Policy(
        key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND, srtp_profile=PROFILES[offer.SUITE]
    )
    return pylibsrtp.Session(policy)


def test_srtp_packets_are_unprotected_with_the_answers_key(voice: Speech) -> None:
    answer = offer.new_key()
    bridge = _protector(answer)
    packets = [bridge.protect(rtp(k, voice.frames[k])) for k in range(10)]
    call = _call(packets)
    call.srtp_key = offer.new_key()

    call.answer_key = answer
    stream = stream_of(call, wire.PCMU)
    assert (stream.packets, stream.auth_failed) == (10, 0)
    assert np.array_equal(stream.audio, voice.linear[:1600])

    call.answer_key = offer.new_key()  # not the bridge's key
    wrong = stream_of(call, wire.PCMU)
    assert (wrong.packets, wrong.auth_failed) == (0, 10)
    call.answer_key = None  # the answer's key never arrived
    assert stream_of(call, wire.PCMU).auth_failed == 10


@pytest.mark.parametrize("codec", [wire.G722, wire.OPUS])
def test_a_wideband_stream_comes_back_at_8khz_with_the_analysis_resampler_taken_out(
    voice: Speech, codec: wire.WireCodec
) -> None:
    payloads = wire.encode_loop(codec, voice)
    packets = [rtp(k, payloads[k % voice.count], pt=codec.payload_type) for k in range(2 * voice.count)]

    stream = stream_of(_call(packets), codec)

    assert stream.packets == 2 * voice.count and stream.missing == 0
    n = len(voice.linear)
    lag, score = best_match(voice.linear[:4000], stream.audio[n : n + 4200])
    # only the codec's own delay is left: G.722's filter bank (11 samples), Opus's look-ahead
    assert (lag == 11 if codec is wire.G722 else 0 <= lag <= 60) and score > 0.85, (lag, score)


# -- the probe sends the coded loop ------------------------------------------------------------------


async def _probe_sends(probe: RtpProbe, frames: int) -> list[bytes]:
    """Latch the probe's one call to a peer socket (its first packet), take `frames` packets."""
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    peer.settimeout(0.001)
    stop = asyncio.Event()
    task = asyncio.create_task(probe.run(stop))
    try:
        peer.sendto(rtp(0, b"\xff" * 160), ("127.0.0.1", probe.ports[0]))
        got: list[bytes] = []
        for _ in range(500):
            await asyncio.sleep(0.01)
            with contextlib.suppress(TimeoutError, BlockingIOError):
                got.append(peer.recv(2048))
            if len(got) >= frames:
                break
        return got
    finally:
        stop.set()
        await task
        peer.close()
        probe.close()


@pytest.mark.parametrize("srtp", [False, True])
async def test_the_probe_sends_the_coded_loop_with_the_codecs_payload_type_and_clock(
    voice: Speech, srtp: bool
) -> None:
    payloads = wire.encode_loop(wire.OPUS, voice)
    probe = RtpProbe(1, voice, codec=wire.OPUS, payloads=payloads, srtp=srtp)
    call = probe.calls[0]
    assert (call.srtp_key is not None) == srtp

    sent = await _probe_sends(probe, frames=3)

    if srtp:  # protected with the key our offer carries: the bridge unprotects with that one
        inbound = pylibsrtp.Session(
            pylibsrtp.Policy(key=call.srtp_key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND,
                             srtp_profile=PROFILES[offer.SUITE])
        )  # fmt: skip
        sent = [inbound.unprotect(packet) for packet in sent]
    assert len(sent) >= 3
    for k, packet in enumerate(sent[:3]):
        pt, seq, stamp = packet[1] & 0x7F, *struct.unpack("!HI", packet[2:8])
        assert (pt, seq, stamp) == (111, k, 960 * k)
        assert rtp_payload(packet) == payloads[(call.offset + k) % voice.count]
    assert call.recv_packets and call.latched_ns is not None  # the peer's packet, kept as it came
