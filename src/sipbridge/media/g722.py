"""G.722 (ITU-T, 64 kbit/s sub-band ADPCM): 16 kHz wideband audio on the phone leg.

The codec is FFmpeg's, inside PyAV's wheel (pinned with ``av``), one encoder and one decoder context
per call direction: ADPCM carries state from frame to frame, so a stream keeps its own context.
A 20 ms frame is 320 samples at 16 kHz in, 160 bytes out (4 bits per sample), and back.

RTP's quirk (RFC 3551 §4.5.2): G.722 is sampled at 16 kHz, but its RTP clock rate is 8000 (an error
in RFC 1890 kept for compatibility), so SDP says ``G722/8000`` and timestamps step 160 per 20 ms,
exactly as for G.711. ``RTP_CLOCK_RATE`` and ``PCM_RATE`` keep the two apart.
"""

from __future__ import annotations

import av
import numpy as np

PCM_RATE = 16000
RTP_CLOCK_RATE = 8000
FRAME_MS = 20
FRAME_SAMPLES = PCM_RATE * FRAME_MS // 1000  # 320
FRAME_BYTES = FRAME_SAMPLES // 2  # 160: two samples per byte


class G722Error(ValueError):
    """The codec rejected the input (wrong frame size)."""


def _context(mode: str) -> av.CodecContext:
    context = av.CodecContext.create("g722", mode)
    context.sample_rate = PCM_RATE
    context.layout = "mono"
    if mode == "w":
        context.format = "s16"
    context.open()
    return context


class G722Encoder:
    """16 kHz mono int16 PCM, 20 ms at a time, to G.722 payloads."""

    def __init__(self) -> None:
        self._context = _context("w")

    def encode(self, pcm: np.ndarray) -> bytes:
        if pcm.shape != (FRAME_SAMPLES,):
            raise G722Error(f"G.722 encodes {FRAME_SAMPLES} samples (20 ms at 16 kHz), not {pcm.shape}")
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(pcm, dtype=np.int16).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = PCM_RATE
        return b"".join(bytes(packet) for packet in self._context.encode(frame))


class G722Decoder:
    """G.722 payloads (any whole number of bytes: 10 to 60 ms packets) to 16 kHz mono int16 PCM."""

    def __init__(self) -> None:
        self._context = _context("r")

    def decode(self, payload: bytes) -> np.ndarray:
        if not payload:
            return np.zeros(0, dtype=np.int16)
        frames = self._context.decode(av.Packet(payload))
        if not frames:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.int16, copy=False)
