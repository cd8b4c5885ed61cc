"""The outgoing pre-encoded Opus track, the stereo→mono helper and the offer rewrite (no network)."""

import asyncio
import fractions

import av
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError

from sipbridge.agent.tracks import OpusPacketTrack


async def test_packets_carry_continuous_48k_timestamps():
    track = OpusPacketTrack()
    for i in range(3):
        track.push(bytes([i]))
    packets = [await track.recv() for _ in range(3)]
    assert [p.pts for p in packets] == [0, 960, 1920]
    assert all(p.time_base == fractions.Fraction(1, 48000) for p in packets)
    assert [bytes(p) for p in packets] == [b"\x00", b"\x01", b"\x02"]
    assert track.sent == 3


async def test_full_queue_drops_the_oldest():
    track = OpusPacketTrack(max_packets=10)
    for i in range(15):
        track.push(bytes([i]))
    assert track.dropped == 5
    first = await track.recv()
    assert bytes(first) == bytes([5])
    assert first.pts == 0


async def test_recv_waits_for_a_packet():
    track = OpusPacketTrack()
    pending = asyncio.create_task(track.recv())
    await asyncio.sleep(0)
    assert not pending.done()
    track.push(b"x")
    assert bytes(await asyncio.wait_for(pending, 1)) == b"x"


async def test_stop_wakes_a_waiting_recv():
    track = OpusPacketTrack()
    pending = asyncio.create_task(track.recv())
    await asyncio.sleep(0)
    track.stop()
    with pytest.raises(MediaStreamError):
        await asyncio.wait_for(pending, 1)
    track.push(b"late")  # ignored once stopped
    with pytest.raises(MediaStreamError):
        await track.recv()


def _frame(samples: np.ndarray, fmt: str, layout: str) -> av.AudioFrame:
    frame = av.AudioFrame.from_ndarray(samples, format=fmt, layout=layout)
    frame.sample_rate = 48000
    return frame
