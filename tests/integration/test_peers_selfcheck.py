"""The peer harness (testbed) proven against sipp's own UAS, before any bridge exists.

sipp's built-in UAS with -rtp_echo answers every call and sends every RTP packet straight back, so a
call through it must come back as the very audio that was sent (G.711 quantisation aside).
"""

from __future__ import annotations

import re
import signal
import socket
import ssl
import threading
import time
import uuid
import wave
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Self

import numpy as np
import pytest

from testbed import audio, baresip, kamailio, sipp, tls_certs
from testbed.procs import (
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


needs_speech = _skip_unless("espeak-ng", "sox")
needs_baresip = _skip_unless("baresip")
needs_kamailio = pytest.mark.skipif(
    not kamailio.available(), reason="not installed: kamailio (make system-deps)"
)
needs_kamailio_tls = pytest.mark.skipif(
    not kamailio.available(tls=True), reason="not installed: kamailio-tls-modules (make system-deps)"
)


@pytest.fixture
def echo_uas(tmp_path: Path) -> Iterator[sipp.SippServer]:
    with sipp.sipp_uas(workdir=tmp_path / "uas") as uas:
        yield uas


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 3 s of speech at 8 kHz, no padding."""
    return audio.make_speech(SPEECH, tmp_path_factory.mktemp("speech") / "speech.wav")


# --------------------------------------------------------------------------------------------- sipp


@pytest.mark.sipp
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


@pytest.mark.sipp
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


@pytest.mark.sipp
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


@pytest.mark.sipp
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


@pytest.mark.sipp
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


@pytest.mark.sipp
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


@pytest.mark.sipp
@needs_speech
@needs_baresip
def test_baresip_reports_the_far_end_hanging_up(speech: Path, tmp_path: Path) -> None:
    with sipp.sipp_uas("uas_answer_then_bye", calls=1, hold_ms=500, workdir=tmp_path / "uas") as uas:
        rec = baresip.run_call(uas.uri, speech, tmp_path / "call", seconds=10)
        uas.result().assert_success(calls=1)

    assert rec.hung_up_by_far_end, rec.report()


@pytest.mark.sipp
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


def test_compare_windowed_identical_signals() -> None:
    x = _voice_like(4.0, seed=9)

    m = audio.compare_windowed(x, x, RATE)

    assert m.median == pytest.approx(1.0, abs=1e-9) and m.p10 == pytest.approx(1.0, abs=1e-9)
    assert m.windows >= 6 and m.lag_min_seconds == m.lag_max_seconds == 0.0


def test_compare_windowed_follows_a_20_ms_slip_that_halves_the_single_lag_figure() -> None:
    # What a jitter buffer does when it drops a frame mid-call: the rest arrives 20 ms earlier.
    x = _voice_like(6.0, seed=10)
    delay, cut = int(0.15 * RATE), len(x) // 2
    heard = np.concatenate([np.zeros(delay, np.float32), x[:cut], x[cut + RATE // 50 :]])

    single = audio.compare(x, heard, RATE)
    m = audio.compare_windowed(x, heard, RATE)

    assert single.correlation < 0.8
    assert m.median > 0.99 and m.overall == single
    assert m.lag_spread_seconds == pytest.approx(0.02, abs=1 / RATE)
    assert {round(lag, 3) for _, _, lag in m.per_window} == {0.13, 0.15}


def test_compare_windowed_unrelated_signals_and_silence() -> None:
    x = _voice_like(4.0, seed=11)

    assert audio.compare_windowed(x, _voice_like(5.0, seed=12), RATE).median < 0.2
    assert audio.compare_windowed(x, np.zeros(5 * RATE, np.float32), RATE).median == 0.0


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
    # SIGKILL to the group is sent at once, but a busy machine may take a moment to deliver it
    assert wait_until(lambda: not process_alive(child), 2)
    assert wait_until(lambda: group_members(proc.pid) == [], 2)


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


# --------------------------------------------------------------------------------------------- kamailio


def _first_request(messages: str, method: str) -> str:
    """The first `method` request in a sipp message trace (headers only)."""
    found = re.search(rf"^{method} sip:.*?(?=\r?\n\r?\n)", messages, re.MULTILINE | re.DOTALL)
    assert found, f"no {method} in the trace:\n{messages[-3000:]}"
    return found.group(0)


@pytest.mark.sipp
@needs_kamailio
@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_kamailio_relays_a_call_and_routes_its_bye(transport: str, tmp_path: Path) -> None:
    """sipp (UDP) -> kamailio -> sipp UAS (UDP or TCP): record-routed, so ACK and BYE come back through."""
    with (
        sipp.sipp_uas(
            "uas_answer_record_route", calls=1, rtp_echo=False, transport=transport, workdir=tmp_path / "uas"
        ) as uas,
        kamailio.proxy((LOOPBACK, uas.port), transport=transport, workdir=tmp_path / "kam") as kam,
    ):
        result = sipp.run_scenario(
            "uac_pcmu_call", kam.address, hold_ms=100, timeout=10, workdir=tmp_path / "uac"
        )
        uas_result = uas.result(timeout=5)
        bye = kam.wait_for_event("sent", "BYE")

    result.assert_success(calls=1)
    uas_result.assert_success(calls=1)
    # the server saw the proxy: its Record-Route (two when the transport changes), its Via on top
    invite = _first_request(uas_result.messages(), "INVITE")
    record_routes = re.findall(r"^Record-Route: <([^>]*)>", invite, re.MULTILINE)
    if transport == "udp":
        assert record_routes == [f"sip:{kam.address};lr"], invite
    else:
        assert record_routes == [f"sip:{kam.address};transport=tcp;r2=on;lr", f"sip:{kam.address};r2=on;lr"]
    assert f"Via: SIP/2.0/{transport.upper()} {kam.address};branch=" in invite
    assert f"INVITE sip:service@{LOOPBACK}:{uas.port} SIP/2.0" in invite  # Request-URI rewritten
    # the caller learnt the route set, and kamailio routed ACK and BYE by it to the UAS's Contact
    assert "Route: <sip:" in _first_request(result.messages(), "BYE")
    assert [e.method for e in kam.events("loose")] == ["ACK", "BYE"], kam.report()
    assert bye.peer == f"{transport}:{LOOPBACK}:{uas.port}", kam.report()
    assert f"Via: SIP/2.0/{transport.upper()} {kam.address};branch=" in _first_request(
        uas_result.messages(), "BYE"
    )
    assert [e.ruri for e in kam.events("reply", "BYE")] == ["200 OK"]


@pytest.mark.sipp
@needs_kamailio
@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_kamailio_routes_the_callees_bye_back_to_the_caller(transport: str, tmp_path: Path) -> None:
    """The server hangs up: its BYE, with the route set from the Record-Route, goes through kamailio."""
    with (
        sipp.sipp_uas(
            "uas_record_route_then_bye",
            calls=1,
            hold_ms=100,
            rtp_echo=False,
            transport=transport,
            workdir=tmp_path / "uas",
        ) as uas,
        kamailio.proxy((LOOPBACK, uas.port), transport=transport, workdir=tmp_path / "kam") as kam,
    ):
        result = sipp.run_scenario("uac_wait_for_bye", kam.address, timeout=10, workdir=tmp_path / "uac")
        uas_result = uas.result(timeout=5)
        bye = kam.wait_for_event("loose", "BYE")
        sent = kam.wait_for_event("sent", "BYE")

    result.assert_success(calls=1)
    uas_result.assert_success(calls=1)
    assert "Route: <sip:" in _first_request(uas_result.messages(), "BYE")
    assert bye.peer == f"{transport}:{LOOPBACK}:{uas.port}", kam.report()
    assert sent.peer.startswith(f"udp:{LOOPBACK}:"), kam.report()  # on to the caller's Contact
    assert f"Via: SIP/2.0/UDP {kam.address};branch=" in _first_request(result.messages(), "BYE")


REJECT_503 = {"status": "503", "reason": "Service Unavailable"}


@pytest.mark.sipp
@needs_kamailio
@pytest.mark.parametrize(
    ("uac", "uas", "uas_keys", "pass_503"),
    [
        pytest.param("uac_cancel", "uas_ring_until_cancel", {}, False, id="cancel"),
        pytest.param("uac_options", "uas_options", {}, False, id="options"),
        pytest.param("uac_expect_503", "uas_reject", REJECT_503, True, id="503-passed-on"),
    ],
)
def test_kamailio_relays_cancel_options_and_rejections(
    uac: str, uas: str, uas_keys: dict[str, str], pass_503: bool, tmp_path: Path
) -> None:
    with (
        sipp.sipp_uas(uas, calls=1, keys=uas_keys, rtp_echo=False, workdir=tmp_path / "uas") as server,
        kamailio.proxy((LOOPBACK, server.port), pass_503=pass_503, workdir=tmp_path / "kam") as kam,
    ):
        result = sipp.run_scenario(uac, kam.address, timeout=10, workdir=tmp_path / "uac")
        server_result = server.result(timeout=5)

    result.assert_success(calls=1)
    server_result.assert_success(calls=1)
    assert kam.events("relay"), kam.report()


@pytest.mark.sipp
@needs_kamailio
def test_kamailio_turns_a_503_into_a_500_by_default(tmp_path: Path) -> None:
    """RFC 3261 16.7: a proxy does not pass a 503 upstream (tm sends 500, keeping the reason phrase)."""
    with (
        sipp.sipp_uas(
            "uas_reject", calls=1, keys=REJECT_503, rtp_echo=False, workdir=tmp_path / "uas"
        ) as server,
        kamailio.proxy((LOOPBACK, server.port), workdir=tmp_path / "kam") as kam,
    ):
        result = sipp.run_scenario(
            "uac_expect_503", kam.address, recv_timeout_ms=2000, timeout=10, workdir=tmp_path / "uac"
        )

    assert result.failed == 1, result.report()
    assert "SIP/2.0 500 Service Unavailable" in result.messages(), result.report()
    assert [e.ruri for e in kam.events("failure")] == ["503"], kam.report()


@needs_kamailio
def test_kamailio_stops_with_its_workers(tmp_path: Path) -> None:
    with kamailio.proxy((LOOPBACK, free_port_block(1)), workdir=tmp_path) as kam:
        workers = group_members(kam.proc.pid)
        assert len(workers) > 3, kam.report()  # main + UDP, TCP receivers + timers ...
    assert kam.proc.returncode == 0, kam.report()
    assert group_members(kam.proc.pid) == []
    assert not udp_port_bound(kam.port)


# --------------------------------------------------------------------------------------------- TLS


class TlsSipServer:
    """A tiny SIP UAS over TLS on 127.0.0.1 (a thread per connection): answers INVITE with 200 + PCMU
    SDP (Record-Route copied, Contact ;transport=tls), every other request but ACK with 200, and keeps
    every message it received. Its media port is a UDP socket counting what arrives."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self.listener = socket.create_server((LOOPBACK, 0))
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.media = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.media.bind((LOOPBACK, 0))
        self.media.settimeout(0.1)
        self.received: list[str] = []
        self.errors: list[str] = []
        self.rtp_packets = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> Self:
        self._spawn(self._accept)
        self._spawn(self._count_rtp)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(2)
        self.listener.close()
        self.media.close()

    def requests(self, method: str) -> list[str]:
        return [m for m in self.received if m.startswith(f"{method} ")]

    def _spawn(self, target, *args) -> None:  # type: ignore[no-untyped-def]
        t = threading.Thread(target=target, args=args, daemon=True)
        t.start()
        self._threads.append(t)

    def _count_rtp(self) -> None:
        while not self._stop.is_set():
            try:
                self.media.recv(2048)
                self.rtp_packets += 1
            except TimeoutError:
                pass

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                raw, _ = self.listener.accept()
            except TimeoutError:
                continue
            self._spawn(self._serve, raw)

    def _serve(self, raw: socket.socket) -> None:
        raw.settimeout(2)
        try:
            conn = self.context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError) as e:
            self.errors.append(f"handshake: {e}")
            raw.close()
            return
        with conn:
            conn.settimeout(0.1)
            buf = b""
            while not self._stop.is_set():
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                except (ssl.SSLError, OSError) as e:
                    self.errors.append(f"recv: {e}")
                    return
                if not data:
                    return
                buf += data
                while (end := (buf := buf.lstrip(b"\r\n")).find(b"\r\n\r\n")) >= 0:
                    length = re.search(rb"^(?:content-length|l)\s*:\s*(\d+)", buf[:end], re.I | re.M)
                    size = end + 4 + (int(length.group(1)) if length else 0)
                    if len(buf) < size:
                        break
                    self._answer(conn, buf[:size].decode(errors="replace"))
                    buf = buf[size:]

    def _answer(self, conn: ssl.SSLSocket, message: str) -> None:
        self.received.append(message)
        method = message.split(" ", 1)[0]
        if method in ("ACK", "SIP/2.0"):
            return
        headers = message.split("\r\n\r\n", 1)[0].split("\r\n")[1:]

        def named(*names: str) -> list[str]:
            return [h for h in headers if h.split(":", 1)[0].strip().lower() in names]

        to = named("to", "t")[0] + ("" if ";tag=" in named("to", "t")[0] else f";tag={uuid.uuid4().hex[:8]}")
        lines = ["SIP/2.0 200 OK", *named("via", "v"), *named("record-route"), *named("from", "f"), to]
        lines += [*named("call-id", "i"), *named("cseq")]
        body = ""
        if method == "INVITE":
            media_port = self.media.getsockname()[1]
            body = (
                f"v=0\r\no=tls 1 1 IN IP4 {LOOPBACK}\r\ns=-\r\nc=IN IP4 {LOOPBACK}\r\nt=0 0\r\n"
                f"m=audio {media_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
            )
            lines += [f"Contact: <sip:{LOOPBACK}:{self.port};transport=tls>", "Content-Type: application/sdp"]
        lines.append(f"Content-Length: {len(body)}")
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n" + body).encode())


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tls_certs.TlsCerts:
    return tls_certs.make_certs(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def other_ca_certs(tmp_path_factory: pytest.TempPathFactory) -> tls_certs.TlsCerts:
    """A server certificate from another CA: nobody trusting `certs` may accept it."""
    return tls_certs.make_certs(tmp_path_factory.mktemp("tls-other"))


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_tls_certs_verify_for_loopback_names_and_only_with_their_ca(
    certs: tls_certs.TlsCerts, other_ca_certs: tls_certs.TlsCerts, host: str
) -> None:
    ca_cert, cert, key = certs
    assert ca_cert.exists() and cert.exists() and key.exists()
    with TlsSipServer(certs.server_context()) as server:
        # a verifying client (CA + host name) completes the handshake, and the SIP goes through
        with socket.create_connection((LOOPBACK, server.port), timeout=5) as raw:
            with certs.client_context().wrap_socket(raw, server_hostname=host) as tls:
                tls.sendall(
                    b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:1;branch=z9hG4bK1\r\n"
                    b"From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:b@127.0.0.1>\r\nCall-ID: c\r\n"
                    b"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
                )
                assert tls.recv(4096).startswith(b"SIP/2.0 200 OK\r\n")
        # a client trusting another CA refuses it
        with socket.create_connection((LOOPBACK, server.port), timeout=5) as raw:
            with pytest.raises(ssl.SSLCertVerificationError):
                other_ca_certs.client_context().wrap_socket(raw, server_hostname=host)
    assert server.requests("OPTIONS")


@pytest.mark.sipp
@needs_kamailio_tls
def test_kamailio_relays_a_call_to_a_tls_server(certs: tls_certs.TlsCerts, tmp_path: Path) -> None:
    """sipp (UDP) -> kamailio -> (TLS, server certificate verified against the CA) -> a TLS SIP server."""
    with (
        TlsSipServer(certs.server_context()) as server,
        kamailio.proxy(
            (LOOPBACK, server.port),
            transport="tls",
            tls=(certs.cert, certs.key),
            ca_file=certs.ca_cert,
            workdir=tmp_path / "kam",
        ) as kam,
    ):
        result = sipp.run_scenario(
            "uac_pcmu_call", kam.address, hold_ms=100, timeout=10, workdir=tmp_path / "uac"
        )
        wait_for(lambda: server.requests("BYE"), 5, what=lambda: kam.report())

    result.assert_success(calls=1)
    assert server.errors == []
    assert [m.split(" ", 1)[0] for m in server.received] == ["INVITE", "ACK", "BYE"], server.received
    invite = server.requests("INVITE")[0]
    assert f"Via: SIP/2.0/TLS {LOOPBACK}:{kam.tls_port};branch=" in invite
    assert f"Record-Route: <sip:{LOOPBACK}:{kam.tls_port};transport=tls;r2=on;lr>" in invite
    assert server.requests("BYE")[0].startswith(f"BYE sip:{LOOPBACK}:{server.port};transport=tls SIP/2.0")
    assert kam.wait_for_event("sent", "BYE").peer == f"tls:{LOOPBACK}:{server.port}"


@pytest.mark.sipp
@needs_kamailio_tls
def test_kamailio_refuses_a_tls_server_it_cannot_verify(
    certs: tls_certs.TlsCerts, other_ca_certs: tls_certs.TlsCerts, tmp_path: Path
) -> None:
    with (
        TlsSipServer(other_ca_certs.server_context()) as server,
        kamailio.proxy(
            (LOOPBACK, server.port),
            transport="tls",
            tls=(certs.cert, certs.key),
            ca_file=certs.ca_cert,
            fr_timer_ms=500,
            workdir=tmp_path / "kam",
        ) as kam,
    ):
        result = sipp.run_scenario(
            "uac_expect_503", kam.address, recv_timeout_ms=3000, timeout=10, workdir=tmp_path / "uac"
        )

    assert not result.ok, result.report()
    assert "SIP/2.0 408" in result.messages(), result.report()  # tm's timeout: nothing ever arrived
    assert server.received == []
    assert any("unknown ca" in e.lower() for e in server.errors), server.errors
    assert "certificate verify failed" in kam.log(), kam.report()


def _tone_wav(path: Path, seconds: float = 1.0) -> Path:
    t = np.arange(int(seconds * RATE)) / RATE
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes((0.3 * 32767 * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes())
    return path


@needs_baresip
@_skip_unless("sox")
def test_baresip_places_a_call_over_tls(certs: tls_certs.TlsCerts, tmp_path: Path) -> None:
    with TlsSipServer(certs.server_context()) as server:
        rec = baresip.run_call(
            f"sip:service@{LOOPBACK}:{server.port}",
            _tone_wav(tmp_path / "tone.wav"),
            tmp_path / "call",
            seconds=1.0,
            transport="tls",
            ca_file=certs.ca_cert,
        )
        wait_for(lambda: server.requests("BYE"), 5, what=rec.report)

    assert rec.established and rec.ended, rec.report()
    assert server.errors == []
    assert [m.split(" ", 1)[0] for m in server.received] == ["INVITE", "ACK", "BYE"], server.received
    assert server.requests("INVITE")[0].startswith(
        f"INVITE sip:service@{LOOPBACK}:{server.port};transport=tls SIP/2.0\r\nVia: SIP/2.0/TLS "
    )
    assert server.rtp_packets > 10  # the media went where the TLS-signalled SDP said


@needs_baresip
@_skip_unless("sox")
def test_baresip_does_not_verify_the_tls_server(other_ca_certs: tls_certs.TlsCerts, tmp_path: Path) -> None:
    """baresip 1.0.0 (libre 1.1.0) accepts any server certificate, whatever sip_cafile says: a TLS call
    from it shows the server speaks SIP over TLS, not that its certificate is right. Should this start
    failing, baresip has learnt to verify: the harness can then prove certificates with it too."""
    with TlsSipServer(other_ca_certs.server_context()) as server:
        rec = baresip.run_call(
            f"sip:service@{LOOPBACK}:{server.port}",
            _tone_wav(tmp_path / "tone.wav", 0.2),
            tmp_path / "call",
            seconds=0.2,
            transport="tls",
            ca_file=tls_certs.make_certs(tmp_path / "trusted").ca_cert,
        )

    assert rec.established, rec.report()


@pytest.mark.sipp
@needs_baresip
@_skip_unless("sox")
def test_baresip_places_a_call_over_tcp(tmp_path: Path) -> None:
    with sipp.sipp_uas(transport="tcp", workdir=tmp_path / "uas") as uas:
        rec = baresip.run_call(
            uas.uri, _tone_wav(tmp_path / "tone.wav"), tmp_path / "call", 1.0, transport="tcp"
        )

    assert rec.established and rec.ended and rec.heard, rec.report()
    wire = (uas.workdir / "messages.log").read_text()
    assert f"INVITE sip:service@{LOOPBACK}:{uas.port};transport=tcp SIP/2.0" in wire
    assert "Via: SIP/2.0/TCP " in wire
    assert re.search(r"^BYE sip:", wire, re.MULTILINE), wire[-2000:]
