"""G.711 μ-law (PCMU) and A-law (PCMA) codecs, table driven.

Bit-exact with ITU-T G.711 as implemented by the classic Sun Microsystems ``g711.c``
(the same algorithm as CPython's ``audioop``): 16-bit linear PCM is truncated to
14 bits (μ-law) or 13 bits (A-law) before companding.

Decoding looks each code up in a 256-entry ``int16`` table; encoding looks each
sample up in a 65536-entry ``uint8`` table indexed by the ``uint16`` view of the
``int16`` samples. Both are one vectorised numpy gather per packet.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

SILENCE: dict[str, int] = {"PCMU": 0xFF, "PCMA": 0xD5}
"""The code of a zero sample, per codec (payload filler for comfort silence)."""

_SEG_UEND = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF], dtype=np.int32)
_SEG_AEND = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF], dtype=np.int32)
_ULAW_BIAS = 0x84
_ULAW_CLIP = 8159


def _all_int16() -> np.ndarray:
    """Every int16 value, ordered by its uint16 bit pattern, widened to int32."""
    return np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.int16).astype(np.int32)


def _build_ulaw_encode() -> np.ndarray:
    pcm = _all_int16() >> 2
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    mag = np.minimum(np.abs(pcm), _ULAW_CLIP) + (_ULAW_BIAS >> 2)
    seg = np.searchsorted(_SEG_UEND, mag, side="left")
    code = (np.minimum(seg, 7) << 4) | ((mag >> (np.minimum(seg, 7) + 1)) & 0xF)
    code = np.where(seg >= 8, 0x7F, code)
    return (code ^ mask).astype(np.uint8)


def _build_alaw_encode() -> np.ndarray:
    pcm = _all_int16() >> 3
    mask = np.where(pcm >= 0, 0xD5, 0x55)
    mag = np.where(pcm >= 0, pcm, -pcm - 1)
    seg = np.searchsorted(_SEG_AEND, mag, side="left")
    shift = np.where(seg < 2, 1, np.minimum(seg, 7))
    code = (np.minimum(seg, 7) << 4) | ((mag >> shift) & 0xF)
    code = np.where(seg >= 8, 0x7F, code)
    return (code ^ mask).astype(np.uint8)


def _build_ulaw_decode() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + _ULAW_BIAS) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, _ULAW_BIAS - t, t - _ULAW_BIAS).astype(np.int16)


def _build_alaw_decode() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    seg = (a & 0x70) >> 4
    t = (a & 0x0F) << 4
    t = np.where(seg == 0, t + 8, (t + 0x108) << np.maximum(seg - 1, 0))
    return np.where(a & 0x80, t, -t).astype(np.int16)


_ULAW_DEC = _build_ulaw_decode()
_ALAW_DEC = _build_alaw_decode()
_ULAW_ENC = _build_ulaw_encode()
_ALAW_ENC = _build_alaw_encode()


def _decode(table: np.ndarray, payload: bytes) -> np.ndarray:
    return table[np.frombuffer(payload, dtype=np.uint8)]


def _encode(table: np.ndarray, pcm: np.ndarray) -> bytes:
    samples = np.asarray(pcm)
    if samples.dtype != np.int16:
        raise TypeError(f"G.711 encode needs int16 samples, got {samples.dtype}")
    return table.take(samples.view(np.uint16)).tobytes()


def ulaw_decode(payload: bytes) -> np.ndarray:
    """μ-law codes to int16 samples (one sample per byte)."""
    return _decode(_ULAW_DEC, payload)


def alaw_decode(payload: bytes) -> np.ndarray:
    """A-law codes to int16 samples (one sample per byte)."""
    return _decode(_ALAW_DEC, payload)


def ulaw_encode(pcm: np.ndarray) -> bytes:
    """int16 samples to μ-law codes (one byte per sample)."""
    return _encode(_ULAW_ENC, pcm)


def alaw_encode(pcm: np.ndarray) -> bytes:
    """int16 samples to A-law codes (one byte per sample)."""
    return _encode(_ALAW_ENC, pcm)


_DECODERS: dict[str, Callable[[bytes], np.ndarray]] = {"PCMU": ulaw_decode, "PCMA": alaw_decode}
_ENCODERS: dict[str, Callable[[np.ndarray], bytes]] = {"PCMU": ulaw_encode, "PCMA": alaw_encode}


def _lookup(table: dict, codec: str) -> Callable:
    try:
        return table[codec.upper()]
    except KeyError:
        raise ValueError(f"unsupported G.711 codec {codec!r} (want PCMU or PCMA)") from None


def decoder_for(codec: str) -> Callable[[bytes], np.ndarray]:
    """The decode function of ``codec`` ("PCMU" or "PCMA", case-insensitive)."""
    return _lookup(_DECODERS, codec)


def encoder_for(codec: str) -> Callable[[np.ndarray], bytes]:
    """The encode function of ``codec`` ("PCMU" or "PCMA", case-insensitive)."""
    return _lookup(_ENCODERS, codec)


def decode(codec: str, payload: bytes) -> np.ndarray:
    """Decode a G.711 payload of ``codec`` ("PCMU" or "PCMA") to int16 samples."""
    return decoder_for(codec)(payload)


def encode(codec: str, pcm: np.ndarray) -> bytes:
    """Encode int16 samples to a G.711 payload of ``codec`` ("PCMU" or "PCMA")."""
    return encoder_for(codec)(pcm)
