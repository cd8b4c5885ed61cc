"""Mono 20 ms Opus encode/decode straight on libopus, and aiortc frame conversion.

libopus is the copy shipped inside PyAV's wheel (pinned with ``av``), called through ctypes: no
AVFrame/AVPacket objects per frame, and libopus's own sample-rate handling. Opus on the wire always
runs on a 48 kHz clock, but libopus encodes from and decodes to 8, 12, 16, 24 or 48 kHz PCM: the
bridge hands it the phone's 8 kHz audio and asks for 8 kHz back, so it needs no resampler at all.

Encoder delay: every 20 ms frame gives one packet, from the first call on; the look-ahead
(``delay_samples``, e.g. 52 samples = 6.5 ms at 8 kHz) shows as a lag of the decoded signal.
In-band FEC: with ``fec=True`` libopus (told to expect ``FEC_PACKET_LOSS_PCT`` loss) adds LBRR data
(SILK and hybrid modes), which a decoder uses via ``decode_lost(next_packet)``; it costs encode time.

``OpusSettings`` is the one value that says how to code: the bridge's ``opus_*`` settings without
their prefix, with the same defaults, handed whole to the encoder and the pipelines (the decoders
take its ``pcm_rate``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
from dataclasses import dataclass

import av
import numpy as np

FRAME_MS = 20
RATES = (8000, 12000, 16000, 24000, 48000)
MAX_PACKET_BYTES = 1500
APPLICATIONS = {"voip": 2048, "audio": 2049, "lowdelay": 2051}
_SET_BITRATE = 4002
_SET_COMPLEXITY = 4010
_SET_INBAND_FEC = 4012
_SET_PACKET_LOSS_PERC = 4014
_GET_LOOKAHEAD = 4027
FEC_PACKET_LOSS_PCT = 10  # the loss libopus is told to expect when FEC is on: it sizes the LBRR data


@dataclass(frozen=True)
class OpusSettings:
    """How Opus is coded towards the agent; the settings ``opus_bitrate`` ... ``opus_pcm_rate``."""

    bitrate: int = 32000
    # lowdelay: 2.5 ms of encoder lookahead instead of 6.5 ms, same quality and cost at 32 kbit/s
    # (libopus codes the phone band in CELT either way at that rate), but no in-band FEC.
    application: str = "lowdelay"
    complexity: int = 1
    fec: bool = False
    # PCM rate at the libopus boundary: 8000 codes the phone's band natively (no resampling at all).
    pcm_rate: int = 8000


class OpusError(ValueError):
    """libopus rejected the input (bad packet, wrong frame size) or a setting."""


def _load_libopus() -> ctypes.CDLL:
    bundled = sorted(
        glob.glob(os.path.join(os.path.dirname(av.__file__), os.pardir, "av.libs", "libopus*.so*"))
    )
    path = bundled[0] if bundled else ctypes.util.find_library("opus")
    if not path:
        raise ImportError("libopus not found: neither PyAV's bundled copy nor a system libopus")
    lib = ctypes.CDLL(path)
    c_int, ptr = ctypes.c_int, ctypes.c_void_p
    lib.opus_encoder_create.argtypes = [ctypes.c_int32, c_int, c_int, ctypes.POINTER(c_int)]
    lib.opus_encoder_create.restype = ptr
    lib.opus_decoder_create.argtypes = [ctypes.c_int32, c_int, ctypes.POINTER(c_int)]
    lib.opus_decoder_create.restype = ptr
    lib.opus_encode.argtypes = [ptr, ptr, c_int, ptr, ctypes.c_int32]
    lib.opus_encode.restype = ctypes.c_int32
    lib.opus_decode.argtypes = [ptr, ptr, ctypes.c_int32, ptr, c_int, c_int]
    lib.opus_decode.restype = c_int
    lib.opus_encoder_destroy.argtypes = lib.opus_decoder_destroy.argtypes = [ptr]
    lib.opus_strerror.argtypes = [c_int]
    lib.opus_strerror.restype = ctypes.c_char_p
    return lib


_lib = _load_libopus()


def _check(code: int, what: str) -> int:
    if code < 0:
        raise OpusError(f"{what}: {_lib.opus_strerror(code).decode()}")
    return code


def _frame_samples(sample_rate: int) -> int:
    if sample_rate not in RATES:
        raise OpusError(f"libopus works at {', '.join(map(str, RATES))} Hz, not {sample_rate}")
    return sample_rate * FRAME_MS // 1000


class OpusEncoder:
    """Mono Opus encoder: one 20 ms int16 frame at ``settings.pcm_rate`` in, one packet out."""

    def __init__(self, settings: OpusSettings) -> None:
        application = settings.application
        if application not in APPLICATIONS:
            raise OpusError(f"application must be one of {', '.join(APPLICATIONS)}, not {application!r}")
        self.pcm_rate = settings.pcm_rate
        self.frame_samples = _frame_samples(settings.pcm_rate)
        error = ctypes.c_int()
        mode = APPLICATIONS[application]
        self._state = _lib.opus_encoder_create(settings.pcm_rate, 1, mode, ctypes.byref(error))
        _check(error.value, "opus_encoder_create")
        self._ctl(_SET_BITRATE, settings.bitrate)
        self._ctl(_SET_INBAND_FEC, int(settings.fec))
        self._ctl(_SET_PACKET_LOSS_PERC, FEC_PACKET_LOSS_PCT if settings.fec else 0)
        self._ctl(_SET_COMPLEXITY, settings.complexity)
        lookahead = ctypes.c_int32()
        state = ctypes.c_void_p(self._state)  # variadic: ctypes must be told it is a pointer
        _check(
            _lib.opus_encoder_ctl(state, ctypes.c_int(_GET_LOOKAHEAD), ctypes.byref(lookahead)), "lookahead"
        )
        self.delay_samples = lookahead.value
        self._out = ctypes.create_string_buffer(MAX_PACKET_BYTES)
        self._out_addr = ctypes.addressof(self._out)
        self._in = np.zeros(self.frame_samples, dtype=np.int16)
        self._in_addr = self._in.ctypes.data

    def _ctl(self, request: int, value: int) -> None:
        state = ctypes.c_void_p(self._state)  # variadic: ctypes must be told it is a pointer
        code = _lib.opus_encoder_ctl(state, ctypes.c_int(request), ctypes.c_int32(value))
        _check(code, f"opus_encoder_ctl({request}, {value})")

    def encode(self, pcm: np.ndarray) -> bytes:
        """Encode exactly one 20 ms frame (``frame_samples`` int16 samples); returns the packet."""
        if pcm.shape != (self.frame_samples,) or pcm.dtype != np.int16:
            raise OpusError(f"expected {self.frame_samples} int16 samples, got {pcm.dtype} {pcm.shape}")
        self._in[:] = pcm  # a fixed buffer: its address is known, no ctypes object per call
        size = _lib.opus_encode(
            self._state, self._in_addr, self.frame_samples, self._out_addr, MAX_PACKET_BYTES
        )
        return ctypes.string_at(self._out_addr, _check(size, "opus_encode"))

    def __del__(self) -> None:
        if getattr(self, "_state", None):
            _lib.opus_encoder_destroy(self._state)
            self._state = None


class OpusDecoder:
    """Mono Opus decoder producing int16 at ``pcm_rate`` (160 samples per 20 ms at 8 kHz)."""

    def __init__(self, pcm_rate: int) -> None:
        self.pcm_rate = pcm_rate
        self.frame_samples = _frame_samples(pcm_rate)
        error = ctypes.c_int()
        self._state = _lib.opus_decoder_create(pcm_rate, 1, ctypes.byref(error))
        _check(error.value, "opus_decoder_create")
        self._max_samples = self.frame_samples * 6  # 120 ms, the longest Opus packet
        self._out = np.zeros(self._max_samples, dtype=np.int16)
        self._out_addr = self._out.ctypes.data

    def decode(self, payload: bytes) -> np.ndarray:
        """Decode one Opus packet to mono int16; raises ``OpusError`` on a corrupt packet."""
        if not payload:
            raise OpusError("empty Opus packet")
        return self._decode(payload, len(payload), self._max_samples, 0)

    def decode_lost(self, next_payload: bytes | None = None) -> np.ndarray:
        """20 ms for a lost packet: FEC data from ``next_payload`` when given, else concealment."""
        if next_payload:
            return self._decode(next_payload, len(next_payload), self.frame_samples, 1)
        return self._decode(None, 0, self.frame_samples, 0)

    def _decode(self, payload: bytes | None, size: int, max_samples: int, fec: int) -> np.ndarray:
        count = _lib.opus_decode(self._state, payload, size, self._out_addr, max_samples, fec)
        return self._out[: _check(count, "opus_decode")].copy()

    def __del__(self) -> None:
        if getattr(self, "_state", None):
            _lib.opus_decoder_destroy(self._state)
            self._state = None


def audio_frame_to_mono(frame: av.AudioFrame) -> np.ndarray:
    """Any PyAV audio frame (packed/planar, mono/stereo, s16/flt/s32) to contiguous mono int16.

    aiortc's Opus decoder yields s16 packed stereo at 48 kHz, for which
    ``to_ndarray()`` is shape (1, 2*n) with L/R interleaved; channels are averaged.
    """
    channels = frame.layout.nb_channels
    data = frame.to_ndarray()
    if frame.format.is_planar:
        chans = data
    else:
        chans = data.reshape(-1, channels).T
    mono = chans[0] if channels == 1 else _average(chans)
    return np.ascontiguousarray(_to_int16(mono))


def _average(chans: np.ndarray) -> np.ndarray:
    if chans.dtype.kind == "f":
        return chans.mean(axis=0, dtype=np.float32)
    return (chans.sum(axis=0, dtype=np.int64) // chans.shape[0]).astype(chans.dtype)


def _to_int16(samples: np.ndarray) -> np.ndarray:
    kind, size = samples.dtype.kind, samples.dtype.itemsize
    if kind == "f":
        return (np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16)
    if kind == "i" and size == 2:
        return samples
    if kind == "i":
        return (samples >> (8 * size - 16)).astype(np.int16)
    if kind == "u" and size == 1:
        return ((samples.astype(np.int16) - 128) << 8).astype(np.int16)
    raise ValueError(f"unsupported sample dtype {samples.dtype}")
