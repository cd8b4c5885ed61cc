"""The codec axis (``--codecs``): what the probe puts on the wire for each codec, and how what comes
back is turned into 8 kHz audio for the echo analysis.

- PCMU: the speech's own μ-law frames, as before the axis.
- G722: the 8 kHz speech upsampled to 16 kHz and coded with ``sipbridge.media.g722``; payload type 9,
  ``G722/8000``: RFC 3551's 8000 clock, so timestamps step 160 per 20 ms as for PCMU.
- OPUS: the speech upsampled to 48 kHz and coded with ``sipbridge.media.opus`` at a phone's settings
  (``PHONE_OPUS``); dynamic payload type 111, ``opus/48000/2``: timestamps step 960 per 20 ms. The
  bridge relays it to the agent without transcoding (no phone codec of its own: ``phone_codec`` None).

The whole speech loop is coded once, before any call (``encode_loop``), so what the probe does per
packet stays a header and a ``sendmsg``. The speech is 8 kHz (espeak-ng through μ-law): the wideband
codecs carry narrowband content, which costs them the same per frame. The upsampler's delay is taken
out, so payload k holds the same 20 ms as μ-law frame k. Coders with state (G.722's ADPCM, Opus's
prediction) code the loop twice and keep the second pass: the state at frame 0 is then the one after
the loop's last frame, which is what precedes frame 0 each time the probe wraps around.

Back: a ``StreamDecoder`` per call decodes the call's payloads in sequence order (its decoder keeps
state) to 160 samples at 8 kHz each, the analysis rate: G.722 at 16 kHz and down with
``sipbridge.media.resample`` (whose delay the caller takes out: ``delay_samples``), Opus straight at
8 kHz (libopus resamples itself). The codecs' own delays (G.722's filter bank, Opus's look-ahead)
stay in the round trip, as with a phone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sipbridge.media.g722 import G722Decoder, G722Encoder
from sipbridge.media.opus import OpusDecoder, OpusEncoder, OpusSettings
from sipbridge.media.resample import PolyphaseResampler

from .speech import FRAME_BYTES, RATE, Speech, ulaw_to_float

ANALYSIS_RATE = RATE  # the echo analysis compares 20 ms frames of 160 samples at 8 kHz
FRAMES_PER_S = 50
# An Opus phone: wideband-capable voice settings, in-band FEC as its fmtp offers.
PHONE_OPUS = OpusSettings(bitrate=32000, application="voip", complexity=5, fec=True, pcm_rate=48000)


@dataclass(frozen=True)
class WireCodec:
    """One codec of the axis, as SDP offers it and as RTP carries it."""

    name: str  # as --codecs spells it
    payload_type: int
    rtpmap: str  # encoding/clock[/channels], as in a=rtpmap
    pcm_rate: int  # the rate the probe codes at
    timestamp_step: int  # RTP timestamp units per 20 ms
    fmtp: str | None = None
    phone_codec: str | None = None  # the bridge's phone codec (media/phone_codec.py); None: relayed
    fixed_size: int | None = None  # payload bytes per 20 ms when constant

    def sdp_media(self) -> list[str]:
        """The codec's a= lines of an offer (rtpmap, fmtp)."""
        lines = [f"a=rtpmap:{self.payload_type} {self.rtpmap}"]
        return lines + ([f"a=fmtp:{self.payload_type} {self.fmtp}"] if self.fmtp else [])


PCMU = WireCodec("PCMU", 0, "PCMU/8000", 8000, 160, phone_codec="PCMU", fixed_size=160)
G722 = WireCodec("G722", 9, "G722/8000", 16000, 160, phone_codec="G722", fixed_size=160)
OPUS = WireCodec("OPUS", 111, "opus/48000/2", 48000, 960, fmtp="useinbandfec=1;stereo=0")
CODECS = {codec.name: codec for codec in (PCMU, G722, OPUS)}


def codecs_from(text: str) -> list[WireCodec]:
    """``--codecs PCMU,G722,OPUS`` (any case, in the order given, each once)."""
    names = [name.strip().upper() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in CODECS]
    if not names or unknown:
        raise SystemExit(f"--codecs: give one or more of {', '.join(CODECS)} (not {', '.join(unknown)})")
    return [CODECS[name] for name in dict.fromkeys(names)]


# -- the probe's payloads, coded once ---------------------------------------------------------


def _pcm8k(speech: Speech) -> np.ndarray:
    """The speech as the int16 samples its μ-law decodes to (exactly: μ-law values fit int16)."""
    return np.rint(speech.linear * 32768.0).astype(np.int16)


def periodic_at(pcm: np.ndarray, rate: int) -> np.ndarray:
    """One loop of the looped 8 kHz `pcm` at `rate`, the resampler's delay taken out: sample n of
    the result is sample n * rate / 8000 of the loop, and the result loops seamlessly too."""
    if rate == ANALYSIS_RATE:
        return pcm.copy()
    resampler = PolyphaseResampler(ANALYSIS_RATE, rate)
    out = resampler.process(np.tile(pcm, 3))  # the middle loop has a whole loop on either side
    n = len(pcm) * rate // ANALYSIS_RATE
    return out[n + resampler.delay_samples : 2 * n + resampler.delay_samples]


def code_twice(encode: Callable[[np.ndarray], bytes], pcm: np.ndarray, frame: int) -> list[bytes]:
    """`pcm` (a whole number of `frame`-sample frames, looped) coded as two loops; the second's
    payloads, whose coder state at frame 0 is the one after the loop's end."""
    frames = len(pcm) // frame
    coded = [encode(pcm[(i % frames) * frame : (i % frames + 1) * frame]) for i in range(2 * frames)]
    return coded[frames:]


def encode_loop(codec: WireCodec, speech: Speech) -> list[bytes]:
    """The speech loop as `codec` payloads, one per 20 ms frame: payload k is μ-law frame k."""
    if codec.name == "PCMU":
        return list(speech.frames)
    pcm = periodic_at(_pcm8k(speech), codec.pcm_rate)
    frame = codec.pcm_rate // FRAMES_PER_S
    if codec.name == "G722":
        return code_twice(G722Encoder().encode, pcm, frame)
    return code_twice(OpusEncoder(PHONE_OPUS).encode, pcm, frame)


# -- what comes back, decoded per call --------------------------------------------------------


class StreamDecoder:
    """One call's returned payloads, in sequence order, to 160 float samples (8 kHz) each.

    ``decode`` returns None for a payload the codec cannot take (wrong size, corrupt): the caller
    counts it and calls ``missing`` instead. ``delay_samples``: how late (8 kHz samples) the
    decoded stream runs behind the payloads, from the analysis's own resampler."""

    def __init__(self, codec: WireCodec) -> None:
        self.codec = codec
        self.delay_samples = 0
        self._resampler: PolyphaseResampler | None = None
        self._g722: G722Decoder | None = None
        self._opus: OpusDecoder | None = None
        if codec.name == "G722":
            self._g722 = G722Decoder()
            self._resampler = PolyphaseResampler(codec.pcm_rate, ANALYSIS_RATE)
            self.delay_samples = self._resampler.delay_samples
        elif codec.name == "OPUS":
            self._opus = OpusDecoder(ANALYSIS_RATE)

    def decode(self, payload: bytes) -> np.ndarray | None:
        if self.codec.fixed_size is not None and len(payload) != self.codec.fixed_size:
            return None
        if self._g722 is not None and self._resampler is not None:
            return _to_float(self._resampler.process(self._g722.decode(payload)))
        if self._opus is not None:
            return self._decode_opus(payload)
        return ulaw_to_float(payload)

    def missing(self) -> np.ndarray:
        """Silence for a packet that never came; the decoder's clock moves on all the same."""
        if self._resampler is not None:
            self._resampler.process(np.zeros(self.codec.pcm_rate // FRAMES_PER_S, dtype=np.int16))
        elif self._opus is not None:
            self._opus.decode_lost()
        return np.zeros(FRAME_BYTES, dtype=np.float32)

    def _decode_opus(self, payload: bytes) -> np.ndarray | None:
        assert self._opus is not None
        try:
            pcm = self._opus.decode(payload)
        except ValueError:  # OpusError: corrupt
            return None
        return _to_float(pcm) if len(pcm) == FRAME_BYTES else None  # 20 ms packets only


def _to_float(pcm: np.ndarray) -> np.ndarray:
    return pcm.astype(np.float32) / 32768.0
