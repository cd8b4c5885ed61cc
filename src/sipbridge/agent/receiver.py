"""The agent's Opus audio as it arrives: decoded to PCM, or relayed as packets, gaps filled.

Packets are taken in arrival order. A gap in the sequence is filled before the packet that ends it:
the frame just before that packet from its in-band FEC, earlier ones by Opus concealment, so the
phone hears no hole and the decoder state stays continuous. Late and duplicate packets are dropped:
the phone-side playout buffer absorbs jitter, so nothing here waits for a packet.

``AgentAudioReceiver`` decodes every packet straight to the rate the phone's codec needs (libopus
decodes to 8 or 16 kHz itself). ``AgentPacketReceiver`` is for a phone that speaks Opus: packets go
on as they are, and only a gap costs a decode and an encode (``media/opus_relay.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..media.opus import OpusDecoder, OpusError
from ..media.opus_relay import OpusConcealer

log = logging.getLogger(__name__)

MAX_CONCEALED_FRAMES = 5  # longer gaps: conceal 100 ms, then let the audio resume


@dataclass
class ReceiverStats:
    packets: int = 0
    lost: int = 0
    concealed: int = 0
    recovered_fec: int = 0
    late: int = 0
    undecodable: int = 0


class _SequencedReceiver:
    """What both receivers share: the sequence numbers, gaps, late and duplicate packets."""

    def __init__(self) -> None:
        self._last_sequence: int | None = None
        self.stats = ReceiverStats()

    def restart(self) -> None:
        """A new stream (a redialled agent link): its sequence numbers start afresh."""
        self._last_sequence = None

    def packet(self, sequence: int, payload: bytes) -> bool:
        """Take one packet (and fill what is missing before it); False if late or a duplicate."""
        if self._last_sequence is not None:
            gap = (sequence - self._last_sequence) & 0xFFFF
            if gap == 0 or gap >= 0x8000:
                self.stats.late += 1
                return False
            if gap > 1:
                self.stats.lost += gap - 1
                self._fill_gap(min(gap - 1, MAX_CONCEALED_FRAMES), gap - 1 <= MAX_CONCEALED_FRAMES, payload)
        self._last_sequence = sequence
        self.stats.packets += 1
        self._take(payload)
        return True

    def _fill_gap(self, frames: int, with_fec: bool, next_payload: bytes) -> None:
        raise NotImplementedError

    def _take(self, payload: bytes) -> None:
        raise NotImplementedError


class AgentAudioReceiver(_SequencedReceiver):
    """Packets decoded to mono int16 PCM at ``pcm_rate``, handed to ``on_pcm``."""

    def __init__(self, pcm_rate: int, on_pcm: Callable[[np.ndarray], None]) -> None:
        super().__init__()
        self.pcm_rate = pcm_rate
        self._decoder = OpusDecoder(pcm_rate)
        self._on_pcm = on_pcm

    def _take(self, payload: bytes) -> None:
        try:
            pcm = self._decoder.decode(payload)
        except OpusError as exc:
            self.stats.undecodable += 1
            log.debug("agent audio: %s", exc)
            return
        self._on_pcm(pcm)

    def _fill_gap(self, frames: int, with_fec: bool, next_payload: bytes) -> None:
        for index in range(frames):
            use_fec = with_fec and index == frames - 1
            try:
                pcm = self._decoder.decode_lost(next_payload if use_fec else None)
            except OpusError:
                return
            self.stats.recovered_fec += use_fec
            self.stats.concealed += not use_fec
            self._on_pcm(pcm)


class AgentPacketReceiver(_SequencedReceiver):
    """Packets handed to ``on_packet`` as they are; a gap filled with packets made on demand."""

    def __init__(self, on_packet: Callable[[bytes], None]) -> None:
        super().__init__()
        self._on_packet = on_packet
        self._concealer = OpusConcealer()

    def _take(self, payload: bytes) -> None:
        self._on_packet(self._concealer.good(payload))

    def _fill_gap(self, frames: int, with_fec: bool, next_payload: bytes) -> None:
        before = self._concealer.recovered_fec
        for packet in self._concealer.conceal(frames, next_payload if with_fec else None):
            self._on_packet(packet)
        fec = self._concealer.recovered_fec - before
        self.stats.recovered_fec += fec
        self.stats.concealed += frames - fec
