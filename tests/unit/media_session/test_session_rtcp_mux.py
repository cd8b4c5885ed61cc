"""A call's MediaSession with rtcp-mux (RFC 5761) from the plain-data seam: the phone's RTCP read on
the RTP port, ours (the BYE at the end) sent from it to the phone's RTP port; a re-INVITE without
a=rtcp-mux moves RTCP back to port + 1."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import replace

from aiortc.rtp import RtcpByePacket, RtcpPacket

from sipbridge.config import Config
from sipbridge.media_session import wire
from sipbridge.media_session.host import MediaHost
from sipbridge.media_session.messages import CloseMedia, MediaOpened, OpenMedia, PhoneMedia, UpdateMedia
from sipbridge.rtp.ports import PortAllocator
from sipbridge.rtp.rtcp import RtcpReporter

WALL = 1_800_000_000.0


def test_the_decision_crosses_the_seam_and_an_older_frame_means_no_mux():
    phone = PhoneMedia("PCMU", 0, None, ("127.0.0.1", 4000), rtcp_mux=True)
    frame = wire.encode(wire.Envelope(wire.COMMAND, 1, "c1", UpdateMedia(phone)))
    assert wire.decode(frame[wire.HEADER.size :]).message == UpdateMedia(phone)
    older = b'[1,"c",1,"c1","UpdateMedia",[["PCMU",0,null,["127.0.0.1",4000],"sendrecv",null,"",""],null]]'
    assert wire.decode(older).message.phone.rtcp_mux is False


async def test_muxed_rtcp_is_read_and_sent_on_the_rtp_port_until_a_re_invite_drops_it():
    phone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # the phone's RTP (and muxed RTCP) socket
    phone.bind(("127.0.0.1", 0))
    phone.setblocking(False)
    config = replace(Config(), sip_listen=replace(Config().sip_listen, host="127.0.0.1"))
    media = MediaHost(config, whip=None, ports=PortAllocator(41120, 41129)).session(lambda event: None)  # type: ignore[arg-type]
    opened = await media.open(OpenMedia("c1", "inbound", "alice", ("127.0.0.1", 5060)))
    assert isinstance(opened, MediaOpened)
    ours = ("127.0.0.1", opened.port)
    report = RtcpReporter(0x2222, "phone@test", 8000, 0.0).report(1.0, WALL, None, None)
    address = phone.getsockname()
    try:
        media.update(UpdateMedia(PhoneMedia("PCMU", 0, None, address, rtcp_mux=True)))
        phone.sendto(report, ours)
        await _until(lambda: _rtcp(media)["reports_received"] == 1)
        assert _rtcp(media)["mux"] is True and _rtcp(media)["on_rtp_port"] == 1
        assert media.stats().rtp["packets_in"] == 0  # not RTP: never near the jitter buffer
        assert media.stats().rtp["invalid_in"] == 0

        media.update(UpdateMedia(PhoneMedia("PCMU", 0, None, address)))  # the re-INVITE: no a=rtcp-mux
        phone.sendto(report, ours)  # RTCP on the RTP port is not read any more
        phone.sendto(report, (ours[0], ours[1] + 1))  # on port + 1 it is
        await _until(lambda: _rtcp(media)["reports_received"] == 2)
        await asyncio.sleep(0.05)
        assert _rtcp(media)["reports_received"] == 2 and _rtcp(media)["mux"] is False
        assert _rtcp(media)["on_rtp_port"] == 2  # seen there, and dropped

        media.update(UpdateMedia(PhoneMedia("PCMU", 0, None, address, rtcp_mux=True)))
        await media.close(CloseMedia("test over"))
        data, source = await asyncio.wait_for(asyncio.get_running_loop().sock_recvfrom(phone, 2048), 1)
        assert source == ours and isinstance(RtcpPacket.parse(data)[-1], RtcpByePacket)
    finally:
        await media.close(CloseMedia("test over"))
        phone.close()


def _rtcp(media) -> dict:
    return media.stats().rtp["rtcp"]


async def _until(condition, timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)
