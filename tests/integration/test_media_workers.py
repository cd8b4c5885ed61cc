"""The media worker pool with real worker processes: calls placed evenly on disjoint port ranges, a
worker that dies or stalls replaced, its calls told, the other worker's calls untouched."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from dataclasses import replace

import pytest

from sipbridge.config import Config
from sipbridge.media_session import messages as m
from sipbridge.media_session.pool import WorkerPool, port_slices
from sipbridge.media_session.spawn import start_worker
from sipbridge.media_session.worker import WorkerSpec
from sipbridge.rtp.ports import even_ports
from sipbridge.settings.values import PortRange
from testbed.procs import free_tcp_port, wait_until_async

pytestmark = pytest.mark.integration


def _pool(starter=start_worker) -> WorkerPool:
    config = replace(
        Config(), sip_listen=replace(Config().sip_listen, host="127.0.0.1"), rtp_ports=PortRange(43000, 43099)
    )
    return WorkerPool(config, f"http://127.0.0.1:{free_tcp_port()}/whip", count=2, starter=starter)


@pytest.fixture
async def pool():
    pool = _pool()
    await pool.start()
    yield pool
    await pool.stop()


@pytest.fixture
async def slow_pool():
    """Workers whose replacements take 2 s more to start, as on a busy box."""
    started = 0

    async def slow_start(spec: WorkerSpec):
        nonlocal started
        started += 1
        if started > 2:
            await asyncio.sleep(2.0)
        return await start_worker(spec)

    pool = _pool(slow_start)
    await pool.start()
    yield pool
    await pool.stop()


async def _open(pool: WorkerPool, call: str) -> tuple[object, list[m.MediaEvent], int]:
    events: list[m.MediaEvent] = []
    media = pool.session(events.append)
    opened = await media.open(m.OpenMedia(call, "inbound", None, None))
    assert isinstance(opened, m.MediaOpened), opened
    media.update(m.UpdateMedia(m.PhoneMedia("PCMU", 0, None, ("127.0.0.1", 9))))
    return media, events, opened.port


def test_the_port_range_is_split_into_disjoint_even_slices():
    assert port_slices(43000, 43099, 2) == [(43000, 43049), (43050, 43099)]
    assert port_slices(10001, 10010, 3) == [(10002, 10005), (10006, 10009), (10010, 10010)]
    assert port_slices(10002, 10010, 5) == [(p, p + 1) for p in range(10002, 10010, 2)] + [(10010, 10010)]
    # as many workers as bridge.worker_count allows for a range: one per even port
    for low, high in ((10000, 10001), (10001, 10010), (10002, 10011), (20000, 20099)):
        count = len(even_ports(low, high))
        slices = port_slices(low, high, count)
        assert sum(len(even_ports(lo, hi)) for lo, hi in slices) == count
        assert all(lo % 2 == 0 and low <= lo <= hi <= high for lo, hi in slices)
    with pytest.raises(ValueError, match="fewer than 4 even ports"):
        port_slices(10000, 10005, 4)


async def test_calls_are_placed_evenly_and_a_dead_worker_takes_only_its_own(pool):
    assert [w["state"] for w in pool.views()] == ["up", "up"]
    calls = [await _open(pool, f"call-{i}") for i in range(4)]
    assert sorted(w["calls"] for w in pool.views()) == [2, 2]
    slices = [tuple(map(int, w["ports"].split("-"))) for w in pool.views()]
    on = [next(i for i, (lo, hi) in enumerate(slices) if lo <= port <= hi) for _, _, port in calls]
    assert sorted(on) == [0, 0, 1, 1]

    victim = pool.workers[0]
    os.kill(victim.process.pid, signal.SIGKILL)
    killed = time.monotonic()
    dead = [events for (_, events, _), worker in zip(calls, on, strict=True) if worker == 0]
    assert await wait_until_async(
        lambda: all(any(isinstance(e, m.MediaFailed) for e in ev) for ev in dead), 1.0
    )
    assert time.monotonic() - killed < 1.0
    alive = [media for (media, _, _), worker in zip(calls, on, strict=True) if worker == 1]
    await pool.refresh()
    for media in alive:
        assert media.stats(m.StatsRequest()).codec == "PCMU"
    assert await wait_until_async(lambda: pool.views()[0]["state"] == "up", 20)
    assert (
        pool.restarts == 1
        and pool.views()[0]["restarts"] == 1
        and pool.views()[0]["pid"] != victim.process.pid
    )
    _, _, port = await _open(pool, "call-new")  # the fresh worker has the fewest calls
    assert slices[0][0] <= port <= slices[0][1]
    for media in alive:
        await media.close(m.CloseMedia("done"))


async def test_a_stopped_worker_is_found_stalled_and_replaced(pool):
    media, events, _ = await _open(pool, "call-s")
    worker = next(w for w in pool.workers if w.link.calls)
    os.kill(worker.process.pid, signal.SIGSTOP)
    try:
        assert await wait_until_async(lambda: any(isinstance(e, m.MediaFailed) for e in events), 3.5)
        failed = next(e for e in events if isinstance(e, m.MediaFailed))
        assert "stalled" in failed.reason
    finally:
        with contextlib.suppress(ProcessLookupError):  # killed and reaped already, as it should be
            os.kill(worker.process.pid, signal.SIGCONT)
    assert await wait_until_async(
        lambda: pool.restarts == 1 and all(w["state"] == "up" for w in pool.views()), 20
    )


async def test_two_workers_killed_at_once_are_both_noticed_though_replacing_one_takes_seconds(slow_pool):
    pool = slow_pool
    calls = [await _open(pool, f"call-{i}") for i in range(2)]  # one on each worker
    assert sorted(w["calls"] for w in pool.views()) == [1, 1]
    victims = [worker.process.pid for worker in pool.workers]
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    # the supervisor does not wait for the first replacement to start before it sees the second
    assert await wait_until_async(
        lambda: (
            pool.restarts == 2 and all(any(isinstance(e, m.MediaFailed) for e in ev) for _, ev, _ in calls)
        ),
        1.0,
    )
    assert time.monotonic() - killed < 1.0
    assert [w["state"] for w in pool.views()] == ["failed", "failed"]
    assert await wait_until_async(lambda: all(w["state"] == "up" for w in pool.views()), 30)
    assert [w["restarts"] for w in pool.views()] == [1, 1]
    assert not {w["pid"] for w in pool.views()} & set(victims)
    assert all(w["cpu_pct"] is not None for w in pool.views())
