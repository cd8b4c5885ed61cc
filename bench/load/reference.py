"""Which 20 ms frames of the speech can tell, once echoed, whether they came back.

A frame is *checkable* when all three hold:

- it is speech, not a pause: RMS within ACTIVE_DB of the loudest frame (a pause cannot be told from
  lost audio);
- its waveform survives the codecs: after a clean offline trip through the same chain as a call
  in the level's codec (bench.load.wire: the probe's payloads; the bridge's ``PhoneToAgent`` with its
  Opus settings, ``OpusDecoder``, the echo agent's Opus encoder settings, ``OpusDecoder``,
  ``AgentToPhone``; the analysis's decoder; for Opus, which the bridge relays, the echo agent's
  decode and re-encode alone) it still correlates >= ROBUST_MATCH with what was sent, in every
  repeat of the loop. Opus keeps the waveform of voiced speech, but not that of fricatives or of
  some transitions: those frames come back changed even when nothing is lost;
- it is distinct from its neighbours: its correlation with the audio one or two frames earlier or
  later (±JITTER samples) stays under DISTINCT_BELOW (FRAME_MATCH less a margin). Otherwise, with
  the stream shifted by a frame (a lost frame, a playout underrun) a neighbour could pass for it.

About half of the frames of the default speech are checkable, spread over all of it; loss is
estimated on them (the ways audio gets lost do not depend on what it says).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sipbridge.agent.echo import ECHO_OPUS
from sipbridge.media.opus import OpusDecoder, OpusEncoder

from ..common import Pipelines, bridge_config
from .speech import FRAME_BYTES, Speech
from .wire import PCMU, StreamDecoder, WireCodec, encode_loop

ACTIVE_DB = -30.0
ROBUST_MATCH = 0.8
FRAME_MATCH = 0.5
DISTINCT_BELOW = 0.4  # FRAME_MATCH less a margin for what the codecs change
JITTER = 2
LOOPS = 4
_F = FRAME_BYTES


def similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise likeness of two (frames, 160) arrays: <a, b> / max(|a|², |b|²).

    1 for the same audio, about the correlation for audio through a codec at unchanged level, and
    at most the share of a frame's energy that is still there when part of it was replaced by
    silence (which plain normalised correlation would not notice) or by louder other audio."""
    num = np.sum(a * b, axis=1)
    return num / (np.maximum(np.sum(a * a, axis=1), np.sum(b * b, axis=1)) + 1e-12)


def scores_at(frames: np.ndarray, heard: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Per row of `frames` (n, 160) placed at its sample position in `heard`: the best
    :func:`similarity` within ±JITTER samples (0 where it falls outside `heard`)."""
    best = np.zeros(len(frames))
    for d in range(-JITTER, JITTER + 1):
        starts = positions + d
        inside = (starts >= 0) & (starts + _F <= len(heard))
        windows = heard[np.clip(starts, 0, max(0, len(heard) - _F))[:, None] + np.arange(_F)]
        best = np.maximum(best, np.where(inside, similarity(frames, windows), 0.0))
    return best


def frame_scores(sent: np.ndarray, heard: np.ndarray, pos: int) -> np.ndarray:
    """:func:`scores_at` for every 20 ms frame of `sent` placed at sample `pos` of `heard`."""
    frames = sent.reshape(-1, _F)
    return scores_at(frames, heard, pos + _F * np.arange(len(frames)))


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


def _offline_trip(speech: Speech, codec: WireCodec) -> np.ndarray:
    """The speech looped LOOPS times through the call's codec chain, without any network or loss."""
    payloads = encode_loop(codec, speech)
    decoder = StreamDecoder(codec)
    agent_in, agent_out = OpusDecoder(48000), OpusEncoder(ECHO_OPUS)
    relay = codec.phone_codec is None  # Opus: the bridge passes the phone's packets on as they are
    media = None if relay else Pipelines(bridge_config(), codec.phone_codec or "PCMU")
    bridge_in = OpusDecoder(media.pcm_rate) if media is not None else None
    out = []
    for k in range(LOOPS * speech.count):
        payload = payloads[k % speech.count]
        if media is None or bridge_in is None:
            back = agent_out.encode(agent_in.decode(payload))
        else:
            for packet in media.up.push(payload):
                echoed = agent_out.encode(agent_in.decode(packet))
                if echoed is not None:
                    media.push_pcm(bridge_in.decode(echoed))
            # silence while the chain fills, as the bridge sends
            back = media.down.pop_frame() or media.down.silence()
        frame = decoder.decode(back)
        out.append(frame if frame is not None else decoder.missing())
    heard = np.concatenate(out)
    return np.concatenate([heard[decoder.delay_samples :], np.zeros(decoder.delay_samples, np.float32)])


def codec_scores(speech: Speech, codec: WireCodec = PCMU) -> np.ndarray:
    """Per speech frame: its worst correlation after the offline trip, over loops 2..LOOPS."""
    heard = _offline_trip(speech, codec)
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


def reference(speech: Speech, codec: WireCodec = PCMU) -> Reference:
    """Which frames of `speech` are checkable when the calls carry it in `codec`."""
    active = active_frames(speech)
    robust = active & (codec_scores(speech, codec) >= ROBUST_MATCH)
    checkable = robust & (neighbour_scores(speech) < DISTINCT_BELOW)
    if not checkable.any():
        raise RuntimeError("no frame of the speech survives the codec chain: is the media pipeline broken?")
    return Reference(checkable, int(active.sum()), int(robust.sum()))
