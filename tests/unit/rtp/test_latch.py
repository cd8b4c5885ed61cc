"""RtpLatch on its own: who is trusted per mode, and when a new source may take over (time passed in)."""

from __future__ import annotations

import pytest

from sipbridge.rtp.latch import CONFIRM_PACKETS, QUIET_S, RtpLatch

SDP = ("192.0.2.10", 4000)
SIP = ("198.51.100.1", 5060)  # the phone's public (NAT) address, as its SIP comes from it
NATTED = ("198.51.100.1", 31000)
STRANGER = ("203.0.113.66", 4000)


def _stream(latch: RtpLatch, addr: tuple, first_seq: int, count: int, now: float) -> list[bool]:
    return [latch.admit(addr, (first_seq + i) & 0xFFFF, now + i * 0.02) for i in range(count)]


def test_before_any_packet_we_send_where_the_sdp_says():
    latch = RtpLatch()
    latch.expect(SDP, SIP)
    assert latch.remote == SDP and not latch.latched


@pytest.mark.parametrize(
    ("mode", "source", "admitted"),
    [
        ("sdp-or-signalling", SDP, True),
        ("sdp-or-signalling", NATTED, True),
        ("sdp-or-signalling", STRANGER, False),
        ("sdp", SDP, True),
        ("sdp", NATTED, False),
        ("sdp", STRANGER, False),
        ("any", SDP, True),
        ("any", NATTED, True),
        ("any", STRANGER, False),  # one packet is not enough, even here
    ],
)
def test_the_first_packet_latches_only_from_a_source_the_signalling_vouches_for(mode, source, admitted):
    latch = RtpLatch(mode)
    latch.expect(SDP, SIP)
    assert latch.admit(source, 100, 10.0) is admitted
    assert latch.latched is admitted
    assert latch.remote == (source if admitted else SDP)


def test_a_stranger_never_latches_however_long_its_stream_unless_mode_is_any():
    for mode in ("sdp-or-signalling", "sdp"):
        latch = RtpLatch(mode)  # type: ignore[arg-type]
        latch.expect(SDP, SIP)
        assert not any(_stream(latch, STRANGER, 1, 200, 0.0))
        assert latch.remote == SDP and not latch.latched


def test_in_any_mode_a_stranger_latches_after_an_unbroken_sequence():
    latch = RtpLatch("any")
    latch.expect(SDP, SIP)
    assert _stream(latch, STRANGER, 65533, CONFIRM_PACKETS, 0.0) == [False] * (CONFIRM_PACKETS - 1) + [True]
    assert latch.remote == STRANGER  # across the 16-bit wrap: 65533, 65534, 65535, 0, 1


def test_a_broken_sequence_starts_the_count_again():
    latch = RtpLatch("any")
    latch.expect(SDP, SIP)
    assert not any(_stream(latch, STRANGER, 10, CONFIRM_PACKETS - 1, 0.0))
    assert not latch.admit(STRANGER, 50, 1.0)  # a gap
    assert not any(_stream(latch, STRANGER, 51, CONFIRM_PACKETS - 2, 1.1))
    assert latch.admit(STRANGER, 51 + CONFIRM_PACKETS - 2, 2.0)


def test_nat_rebinding_moves_after_an_unbroken_sequence_once_the_old_port_is_quiet():
    latch = RtpLatch()
    latch.expect(SDP, SIP)
    assert latch.admit(NATTED, 1, 0.0)
    rebound = (NATTED[0], 31002)
    # The old port still talking: the new one (the signalling IP: trusted) is heard, never answered.
    for i in range(20):
        assert latch.admit(NATTED, 2 + i, 0.02 * (i + 1))
        assert latch.admit(rebound, 500 + i, 0.02 * (i + 1) + 0.01)
    last_old = 0.4
    assert latch.admit(rebound, 520, last_old + QUIET_S - 0.01)
    assert latch.remote == NATTED and latch.moves == 0
    # Quiet for a second: the next in-sequence packet takes over.
    assert latch.admit(rebound, 521, last_old + QUIET_S + 0.01)
    assert latch.remote == rebound and latch.moves == 1
    assert latch.admit(NATTED, 22, last_old + QUIET_S + 0.02)  # still the signalling IP: heard
    assert latch.remote == rebound  # but not answered


def test_a_quiet_source_is_not_replaced_by_a_short_burst():
    latch = RtpLatch()
    latch.expect(SDP, SIP)
    assert latch.admit(SDP, 1, 0.0)
    _stream(latch, NATTED, 7, CONFIRM_PACKETS - 1, 5.0)
    assert latch.remote == SDP


def test_strangers_in_between_do_not_break_the_peer_s_sequence():
    latch = RtpLatch()
    latch.expect(SDP, SIP)
    latch.admit(SDP, 1, 0.0)
    for i in range(CONFIRM_PACKETS):
        assert not latch.admit(STRANGER, 900 + 7 * i, 5.0 + i * 0.02)
        assert latch.remote == SDP
        assert latch.admit(NATTED, 300 + i, 5.01 + i * 0.02)
    assert latch.remote == NATTED


def test_a_new_sdp_address_starts_over_and_the_same_one_keeps_the_latch():
    latch = RtpLatch()
    latch.expect(SDP, SIP)
    latch.admit(NATTED, 1, 0.0)
    moved = ("192.0.2.20", 6000)
    latch.expect(moved, SIP)
    assert latch.remote == moved and not latch.latched
    assert latch.admit(moved, 1, 0.1) and latch.remote == moved


def test_no_sdp_address_hold_accepts_only_the_signalling_ip():
    latch = RtpLatch()
    latch.expect(None, SIP)
    assert latch.remote is None
    assert not latch.admit(STRANGER, 1, 0.0)
    assert latch.admit(NATTED, 1, 0.0) and latch.remote == NATTED


def test_addresses_compare_by_value_not_spelling():
    latch = RtpLatch()
    latch.expect(("2001:DB8:0:0::1", 4000), ("::ffff:198.51.100.1", 5060))
    assert latch.admit(("2001:db8::1", 4000, 0, 0), 1, 0.0)  # an IPv6 socket's 4-tuple
    assert latch.remote == ("2001:db8::1", 4000)
    other = RtpLatch()
    other.expect(SDP, SIP)
    assert other.admit(("::ffff:198.51.100.1", 31000, 0, 0), 1, 0.0)  # dual-stack socket, mapped IPv4


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="latch mode"):
        RtpLatch("nobody")  # type: ignore[arg-type]
