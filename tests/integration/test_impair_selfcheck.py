"""The impairing relay (testbed/impair.py) checked against what really arrives, before tests rely on it.

A sender and a receiver on loopback sockets talk through the relay; every packet carries its RTP
sequence number and the time it was sent, so the receiver measures loss, delay, order and duplicates
itself and the relay's counters and log must agree with it. Then real calls: sipp's caller through
the relay to sipp's echoing UAS, and sipp and baresip through the relay to the bridge.
"""

from __future__ import annotations

import math
import socket
import statistics
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from testbed import audio, baresip, sipp
from testbed.bridge_proc import AgentProcess, BridgeProcess, start_bridge
from testbed.impair import (
    ALIAS_HOST,
    GilbertElliott,
    ImpairingRelay,
    Impairment,
    bridge_env,
    bridge_rtp_ports,
    rtp_sequence,
    sipp_echo_uas_behind_relay,
)
from testbed.procs import LOOPBACK, udp_port_bound, wait_for, wait_until

pytestmark = pytest.mark.integration

PAYLOAD = 160  # one 20 ms PCMU frame


def _relay_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.endswith("-relay")]


@pytest.fixture(autouse=True)
def no_relay_left_behind() -> Iterator[None]:
    yield
    assert not _relay_threads(), f"relay threads still running: {_relay_threads()}"


# --------------------------------------------------------------------------------------------- endpoints


@dataclass
class Arrival:
    seq: int
    sent: float  # sender's time.monotonic(), carried in the payload
    received: float

    @property
    def delay(self) -> float:
        return self.received - self.sent


@dataclass
class Endpoint:
    """A UDP socket on 127.0.0.1 that sends numbered RTP packets and records what it receives."""

    sock: socket.socket = field(default_factory=lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    arrivals: list[Arrival] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind((LOOPBACK, 0))
        self.sock.settimeout(0.05)
        self._thread = threading.Thread(target=self._receive, name="endpoint-rx", daemon=True)
        self._thread.start()

    @property
    def address(self) -> tuple[str, int]:
        return self.sock.getsockname()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            now = time.monotonic()
            seq = rtp_sequence(data)
            assert seq is not None
            (sent,) = struct.unpack_from("!d", data, 12)
            self.arrivals.append(Arrival(seq, sent, now))

    def send(self, dest: tuple[str, int], count: int, spacing: float, first_seq: int = 0) -> None:
        """`count` packets, seq first_seq..., one every `spacing` seconds (on a schedule, no drift)."""
        start = time.monotonic()
        for i in range(count):
            wait = start + i * spacing - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self.sock.sendto(rtp_packet((first_seq + i) & 0xFFFF), dest)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Arrival]:
        wait_until(lambda: len(self.arrivals) >= count, timeout)
        return list(self.arrivals)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
        self.sock.close()


def rtp_packet(seq: int) -> bytes:
    header = struct.pack("!BBHII", 0x80, 0, seq, seq * 160, 0x12345678)
    return header + struct.pack("!d", time.monotonic()) + bytes(PAYLOAD - 8)


@pytest.fixture
def caller() -> Iterator[Endpoint]:
    e = Endpoint()
    yield e
    e.close()


@pytest.fixture
def callee() -> Iterator[Endpoint]:
    e = Endpoint()
    yield e
    e.close()


def binomially_plausible(count: int, n: int, p: float, sigmas: float = 3.0) -> bool:
    """`count` events in `n` independent trials of probability `p` is within `sigmas` standard deviations."""
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


def out_of_order(seqs: list[int]) -> int:
    """Packets that arrive after one with a higher sequence number (the relay's `reordered`)."""
    count, highest = 0, -1
    for s in seqs:
        if s < highest:
            count += 1
        highest = max(highest, s)
    return count


def through(
    caller: Endpoint, callee: Endpoint, count: int, spacing: float, seed: int | str = 1, **imp: object
) -> tuple[ImpairingRelay, list[Arrival]]:
    """Send `count` packets caller -> relay (to_target impaired with `imp`) -> callee; wait until all
    that will come have come. Returns the stopped relay and the callee's arrivals."""
    with ImpairingRelay(callee.address, to_target=Impairment(**imp), seed=seed) as relay:  # type: ignore[arg-type]
        caller.send(relay.address, count, spacing)
        assert wait_until(lambda: relay.stats().to_target.received == count, 5), relay.stats()
        assert relay.wait_idle(5)
        callee.wait_for(relay.stats().to_target.forwarded)
        time.sleep(0.05)  # nothing more should come
    # counted once the relay stopped: idle can show a moment before the last send is counted
    expected = relay.stats().to_target.forwarded
    arrivals = callee.wait_for(expected)
    assert len(callee.arrivals) == expected, (len(callee.arrivals), relay.stats())
    return relay, arrivals


# ----------------------------------------------------------------------------------------- the relay alone


def test_no_impairment_passes_everything_in_order_without_delay(caller: Endpoint, callee: Endpoint) -> None:
    relay, arrivals = through(caller, callee, 500, spacing=0.001)
    s = relay.stats().to_target
    assert (s.received, s.forwarded, s.dropped, s.duplicated, s.reordered) == (500, 500, 0, 0, 0)
    assert [a.seq for a in arrivals] == list(range(500))

    kept = sorted(r.delay for r in relay.records("to_target"))  # type: ignore[type-var]
    end_to_end = sorted(a.delay for a in arrivals)
    print(
        f"\nclean relay, 500 packets: added by the relay median {kept[250] * 1e3:.3f} ms, "
        f"p99 {kept[495] * 1e3:.3f} ms; sender -> receiver median {end_to_end[250] * 1e3:.3f} ms, "
        f"p99 {end_to_end[495] * 1e3:.3f} ms"
    )
    assert kept[250] < 0.001 and kept[495] < 0.010  # generous: other tests may load the machine
    assert end_to_end[250] < 0.002


def test_five_percent_loss_is_seeded_and_counted(caller: Endpoint, callee: Endpoint) -> None:
    relay, arrivals = through(caller, callee, 2000, spacing=0.0003, seed=42, loss=0.05)
    s = relay.stats().to_target
    dropped = {r.seq for r in relay.records("to_target") if r.dropped}
    print(f"\n5 % loss over 2000 packets, seed 42: {s.dropped} dropped ({s.loss_rate:.2%})")
    assert 0.035 <= s.loss_rate <= 0.065
    assert len(dropped) == s.dropped and s.forwarded == 2000 - s.dropped
    got = [a.seq for a in arrivals]
    assert got == [q for q in range(2000) if q not in dropped]  # exactly those, in order

    # the same seed drops the same packets again; another seed other ones
    callee.arrivals.clear()
    again, _ = through(caller, callee, 2000, spacing=0.0003, seed=42, loss=0.05)
    assert {r.seq for r in again.records("to_target") if r.dropped} == dropped
    callee.arrivals.clear()
    other, _ = through(caller, callee, 2000, spacing=0.0003, seed=43, loss=0.05)
    assert {r.seq for r in other.records("to_target") if r.dropped} != dropped


def test_forty_ms_jitter_reorders_and_delays_as_configured(caller: Endpoint, callee: Endpoint) -> None:
    """delay 50 ms, jitter ±40 ms uniform, 20 ms packet spacing: each packet takes U(10, 90) ms, and a
    packet overtakes its predecessor whenever their jitters differ by more than 20 ms."""
    n = 200
    relay, arrivals = through(caller, callee, n, spacing=0.020, seed=7, delay_ms=50, jitter_ms=40)
    s = relay.stats().to_target
    assert s.dropped == 0 and len(arrivals) == n
    seqs = [a.seq for a in arrivals]
    assert out_of_order(seqs) == s.reordered  # the receiver sees exactly what the relay counted
    assert 0.2 * n <= s.reordered <= 0.5 * n  # about 34 % expected for these settings

    delays = [a.delay * 1000 for a in arrivals]
    mean, stdev = statistics.fmean(delays), statistics.stdev(delays)
    ks = _ks_uniform(delays, 10.0, 90.0)
    print(
        f"\njitter U(10, 90) ms, 200 packets at 20 ms: {s.reordered} reordered; delay mean {mean:.1f} ms "
        f"(50), stdev {stdev:.1f} ms ({80 / 12**0.5:.1f}), min {min(delays):.1f}, max {max(delays):.1f}, "
        f"KS distance to U(10, 90) {ks:.3f}"
    )
    assert 46 <= mean <= 54 and 19.5 <= stdev <= 27
    assert min(delays) >= 9.9 and max(delays) <= 100
    assert ks < 0.12  # 5 % critical value for n = 200 is 0.096; a little room for scheduling

    # the relay's log states each packet's delay as the receiver measured it
    logged = {r.seq: r for r in relay.records("to_target")}
    late = sorted(
        (r.sent - r.due) * 1000 for r in logged.values() if r.sent is not None and r.due is not None
    )
    print(f"sent after the due time: median {late[len(late) // 2]:.3f} ms, max {late[-1]:.3f} ms")
    for a in arrivals:
        r = logged[a.seq]
        assert r.sent is not None and r.due is not None
        assert abs((r.sent - r.arrival) - a.delay) < 0.005
        assert 0 <= r.sent - r.due < 0.010  # never early; late by the selector's 1 ms rounding, or load


def test_normal_jitter_has_the_configured_spread(caller: Endpoint, callee: Endpoint) -> None:
    n = 400
    relay, arrivals = through(
        caller, callee, n, spacing=0.005, seed=3, delay_ms=80, jitter_ms=15, jitter_distribution="normal"
    )
    delays = [a.delay * 1000 for a in arrivals]
    mean, stdev = statistics.fmean(delays), statistics.stdev(delays)
    print(f"\nnormal jitter 80 ± 15 ms: mean {mean:.1f} ms, stdev {stdev:.1f} ms")
    assert 77 <= mean <= 84 and 12.5 <= stdev <= 17.5
    assert relay.stats().to_target.reordered == out_of_order([a.seq for a in arrivals]) > 0


def test_duplicates_arrive_twice_and_are_counted(caller: Endpoint, callee: Endpoint) -> None:
    relay, arrivals = through(caller, callee, 1000, spacing=0.0005, seed=11, duplicate=0.1)
    s = relay.stats().to_target
    print(f"\n10 % duplication over 1000 packets: {s.duplicated} duplicated")
    assert 70 <= s.duplicated <= 130
    assert s.forwarded == 1000 + s.duplicated and len(arrivals) == s.forwarded
    twice = {seq for seq, k in Counter(a.seq for a in arrivals).items() if k == 2}
    assert twice == {r.seq for r in relay.records("to_target") if r.duplicate}
    assert s.reordered == 0 and out_of_order([a.seq for a in arrivals]) == 0


def test_explicit_reorder_swaps_a_packet_with_the_next(caller: Endpoint, callee: Endpoint) -> None:
    relay, arrivals = through(caller, callee, 1000, spacing=0.001, seed=5, reorder=0.1)
    s = relay.stats().to_target
    seqs = [a.seq for a in arrivals]
    print(f"\n10 % explicit reordering over 1000 packets: {s.held} held back, {s.reordered} reordered")
    assert 70 <= s.held <= 130 and s.dropped == 0 and sorted(seqs) == list(range(1000))
    # a held packet comes right after the next one, unless that one was held too (then in order)
    assert 0.8 * s.held <= s.reordered <= s.held
    assert out_of_order(seqs) == s.reordered
    assert all(seqs[i] - seqs[i + 1] == 1 for i in range(999) if seqs[i] > seqs[i + 1])

    # the last packet has no next one: it leaves after reorder_timeout_ms
    callee.arrivals.clear()
    with ImpairingRelay(callee.address, to_target=Impairment(reorder=1.0, reorder_timeout_ms=150)) as one:
        caller.send(one.address, 1, 0)
        (only,) = callee.wait_for(1, 2)
        assert 0.14 <= only.delay <= 0.2


def test_gilbert_elliott_loss_comes_in_bursts(caller: Endpoint, callee: Endpoint) -> None:
    ge = GilbertElliott(p=0.02, r=0.25)  # 7.4 % loss, bursts of 4 on average
    relay, _ = through(caller, callee, 3000, spacing=0.0003, seed=9, burst=ge)
    bursty = _bursts([r.dropped for r in relay.records("to_target")])
    callee.arrivals.clear()
    plain, _ = through(caller, callee, 3000, spacing=0.0003, seed=9, loss=ge.mean_loss)
    random_ = _bursts([r.dropped for r in plain.records("to_target")])
    rate = relay.stats().to_target.loss_rate
    print(
        f"\nGilbert-Elliott p=0.02 r=0.25 over 3000 packets: loss {rate:.2%} ({ge.mean_loss:.2%} expected), "
        f"mean burst {statistics.fmean(bursty):.2f} (4 expected); independent loss at the same rate: "
        f"{plain.stats().to_target.loss_rate:.2%}, mean burst {statistics.fmean(random_):.2f}"
    )
    assert 0.05 <= rate <= 0.10
    assert 2.8 <= statistics.fmean(bursty) <= 5.5 and statistics.fmean(random_) < 1.3


def test_both_directions_are_independent(caller: Endpoint, callee: Endpoint) -> None:
    def run(to_caller: Impairment) -> tuple[ImpairingRelay, list[Arrival], list[Arrival]]:
        caller.arrivals.clear()
        callee.arrivals.clear()
        with ImpairingRelay(
            callee.address, to_target=Impairment(loss=0.2), to_caller=to_caller, seed=21
        ) as relay:
            # the callee answers before anyone called: nowhere to send it yet
            callee.sock.sendto(rtp_packet(9999), relay.source_addresses[0])
            assert wait_until(lambda: relay.stats().to_caller.unroutable == 1, 2)
            caller.send(relay.address, 1, 0, first_seq=0)  # the relay learns the caller
            assert wait_until(lambda: relay.callers() == [caller.address], 2)
            both = [
                threading.Thread(target=caller.send, args=(relay.address, 999, 0.0005, 1)),
                threading.Thread(target=callee.send, args=(relay.source_addresses[0], 600, 0.0008)),
            ]
            for t in both:
                t.start()
            for t in both:
                t.join()
            assert wait_until(lambda: relay.stats().to_target.received == 1000, 5)
            assert wait_until(lambda: relay.stats().to_caller.received == 601, 5)
            assert relay.wait_idle(5)
            s = relay.stats()
            callee.wait_for(s.to_target.forwarded)
            caller.wait_for(s.to_caller.forwarded)
        return relay, list(callee.arrivals), list(caller.arrivals)

    relay, at_callee, at_caller = run(Impairment())
    s = relay.stats()
    print(f"\nto_target 20 % loss, to_caller clean: {s}")
    assert binomially_plausible(s.to_target.dropped, 1000, 0.2) and len(at_callee) == s.to_target.forwarded
    assert (s.to_caller.received, s.to_caller.unroutable, s.to_caller.dropped) == (601, 1, 0)
    assert [a.seq for a in at_caller] == list(range(600))
    assert relay.source_addresses[0] != relay.address

    # impairing the other direction changes nothing in this one (its own random draws)
    other, at_callee2, at_caller2 = run(Impairment(loss=0.5, duplicate=0.2))
    assert [r.dropped for r in other.records("to_target")] == [r.dropped for r in relay.records("to_target")]
    assert [a.seq for a in at_callee2] == [a.seq for a in at_callee]
    t = other.stats().to_caller
    assert binomially_plausible(t.dropped, 600, 0.5) and t.duplicated > 0 and len(at_caller2) == t.forwarded


def test_stop_is_clean_and_discards_what_is_pending(caller: Endpoint, callee: Endpoint) -> None:
    threads_before = set(threading.enumerate())
    relay = ImpairingRelay(callee.address, to_target=Impairment(delay_ms=2000), name="slow")
    with relay:
        assert relay.running and len(_relay_threads()) == 1
        port = relay.port
        caller.send(relay.address, 10, 0.001)
        assert wait_until(lambda: relay.stats().to_target.pending == 10, 2)
    s = relay.stats().to_target
    assert (s.received, s.forwarded, s.pending, s.discarded) == (10, 0, 0, 10)
    assert not relay.running and set(threading.enumerate()) == threads_before
    assert not udp_port_bound(port)  # its sockets are closed
    relay.stop()  # twice is fine
    time.sleep(0.1)
    assert callee.arrivals == []

    # a relay whose socket cannot be bound leaves nothing behind either
    blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    blocker.bind((LOOPBACK, 0))
    try:
        with pytest.raises(OSError), ImpairingRelay(callee.address, listen=blocker.getsockname()):
            pass
    finally:
        blocker.close()
    assert set(threading.enumerate()) == threads_before


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        Impairment(loss=1.5)
    with pytest.raises(ValueError):
        Impairment(delay_ms=-1)
    with pytest.raises(ValueError):
        GilbertElliott(p=0, r=0)
    with pytest.raises(ValueError):
        ImpairingRelay()
    assert bridge_rtp_ports(20001, 20006) == [20002, 20004, 20006]
    assert rtp_sequence(struct.pack("!BBH", 0x80, 200, 7) + bytes(20)) is None  # RTCP SR
    assert rtp_sequence(rtp_packet(4711)) == 4711


def _ks_uniform(values: list[float], low: float, high: float) -> float:
    """Kolmogorov-Smirnov distance between the sample and U(low, high)."""
    xs = sorted(values)
    n = len(xs)
    worst = 0.0
    for i, x in enumerate(xs):
        cdf = min(1.0, max(0.0, (x - low) / (high - low)))
        worst = max(worst, abs(cdf - i / n), abs(cdf - (i + 1) / n))
    return worst


def _bursts(lost: list[bool]) -> list[int]:
    runs, current = [], 0
    for x in lost:
        if x:
            current += 1
        elif current:
            runs.append(current)
            current = 0
    return runs + ([current] if current else [])


# --------------------------------------------------------------------------------------------- real calls

needs_speech = pytest.mark.skipif(
    bool(audio.missing_tools("espeak-ng", "sox")), reason="espeak-ng and sox make the test speech"
)


@pytest.fixture(scope="module")
def speech_ulaw(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if audio.missing_tools("espeak-ng", "sox"):
        pytest.skip("espeak-ng and sox are needed to make test speech")
    folder = tmp_path_factory.mktemp("speech")
    wav = audio.make_speech("One, two, three, four. The relay drops a few packets.", folder / "speech.wav")
    return wav, audio.wav_to_ulaw_raw(wav, folder / "speech.ul")


def _sdp_port(messages: str, nth: int) -> int:
    return int([line.split()[1] for line in messages.splitlines() if line.startswith("m=audio")][nth])


@pytest.mark.sipp
@needs_speech
def test_sipp_call_through_the_relay_to_an_echoing_uas(
    speech_ulaw: tuple[Path, Path], tmp_path: Path
) -> None:
    """uac_pcmu_audio (unchanged) calls sipp -rtp_echo, whose SDP names the relay: the caller's RTP goes
    through the relay (5 % loss), the echo comes back through it (10 % loss) to the caller's port."""
    with sipp_echo_uas_behind_relay(
        to_target=Impairment(loss=0.05), to_caller=Impairment(loss=0.10), seed=7, workdir=tmp_path / "uas"
    ) as (uas, relay):
        result = sipp.run_scenario(
            "uac_pcmu_audio",
            uas.address,
            hold_ms=6000,
            keys={"audio_file": speech_ulaw[1]},
            workdir=tmp_path / "uac",
        )
        result.assert_success(calls=1)
        assert relay.wait_idle(3, quiet=0.3)
        s = relay.stats()
        callers = relay.callers()
    messages = result.messages()
    print(f"\nsipp -> relay -> sipp -rtp_echo -> relay -> sipp, 6 s: {s}")
    assert f"c=IN IP4 {ALIAS_HOST}" in messages  # the UAS's answer points at the relay
    assert callers == [(LOOPBACK, _sdp_port(messages, 0))]  # echo returned to the caller's RTP port
    up, down = s.to_target, s.to_caller
    assert up.received >= 250  # 50 packets a second
    assert binomially_plausible(up.dropped, up.received, 0.05)
    assert binomially_plausible(down.dropped, down.received, 0.10)
    assert down.received == up.forwarded  # the UAS echoed all that reached it, through the relay
    assert down.forwarded == down.received - down.dropped


# --------------------------------------------------------------------------------------------- the bridge


@pytest.fixture(scope="module")
def bridge_behind_alias(logdir: Path, agent: AgentProcess) -> Iterator[BridgeProcess]:
    """The bridge advertising 127.0.0.2 for its media, with one RTP port (one call at a time)."""
    bridge = start_bridge(logdir, agent.whip_url, rtp_ports=2, env=bridge_env())
    yield bridge
    bridge.proc.stop()


@pytest.mark.sipp
@needs_speech
def test_sipp_call_to_the_bridge_through_the_relay(
    bridge_behind_alias: BridgeProcess, speech_ulaw: tuple[Path, Path], tmp_path: Path
) -> None:
    bridge = bridge_behind_alias
    ports = bridge_rtp_ports(bridge.rtp_low, bridge.rtp_high)
    with ImpairingRelay.mirror(ports, to_target=Impairment(loss=0.05), seed=77, name="bridge-media") as relay:
        outcome: dict[str, sipp.SippResult] = {}
        call = threading.Thread(
            target=lambda: outcome.update(
                result=sipp.run_scenario(
                    "uac_pcmu_audio",
                    bridge.sip_target,
                    hold_ms=5000,
                    keys={"audio_file": speech_ulaw[1]},
                    workdir=tmp_path / "uac",
                )
            )
        )
        call.start()
        try:
            live = wait_for(lambda: bridge.calls(), 10, what=bridge.log)
            call_id = live[0]["id"]
        finally:
            call.join(30)
        outcome["result"].assert_success(calls=1)
        assert relay.wait_idle(3, quiet=0.3)
        s = relay.stats()
    _, ended = bridge.call(call_id)
    rtp = ended["rtp"]
    print(f"\nsipp -> relay -> bridge (5 % loss to the bridge), 5 s: {s}; bridge rtp {rtp}")
    messages = outcome["result"].messages()
    assert f"c=IN IP4 {ALIAS_HOST}" in messages
    assert s.to_target.received >= 200 and binomially_plausible(
        s.to_target.dropped, s.to_target.received, 0.05
    )
    assert rtp["packets_in"] == s.to_target.forwarded  # every caller packet came through the relay
    # the bridge latched onto the relay: its audio went back through it (but for any sent before)
    assert s.to_caller.received >= rtp["packets_out"] - 10 and s.to_caller.received > 100
    assert s.to_caller.forwarded == s.to_caller.received


@pytest.mark.skipif(not baresip.available(), reason="baresip is not installed")
def test_baresip_call_to_the_bridge_through_the_relay(
    bridge_behind_alias: BridgeProcess, speech_ulaw: tuple[Path, Path], tmp_path: Path
) -> None:
    bridge = bridge_behind_alias
    ports = bridge_rtp_ports(bridge.rtp_low, bridge.rtp_high)
    with ImpairingRelay.mirror(
        ports,
        to_target=Impairment(loss=0.05),
        to_caller=Impairment(delay_ms=40, jitter_ms=10),
        seed=78,
        name="bridge-media",
    ) as relay:
        rec = baresip.run_call(
            f"sip:agent@{bridge.sip_target}",
            speech_ulaw[0],
            tmp_path / "baresip",
            seconds=5,
        )
        assert relay.wait_idle(3, quiet=0.3)
        s = relay.stats()
    print(f"\nbaresip -> relay -> bridge (5 % loss up, 40 ± 10 ms down), 5 s: {s}")
    assert rec.established, rec.report()
    assert s.to_target.received >= 200 and binomially_plausible(
        s.to_target.dropped, s.to_target.received, 0.05
    )
    assert s.to_caller.received > 100 and s.to_caller.dropped == 0
    delays = [r.delay for r in relay.records("to_caller") if r.delay is not None]
    assert 0.029 <= min(delays) and max(delays) <= 0.055
    assert rec.heard is not None and audio.wav_duration(rec.heard) > 2
