"""The worker pool's placement and supervision with stand-in workers: each is the far end of a real
WorkerLink's socketpair that beats as told, started by the pool through its ``starter``."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import replace
from typing import Any

import pytest

from sipbridge.config import Config
from sipbridge.media_session import messages as m
from sipbridge.media_session import pool as pool_module
from sipbridge.media_session import wire
from sipbridge.media_session.pool import WorkerLoad, WorkerPool, place
from sipbridge.media_session.remote import WorkerLink
from sipbridge.settings.values import PortRange
from testbed.procs import wait_until_async


class FakeWorker:
    """A worker process's stand-in: what the pool calls on a process, and the worker's end of the
    channel, sending heartbeats once ``beating`` is set."""

    def __init__(self, cpu_pct: float = 0.0, lag_ms: float = 0.0, beating: bool = True) -> None:
        self.pid = None  # nothing may signal it
        self.exitcode: int | None = None
        self.status = m.WorkerStatus(0, 0, lag_ms, cpu_pct)
        self.beating = asyncio.Event()
        if beating:
            self.beating.set()
        self.joined = False

    async def start(self) -> tuple[Any, WorkerLink]:
        ours, theirs = socket.socketpair()
        reader, writer = await asyncio.open_connection(sock=ours)
        _, self._writer = await asyncio.open_connection(sock=theirs)
        self._beats = asyncio.get_running_loop().create_task(self._beat())
        return self, WorkerLink(reader, writer)

    async def _beat(self) -> None:
        await self.beating.wait()
        while True:
            self._writer.write(wire.encode(wire.Envelope(wire.HEARTBEAT, 0, "", self.status)))
            await asyncio.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL as the pool sends it, and how a test makes a worker die: its channel closes."""
        if self.exitcode is None:
            self.exitcode = -9
            self._beats.cancel()
            self._writer.close()

    def join(self, timeout: float | None = None) -> None:
        self.joined = True


class Starter:
    """Starts what each plan says, in turn: a FakeWorker, an exception to raise, or an Event to
    wait for first (a start that takes as long as the test wants). Then plain FakeWorkers."""

    def __init__(self, *plans: Any) -> None:
        self.plans = list(plans)
        self.started: list[FakeWorker] = []
        self.pool: WorkerPool | None = None
        self.states: list[list[str]] = []  # the slots' states as each start began

    async def __call__(self, spec: Any) -> tuple[Any, WorkerLink]:
        if self.pool is not None and self.pool.workers:
            self.states.append([view["state"] for view in self.pool.views()])
        plan = self.plans.pop(0) if self.plans else FakeWorker()
        if isinstance(plan, asyncio.Event):
            await plan.wait()
            plan = FakeWorker()
        if isinstance(plan, Exception):
            raise plan
        self.started.append(plan)
        return await plan.start()


def _pool(starter: Starter, count: int) -> WorkerPool:
    config = replace(Config(), rtp_ports=PortRange(40000, 40019))  # 10 even ports: 5 calls a worker
    pool = WorkerPool(config, "http://127.0.0.1:9/whip", count, starter=starter)
    starter.pool = pool
    return pool


def _failed(events: list[m.MediaEvent]) -> bool:
    return any(isinstance(event, m.MediaFailed) for event in events)


@pytest.fixture(autouse=True)
def _quick(monkeypatch):
    monkeypatch.setattr(pool_module, "RETRY_FIRST_S", 0.1)
    monkeypatch.setattr(pool_module, "START_TIMEOUT_S", 0.3)


def test_placement_takes_the_fewest_calls_then_the_least_cpu_then_the_least_lag():
    loads = [
        WorkerLoad(1, 5, True, 1.0, 1.0),
        WorkerLoad(0, 5, True, 30.0, 0.0),
        WorkerLoad(0, 5, True, 5.0, 9.0),
    ]
    assert place(loads) == 2
    loads.append(WorkerLoad(0, 5, True, 5.0, 2.0))
    assert place(loads) == 3


def test_placement_skips_workers_that_are_full_or_unhealthy_while_others_can_take_the_call():
    assert place([WorkerLoad(0, 5, False), WorkerLoad(5, 5, True), WorkerLoad(4, 5, True)]) == 2
    assert place([WorkerLoad(0, 5, False), WorkerLoad(5, 5, True, 9.0), WorkerLoad(6, 5, True)]) == 1
    assert place([WorkerLoad(3, 5, False), WorkerLoad(1, 5, False)]) == 1  # refused there, not lost


async def test_the_pool_places_calls_by_calls_then_cpu_then_loop_lag_as_the_heartbeats_say():
    starter = Starter(FakeWorker(cpu_pct=30.0), FakeWorker(cpu_pct=5.0, lag_ms=9.0), FakeWorker(cpu_pct=5.0))
    pool = _pool(starter, 3)
    await pool.start()
    try:
        assert [view["cpu_pct"] for view in pool.views()] == [30.0, 5.0, 5.0]
        calls = []
        for expected in ([0, 0, 1], [0, 1, 1], [1, 1, 1], [1, 1, 2]):
            calls.append(pool.session(lambda event: None))
            assert [view["calls"] for view in pool.views()] == expected
    finally:
        await pool.stop()


async def test_a_slow_replacement_does_not_keep_a_second_failure_from_being_noticed():
    blocked = asyncio.Event()  # worker 0's replacement starts only when the test says so
    starter = Starter(FakeWorker(), FakeWorker(), blocked)
    pool = _pool(starter, 2)
    await pool.start()
    try:
        heard: list[list[m.MediaEvent]] = [[], []]
        for index, worker in enumerate(pool.workers):
            worker.link.listen(f"call-{index}", heard[index].append)
        starter.started[0].kill()
        assert await wait_until_async(lambda: pool.restarts == 1, 2.0) and _failed(heard[0])
        starter.started[1].kill()  # while worker 0's replacement is still starting
        assert await wait_until_async(lambda: pool.restarts == 2, 2.0) and _failed(heard[1])
        assert pool.views()[0]["state"] == "failed"
        assert await wait_until_async(lambda: pool.views()[1]["state"] == "up", 2.0)
        blocked.set()
        assert await wait_until_async(lambda: all(v["state"] == "up" for v in pool.views()), 2.0)
        assert [view["restarts"] for view in pool.views()] == [1, 1] and len(starter.started) == 4
    finally:
        await pool.stop()


async def test_a_slot_whose_worker_will_not_start_is_tried_again_until_one_comes_up():
    silent, late = FakeWorker(beating=False), FakeWorker(beating=False)
    starter = Starter(FakeWorker(), OSError("too many open files"), silent, late)
    pool = _pool(starter, 1)
    await pool.start()
    try:
        starter.started[0].kill()
        # the one that would not beat in START_TIMEOUT_S was killed and reaped, then another tried
        assert await wait_until_async(lambda: len(starter.started) == 3, 3.0)
        assert silent.exitcode is not None and silent.joined
        assert await wait_until_async(lambda: pool.views()[0]["state"] == "starting", 1.0)
        late.beating.set()
        assert await wait_until_async(lambda: pool.views()[0]["state"] == "up", 1.0)
        # each new try began with the slot failed (the dead worker, or the one that did not start)
        assert starter.states == [["failed"], ["failed"], ["failed"]]
        assert pool.restarts == 1 and pool.views()[0]["restarts"] == 1
    finally:
        await pool.stop()


async def test_stop_cancels_a_replacement_under_way_and_reaps_every_worker(monkeypatch):
    monkeypatch.setattr(pool_module, "START_TIMEOUT_S", 20.0)
    starter = Starter(FakeWorker(), FakeWorker(), FakeWorker(beating=False))
    pool = _pool(starter, 2)
    await pool.start()
    starter.started[0].kill()
    assert await wait_until_async(lambda: pool.views()[0]["state"] == "starting", 2.0)
    await pool.stop()
    assert all(worker.exitcode is not None and worker.joined for worker in starter.started)
    assert len(starter.started) == 3
    await asyncio.sleep(0.2)  # nothing tries again after the stop
    assert len(starter.started) == 3
