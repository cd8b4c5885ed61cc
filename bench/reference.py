"""Which 20 ms frames of the speech can tell, once echoed, whether they came back.

A frame is *checkable* when all three hold:

- it is speech, not a pause: RMS within ACTIVE_DB of the loudest frame (a pause cannot be told from
  lost audio);
- its waveform survives the codecs: after a clean offline trip through the same chain as a call
  (the bridge's ``PhoneToAgent`` with its Opus settings, ``OpusDecoder``, the echo agent's Opus
  encoder settings, ``OpusDecoder``, ``AgentToPhone``) it still correlates >= ROBUST_MATCH with what
  was sent, in every repeat of the loop. Opus keeps the waveform of voiced speech, but not that of
  fricatives or of some transitions: those frames come back changed even when nothing is lost;
- it is distinct from its neighbours: its correlation with the audio one or two frames earlier or
  later (±JITTER samples) stays under FRAME_MATCH. Otherwise, with the stream shifted by a frame
  (a lost frame, a playout underrun) a neighbour could pass for it.

About half of the frames of the default speech are checkable, spread over all of it; loss is
estimated on them (the ways audio gets lost do not depend on what it says).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sipbridge.media.opus import OpusDecoder, OpusEncoder
from sipbridge.media.pipeline import AgentToPhone, PhoneToAgent

from .floor import bridge_media_settings
from .speech import FRAME_BYTES, Speech, ulaw_to_float

ACTIVE_DB = -30.0
ROBUST_MATCH = 0.8
FRAME_MATCH = 0.5
JITTER = 2
AGENT_OPUS = {"bitrate": 48000, "application": "audio", "fec": False}  # as the echo agent encodes
LOOPS = 4
_F = FRAME_BYTES


def normalised(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise normalised correlation of two (frames, 160) arrays."""
    num = np.sum(a * b, axis=1)
    return num / (np.sqrt(np.sum(a * a, axis=1) * np.sum(b * b, axis=1)) + 1e-12)


def frame_scores(sent: np.ndarray, heard: np.ndarray, pos: int) -> np.ndarray:
    """Per 20 ms frame of `sent` placed at sample `pos` of `heard`: best correlation within ±JITTER."""
    frames = sent.reshape(-1, _F)
    best = np.zeros(len(frames))
    for d in range(-JITTER, JITTER + 1):
        start = pos + d
        if start < 0 or start + len(sent) > len(heard):
            continue
        best = np.maximum(best, normalised(frames, heard[start : start + len(sent)].reshape(-1, _F)))
    return best


def best_match(sent: np.ndarray, heard: np.ndarray) -> tuple[int, float]:
    """Offset into `heard` where `sent` fits best (FFT cross-correlation), and the correlation there."""
    n, m = len(sent), len(heard)
    if m < n or n == 0:
        return 0, 0.0
    nfft = 1 << (m + n - 1).bit_length()
    c = np.fft.irfft(np.fft.rfft(heard, nfft) * np.conj(np.fft.rfft(sent, nfft)), nfft)[: m - n + 1]
    cum = np.concatenate(([0.0], np.cumsum(heard.astype(np.float64) ** 2)))
    energy = cum[n:] - cum[: m - n + 1]
    score = c / np.sqrt(float(np.dot(sent, sent)) * energy + 1e-12)
    best = int(np.argmax(score))
    return best, float(score[best])


def active_frames(speech: Speech) -> np.ndarray:
    frames = speech.linear.reshape(speech.count, _F).astype(np.float64)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    return rms >= rms.max() * 10 ** (ACTIVE_DB / 20)


def _offline_trip(speech: Speech) -> np.ndarray:
    """The speech looped LOOPS times through the call's codec chain, without any network or loss."""
    settings = bridge_media_settings()
    up = PhoneToAgent(
        "PCMU", opus_bitrate=int(settings["opus_bitrate"]), application=str(settings["opus_application"])
    )
    agent_in, agent_out, bridge_in = OpusDecoder(48000), OpusEncoder(48000, **AGENT_OPUS), OpusDecoder(48000)
    down = AgentToPhone("PCMU")
    out = bytearray()
    for k in range(LOOPS * speech.count):
        for packet in up.push(speech.frames[k % speech.count]):
            echoed = agent_out.encode(agent_in.decode(packet))
            if echoed is not None:
                down.push_pcm48(bridge_in.decode(echoed))
        out += down.pop_frame() or b"\xff" * _F  # silence while the chain fills, as the bridge sends
    return ulaw_to_float(bytes(out))


def codec_scores(speech: Speech) -> np.ndarray:
    """Per speech frame: its worst correlation after the offline trip, over loops 2..LOOPS."""
    heard = _offline_trip(speech)
    n = speech.count * _F
    probe = speech.linear[: min(n, 8000)]
    lag, _ = best_match(probe, heard[n : n + len(probe) + 4000])
    scores = [frame_scores(speech.linear, heard, loop * n + lag) for loop in range(1, LOOPS - 1)]
    return np.min(scores, axis=0)


def neighbour_scores(speech: Speech) -> np.ndarray:
    """Per speech frame: best correlation with the audio 1 or 2 frames away (±JITTER samples)."""
    looped = np.tile(speech.linear, 3)
    base = speech.count * _F
    best = np.zeros(speech.count)
    for shift in (-2 * _F, -_F, _F, 2 * _F):
        best = np.maximum(best, frame_scores(speech.linear, looped, base + shift))
    return best


@dataclass(frozen=True)
class Reference:
    checkable: np.ndarray  # per speech frame
    active: int
    codec_robust: int

    @property
    def count(self) -> int:
        return int(self.checkable.sum())


def reference(speech: Speech) -> Reference:
    active = active_frames(speech)
    robust = active & (codec_scores(speech) >= ROBUST_MATCH)
    checkable = robust & (neighbour_scores(speech) < FRAME_MATCH)
    if not checkable.any():
        raise RuntimeError("no frame of the speech survives the codec chain: is the media pipeline broken?")
    return Reference(checkable, int(active.sum()), int(robust.sum()))
