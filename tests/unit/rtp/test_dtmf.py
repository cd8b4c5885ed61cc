"""RFC 4733 telephone-events: payload codec, receiver (once per event), sender, and sipp's pcaps."""

import random
import struct
from dataclasses import dataclass
from pathlib import Path

import pytest

from sipbridge.rtp.dtmf import (
    DIGITS,
    MAX_DURATION,
    DtmfDigit,
    DtmfError,
    DtmfPacket,
    DtmfReceiver,
    DtmfSender,
    TelephoneEvent,
    digit_for_event,
    event_for_digit,
    parse_event,
    parse_events,
)
from sipbridge.rtp.packet import RtpPacket, build_rtp_header, parse_rtp

SIPP_PCAPS = Path("/usr/share/sip-tester")


def ev(event: int, duration: int, end: bool = False, volume: int = 10) -> bytes:
    return TelephoneEvent(event, end, volume, duration).to_bytes()


@dataclass
class Pkt:
    timestamp: int
    marker: bool
    sequence: int
    payload: bytes


def tone(event: int, timestamp: int, sequence: int, updates: int = 5, step: int = 160) -> list[Pkt]:
    """One event as a sender emits it: ``updates`` growing reports, the first marked, then end x3."""
    seq = [(sequence + i) % 65536 for i in range(updates + 3)]
    packets = [Pkt(timestamp, i == 0, seq[i], ev(event, step * (i + 1))) for i in range(updates)]
    final = ev(event, step * updates, end=True)
    packets += [Pkt(timestamp, False, seq[updates + i], final) for i in range(3)]
    return packets


def feed(receiver: DtmfReceiver, packets: list[Pkt], now: float | None = None) -> list[DtmfDigit]:
    digits = []
    for p in packets:
        digits += receiver.receive(p.timestamp, p.marker, p.sequence, p.payload, now)
    return digits


def per_packet(receiver: DtmfReceiver, packets: list[Pkt]) -> list[list[DtmfDigit]]:
    return [receiver.receive(p.timestamp, p.marker, p.sequence, p.payload) for p in packets]


# -- payload codec ---------------------------------------------------------------------------------


def test_parse_event_fields():
    assert parse_event(bytes.fromhex("010a0140")) == TelephoneEvent(1, False, 10, 320)
    assert parse_event(bytes.fromhex("0b8a08c0")) == TelephoneEvent(11, True, 10, 2240)


def test_parse_event_ignores_the_reserved_bit():
    assert parse_event(bytes([5, 0x80 | 0x40 | 63, 0xFF, 0xFF])) == TelephoneEvent(5, True, 63, 0xFFFF)


def test_to_bytes_round_trip():
    for event in (0, 9, 15, 16, 255):
        for end in (False, True):
            original = TelephoneEvent(event, end, 37, 12345)
            assert parse_event(original.to_bytes()) == original


@pytest.mark.parametrize("payload", [b"", b"\x01", b"\x01\x0a\x00", b"\x01\x0a\x00\xa0\x00", bytes(7)])
def test_malformed_payloads_raise(payload):
    with pytest.raises(DtmfError, match="multiple of 4"):
        parse_event(payload)


def test_dtmf_error_is_a_value_error():
    assert issubclass(DtmfError, ValueError)


def test_packed_events_parse_in_order():
    payload = ev(1, 800, end=True) + ev(2, 160)
    assert parse_events(payload) == [TelephoneEvent(1, True, 10, 800), TelephoneEvent(2, False, 10, 160)]
    assert parse_event(payload) == TelephoneEvent(1, True, 10, 800)


@pytest.mark.parametrize(
    "event",
    [TelephoneEvent(256, False, 0, 0), TelephoneEvent(1, False, 64, 0), TelephoneEvent(1, False, 0, 65536)],
)
def test_to_bytes_rejects_out_of_range_fields(event):
    with pytest.raises(DtmfError):
        event.to_bytes()


def test_digits_map_to_events_0_to_15():
    assert [digit_for_event(i) for i in range(16)] == list("0123456789*#ABCD")
    assert digit_for_event(16) is None and digit_for_event(200) is None
    assert [event_for_digit(d) for d in "0123456789*#ABCDabcd"] == [*range(16), 12, 13, 14, 15]
    assert TelephoneEvent(11, True, 10, 0).digit == "#"
    for bad in ("", "E", "12", " ", "!"):
        with pytest.raises(DtmfError):
            event_for_digit(bad)


# -- receiver --------------------------------------------------------------------------------------


def test_one_event_reported_once_at_its_first_end_packet():
    receiver = DtmfReceiver()
    results = per_packet(receiver, tone(5, 1000, 100))
    assert results == [[], [], [], [], [], [DtmfDigit("5", 100)], [], []]


def test_retransmitted_end_packets_count_once_even_with_identical_sequence_numbers():
    # sipp's capture sends its three end packets with the same sequence number.
    receiver = DtmfReceiver()
    final = ev(1, 800, end=True)
    packets = [Pkt(50, True, 7, ev(1, 160))] + [Pkt(50, False, 8, final)] * 3
    assert feed(receiver, packets) == [DtmfDigit("1", 100)]
    assert feed(receiver, [Pkt(50, False, 9, final)]) == []


def test_lost_end_packets_reported_when_the_next_event_starts():
    receiver = DtmfReceiver()
    first = tone(3, 8000, 10)[:5]  # no end packet arrives
    assert feed(receiver, first) == []
    second = tone(4, 8000 + 1600, 15)
    results = per_packet(receiver, second)
    assert results[0] == [DtmfDigit("3", 100)]
    assert sum(results[1:], []) == [DtmfDigit("4", 100)]


def test_lost_end_packets_reported_after_the_timeout():
    receiver = DtmfReceiver()
    for i, p in enumerate(tone(7, 0, 0)[:4]):
        assert receiver.receive(p.timestamp, p.marker, p.sequence, p.payload, now=10.0 + 0.02 * i) == []
    assert receiver.deadline == pytest.approx(10.56)
    assert receiver.poll(10.5) == []
    assert receiver.poll(10.57) == [DtmfDigit("7", 80)]
    assert receiver.deadline is None
    assert receiver.poll(20.0) == []
    # The end packets arriving late now are stragglers of a reported event.
    late = tone(7, 0, 0)[5:]
    assert feed(receiver, late, now=10.6) == []


def test_timeout_checked_when_the_next_packet_comes():
    receiver = DtmfReceiver()
    feed(receiver, tone(2, 0, 0)[:3], now=1.0)
    [start] = tone(2, 4000, 3)[:1]
    # A new event would report it anyway; the timeout reports it first, once.
    assert receiver.receive(start.timestamp, True, start.sequence, start.payload, now=3.0) == [
        DtmfDigit("2", 60)
    ]


def test_no_timeout_without_a_clock():
    receiver = DtmfReceiver()
    feed(receiver, tone(2, 0, 0)[:3])
    assert receiver.deadline is None
    assert receiver.poll(1e9) == []


def test_same_digit_twice_is_two_events():
    receiver = DtmfReceiver()
    packets = tone(9, 16000, 500) + tone(9, 16000 + 1600, 508)
    assert feed(receiver, packets) == [DtmfDigit("9", 100), DtmfDigit("9", 100)]


def test_same_digit_twice_with_the_first_end_lost():
    receiver = DtmfReceiver()
    packets = tone(9, 16000, 500)[:5] + tone(9, 16000 + 1600, 508)
    assert feed(receiver, packets) == [DtmfDigit("9", 100), DtmfDigit("9", 100)]


def test_reordered_packets_of_one_event():
    receiver = DtmfReceiver()
    p = tone(6, 320, 40)
    # marker packet second, an end packet before the last two updates, which straggle in after it.
    order = [p[1], p[0], p[2], p[5], p[3], p[4], p[6], p[7]]
    results = per_packet(receiver, order)
    assert results[3] == [DtmfDigit("6", 100)]
    assert sum(results, []) == [DtmfDigit("6", 100)]


def test_update_with_a_shorter_duration_arriving_late_does_not_shorten_the_event():
    receiver = DtmfReceiver()
    p = tone(6, 320, 40, updates=8)
    order = p[:3] + [p[7]] + p[3:7] + p[8:]
    assert feed(receiver, order) == [DtmfDigit("6", 160)]


def test_end_of_the_previous_event_arriving_after_the_next_one_started():
    receiver = DtmfReceiver()
    a, b = tone(1, 0, 0), tone(2, 1600, 8)
    # a's first end packet is overtaken by b's first packet; the other two follow it.
    order = a[:5] + [b[0], a[5], a[6], a[7]] + b[1:]
    results = per_packet(receiver, order)
    assert results[5] == [DtmfDigit("1", 100)]  # b starting ends a, at its last known duration
    assert sum(results, []) == [DtmfDigit("1", 100), DtmfDigit("2", 100)]


def test_straggler_of_an_unseen_earlier_event_does_not_end_the_current_one():
    receiver = DtmfReceiver()
    b = tone(2, 1600, 8)
    assert feed(receiver, b[:2]) == []
    # A delayed update of an earlier event (older sequence number, new timestamp) is dropped...
    assert receiver.receive(0, False, 3, ev(1, 480)) == []
    # ... and its end packet reports that earlier event alone, once.
    assert receiver.receive(0, False, 5, ev(1, 800, end=True)) == [DtmfDigit("1", 100)]
    assert receiver.receive(0, False, 6, ev(1, 800, end=True)) == []
    assert feed(receiver, b[2:]) == [DtmfDigit("2", 100)]


def test_straggler_check_wraps_sequence_numbers():
    receiver = DtmfReceiver()
    b = tone(2, 1600, 2)  # sequence numbers 2..9
    feed(receiver, b[:2])
    assert receiver.receive(0, False, 65534, ev(1, 160)) == []
    assert feed(receiver, b[2:]) == [DtmfDigit("2", 100)]


def test_far_sequence_jump_is_a_new_event():
    receiver = DtmfReceiver()
    feed(receiver, tone(2, 1600, 5000)[:2])
    assert receiver.receive(0, True, 1000, ev(3, 160)) == [DtmfDigit("2", 40)]


def test_long_event_in_segments_is_one_digit():
    receiver = DtmfReceiver()
    start = 123_456
    first = [Pkt(start, True, 1, ev(0, 160))]
    first += [Pkt(start, False, 2 + i, ev(0, d)) for i, d in enumerate(range(32000, 65535, 16000))]
    first.append(Pkt(start, False, 10, ev(0, MAX_DURATION)))  # not ended: the event goes on
    second_start = start + MAX_DURATION
    second = [Pkt(second_start, False, 11, ev(0, 160)), Pkt(second_start, False, 12, ev(0, 8000))]
    second += [Pkt(second_start, False, 13 + i, ev(0, 8000, end=True)) for i in range(3)]
    results = per_packet(receiver, first + second)
    assert sum(results, []) == [DtmfDigit("0", (MAX_DURATION + 8000) * 1000 // 8000)]
    # A late packet of the first segment is a straggler of the reported event.
    assert receiver.receive(start, False, 9, ev(0, 60000)) == []


def test_long_event_segment_that_started_a_little_early():
    receiver = DtmfReceiver()
    feed(receiver, [Pkt(0, True, 1, ev(4, 65440))])
    next_segment = [Pkt(65440, False, 2, ev(4, 800, end=True))]
    assert feed(receiver, next_segment) == [DtmfDigit("4", (65440 + 800) // 8)]


def test_new_event_with_the_same_digit_and_a_marker_is_not_a_segment():
    receiver = DtmfReceiver()
    feed(receiver, [Pkt(0, True, 1, ev(4, MAX_DURATION))])
    assert receiver.receive(MAX_DURATION, True, 2, ev(4, 160)) == [DtmfDigit("4", MAX_DURATION // 8)]


def test_flash_and_other_events_are_not_digits():
    receiver = DtmfReceiver()
    assert feed(receiver, tone(16, 0, 0)) == []
    assert feed(receiver, tone(40, 1600, 8)) == []
    assert feed(receiver, tone(14, 3200, 16)) == [DtmfDigit("C", 100)]


def test_flash_without_end_does_not_report_when_the_next_event_starts():
    receiver = DtmfReceiver()
    feed(receiver, tone(16, 0, 0)[:3])
    assert feed(receiver, tone(1, 1600, 3)) == [DtmfDigit("1", 100)]


def test_malformed_payloads_are_counted_and_skipped():
    receiver = DtmfReceiver()
    p = tone(8, 0, 0)
    packets = p[:2] + [Pkt(0, False, 99, b"\x08\x0a"), Pkt(0, False, 100, b"")] + p[2:]
    assert feed(receiver, packets) == [DtmfDigit("8", 100)]
    assert receiver.invalid == 2


def test_replayed_event_is_new_once_the_memory_has_passed():
    receiver = DtmfReceiver()  # remembers a finished event for MEMORY_S (1 s)
    assert feed(receiver, tone(1, 13280, 7984), now=1.0) == [DtmfDigit("1", 100)]
    assert feed(receiver, tone(1, 13280, 7984), now=1.9) == []  # a late copy: still remembered
    assert feed(receiver, tone(1, 13280, 7984), now=3.5) == [DtmfDigit("1", 100)]


def feed_ssrc(receiver: DtmfReceiver, packets: list[Pkt], ssrc: int) -> list[DtmfDigit]:
    return [
        d for p in packets for d in receiver.receive(p.timestamp, p.marker, p.sequence, p.payload, ssrc=ssrc)
    ]


def test_new_ssrc_is_a_new_stream():
    # sipp's play_dtmf starts each play with a new SSRC and the same timestamps.
    receiver = DtmfReceiver()
    assert feed_ssrc(receiver, tone(1, 24400, 1240), ssrc=0x1020305) == [DtmfDigit("1", 100)]
    assert feed_ssrc(receiver, tone(1, 24400, 1240), ssrc=0x1020305) == []
    assert feed_ssrc(receiver, tone(1, 24400, 1273), ssrc=0x1020306) == [DtmfDigit("1", 100)]


def test_new_ssrc_reports_the_old_streams_unfinished_event():
    receiver = DtmfReceiver()
    assert feed_ssrc(receiver, tone(2, 0, 0)[:3], ssrc=1) == []
    assert feed_ssrc(receiver, tone(3, 0, 0)[:1], ssrc=2) == [DtmfDigit("2", 60)]
    assert feed_ssrc(receiver, tone(3, 0, 0)[1:], ssrc=2) == [DtmfDigit("3", 100)]


def test_without_a_clock_the_last_sixteen_events_are_remembered():
    receiver = DtmfReceiver()
    for i in range(17):
        assert feed(receiver, tone(i % 16, 1600 * (i + 1), 8 * i)) == [DtmfDigit(DIGITS[i % 16], 100)]
    assert feed(receiver, tone(0, 1600 * 17, 200)) == []  # the newest: remembered
    assert feed(receiver, tone(0, 1600, 300)) == [DtmfDigit("0", 100)]  # the oldest: forgotten


def test_packed_events_in_one_packet():
    receiver = DtmfReceiver()
    # The end of "1" (started at 800) and the start of "2" right after it, in one packet.
    feed(receiver, [Pkt(800, True, 1, ev(1, 160))])
    packed = ev(1, 800, end=True) + ev(2, 160)
    assert receiver.receive(800, False, 2, packed) == [DtmfDigit("1", 100)]
    assert feed(receiver, [Pkt(1600, False, 3, ev(2, 800, end=True))]) == [DtmfDigit("2", 100)]


def test_timestamps_wrap():
    receiver = DtmfReceiver()
    start = 2**32 - 80
    assert feed(receiver, tone(5, start, 65530)) == [DtmfDigit("5", 100)]
    assert feed(receiver, tone(5, (start + 1600) % 2**32, 2)) == [DtmfDigit("5", 100)]


def test_receive_packet_takes_an_rtp_packet():
    receiver = DtmfReceiver()
    packet = RtpPacket(
        payload_type=101, marker=True, sequence=1, timestamp=160, payload=ev(15, 800, end=True)
    )
    assert receiver.receive_packet(packet) == [DtmfDigit("D", 100)]


# -- sender ----------------------------------------------------------------------------------------


def drive(sender: DtmfSender, ticks: int, start: int = 0) -> list[DtmfPacket | None]:
    return [sender.next_packet(start + 160 * i) for i in range(ticks)]


def test_idle_sender_sends_audio():
    sender = DtmfSender()
    assert not sender.busy
    assert drive(sender, 5) == [None] * 5


def test_one_digit_packet_by_packet():
    sender = DtmfSender()
    sender.send("5")
    assert sender.busy
    out = drive(sender, 9, start=4000)
    assert out[:7] == [
        DtmfPacket(ev(5, 160), True, 4000, False),
        DtmfPacket(ev(5, 320), False, 4000, False),
        DtmfPacket(ev(5, 480), False, 4000, False),
        DtmfPacket(ev(5, 640), False, 4000, False),
        DtmfPacket(ev(5, 800, end=True), False, 4000, True),
        DtmfPacket(ev(5, 800, end=True), False, 4000, True),
        DtmfPacket(ev(5, 800, end=True), False, 4000, True),
    ]
    assert out[7:] == [None, None]
    assert not sender.busy


def test_digits_spaced_by_the_gap_with_audio_between():
    sender = DtmfSender()  # TONE_MS and GAP_MS: 100 ms each
    sender.send("12")
    out = drive(sender, 20)
    kinds = ["-" if p is None else ("M" if p.marker else "E" if p.end else "d") for p in out]
    # 100 ms tone (5 ticks), end x3 overlapping the gap, audio for the rest of the 100 ms gap.
    assert "".join(kinds) == "MdddEEE---MdddEEE---"
    assert {p.timestamp for p in out[:7]} == {0} and {p.timestamp for p in out[10:17]} == {1600}
    assert [parse_event(p.payload).event for p in out if p is not None] == [1] * 7 + [2] * 7


def test_short_gap_waits_for_the_three_end_packets():
    sender = DtmfSender()
    sender.send("**", tone_ms=40, gap_ms=0)
    kinds = ["-" if p is None else ("M" if p.marker else "E" if p.end else "d") for p in drive(sender, 10)]
    assert "".join(kinds) == "MEEEMEEE--"


def test_per_call_durations():
    sender = DtmfSender()
    sender.send("#", tone_ms=60, gap_ms=60)
    sender.send("A")
    out = drive(sender, 16)
    assert [parse_event(p.payload) for p in out[:5] if p] == [
        TelephoneEvent(11, False, 10, 160),
        TelephoneEvent(11, False, 10, 320),
        TelephoneEvent(11, True, 10, 480),
        TelephoneEvent(11, True, 10, 480),
        TelephoneEvent(11, True, 10, 480),
    ]
    assert out[5] is None and out[6] is not None and out[6].timestamp == 960  # 60 ms tone + 60 ms gap
    assert [parse_event(p.payload).duration for p in out[6:13]] == [160, 320, 480, 640, 800, 800, 800]


def test_one_frame_tone_is_a_marked_end_packet():
    sender = DtmfSender()
    sender.send("0", tone_ms=20)
    first = sender.next_packet(0)
    assert first == DtmfPacket(ev(0, 160, end=True), True, 0, True)


def test_late_tick_reports_the_real_duration():
    sender = DtmfSender()
    sender.send("3")
    assert sender.next_packet(0).payload == ev(3, 160)
    # The clock stalled: the next tick is three frames on.
    late = sender.next_packet(480)
    assert parse_event(late.payload) == TelephoneEvent(3, False, 10, 640)
    assert parse_event(sender.next_packet(640).payload) == TelephoneEvent(3, True, 10, 800)


def test_sender_timestamps_wrap():
    sender = DtmfSender()
    sender.send("44", gap_ms=60)
    start = 2**32 - 320
    out = [p for p in drive(sender, 14, start=start) if p]
    assert {p.timestamp for p in out[:7]} == {start}
    assert parse_event(out[4].payload).duration == 800
    assert out[7].timestamp == (start + 800 + 480) % 2**32


def test_invalid_digits_queue_nothing():
    sender = DtmfSender()
    with pytest.raises(DtmfError, match="not a DTMF digit"):
        sender.send("12x")
    assert not sender.busy and sender.next_packet(0) is None


@pytest.mark.parametrize("kwargs", [{"tone_ms": 10}, {"tone_ms": 9000}, {"gap_ms": -1}])
def test_sender_rejects_bad_durations(kwargs):
    sender = DtmfSender()
    with pytest.raises(DtmfError):
        sender.send("1", **kwargs)
    assert not sender.busy


def test_cancel_drops_queued_digits_but_ends_the_current_one():
    sender = DtmfSender()
    sender.send("123")
    drive(sender, 2)
    sender.cancel()
    rest = [p for p in drive(sender, 20, start=320) if p]
    assert [parse_event(p.payload).event for p in rest] == [1] * 5
    assert rest[-1].end and not sender.busy


def test_lowercase_letters_are_sent_as_capitals():
    sender = DtmfSender()
    sender.send("d")
    assert parse_event(sender.next_packet(0).payload).event == 15


# -- sender -> receiver ----------------------------------------------------------------------------


def rtp_stream(sender: DtmfSender, ticks: int, seq: int = 65000, ts: int = 2**32 - 5000) -> list[bytes]:
    """What a session would put on the wire: PCMU frames, replaced by PT 101 while an event is sent."""
    wire = []
    for i in range(ticks):
        timestamp = (ts + 160 * i) % 2**32
        packet = sender.next_packet(timestamp)
        if packet is None:
            wire.append(build_rtp_header(0, seq + i, timestamp, 0x1234) + b"\xff" * 160)
        else:
            header = build_rtp_header(101, seq + i, packet.timestamp, 0x1234, packet.marker)
            wire.append(header + packet.payload)
    return wire


def receive_stream(receiver: DtmfReceiver, wire: list[bytes], now: float | None = None) -> list[DtmfDigit]:
    digits = []
    for i, data in enumerate(wire):
        packet = parse_rtp(data)
        at = None if now is None else now + 0.02 * i
        if packet.payload_type == 101:
            digits += receiver.receive_packet(packet, at)
        elif at is not None:
            digits += receiver.poll(at)
    return digits


def test_round_trip_all_sixteen_digits():
    sender = DtmfSender()
    sender.send(DIGITS)
    wire = rtp_stream(sender, 16 * 10 + 5)
    assert not sender.busy
    assert receive_stream(DtmfReceiver(), wire) == [DtmfDigit(d, 100) for d in DIGITS]


def is_end_packet(data: bytes) -> bool:
    packet = parse_rtp(data)
    return packet.payload_type == 101 and parse_event(packet.payload).end


def test_round_trip_with_every_end_packet_lost():
    sender = DtmfSender()
    sender.send("0123456789*#ABCD", tone_ms=120, gap_ms=80)
    wire = [d for d in rtp_stream(sender, 16 * 11 + 40) if not is_end_packet(d)]
    # Each digit is reported when the next starts, the last one by the timeout.
    digits = receive_stream(DtmfReceiver(), wire, now=100.0)
    assert digits == [DtmfDigit(d, 100) for d in DIGITS]


def test_round_trip_with_random_loss_duplication_and_local_reordering():
    rng = random.Random(4733)
    sender = DtmfSender()
    sender.send("0123456789*#ABCD" * 2, gap_ms=60)
    wire = rtp_stream(sender, 32 * 9 + 20)
    noisy = []
    for data in wire:
        if rng.random() < 0.1:
            continue
        noisy.append(data)
        if rng.random() < 0.1:
            noisy.append(data)
    for i in range(0, len(noisy) - 1, 7):
        noisy[i], noisy[i + 1] = noisy[i + 1], noisy[i]
    digits = receive_stream(DtmfReceiver(), noisy, now=0.0)
    assert "".join(d.digit for d in digits) == DIGITS * 2


# -- sipp's RFC 2833 captures (sip-tester 3.6.1) ---------------------------------------------------


@dataclass
class Captured:
    time: float
    src_port: int
    dst_port: int
    packet: RtpPacket


def read_pcap_rtp(path: Path) -> list[Captured]:
    """UDP datagrams of a classic libpcap file (Ethernet or Linux cooked), parsed as RTP."""
    data = path.read_bytes()
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise ValueError(f"{path}: not a pcap file")
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack_from(endian + "I", data, 20)[0]
    link_header = {1: 14, 113: 16}[linktype]
    records, offset = [], 24
    while offset + 16 <= len(data):
        seconds, fraction, caplen, _ = struct.unpack_from(endian + "IIII", data, offset)
        frame = data[offset + 16 : offset + 16 + caplen]
        offset += 16 + caplen
        ethertype = struct.unpack_from("!H", frame, link_header - 2)[0]
        ip = frame[link_header:]
        if ethertype != 0x0800 or ip[9] != 17:  # IPv4 UDP only: all sipp's captures are
            continue
        udp = ip[(ip[0] & 0x0F) * 4 :]
        src_port, dst_port, length = struct.unpack_from("!HHH", udp)
        when = seconds + fraction / (1e9 if nano else 1e6)
        records.append(Captured(when, src_port, dst_port, parse_rtp(udp[8:length])))
    return records


SIPP_DTMF = {name: digit for digit, name in zip(DIGITS, [*"0123456789", "star", "pound"], strict=False)}


def sipp_pcap(name: str) -> Path:
    path = SIPP_PCAPS / f"dtmf_2833_{name}.pcap"
    if not path.is_file():
        pytest.skip(f"{path} not installed (Debian package sip-tester)")
    return path


@pytest.mark.parametrize("name", list(SIPP_DTMF))
def test_sipp_capture_yields_its_digit_exactly_once(name):
    captured = read_pcap_rtp(sipp_pcap(name))
    # What the capture is: one event at one timestamp, PT 101, 7 updates then the end packet x3.
    assert len(captured) == 10
    assert {c.packet.payload_type for c in captured} == {101}
    assert len({c.packet.timestamp for c in captured}) == 1 and len({c.packet.ssrc for c in captured}) == 1
    assert [c.packet.marker for c in captured] == [True] + [False] * 9
    events = [parse_event(c.packet.payload) for c in captured]
    assert [e.end for e in events] == [False] * 7 + [True] * 3
    assert {e.event for e in events} == {event_for_digit(SIPP_DTMF[name])}
    assert [e.duration for e in events] == [0, 320, 640, 960, 1280, 1600, 1920, 2240, 2240, 2240]
    assert len({c.packet.sequence for c in captured[-3:]}) == 1  # the end packet copied verbatim

    receiver = DtmfReceiver()
    results = [receiver.receive_packet(c.packet, now=c.time) for c in captured]
    assert results[7] == [DtmfDigit(SIPP_DTMF[name], 280)]
    assert sum(results, []) == [DtmfDigit(SIPP_DTMF[name], 280)]


def test_sipp_captures_played_one_after_another():
    receiver = DtmfReceiver()
    digits = []
    for i, name in enumerate(SIPP_DTMF):
        for c in read_pcap_rtp(sipp_pcap(name)):
            digits += receiver.receive_packet(c.packet, now=10.0 * i + c.time % 1)
    assert "".join(d.digit for d in digits) == "0123456789*#"


def test_sipp_capture_played_twice_counts_twice_only_after_the_memory():
    captured = read_pcap_rtp(sipp_pcap("1"))
    receiver = DtmfReceiver()  # remembers a finished event for MEMORY_S (1 s)
    # play_pcap_audio sends the capture's RTP headers unchanged: the same timestamp each time.
    assert [d for c in captured for d in receiver.receive_packet(c.packet, now=0.0)] == [DtmfDigit("1", 280)]
    assert [d for c in captured for d in receiver.receive_packet(c.packet, now=0.5)] == []
    assert [d for c in captured for d in receiver.receive_packet(c.packet, now=3.5)] == [DtmfDigit("1", 280)]


@pytest.mark.parametrize("event_rate", [48000, 8000])
def test_beside_opus_timestamps_follow_the_stream_and_durations_the_event_clock(event_rate):
    """Opus runs RTP on 48000; telephone-event at 48000 (RFC 4733) or at 8000, as phones offer it."""
    sender = DtmfSender()
    sender.use_clock(event_rate, 48000)
    sender.send("12")
    out = [sender.next_packet(k * 960) for k in range(20)]
    kinds = ["-" if p is None else ("M" if p.marker else "E" if p.end else "d") for p in out]
    assert "".join(kinds) == "MdddEEE---MdddEEE---"  # 100 ms tone, 100 ms gap, as at 8000
    assert {p.timestamp for p in out[:7]} == {0} and {p.timestamp for p in out[10:17]} == {9600}
    step = event_rate // 50
    assert [parse_event(p.payload).duration for p in out[:5]] == [k * step for k in range(1, 6)]


def test_a_receiver_on_the_48000_clock_counts_durations_in_it():
    receiver = DtmfReceiver()
    receiver.use_clock(48000)
    digits = receiver.receive(96000, True, 1, TelephoneEvent(7, True, 10, 4800).to_bytes())
    assert [(d.digit, d.duration_ms) for d in digits] == [("7", 100)]
