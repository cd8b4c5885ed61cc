"""The agent's Opus audio, decoded as it arrives: RTP packets in, 20 ms PCM frames out.

Packets are decoded in arrival order straight to the rate the phone needs (libopus decodes to 8 kHz
itself). A gap in the sequence is filled before the packet that ends it: the packet just before it
from that packet's in-band FEC, earlier ones by Opus concealment, so the phone hears no hole and the
decoder state stays continuous. Late and duplicate packets are dropped: the phone-side playout
buffer absorbs jitter, so nothing here waits for a packet.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..media.opus import OpusDecoder, OpusError

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


class AgentAudioReceiver:
    def __init__(self, pcm_rate: int, on_pcm: Callable[[np.ndarray], None]) -> None:
        self.pcm_rate = pcm_rate
        self._decoder = OpusDecoder(pcm_rate)
        self._on_pcm = on_pcm
        self._last_sequence: int | None = None
        self.stats = ReceiverStats()

    def packet(self, sequence: int, payload: bytes) -> bool:
        """Decode one packet (and conceal what is missing before it); False if late or a duplicate."""
        if self._last_sequence is not None:
            gap = (sequence - self._last_sequence) & 0xFFFF
            if gap == 0 or gap >= 0x8000:
                self.stats.late += 1
                return False
            if gap > 1:
                self._fill_gap(gap - 1, payload)
        self._last_sequence = sequence
        self.stats.packets += 1
        try:
            pcm = self._decoder.decode(payload)
        except OpusError as exc:
            self.stats.undecodable += 1
            log.debug("agent audio: %s", exc)
            return True
        self._on_pcm(pcm)
        return True

    def _fill_gap(self, missing: int, next_payload: bytes) -> None:
        self.stats.lost += missing
        concealed = min(missing, MAX_CONCEALED_FRAMES)
        for index in range(concealed):
            use_fec = index == concealed - 1 and missing <= MAX_CONCEALED_FRAMES
            try:
                pcm = self._decoder.decode_lost(next_payload if use_fec else None)
            except OpusError:
                return
            self.stats.recovered_fec += use_fec
            self.stats.concealed += not use_fec
            self._on_pcm(pcm)
