"""A call's MediaSession in SRTP: keys from the plain-data seam, replaced by a re-INVITE's."""

from __future__ import annotations

import asyncio
import base64
import secrets
from dataclasses import replace

import pylibsrtp

from sipbridge.config import Config
from sipbridge.media_session import wire
from sipbridge.media_session.host import MediaHost
from sipbridge.media_session.messages import CloseMedia, MediaOpened, OpenMedia, PhoneMedia, UpdateMedia
from sipbridge.rtp.packet import build_rtp_header
from sipbridge.rtp.ports import PortAllocator

SUITE = "AES_CM_128_HMAC_SHA1_80"


def _key() -> str:
    return base64.b64encode(secrets.token_bytes(30)).decode()


def _protect(key: str, sequence: int) -> bytes:
    policy = pylibsrtp.Policy(key=base64.b64decode(key), ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
    return pylibsrtp.Session(policy).protect(
        build_rtp_header(0, sequence, 160 * sequence, 99) + b"\xff" * 160
    )


def test_the_keys_cross_the_seam_and_are_never_in_repr():
    phone = PhoneMedia("PCMU", 0, None, ("127.0.0.1", 4000), "sendrecv", SUITE, _key(), _key())
    frame = wire.encode(wire.Envelope(wire.COMMAND, 1, "c1", UpdateMedia(phone)))
    assert wire.decode(frame[wire.HEADER.size :]).message == UpdateMedia(phone)
    assert phone.srtp_send_key not in repr(phone) and phone.srtp_recv_key not in repr(phone)


async def test_new_keys_in_an_update_replace_the_srtp_sessions():
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
    config = replace(Config(), sip_listen=replace(Config().sip_listen, host="127.0.0.1"))
    media = MediaHost(config, whip=None, ports=PortAllocator(41100, 41109)).session(lambda event: None)  # type: ignore[arg-type]
    opened = await media.open(OpenMedia("c1", "inbound", "alice", ("127.0.0.1", 5060)))
    assert isinstance(opened, MediaOpened)
    first, second = _key(), _key()
    address = transport.get_extra_info("sockname")
    try:
        media.update(UpdateMedia(PhoneMedia("PCMU", 0, None, address, "sendrecv", SUITE, _key(), first)))
        transport.sendto(_protect(first, 1), ("127.0.0.1", opened.port))
        await _until(lambda: media.stats().rtp["packets_in"] == 1)
        media.update(UpdateMedia(PhoneMedia("PCMU", 0, None, address, "sendrecv", SUITE, _key(), second)))
        transport.sendto(_protect(first, 2), ("127.0.0.1", opened.port))  # the old key no longer works
        transport.sendto(_protect(second, 3), ("127.0.0.1", opened.port))
        await _until(lambda: media.stats().rtp["packets_in"] == 2)
        view = media.stats().rtp
    finally:
        await media.close(CloseMedia("test over"))
        transport.close()
    assert view["srtp"] == {"suite": SUITE} and view["srtp_auth_failures"] == 1
    assert first not in repr(view) and second not in repr(view)


async def _until(condition, timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)
