"""What came back on one call, from the packets the probe kept raw: unprotected (SRTP, with the key
of the bridge's answer), parsed, and decoded in sequence order onto the bridge's timeline at 8 kHz.

Runs after the measurement, so none of it is in the probe's cost. The packet with (unwrapped)
sequence number j holds return samples [160 j, 160 j + 160); a missing one leaves silence (the
decoder's clock moves on all the same), and one that is not the call's codec, or that the codec
cannot take, is counted and left out the same way. The analysis's own resampler delay (G.722) is
taken out, so each sample sits in the packet that carried it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pylibsrtp

from sipbridge.rtp.srtp import PROFILES

from . import offer
from .probe import RTCP_TYPES, ProbeCall
from .speech import FRAME_BYTES
from .wire import PCMU, StreamDecoder, WireCodec


@dataclass
class Stream:
    """One call's returned audio: `audio` flat at 8 kHz, 160 samples per sequence number from the
    first; `arrival_ns` per sequence number (-1 where none came)."""

    audio: np.ndarray
    arrival_ns: np.ndarray
    missing: int  # sequence numbers with no usable packet
    packets: int  # the call's packets of its codec that were used
    other: int  # packets of another payload type, or that the codec could not take
    auth_failed: int  # SRTP: packets that did not authenticate (all of them without the answer's key)


def rtp_payload(packet: bytes) -> bytes | None:
    """The payload of an RTP packet (after CSRCs and a header extension, without padding)."""
    if len(packet) < 12 or packet[0] >> 6 != 2:
        return None
    start = 12 + 4 * (packet[0] & 0x0F)
    if packet[0] & 0x10:
        if len(packet) < start + 4:
            return None
        start += 4 + 4 * int.from_bytes(packet[start + 2 : start + 4], "big")
    end = len(packet) - (packet[-1] if packet[0] & 0x20 else 0)
    return packet[start:end] if start < end else None


def _inbound(key: bytes) -> pylibsrtp.Session:
    policy = pylibsrtp.Policy(
        key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND, srtp_profile=PROFILES[offer.SUITE]
    )
    return pylibsrtp.Session(policy)


@dataclass
class _Parsed:
    seq: list[int]
    ns: list[int]
    payloads: list[bytes]
    other: int = 0
    auth_failed: int = 0


def _parse(call: ProbeCall, codec: WireCodec) -> _Parsed:
    """The call's packets of `codec`, unprotected, in arrival order (as a receiver sees them: the
    order libsrtp's replay window expects)."""
    out = _Parsed([], [], [])
    srtp = _inbound(call.answer_key) if call.srtp_key is not None and call.answer_key is not None else None
    for data, at in zip(call.recv_packets, call.recv_ns, strict=True):
        if len(data) >= 2 and data[1] in RTCP_TYPES:
            continue
        if call.srtp_key is not None:
            try:
                data = srtp.unprotect(data) if srtp is not None else b""
            except (pylibsrtp.Error, ValueError):
                data = b""
            if not data:
                out.auth_failed += 1
                continue
        payload = rtp_payload(data)
        if payload is None or (data[1] & 0x7F) != codec.payload_type:
            out.other += 1
            continue
        out.seq.append(int.from_bytes(data[2:4], "big"))
        out.ns.append(at)
        out.payloads.append(payload)
    return out


def stream_of(call: ProbeCall, codec: WireCodec = PCMU) -> Stream:
    """The call's returned audio (none when no packet of its codec came back: ``packets`` 0)."""
    parsed = _parse(call, codec)
    if not parsed.seq:
        empty = np.zeros(0, dtype=np.float32)
        return Stream(empty, np.zeros(0, dtype=np.int64), 0, 0, parsed.other, parsed.auth_failed)
    seq = np.asarray(parsed.seq, dtype=np.int64)
    step = ((np.diff(seq) + 32768) % 65536) - 32768  # wrap-around and reordering
    j = np.concatenate(([0], np.cumsum(step)))
    j -= j.min()
    count = int(j.max()) + 1
    first = {}  # sequence number -> its first packet (a duplicate is ignored)
    for index, jj in enumerate(j.tolist()):
        first.setdefault(jj, index)
    decoder = StreamDecoder(codec)
    frames = np.zeros((count, FRAME_BYTES), dtype=np.float32)
    arrival = np.full(count, -1, dtype=np.int64)
    other = parsed.other
    for jj in range(count):
        index = first.get(jj)
        frame = decoder.decode(parsed.payloads[index]) if index is not None else None
        if index is not None and frame is None:
            other += 1  # the codec could not take it: as if it had not come
        if frame is None:
            frames[jj] = decoder.missing()
            continue
        frames[jj] = frame
        arrival[jj] = parsed.ns[index]
    audio = frames.ravel()
    if decoder.delay_samples:
        audio = np.concatenate([audio[decoder.delay_samples :], np.zeros(decoder.delay_samples, np.float32)])
    used = int(np.count_nonzero(arrival >= 0))
    return Stream(audio, arrival, count - used, used, other, parsed.auth_failed)
