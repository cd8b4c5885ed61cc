"""The peer harness (tests/peers) proven against sipp's own UAS, before any bridge exists.

sipp's built-in UAS with -rtp_echo answers every call and sends every RTP packet straight back, so a
call through it must come back as the very audio that was sent (G.711 quantisation aside).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from tests.peers import audio, baresip, sipp
from tests.peers.procs import (
    LOOPBACK,
    ManagedProcess,
    free_port_block,
    group_members,
    process_alive,
    udp_port_bound,
    wait_for,
    wait_until,
)

pytestmark = pytest.mark.integration

RATE = 8000
SPEECH = "This is the bridge test, counting one two three four."  # 3.0 s


def _skip_unless(*tools: str) -> pytest.MarkDecorator:
    missing = audio.missing_tools(*tools)
    return pytest.mark.skipif(bool(missing), reason=f"not installed: {', '.join(missing)} (make system-deps)")


needs_sipp = _skip_unless("sipp")
needs_speech = _skip_unless("espeak-ng", "sox")
needs_baresip = _skip_unless("baresip")


@pytest.fixture
def echo_uas(tmp_path: Path) -> Iterator[sipp.SippServer]:
    with sipp.sipp_uas(workdir=tmp_path / "uas") as uas:
        yield uas


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 3 s of speech at 8 kHz, no padding."""
    return audio.make_speech(SPEECH, tmp_path_factory.mktemp("speech") / "speech.wav")


# --------------------------------------------------------------------------------------------- sipp


@needs_sipp
@needs_speech
def test_sipp_pcmu_audio_call_completes(echo_uas: sipp.SippServer, speech: Path, tmp_path: Path) -> None:
    ulaw = audio.wav_to_ulaw_raw(speech, tmp_path / "speech.ul")

    result = sipp.run_scenario(
        "uac_pcmu_audio",
        echo_uas.address,
        hold_ms=1000,
        keys={"audio_file": ulaw, "caller": "+15550100"},
        timeout=15,
        workdir=tmp_path / "uac",
    )

    result.assert_success(calls=1)
    wire = result.messages()
    assert 'From: "+15550100" <sip:+15550100@127.0.0.1' in wire
    # ACK and BYE go to the UAS's Contact (it carries ;transport=UDP), not to the INVITE's URI
    assert f"ACK sip:{LOOPBACK}:{echo_uas.port};transport=UDP SIP/2.0" in wire
    assert f"BYE sip:{LOOPBACK}:{echo_uas.port};transport=UDP SIP/2.0" in wire


@needs_sipp
def test_sipp_runs_several_calls_at_a_rate(echo_uas: sipp.SippServer, tmp_path: Path) -> None:
    result = sipp.run_scenario(
        "uac_pcmu_call", echo_uas.address, calls=5, rate=20, hold_ms=200, timeout=15, workdir=tmp_path
    )

    result.assert_success(calls=5)
    assert result.stats["OutgoingCall(C)"] == "5"


# Each UAC scenario against a sipp UAS double that behaves as the bridge should.
DOUBLES = [
    pytest.param("uac_cancel", "uas_ring_until_cancel", {}, None, id="cancel"),
    # the 180 arrives while the caller waits to cancel
    pytest.param("uac_cancel", "uas_ring_until_cancel", {}, 300, id="cancel-later"),
    pytest.param(
        "uac_g729_only", "uas_reject", {"status": "488", "reason": "Not Acceptable Here"}, None, id="488"
    ),
    pytest.param(
        "uac_expect_503", "uas_reject", {"status": "503", "reason": "Service Unavailable"}, None, id="503"
    ),
    pytest.param("uac_options", "uas_options", {}, None, id="options"),
]


@needs_sipp
@pytest.mark.parametrize(("uac", "uas", "uas_keys", "hold_ms"), DOUBLES)
def test_scenario_passes_against_a_well_behaved_uas(
    uac: str, uas: str, uas_keys: dict[str, str], hold_ms: int | None, tmp_path: Path
) -> None:
    with sipp.sipp_uas(uas, calls=1, keys=uas_keys, rtp_echo=False, workdir=tmp_path / "uas") as server:
        result = sipp.run_scenario(uac, server.address, hold_ms=hold_ms, timeout=10, workdir=tmp_path / "uac")
        server_result = server.result(timeout=5)

    result.assert_success(calls=1)
    server_result.assert_success(calls=1)


# The same scenarios are strict about what they test: the wrong answer fails the call, quickly.
MISBEHAVING = [
    pytest.param(
        "uac_expect_503", "uas_reject", {"status": "488", "reason": "Not Acceptable Here"}, id="488-not-503"
    ),
    pytest.param(
        "uac_g729_only", "uas_reject", {"status": "503", "reason": "Service Unavailable"}, id="503-not-488"
    ),
    # sipp's built-in UAS answers 200 regardless (with the CANCEL's CSeq, as it copies the last one
    # received): no 487 ever comes, and the call fails at the receive timeout
    pytest.param("uac_cancel", "uas", {}, id="answered-not-cancelled"),
]


@needs_sipp
@pytest.mark.parametrize(("uac", "uas", "uas_keys"), MISBEHAVING)
def test_scenario_fails_against_a_wrong_answer(
    uac: str, uas: str, uas_keys: dict[str, str], tmp_path: Path
) -> None:
    started = time.monotonic()
    with sipp.sipp_uas(uas, keys=uas_keys, rtp_echo=False, workdir=tmp_path / "uas") as server:
        result = sipp.run_scenario(
            uac, server.address, recv_timeout_ms=1000, timeout=10, workdir=tmp_path / "uac"
        )

    assert not result.ok and result.failed == 1, result.report()
    assert time.monotonic() - started < 3, "a wrong answer must fail the call, not hang"


@needs_sipp
def test_scenario_without_an_answer_fails_at_the_receive_timeout(tmp_path: Path) -> None:
    silent = free_port_block(1)  # nobody listens there
    started = time.monotonic()

    result = sipp.run_scenario("uac_options", f"{LOOPBACK}:{silent}", recv_timeout_ms=1000, timeout=10)

    assert result.failed == 1 and not result.ok, result.report()
    assert time.monotonic() - started < 5


def test_missing_scenario_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="audio_file"):
        sipp.render_scenario(sipp.scenario_path("uac_pcmu_audio"), {"caller": "x"}, tmp_path)


# --------------------------------------------------------------------------------------------- baresip


@needs_sipp
@needs_speech
@needs_baresip
def test_baresip_hears_its_own_speech_through_the_echo(
    echo_uas: sipp.SippServer, speech: Path, tmp_path: Path
) -> None:
    seconds = audio.wav_duration(speech) + 0.5  # silence after the speech, so the echo gets back in time

    rec = baresip.run_call(echo_uas.uri, speech, tmp_path / "call", seconds, caller="+15550123")

    assert rec.established and rec.sent and rec.heard, rec.report()
    match = baresip.compare_recording(rec)
    print(f"\nbaresip -> sipp -rtp_echo -> baresip, PCMU: {match}")
    assert match.correlation > 0.99, f"{match}\n{rec.report()}"
    assert match.coverage > 0.95, f"{match}\n{rec.report()}"
    assert match.snr_db > 30, f"{match}\n{rec.report()}"
    # the caller identity is baresip's From user
    assert "From: <sip:+15550123@127.0.0.1" in (echo_uas.workdir / "messages.log").read_text()


@needs_sipp
@needs_speech
@needs_baresip
def test_baresip_reports_the_far_end_hanging_up(speech: Path, tmp_path: Path) -> None:
    with sipp.sipp_uas("uas_answer_then_bye", calls=1, hold_ms=500, workdir=tmp_path / "uas") as uas:
        rec = baresip.run_call(uas.uri, speech, tmp_path / "call", seconds=10)
        uas.result().assert_success(calls=1)

    assert rec.hung_up_by_far_end, rec.report()


@needs_sipp
@needs_speech
@needs_baresip
def test_baresip_reports_a_rejected_call(speech: Path, tmp_path: Path) -> None:
    keys = {"status": "486", "reason": "Busy Here"}
    with sipp.sipp_uas("uas_reject", calls=1, keys=keys, rtp_echo=False, workdir=tmp_path / "uas") as uas:
        rec = baresip.run_call(uas.uri, speech, tmp_path / "call", seconds=10)

    assert not rec.established and rec.closed_reason == "486 Busy Here", rec.report()
    assert rec.heard is None


# --------------------------------------------------------------------------------------------- compare


def _voice_like(seconds: float, seed: int) -> np.ndarray:
    """Noise shaped into syllables: speech-like enough for the lag search, needs no binaries."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    envelope = np.clip(np.sin(2 * np.pi * 3.1 * t + rng.uniform(0, 6)), 0, None) ** 2
    return (0.3 * envelope * rng.standard_normal(n)).astype(np.float32)


def test_compare_identical_signals_match_exactly() -> None:
    x = _voice_like(2.0, seed=1)

    m = audio.compare(x, x, RATE)

    assert m.correlation == pytest.approx(1.0, abs=1e-9)
    assert m.lag_seconds == 0.0 and m.gain == pytest.approx(1.0) and m.coverage == pytest.approx(1.0)
    assert m.snr_db > 100


def test_compare_finds_the_delay_through_silence_gain_and_noise() -> None:
    x = _voice_like(2.0, seed=2)
    sent = np.concatenate([np.zeros(RATE // 2, np.float32), x, np.zeros(RATE // 4, np.float32)])
    delay = int(0.345 * RATE)
    heard = np.concatenate([np.zeros(delay, np.float32), 0.5 * sent])
    heard += 0.005 * np.random.default_rng(3).standard_normal(len(heard)).astype(np.float32)

    m = audio.compare(sent, heard, RATE)

    assert m.lag_seconds == pytest.approx(0.345, abs=1 / RATE)
    assert m.correlation > 0.99 and m.gain == pytest.approx(0.5, rel=0.01)
    # signal power 0.5² · 0.3² · mean(envelope²) = 0.25 · 0.09 · 3/16 against noise power 0.005²
    assert m.snr_db == pytest.approx(10 * np.log10(0.25 * 0.09 * 3 / 16 / 0.005**2), abs=0.5)


def test_compare_unrelated_signals_correlate_poorly() -> None:
    m = audio.compare(_voice_like(2.0, seed=4), _voice_like(3.0, seed=5), RATE)

    assert m.correlation < 0.2


def test_compare_does_not_look_beyond_max_lag() -> None:
    x = _voice_like(1.0, seed=6)
    heard = np.concatenate([np.zeros(3 * RATE, np.float32), x])

    assert audio.compare(x, heard, RATE, max_lag_s=4.0).lag_seconds == pytest.approx(3.0)
    assert audio.compare(x, heard, RATE, max_lag_s=2.0).correlation < 0.2


def test_compare_partial_overlap_shows_in_coverage() -> None:
    x = _voice_like(2.0, seed=7)

    m = audio.compare(x, x[:RATE], RATE)  # only the first second was heard

    assert m.lag_seconds == 0.0 and m.correlation == pytest.approx(1.0, abs=1e-3)
    assert 0.3 < m.coverage < 0.7


def test_compare_silence() -> None:
    x = _voice_like(1.0, seed=8)

    assert audio.compare(x, np.zeros(RATE, np.float32), RATE).correlation == 0.0
    with pytest.raises(ValueError, match="silent"):
        audio.compare(np.zeros(RATE, np.float32), x, RATE)


@needs_speech
def test_compare_speech_through_g711_and_other_speech(speech: Path, tmp_path: Path) -> None:
    ulaw = audio.wav_to_ulaw_raw(speech, tmp_path / "s.ul")
    decoded = audio.ulaw_raw_to_wav(ulaw, tmp_path / "s.wav")
    other = audio.make_speech("Nothing like the other sentence at all, really.", tmp_path / "o.wav")
    sent, _ = audio.read_wav(speech)

    through_g711 = audio.compare_files(speech, decoded)
    unrelated = audio.compare(sent, audio.read_wav(other)[0], RATE)

    print(f"\nG.711 round trip: {through_g711}\nother speech: {unrelated}")
    assert through_g711.correlation > 0.999 and through_g711.lag_seconds == 0.0
    assert 30 < through_g711.snr_db < 45  # mu-law: ~38 dB on speech
    assert unrelated.correlation < 0.5


@needs_speech
def test_make_speech_pads_with_silence(tmp_path: Path) -> None:
    plain = audio.make_speech("one two", tmp_path / "a.wav")
    padded = audio.make_speech("one two", tmp_path / "b.wav", pad_seconds=1.5)
    x, rate = audio.read_wav(padded)

    assert rate == RATE
    assert audio.wav_duration(padded) == pytest.approx(audio.wav_duration(plain) + 1.5, abs=1e-3)
    assert not np.any(x[-int(1.4 * RATE) :])  # digital silence: no dither


# --------------------------------------------------------------------------------------------- procs


def test_managed_process_stops_its_whole_group_even_on_failure(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    # leader and child ignore SIGTERM (the trap comes first, so no SIGTERM can beat it)
    script = f"trap '' TERM; sleep 30 & echo $! > {pids}; sleep 30"

    with pytest.raises(RuntimeError, match="boom"):
        with ManagedProcess(["sh", "-c", script], logdir=tmp_path, grace=0.3) as proc:
            wait_until(lambda: pids.exists() and pids.read_text().strip(), 5)
            child = int(pids.read_text())
            raise RuntimeError("boom")

    assert not proc.running
    assert proc.returncode == -signal.SIGKILL
    assert not process_alive(child)
    assert group_members(proc.pid) == []


def test_managed_process_keeps_output_and_waits(tmp_path: Path) -> None:
    with ManagedProcess(["sh", "-c", "echo out; echo err >&2; exit 3"], name="echo", logdir=tmp_path) as p:
        assert p.wait(5) == 3
    assert p.stdout() == "out\n" and p.stderr() == "err\n"
    assert "exit 3" in p.tail()


def test_wait_until_returns_the_value_or_the_last_falsy_one() -> None:
    assert wait_until(lambda: 42, 1) == 42
    started = time.monotonic()
    assert wait_until(lambda: 0, 0.2) == 0
    assert time.monotonic() - started < 1


def test_wait_for_raises_naming_what_it_waited_for() -> None:
    with pytest.raises(TimeoutError, match="the thing"):
        wait_for(lambda: None, 0.2, what=lambda: "the thing")


def test_free_port_block_is_free_for_udp_and_tcp() -> None:
    base = free_port_block(3, udp=True, tcp=True)

    assert base % 2 == 0
    assert not any(udp_port_bound(base + i) for i in range(3))
