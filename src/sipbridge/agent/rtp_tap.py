"""Take an aiortc receiver's RTP packets as they arrive, instead of its jitter buffer and decoder thread.

aiortc's audio JitterBuffer holds 4 frames (~80 ms) and, after one lost packet, releases nothing
until 16 more have arrived (~320 ms); its decoder then runs in a thread per receiver, fed through a
queue.Queue, and decodes to 48 kHz stereo. Tapping the packets replaces all of that with whatever the
caller does with each packet in the event loop. Relies on aiortc 1.16's private receiver attributes
(pinned in requirements.lock); a missing attribute raises at once rather than failing silently.
"""

from __future__ import annotations

from collections.abc import Callable

from aiortc import RTCRtpReceiver
from aiortc.rtp import RtpPacket

PacketHandler = Callable[[int, bytes], None]  # (sequence number, payload)
_ATTRIBUTES = ("_RTCRtpReceiver__jitter_buffer", "_RTCRtpReceiver__decoder_queue")


class _PacketTap:
    """Stands in for the jitter buffer: hands every packet on and never yields a frame to decode."""

    def __init__(self, on_packet: PacketHandler) -> None:
        self._on_packet = on_packet

    def add(self, packet: RtpPacket) -> tuple[bool, None]:
        self._on_packet(packet.sequence_number, packet.payload)
        return False, None


class _NoDecoderThread:
    """The queue aiortc's decoder thread reads: it is told to stop at once, so none keeps running."""

    def get(self) -> None:
        return None

    def put(self, item: object) -> None:
        pass


def tap_receiver(receiver: RTCRtpReceiver, on_packet: PacketHandler) -> None:
    """Must run before the receiver starts (before DTLS connects): after that its thread exists."""
    for name in _ATTRIBUTES:
        if not hasattr(receiver, name):
            raise RuntimeError(f"aiortc changed: RTCRtpReceiver has no {name}")
    setattr(receiver, _ATTRIBUTES[0], _PacketTap(on_packet))
    setattr(receiver, _ATTRIBUTES[1], _NoDecoderThread())
