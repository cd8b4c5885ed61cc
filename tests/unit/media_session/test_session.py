"""A call's MediaSession through its plain-data interface, with real sockets on loopback."""

from __future__ import annotations

import asyncio
import dataclasses
import typing
from dataclasses import replace

from sipbridge.config import Config
from sipbridge.media_session import messages
from sipbridge.media_session.host import MediaHost
from sipbridge.media_session.messages import (
    CloseMedia,
    MediaOpened,
    MediaRefused,
    OpenMedia,
    PhoneMedia,
    SendDigits,
    StartSending,
    StatsRequest,
    UpdateMedia,
)
from sipbridge.rtp.dtmf import parse_event
from sipbridge.rtp.packet import parse_rtp
from sipbridge.rtp.ports import PortAllocator

PRIMITIVES = (str, int, float, bool, type(None))


class Phone(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.packets: list[bytes] = []

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.packets.append(data)


def _host(low: int = 41000, high: int = 41009) -> MediaHost:
    config = replace(Config(), sip_listen=replace(Config().sip_listen, host="127.0.0.1"))
    return MediaHost(config, whip=None, ports=PortAllocator(low, high))  # type: ignore[arg-type]


async def test_agent_digits_go_to_the_phone_as_rfc4733_events_instead_of_audio():
    loop = asyncio.get_running_loop()
    transport, phone = await loop.create_datagram_endpoint(Phone, local_addr=("127.0.0.1", 0))
    events: list[messages.MediaEvent] = []
    media = _host().session(events.append)
    opened = await media.open(OpenMedia("c1", "inbound", "alice", ("127.0.0.1", 5060)))
    assert isinstance(opened, MediaOpened)
    try:
        address = transport.get_extra_info("sockname")
        media.update(UpdateMedia(PhoneMedia("PCMU", 0, 101, address)))
        media.start_sending(StartSending())
        media.send_digits(SendDigits("7#x"))
        assert [e.digits for e in events if isinstance(e, messages.DigitsSent)] == ["7#"]
        await asyncio.sleep(0.9)
    finally:
        final = await media.close(CloseMedia("test over"))
        transport.close()
    packets = [parse_rtp(data) for data in phone.packets]
    events_out = [p for p in packets if p.payload_type == 101]
    ends = [parse_event(p.payload) for p in events_out if parse_event(p.payload).end]
    assert [e.digit for e in ends] == ["7", "7", "7", "#", "#", "#"]
    assert events_out[0].marker and any(p.payload_type == 0 for p in packets)  # the stream goes on
    assert final.counters.rtp_packets_sent >= len(phone.packets) > 30  # (the last may be in flight)
    assert final.rtp is not None and final.rtp["local_port"] == opened.port


async def test_digits_without_telephone_event_are_not_sent():
    events: list[messages.MediaEvent] = []
    media = _host().session(events.append)
    await media.open(OpenMedia("c2", "inbound", None, None))
    media.update(UpdateMedia(PhoneMedia("PCMA", 8, None, ("127.0.0.1", 9))))
    media.send_digits(SendDigits("1"))
    assert [e.digits for e in events if isinstance(e, messages.DigitsSent)] == [""]
    assert media.stats(StatsRequest()).codec == "PCMA"
    await media.close(CloseMedia("done"))


async def test_no_free_port_is_a_refusal_and_close_gives_the_port_back():
    host = _host(41100, 41101)  # one port
    first = host.session(lambda event: None)
    assert isinstance(await first.open(OpenMedia("a", "inbound", None, None)), MediaOpened)
    second = host.session(lambda event: None)
    refused = await second.open(OpenMedia("b", "inbound", None, None))
    assert isinstance(refused, MediaRefused) and "no free RTP port" in refused.reason
    await first.close(CloseMedia("done"))
    await first.close(CloseMedia("again"))  # idempotent
    assert host.ports_in_use == 0


def _plain(tp: object) -> bool:
    """Whether a field type is plain data: primitives, containers of them, or another message."""
    origin = typing.get_origin(tp)
    if origin is None:
        return tp in PRIMITIVES or tp is typing.Any or dataclasses.is_dataclass(tp)
    return all(_plain(arg) for arg in typing.get_args(tp) if arg is not Ellipsis)


def test_every_message_across_the_seam_is_plain_data():
    classes = [c for c in vars(messages).values() if dataclasses.is_dataclass(c) and isinstance(c, type)]
    assert len(classes) > 20
    for cls in classes:
        hints = typing.get_type_hints(cls, vars(messages))
        for field in dataclasses.fields(cls):
            assert _plain(hints[field.name]), f"{cls.__name__}.{field.name}: {hints[field.name]}"
