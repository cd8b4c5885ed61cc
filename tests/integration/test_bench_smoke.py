"""The load benchmark (bench/): a small run against the real bridge, and its echo analysis on audio
with known damage. Checks that the harness works and measures what it says; no speed is asserted."""

from __future__ import annotations

import random
import struct
from collections.abc import Collection
from pathlib import Path

import numpy as np
import pylibsrtp
import pytest

from bench.load import echo, offer, speech, wire
from bench.load.cli import parser, run_bench
from bench.load.probe import ProbeCall
from bench.load.reference import Reference, reference
from bench.load.report import RESULTS_MD
from sipbridge.rtp.srtp import PROFILES
from testbed import audio

pytestmark = [
    pytest.mark.integration,
    pytest.mark.sipp,
    pytest.mark.skipif(bool(audio.missing_tools("espeak-ng", "sox")), reason="needs espeak-ng and sox"),
]


def test_small_run_has_no_failed_call_and_under_1_percent_loss(tmp_path: Path) -> None:
    """A tiny level with 1 and then 2 media workers: each runs, and the tree, the control process
    and each worker are measured."""
    md_before = RESULTS_MD.read_text() if RESULTS_MD.exists() else None
    argv = ["--calls", "4", "--workers", "1,2", "--hold", "8", "--rate", "10", "--quiet-wait", "5"]
    args = parser().parse_args([*argv, "--no-write-results", "--out", str(tmp_path)])

    results = run_bench(args)

    assert [(lv["concurrency"], lv["workers"]["requested"]) for lv in results["levels"]] == [(4, 1), (4, 2)]
    for level in results["levels"]:
        assert "error" not in level, level
        assert level["calls"]["ok"] == 4 and level["calls"]["failed"] == 0, level["calls"]
        media = level["media"]
        assert media["calls_without_media"] == 0, media
        assert media["frames_checked"] > 150, media  # ~4 calls x 4 s x 50 frames x the checkable half
        assert media["loss_pct"] < 1.0, (media, level["logs"])
        assert media["rtt_ms_p50"] is not None and media["rtt_ms_p50"] > 0
        cpu = level["cpu"]
        assert cpu["bridge_pct"] > 0 and level["floor"]["cpu_seconds"] > 0
        assert cpu["control_pct_per_call"] is not None and cpu["control_pct"] < cpu["bridge_pct"]
        assert level["ratio_bridge_to_floor"] is not None
        assert level["memory"]["peak_rss_kib"] >= level["memory"]["baseline_rss_kib"]
        assert level["setup_ms"]["n"] == 4
        workers = level["workers"]
        assert workers["count"] == workers["requested"] == len(workers["list"])
        assert sum(w["calls"] for w in workers["list"]) == 4, workers
        assert all(w["calls"] >= 1 and w["cpu_pct"] > 0 for w in workers["list"]), workers
        assert all(w["loop_lag_ms_max"] is not None for w in workers["list"]), workers
    assert (tmp_path / "results.json").is_file()
    assert (tmp_path / "level-4-w2").is_dir()
    assert (RESULTS_MD.read_text() if RESULTS_MD.exists() else None) == md_before


def test_wideband_and_opus_calls_with_srtp_carry_the_speech(tmp_path: Path) -> None:
    """The codec axis end to end: G.722 and relayed Opus, SRTP-protected both ways with the keys
    of offer and answer; every call's speech comes back through the bridge and the relay agent."""
    argv = ["--calls", "3", "--codecs", "G722,OPUS", "--srtp", "on", "--hold", "8", "--rate", "10"]
    args = parser().parse_args([*argv, "--quiet-wait", "5", "--no-write-results", "--out", str(tmp_path)])

    results = run_bench(args)

    assert [(lv["codec"], lv["srtp"]) for lv in results["levels"]] == [("G722", True), ("OPUS", True)]
    for level in results["levels"]:
        assert "error" not in level, level
        assert level["calls"]["ok"] == 3 and level["calls"]["failed"] == 0, level["calls"]
        media = level["media"]
        assert media["calls_without_media"] == 0 and media["return_packets_auth_failed"] == 0, media
        assert media["frames_checked"] > 100 and media["loss_pct"] < 1.0, (media, level["logs"])
        assert (level["floor"] is None) == (level["codec"] == "OPUS")  # Opus is relayed, not transcoded
    assert set(results["meta"]["speech"]["per_codec"]) == {"G722", "OPUS"}


# ------------------------------------------------------------------ the analysis on known damage

FRAME_NS = 20_000_000
T0 = 1_700_000_000_000_000_000
LAG = 7 * 160 + 53  # samples: the echo comes back 7 frames and 53 samples later
SENT = 1500  # 30 s
WINDOW = (T0 + 10 * FRAME_NS, T0 + (SENT - 40) * FRAME_NS)
SILENCE = b"\xff" * 160


@pytest.fixture(scope="module")
def voice(tmp_path_factory: pytest.TempPathFactory) -> tuple[speech.Speech, Reference]:
    made = speech.make(tmp_path_factory.mktemp("bench-speech"))
    return made, reference(made)


def _echoed_call(
    voice: speech.Speech,
    silenced: Collection[int] = (),
    dropped: Collection[int] = (),
    gaps: Collection[int] = (),
) -> ProbeCall:
    """A call whose echo is its own μ-law audio LAG samples later (as clean as G.711 gets), one
    packet every 20 ms, with return packets `silenced` (their 20 ms replaced by silence), `dropped`
    (the stream closes up) and a packet of silence added after each of `gaps` (the stream waits)."""
    call = ProbeCall(0, None, offset=0)  # type: ignore[arg-type]  # no socket: nothing is sent
    call.sent_k = list(range(SENT))
    call.sent_ns = [T0 + k * FRAME_NS for k in range(SENT)]
    stream = b"\xff" * LAG + b"".join(voice.frames[k % voice.count] for k in range(SENT))
    returned: list[bytes] = []
    for j in range(len(stream) // 160):
        if j not in dropped:
            returned.append(SILENCE if j in silenced else stream[j * 160 : j * 160 + 160])
        if j in gaps:
            returned.append(SILENCE)
    for j, frame in enumerate(returned):
        call.recv_ns.append(T0 + (j + 1) * FRAME_NS + 5_000_000)  # sent 5 ms after its last sample
        call.recv_packets.append(_rtp(j, frame))
    return call


def _rtp(j: int, payload: bytes, pt: int = 0) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, j % 65536, (j * 160) % 2**32, 99) + payload


def _sample(share: float, seed: int) -> set[int]:
    span = range(20, SENT - 50)
    return set(random.Random(seed).sample(span, int(share * len(span))))


def test_clean_echo_loses_nothing_and_times_the_round_trip(voice: tuple[speech.Speech, Reference]) -> None:
    made, ref = voice
    result = echo.analyse_call(_echoed_call(made), made, ref, WINDOW)

    assert result.checked > 500 and result.returned == result.checked
    assert result.timeline_steps == 0
    # the last sample of frame k is in return packet k + 8, which arrives 9 * 20 + 5 ms after k was sent
    assert np.allclose(result.rtt_ms, 185.0)


@pytest.mark.parametrize("share", [0.01, 0.03, 0.10, 0.20])
def test_silenced_return_audio_is_measured_as_loss(
    voice: tuple[speech.Speech, Reference], share: float
) -> None:
    made, ref = voice
    silenced = _sample(share, 7)

    result = echo.analyse_call(_echoed_call(made, silenced=silenced), made, ref, WINDOW)

    # Truth: a checkable frame sent in the window whose larger part (107 of its 160 samples, in
    # return packet k + 7) was silenced. Its other 53 samples can hold most of its energy, or the
    # silenced part of its neighbour most of the neighbour's: a few frames either way.
    in_window = range(10, SENT - 40 + 1)
    truth = sum(1 for k in in_window if ref.checkable[k % made.count] and k + 7 in silenced)
    lost = result.checked - result.returned
    assert result.checked == sum(1 for k in in_window if ref.checkable[k % made.count])
    assert abs(lost - truth) <= max(2, 0.2 * truth), (lost, truth)


def test_dropped_audio_is_loss_and_a_step(voice: tuple[speech.Speech, Reference]) -> None:
    made, ref = voice
    dropped = _sample(0.03, 11)
    refilled = {j + 3 for j in dropped}  # as a playout queue that ran short a little later

    result = echo.analyse_call(_echoed_call(made, dropped=dropped, gaps=refilled), made, ref, WINDOW)

    # each drop takes most of one frame, and the gap that follows may cut another one
    assert 0.02 <= result.loss <= 0.06, result.loss
    assert result.timeline_steps > 0


def test_playout_gaps_are_steps_not_loss(voice: tuple[speech.Speech, Reference]) -> None:
    made, ref = voice
    gaps = set(range(60, SENT - 60, 150))  # 10 gaps of 20 ms, each delays the rest of the call

    result = echo.analyse_call(_echoed_call(made, gaps=gaps), made, ref, WINDOW)

    # only a frame that a gap cuts in two can fail to match
    assert result.returned >= result.checked - len(gaps), (result.checked, result.returned)
    assert result.timeline_steps == len(gaps)
    assert max(result.rtt_ms) == pytest.approx(185.0 + 20 * len(gaps))


@pytest.mark.parametrize("srtp", [False, True], ids=["plain", "srtp"])
@pytest.mark.parametrize("codec", [wire.PCMU, wire.G722, wire.OPUS], ids=lambda c: c.name)
def test_a_clean_echo_in_each_codec_loses_nothing(
    voice: tuple[speech.Speech, Reference], codec: wire.WireCodec, srtp: bool
) -> None:
    """The probe's own payloads come back 7 frames later (as a relay would return them, each in a
    packet of its own), plain or SRTP-protected with the answer's key: decoded in sequence order,
    every checkable frame of the codec is found, at the round trip the packets took."""
    made, _ = voice
    ref = reference(made, codec)
    payloads = wire.encode_loop(codec, made)
    call = ProbeCall(0, None, offset=0)  # type: ignore[arg-type]  # no socket: nothing is sent
    call.sent_k = list(range(SENT))
    call.sent_ns = [T0 + k * FRAME_NS for k in range(SENT)]
    packets = [_rtp(j, payloads[(j - 7) % made.count], codec.payload_type) for j in range(SENT + 7)]
    if srtp:
        call.srtp_key, call.answer_key = offer.new_key(), offer.new_key()
        policy = pylibsrtp.Policy(
            key=call.answer_key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
            srtp_profile=PROFILES[offer.SUITE],
        )  # fmt: skip
        packets = _protect(policy, packets)
    call.recv_packets = packets
    call.recv_ns = [T0 + (j + 1) * FRAME_NS + 5_000_000 for j in range(len(packets))]

    result = echo.analyse_call(call, made, ref, WINDOW, codec)

    assert result.checked > 500 and result.returned == result.checked, (result.checked, result.returned)
    assert result.timeline_steps == 0 and result.auth_failed == 0 and result.other_packets == 0
    # frame k's last sample is in packet k + 7 (PCMU), or k + 8 behind the codec's own delay
    assert np.allclose(result.rtt_ms, 165.0 if codec is wire.PCMU else 185.0)


def _protect(policy: pylibsrtp.Policy, packets: list[bytes]) -> list[bytes]:
    session = pylibsrtp.Session(policy)
    return [session.protect(packet) for packet in packets]
