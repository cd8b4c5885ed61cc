"""RtpSession hears only the call's peer: strangers' RTP is dropped, counted, never played or answered."""

from __future__ import annotations

import asyncio

import pytest

from sipbridge.rtp.latch import CONFIRM_PACKETS, QUIET_S
from sipbridge.rtp.packet import RtpPacket, build_rtp_header
from sipbridge.rtp.session import RtpSession

SDP = ("192.0.2.10", 4000)
SIP = ("198.51.100.1", 5060)  # where the call's SIP comes from (the phone's NAT)
NATTED = ("198.51.100.1", 31000)
STRANGER = ("203.0.113.66", 4000)
AUDIO = b"\xff" * 160


class FakeTransport(asyncio.DatagramTransport):
    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[bytes, tuple]] = []

    def sendto(self, data, addr=None) -> None:  # type: ignore[override]
        self.sent.append((data, addr))

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass


class Phone:
    """A session as a call uses it, with what it played and sent, at a time the test sets."""

    def __init__(self, mode: str = "sdp-or-signalling", sdp: tuple | None = SDP) -> None:
        self.now = 100.0
        self.played: list[bytes] = []
        self.events: list[RtpPacket] = []
        self.session = RtpSession(
            on_packet=lambda packet, arrival: self.played.append(packet.payload),
            on_event_packet=self.events.append,
            latch=mode,  # type: ignore[arg-type]
        )
        self.transport = FakeTransport()
        self.session.connection_made(self.transport)
        self.session.configure(0, 101, sdp, signalling=SIP)

    def packet(self, addr: tuple, sequence: int, payload: bytes = AUDIO, pt: int = 0) -> None:
        self.session.receive(build_rtp_header(pt, sequence, sequence * 160, 77) + payload, addr, self.now)

    def stream(self, addr: tuple, first: int, count: int, payload: bytes = AUDIO) -> None:
        for i in range(count):
            self.packet(addr, first + i, payload)
            self.now += 0.02

    def send(self) -> tuple | None:
        """Where one frame of ours goes (None: nowhere)."""
        before = len(self.transport.sent)
        self.session.send_frame(b"\xd5" * 160)
        return self.transport.sent[-1][1] if len(self.transport.sent) > before else None


def test_a_stranger_before_the_phone_gets_nothing_and_is_not_played():
    phone = Phone()
    phone.stream(STRANGER, 1, 50, b"\x01" * 160)
    assert phone.played == [] and not phone.session.latched
    assert phone.session.stats.foreign_in == 50 and phone.session.stats.packets_in == 0
    assert phone.session.stats.last_packet_at is None  # a stranger does not keep a silent call alive
    assert phone.send() == SDP  # still towards the phone


def test_the_sdp_address_latches_at_its_first_packet():
    phone = Phone()
    phone.packet(SDP, 9)
    assert phone.played == [AUDIO] and phone.session.latched
    assert phone.send() == SDP and phone.session.stats.foreign_in == 0


@pytest.mark.parametrize(("mode", "heard"), [("sdp-or-signalling", True), ("sdp", False), ("any", True)])
def test_behind_nat_the_signalling_ip_on_another_port_is_heard_per_setting(mode, heard):
    phone = Phone(mode)
    phone.packet(NATTED, 1)
    assert phone.played == ([AUDIO] if heard else [])
    assert phone.send() == (NATTED if heard else SDP)
    assert phone.session.stats.foreign_in == (0 if heard else 1)


def test_a_stranger_mid_call_is_dropped_counted_and_never_answered():
    phone = Phone()
    phone.stream(NATTED, 1, 10)
    phone.stream(STRANGER, 1, 30, b"\x01" * 160)  # a whole in-sequence stream while the phone is quiet
    phone.packet(STRANGER, 31, b"\x01\x8a\x03\x20", pt=101)  # and a DTMF digit (RFC 4733 "1", end)
    phone.now += 5
    phone.stream(STRANGER, 32, 30, b"\x01" * 160)
    assert phone.played == [AUDIO] * 10 and phone.events == []
    assert phone.session.stats.foreign_in == 61 and phone.session.stats.packets_in == 10
    assert phone.send() == NATTED


def test_nat_rebinding_moves_after_an_unbroken_sequence_once_the_old_port_is_quiet():
    phone = Phone()
    rebound = (NATTED[0], 31002)
    phone.stream(NATTED, 1, 10)
    for i in range(20):  # both ports talking (both the signalling IP: heard): the old one is answered
        phone.packet(NATTED, 11 + i)
        phone.packet(rebound, 400 + i, b"\x02" * 160)
        phone.now += 0.02
    assert phone.send() == NATTED and phone.played.count(b"\x02" * 160) == 20
    phone.now += QUIET_S  # the old port falls silent: the next in-sequence packet takes over
    phone.packet(rebound, 420, b"\x02" * 160)
    assert phone.send() == rebound and phone.played[-1] == b"\x02" * 160
    assert phone.session.stats.foreign_in == 0


def test_a_new_port_needs_an_unbroken_sequence_even_when_the_old_one_is_quiet():
    phone = Phone()
    rebound = (NATTED[0], 31002)
    phone.stream(NATTED, 1, 3)
    phone.now += 10
    for i in range(CONFIRM_PACKETS - 1):
        phone.packet(rebound, 400 + 2 * i)  # every other number: not one stream
    phone.stream(rebound, 1000, CONFIRM_PACKETS - 1)
    assert phone.send() == NATTED
    phone.packet(rebound, 1000 + CONFIRM_PACKETS - 1)
    assert phone.send() == rebound


def test_in_any_mode_media_from_another_ip_latches_after_an_unbroken_sequence():
    phone = Phone("any")
    phone.stream(STRANGER, 1, CONFIRM_PACKETS - 1)
    assert phone.send() == SDP and phone.played == []
    phone.packet(STRANGER, CONFIRM_PACKETS)
    assert phone.send() == STRANGER and phone.played == [AUDIO]


def test_a_reinvite_naming_a_new_address_starts_over():
    phone = Phone()
    phone.stream(SDP, 1, 5)
    moved = ("192.0.2.20", 6000)
    phone.session.configure(0, 101, moved, signalling=SIP)
    assert phone.send() == moved and not phone.session.latched
    phone.stream(SDP, 6, 20)  # the old address is no longer the peer (nor the signalling IP)
    assert len(phone.played) == 5
    phone.packet(moved, 1)
    assert len(phone.played) == 6 and phone.send() == moved


def test_hold_with_no_address_sends_nothing_until_resumed():
    phone = Phone()
    phone.stream(SDP, 1, 3)
    phone.session.configure(0, 101, ("0.0.0.0", 4000), signalling=SIP)
    assert phone.session.remote is None and phone.send() is None
    phone.session.configure(0, 101, SDP, signalling=SIP)
    assert phone.send() == SDP
