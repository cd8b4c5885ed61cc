"""Which sent frames came back through the echo agent, and how late: from what the probe recorded.

The bridge sends 50 packets per second whatever happens (silence when its playout queue is empty),
so counting packets says nothing; the audio does. For each call:

1. The returned stream is laid out on the bridge's own timeline (bench.load.received: unprotected and
   decoded to 8 kHz, whatever the codec): the packet with (unwrapped) sequence number j holds return
   samples [160 j, 160 j + 160), with its kernel arrival time; a missing sequence number leaves
   silence and no arrival time.
2. The frames the probe sent in the steady window are taken in chunks of CHUNK (200 ms). Each chunk
   is found in the returned stream by normalised FFT cross-correlation: near the previous chunk's
   place (±TRACK_S) when that fits (>= CHUNK_MATCH), otherwise anywhere that arrived within
   MAX_RTT_S after it was sent. The lag (return sample index - sent sample index) is constant while
   the stream flows; it steps when audio is lost (earlier) or the bridge's playout ran dry (later).
3. A chunk's lag is *trusted* when the chunk matched cleanly (>= CLEAN_MATCH) or the chunk before or
   after has the same lag: a chunk across a step fits neither side well and its best match may be a
   compromise the stream never had. Each *checkable* frame (bench.load.reference: speech that survives
   the codecs and cannot be mistaken for the audio one or two frames away) counts as returned when,
   at a trusted lag of its chunk or a neighbour, or the nearest one before or after, or one whole
   frame off those, its 20 ms match the returned audio with a similarity >= FRAME_MATCH (±JITTER
   samples; bench.load.reference.similarity, which unlike a plain correlation also falls when part of
   the frame was replaced by silence). Loss = 1 - returned / checked: frames gone, or damaged.
4. Round trip of a returned frame = kernel arrival time of the return packet holding its last sample
   minus the time the probe sent it (both CLOCK_REALTIME): what the bridge, the agent and loopback
   add, including the bridge's wait for its next 20 ms send tick and the codecs' own delay.
5. Lag steps between chunks larger than half a frame are counted as `timeline_steps`: each is a
   glitch a listener hears (a gap, or audio skipped), even when no checked frame was lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .probe import ProbeCall
from .received import Stream, stream_of
from .reference import FRAME_MATCH, JITTER, Reference, best_match, scores_at
from .speech import FRAME_BYTES, Speech
from .wire import PCMU, WireCodec

_F = FRAME_BYTES
CHUNK = 10
MAX_RTT_S = 2.0
TRACK_S = 0.1
CHUNK_MATCH = 0.5
CLEAN_MATCH = 0.85
# A frame is looked for only at lags the stream really had: the stable lag before its chunk and the
# one after it (found within REACH chunks), and one whole frame either side of those (the bridge and
# the agent gain or lose audio in 20 ms steps). Never at an arbitrary offset: voiced speech repeats
# every pitch period, so some offset always fits a frame; a checkable frame cannot be mistaken for
# the audio one or two frames away (bench.load.reference).
REACH = 5
FRAME_STEPS = (-1, 0, 1)


@dataclass
class CallEcho:
    """One call over the window. `rtt_ms` and `similarity` hold one value per returned frame."""

    index: int
    checked: int = 0
    returned: int = 0
    rtt_ms: list[float] = field(default_factory=list)
    similarity: list[float] = field(default_factory=list)
    received_packets: int = 0  # of the call's codec, usable
    missing_packets: int = 0
    other_packets: int = 0  # another payload type, or what the codec could not take
    auth_failed: int = 0  # SRTP: did not authenticate
    chunks_unmatched: int = 0
    timeline_steps: int = 0

    @property
    def loss(self) -> float:
        return 1.0 - self.returned / self.checked if self.checked else 1.0


@dataclass
class Returned:
    audio: np.ndarray  # return samples on the bridge's timeline (silence where a packet is missing)
    arrival_ms: np.ndarray  # per return frame, relative to the reference time (NaN where missing)
    missing: int

    def __post_init__(self) -> None:
        # earliest arrival at or after each frame: sorted even if packets came out of order
        times = np.where(np.isnan(self.arrival_ms), np.inf, self.arrival_ms)
        self._earliest_after = np.minimum.accumulate(times[::-1])[::-1]

    def frame_at(self, t_ms: float) -> int:
        """The first return frame that arrived at or after `t_ms`."""
        return int(np.searchsorted(self._earliest_after, t_ms))

    @classmethod
    def of(cls, stream: Stream, ref_ns: int) -> Returned:
        arrival = np.where(stream.arrival_ns >= 0, (stream.arrival_ns - ref_ns) / 1e6, np.nan)
        return cls(stream.audio, arrival, stream.missing)


@dataclass
class _Sent:
    """The frames one call sent in the window (and one chunk after it, to find the lag there, not
    counted): frame numbers, send times (ms from the window's start), audio, checkable and counted."""

    k: np.ndarray
    t_ms: np.ndarray
    audio: np.ndarray  # (frames, 160)
    checkable: np.ndarray  # checkable and inside the window

    @classmethod
    def of(cls, call: ProbeCall, speech: Speech, ref: Reference, window_ns: tuple[int, int]) -> _Sent:
        k = np.asarray(call.sent_k, dtype=np.int64)
        t = (np.asarray(call.sent_ns, dtype=np.int64) - window_ns[0]) / 1e6
        end = (window_ns[1] - window_ns[0]) / 1e6
        keep = (t >= 0) & (t <= end + CHUNK * 20)
        index = (call.offset + k[keep]) % speech.count
        frames = speech.linear.reshape(speech.count, _F)
        return cls(k[keep], t[keep], frames[index], ref.checkable[index] & (t[keep] <= end))


Found = tuple[int, float] | None  # a chunk's lag and how well the chunk matched there


def _chunk_lags(sent: _Sent, returned: Returned) -> list[Found]:
    """The lag of each chunk of CHUNK sent frames (None: not found, or not contiguous audio)."""
    lags: list[Found] = []
    last: int | None = None
    for start in range(0, len(sent.k), CHUNK):
        k = sent.k[start : start + CHUNK]
        if len(k) < 3 or np.any(np.diff(k) != 1):  # a skipped frame inside: not one piece of audio
            lags.append(None)
            continue
        chunk = sent.audio[start : start + CHUNK].ravel()
        found = _locate(chunk, int(k[0]), float(sent.t_ms[start]), returned, last)
        lags.append(found)
        last = found[0] if found is not None else last
    return lags


def _locate(chunk: np.ndarray, k0: int, t0_ms: float, returned: Returned, last: int | None) -> Found:
    if last is not None:
        expected = k0 * _F + last
        lo = max(0, expected - int(TRACK_S * 8000))
        offset, score = best_match(chunk, returned.audio[lo : expected + int(TRACK_S * 8000) + len(chunk)])
        if score >= CHUNK_MATCH:
            return lo + offset - k0 * _F, score
    lo = returned.frame_at(t0_ms) * _F
    hi = returned.frame_at(t0_ms + MAX_RTT_S * 1000) * _F
    offset, score = best_match(chunk, returned.audio[lo : hi + len(chunk)])
    return (lo + offset - k0 * _F, score) if score >= CHUNK_MATCH else None


def _trusted(lags: list[Found]) -> list[int | None]:
    """Chunk lags to trust: a clean match (>= CLEAN_MATCH), or one the chunk before or after
    confirms (±2 JITTER). A chunk across a step fits neither side well, and its best match can be
    a compromise between them that the stream never had: such a lag is dropped."""
    lag_of = [found[0] if found is not None else None for found in lags]
    out: list[int | None] = []
    for c, found in enumerate(lags):
        if found is None:
            out.append(None)
            continue
        near = [lag_of[n] for n in (c - 1, c + 1) if 0 <= n < len(lags)]
        confirmed = any(n is not None and abs(n - found[0]) <= 2 * JITTER for n in near)
        out.append(found[0] if confirmed or found[1] >= CLEAN_MATCH else None)
    return out


def _nearest(trusted: list[int | None], indices: range) -> int | None:
    return next((trusted[n] for n in indices if trusted[n] is not None), None)


def _on_grid(lag: int, anchors: list[int]) -> bool:
    """Whether `lag` is a whole number of frames (±2 JITTER) away from one of `anchors`."""
    return any(abs((lag - anchor + _F // 2) % _F - _F // 2) <= 2 * JITTER for anchor in anchors)


def _candidates(lags: list[Found], trusted: list[int | None], c: int) -> list[int]:
    """Lags to look for the frames of chunk `c` at: the nearest trusted lag before and after it
    (within REACH chunks), the trusted lags of the chunk and its neighbours, and their other lags
    that lie a whole number of frames from a trusted one (a chunk across a 20 ms step matches one
    side or the other); each also one frame either way."""
    before = _nearest(trusted, range(c, max(-1, c - REACH - 1), -1))
    after = _nearest(trusted, range(c, min(len(trusted), c + REACH + 1)))
    anchors = [lag for lag in (before, after) if lag is not None]
    near = {found[0] for found in lags[max(0, c - 1) : c + 2] if found is not None}
    chosen = set(anchors) | {lag for lag in trusted[max(0, c - 1) : c + 2] if lag is not None}
    chosen |= {lag for lag in near if _on_grid(lag, anchors)}
    return sorted({lag + m * _F for lag in chosen for m in FRAME_STEPS})


def _check_chunk(sent: _Sent, returned: Returned, start: int, lags: list[int], out: CallEcho) -> None:
    """Score the checkable frames of the chunk at `start` at each candidate lag; keep the best."""
    pick = np.flatnonzero(sent.checkable[start : start + CHUNK]) + start
    if len(pick) == 0:
        return
    out.checked += len(pick)
    if not lags:
        return
    best, where = np.zeros(len(pick)), np.zeros(len(pick), dtype=np.int64)
    for lag in lags:
        positions = sent.k[pick] * _F + lag
        scores = scores_at(sent.audio[pick], returned.audio, positions)
        better = scores > best
        best, where = np.where(better, scores, best), np.where(better, positions, where)
    last = (where + _F - 1) // _F
    arrival = returned.arrival_ms[np.clip(last, 0, len(returned.arrival_ms) - 1)]
    ok = (best >= FRAME_MATCH) & (last < len(returned.arrival_ms)) & ~np.isnan(arrival)
    out.returned += int(ok.sum())
    out.rtt_ms += (arrival[ok] - sent.t_ms[pick][ok]).tolist()
    out.similarity += best[ok].tolist()


def _unmatched(sent: _Sent, lags: list[int | None]) -> int:
    """Chunks with at least 3 checkable frames that were not found in the returned stream."""
    counts = [int(sent.checkable[start : start + CHUNK].sum()) for start in range(0, len(sent.k), CHUNK)]
    return sum(1 for n, lag in zip(counts, lags, strict=True) if n >= 3 and lag is None)


def _steps(found: list[int]) -> int:
    """Lag changes of more than half a frame, after a 3-chunk median (one odd chunk is no step)."""
    if len(found) < 3:
        return 0
    a = np.asarray(found)
    smooth = np.median(np.stack([a[:-2], a[1:-1], a[2:]]), axis=0)
    return int(np.sum(np.abs(np.diff(smooth)) > _F // 2))


def analyse_call(
    call: ProbeCall, speech: Speech, ref: Reference, window_ns: tuple[int, int], codec: WireCodec = PCMU
) -> CallEcho:
    """What came back of the checkable frames `call` sent within `window_ns` (CLOCK_REALTIME ns),
    its speech sent and coming back in `codec` (`ref` for that codec: bench.load.reference)."""
    out = CallEcho(call.index)
    sent = _Sent.of(call, speech, ref, window_ns)
    stream = stream_of(call, codec)
    out.received_packets, out.other_packets = stream.packets, stream.other
    out.auth_failed = stream.auth_failed
    if not stream.packets:
        out.checked = int(sent.checkable.sum())
        return out
    returned = Returned.of(stream, window_ns[0])
    out.missing_packets = returned.missing
    lags = _chunk_lags(sent, returned)
    trusted = _trusted(lags)
    out.chunks_unmatched = _unmatched(sent, trusted)
    out.timeline_steps = _steps([lag for lag in trusted if lag is not None])
    for c, start in enumerate(range(0, len(sent.k), CHUNK)):
        _check_chunk(sent, returned, start, _candidates(lags, trusted, c), out)
    return out


def _pct(values: np.ndarray, q: float) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


def summarise(results: list[CallEcho], calls_expected: int, ref: Reference) -> dict[str, float | int | None]:
    """Pooled loss and round-trip percentiles over all calls of a level."""
    checked = sum(r.checked for r in results)
    returned = sum(r.returned for r in results)
    rtt = np.asarray([v for r in results for v in r.rtt_ms])
    corr = np.asarray([v for r in results for v in r.similarity])
    call_loss = [100.0 * r.loss for r in results if r.checked]
    call_rtt = [float(np.median(r.rtt_ms)) for r in results if r.rtt_ms]
    return {
        "calls_analysed": len(results),
        "calls_without_media": calls_expected - sum(1 for r in results if r.received_packets),
        "frames_checked": checked,
        "frames_returned": returned,
        "loss_pct": 100.0 * (1.0 - returned / checked) if checked else None,
        "loss_pct_worst_call": max(call_loss) if call_loss else None,
        "rtt_ms_p50": _pct(rtt, 50),
        "rtt_ms_p99": _pct(rtt, 99),
        "rtt_ms_max": float(rtt.max()) if len(rtt) else None,
        "rtt_ms_worst_call_median": max(call_rtt) if call_rtt else None,
        "frame_similarity_p50": _pct(corr, 50),
        "frame_similarity_p05": _pct(corr, 5),
        "timeline_steps": sum(r.timeline_steps for r in results),
        "chunks_unmatched": sum(r.chunks_unmatched for r in results),
        "return_packets_missing": sum(r.missing_packets for r in results),
        "return_packets_other": sum(r.other_packets for r in results),
        "return_packets_auth_failed": sum(r.auth_failed for r in results),
        "checkable_share_of_speech": ref.count / len(ref.checkable),
    }
