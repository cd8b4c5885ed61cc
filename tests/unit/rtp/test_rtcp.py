"""RTCP reports on a fake clock: the schedule, SR or RR, the report block's loss figures, the round
trip from LSR/DLSR between two reporters, BYE, and bad input counted, never raised."""

from __future__ import annotations

import random

import pytest
from aiortc.rtp import RtcpByePacket, RtcpPacket, RtcpRrPacket, RtcpSdesPacket, RtcpSrPacket

from sipbridge.rtp.rtcp import REPORT_INTERVAL_S, Reception, RtcpReporter, Sending, ntp_middle, ntp_time

WALL = 1_800_000_000.0


def _reporter(ssrc: int = 0x1111, now: float = 0.0, seed: int = 7) -> RtcpReporter:
    return RtcpReporter(ssrc, "bridge@127.0.0.1", 8000, now, random.Random(seed))


def test_reports_come_every_5_s_on_average_randomised_and_the_first_sooner() -> None:
    firsts, intervals = [], []
    for seed in range(200):
        reporter = _reporter(seed=seed)
        firsts.append(reporter.next_at)
        reporter.report(reporter.next_at, WALL, None, None)
        intervals.append(reporter.next_at - firsts[-1])
    assert all(0.25 * REPORT_INTERVAL_S <= t <= 0.75 * REPORT_INTERVAL_S for t in firsts)
    assert all(0.5 * REPORT_INTERVAL_S <= t <= 1.5 * REPORT_INTERVAL_S for t in intervals)
    assert 4.7 < sum(intervals) / len(intervals) < 5.3 and len(set(intervals)) == len(intervals)
    reporter = _reporter()
    assert not reporter.due(reporter.next_at - 0.001) and reporter.due(reporter.next_at)


def test_an_sr_while_we_send_an_rr_before_and_always_a_cname() -> None:
    reporter = _reporter()
    rr, sdes = RtcpPacket.parse(reporter.report(1.0, WALL, Sending(0, 0, 0), None))
    assert isinstance(rr, RtcpRrPacket) and rr.ssrc == 0x1111 and rr.reports == []
    assert isinstance(sdes, RtcpSdesPacket) and sdes.chunks[0].items == [(1, b"bridge@127.0.0.1")]
    sr, _ = RtcpPacket.parse(reporter.report(6.0, WALL, Sending(48000, 250, 40000), None))
    assert isinstance(sr, RtcpSrPacket)
    info = sr.sender_info
    assert (info.rtp_timestamp, info.packet_count, info.octet_count) == (48000, 250, 40000)
    assert info.ntp_timestamp == ntp_time(WALL)


def test_the_report_block_counts_loss_per_interval_and_in_all() -> None:
    reporter = _reporter()
    first = Reception(ssrc=0x2222, first_sequence=1000, highest_sequence=1099, received=90, jitter=80)
    (rr, _) = RtcpPacket.parse(reporter.report(1.0, WALL, None, first))
    block = rr.reports[0]
    assert (block.ssrc, block.packets_lost, block.highest_sequence) == (0x2222, 10, 1099)
    assert block.fraction_lost == 25 and block.jitter == 80 and (block.lsr, block.dlsr) == (0, 0)
    later = Reception(ssrc=0x2222, first_sequence=1000, highest_sequence=1199, received=190, jitter=40)
    (rr, _) = RtcpPacket.parse(reporter.report(6.0, WALL, None, later))
    assert rr.reports[0].fraction_lost == 0 and rr.reports[0].packets_lost == 10  # none lost since


def test_each_side_learns_the_round_trip_and_what_the_other_sees() -> None:
    bridge, phone = _reporter(0x1111), _reporter(0x2222)
    # the bridge's SR leaves at t=0 and takes 20 ms; the phone answers half a second later
    sr = bridge.report(0.0, WALL, Sending(160, 1, 160), None)
    assert phone.received(sr, now=0.02, wall=WALL + 0.02) is None  # no block about the phone
    seen = Reception(ssrc=0x1111, first_sequence=0, highest_sequence=99, received=95, jitter=160)
    rr = phone.report(0.52, WALL + 0.52, None, seen)
    got = bridge.received(rr, now=0.54, wall=WALL + 0.54)
    assert got is not None and got == bridge.phone_report
    assert got.round_trip_ms == pytest.approx(40, abs=0.1)
    assert got.fraction_lost == pytest.approx(12 / 256) and got.cumulative_lost == 5
    assert got.jitter_ms == pytest.approx(20)
    (rr_block,) = RtcpPacket.parse(rr)[0].reports
    assert rr_block.lsr == ntp_middle(ntp_time(WALL)) and rr_block.dlsr == pytest.approx(0.5 * 65536, abs=1)


def test_the_last_report_comes_with_a_bye() -> None:
    packets = RtcpPacket.parse(_reporter().bye(9.0, WALL, Sending(1, 1, 160), None))
    assert [type(p) for p in packets] == [RtcpSrPacket, RtcpSdesPacket, RtcpByePacket]
    assert packets[-1].sources == [0x1111]


@pytest.mark.parametrize("data", [b"", b"\x80", b"\x80\xc9\x00\x07" + b"\x00" * 3, bytes(range(40))])
def test_garbage_is_counted_not_raised(data: bytes) -> None:
    reporter = _reporter()
    assert reporter.received(data, now=1.0, wall=WALL) is None
    assert reporter.invalid == 1 and reporter.reports_received == 0 and reporter.phone_report is None
