"""The codecs of the phone leg, as one table: what each is on the wire and how a stream codes it.

PCMU and PCMA (G.711) code 8 kHz audio one byte per sample, statelessly; G.722 codes 16 kHz audio
in 160 bytes per 20 ms with ADPCM state, so each stream direction needs its own coder. These three
run RTP on an 8000 clock (G.722's quirk, RFC 3551 §4.5.2): 160 timestamp units and 160 payload bytes
per 20 ms; only the PCM rate differs.

Opus (RFC 7587) runs on a 48000 clock with packets of any size; it is never transcoded on the phone
leg: the agent leg is Opus too, so its packets are relayed both ways (``relayed``), and the durations
come from each packet's own TOC byte (``media/opus_packet.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import g711
from .g722 import G722Decoder, G722Encoder

FRAME_MS = 20
RTP_CLOCK = 8000

Decode = Callable[[bytes], np.ndarray]  # a payload to int16 PCM at the codec's pcm_rate
Encode = Callable[[np.ndarray], bytes]  # 20 ms of int16 PCM at the codec's pcm_rate to a payload


@dataclass(frozen=True)
class PhoneCodec:
    name: str  # as SDP's rtpmap spells it
    payload_type: int  # its static RTP payload type (RFC 3551); Opus: the one we offer
    pcm_rate: int  # the audio's sample rate
    clock_rate: int = RTP_CLOCK  # its RTP timestamp clock

    @property
    def relayed(self) -> bool:
        """Its packets go to the agent and back as they are (Opus): no decoder or encoder here."""
        return self.name == "OPUS"

    @property
    def frame_ticks(self) -> int:
        """RTP timestamp units in 20 ms."""
        return self.clock_rate * FRAME_MS // 1000

    @property
    def frame_samples(self) -> int:
        """PCM samples in 20 ms."""
        return self.pcm_rate * FRAME_MS // 1000

    @property
    def wideband(self) -> bool:
        return self.pcm_rate > 8000

    @property
    def stateful(self) -> bool:
        """Whether its coders keep state from frame to frame (one coder per stream then)."""
        return self.name == "G722"

    @property
    def samples_per_tick(self) -> int:
        """PCM samples per RTP timestamp unit (and per payload byte): 1 for G.711, 2 for G.722."""
        return self.pcm_rate // RTP_CLOCK

    def decoder(self) -> Decode:
        """A decoder for one incoming stream (G.722 keeps state per stream)."""
        if self.relayed:
            raise ValueError(f"{self.name} is relayed, not decoded, on the phone leg")
        if self.stateful:
            return G722Decoder().decode
        return g711.decoder_for(self.name)

    def encoder(self) -> Encode:
        """An encoder for one outgoing stream."""
        if self.relayed:
            raise ValueError(f"{self.name} is relayed, not encoded, on the phone leg")
        if self.stateful:
            return G722Encoder().encode
        return g711.encoder_for(self.name)


CODECS = {
    "PCMU": PhoneCodec("PCMU", 0, 8000),
    "PCMA": PhoneCodec("PCMA", 8, 8000),
    "G722": PhoneCodec("G722", 9, 16000),
    "OPUS": PhoneCodec("OPUS", 111, 48000, clock_rate=48000),
}


def phone_codec(name: str) -> PhoneCodec:
    """The codec called ``name`` (case-insensitive); ValueError for one the phone leg does not speak."""
    try:
        return CODECS[name.upper()]
    except KeyError:
        raise ValueError(f"unsupported phone codec {name!r} (want one of {', '.join(CODECS)})") from None
