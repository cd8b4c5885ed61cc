"""The shared 20 ms clock: one wakeup serves every stream, and a stall is reported as elapsed frames."""

import asyncio
import time

from sipbridge.rtp.clock import FrameClock


async def test_every_subscriber_ticks_once_per_20ms():
    clock, counts = FrameClock(), {"a": 0, "b": 0}
    tokens = [clock.subscribe(lambda n, k=k: counts.__setitem__(k, counts[k] + n)) for k in counts]
    await asyncio.sleep(0.205)
    for token in tokens:
        clock.unsubscribe(token)
    assert 9 <= counts["a"] <= 12 and counts["a"] == counts["b"]
    await asyncio.sleep(0.05)
    assert clock._task is None  # the clock stops when nobody listens


async def test_a_stall_is_reported_as_the_frames_it_ate():
    clock, frames = FrameClock(), []
    token = clock.subscribe(frames.append)
    await asyncio.sleep(0.03)
    time.sleep(0.25)  # the event loop is blocked: ~12 frame times pass
    await asyncio.sleep(0.03)
    clock.unsubscribe(token)
    assert max(frames) >= 10 and clock.stalls == 1
    assert sum(frames) * 0.02 >= 0.25


async def test_a_failing_subscriber_does_not_stop_the_others():
    clock, good = FrameClock(), []

    def broken(frames: int) -> None:
        raise RuntimeError("boom")

    tokens = [clock.subscribe(broken), clock.subscribe(good.append)]
    await asyncio.sleep(0.07)
    for token in tokens:
        clock.unsubscribe(token)
    assert len(good) >= 3
