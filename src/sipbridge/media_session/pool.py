"""The control process's media workers: start them, place each call's media on one, watch them, and
replace one that dies or stalls (its calls end; every other call goes on).

Placement (``place``): the worker with the fewest calls, ties to the one that used the least CPU
lately, then to the one whose loop lags least; each worker has its own slice of the RTP port range,
so no two ever compete for a port. Watching: a worker's channel closing is noticed at once; a worker
whose heartbeat is ``STALL_S`` late (its loop blocked, or the process stopped) is killed and treated
the same. Each replacement is a task of its own (one per slot at a time), so a worker that takes
seconds to start never delays noticing another's failure; a slot whose worker will not start is
tried again, ``RETRY_FIRST_S`` later and twice as late each time after.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from typing import Any

from .. import metrics
from ..rtp.ports import even_ports
from . import messages as m
from .remote import RemoteMedia, WorkerLink
from .spawn import start_worker
from .worker import WorkerSpec

log = logging.getLogger(__name__)

STALL_S = 2.0  # no heartbeat (one every 0.25 s) for this long: the worker is stuck
WATCH_S = 0.25
START_TIMEOUT_S = 20.0  # a fresh interpreter imports aiortc, numpy and PyAV: seconds on a slow box
JOIN_TIMEOUT_S = 5.0
RETRY_FIRST_S = 1.0  # a slot whose new worker did not start tries again after this, then doubling
RETRY_MAX_S = 30.0

# Starts one worker: its process and the control process's link to it (spawn.start_worker).
Starter = Callable[[WorkerSpec], Awaitable[tuple[BaseProcess, WorkerLink]]]


class WorkerStartFailed(RuntimeError):
    pass


@dataclass
class MediaWorkerHandle:
    spec: WorkerSpec
    process: BaseProcess
    link: WorkerLink
    restarts: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def capacity(self) -> int:
        """Calls it can hold: one per even port of its slice."""
        return len(even_ports(*self.spec.ports))

    @property
    def healthy(self) -> bool:
        return self.link.lost is None and self.link.status is not None

    @property
    def load(self) -> WorkerLoad:
        status = self.link.status
        return WorkerLoad(
            self.link.calls,
            self.capacity,
            self.healthy,
            status.cpu_pct if status else 0.0,
            status.loop_lag_ms if status else 0.0,
        )

    def view(self) -> dict[str, Any]:
        status = self.link.status
        return {
            "index": self.spec.index,
            "pid": self.process.pid,
            "calls": self.link.calls,
            "loop_lag_ms": status.loop_lag_ms if status else None,
            "cpu_pct": status.cpu_pct if status else None,
            "cpu_s": status.cpu_s if status else None,
            "asyncio_tasks": status.asyncio_tasks if status else None,
            "restarts": self.restarts,
            "ports": f"{self.spec.ports[0]}-{self.spec.ports[1]}",
            "state": "up" if self.healthy else ("starting" if self.link.lost is None else "failed"),
        }


@dataclass(frozen=True)
class WorkerLoad:
    """What placement weighs of one worker."""

    calls: int  # held, opening, or placed and about to open
    capacity: int
    healthy: bool
    cpu_pct: float = 0.0  # % of a core over the last few seconds
    loop_lag_ms: float = 0.0


def place(loads: Sequence[WorkerLoad]) -> int:
    """The index of the worker a new call goes to: among the healthy workers with room (or, with
    none, the healthy ones, so the call is refused there for want of a port; or any), the one with
    the fewest calls, then the lowest recent CPU, then the lowest loop lag."""
    every = range(len(loads))
    ready = [i for i in every if loads[i].healthy and loads[i].calls < loads[i].capacity]
    ready = ready or [i for i in every if loads[i].healthy] or list(every)
    return min(ready, key=lambda i: (loads[i].calls, loads[i].cpu_pct, loads[i].loop_lag_ms))


def port_slices(low: int, high: int, count: int) -> list[tuple[int, int]]:
    """``count`` disjoint ranges covering [low, high] that share out its even ports (one per call),
    as evenly as they go; each starts on an even port."""
    ports = even_ports(low, high)
    if len(ports) < count:
        raise ValueError(f"the RTP range {low}-{high} has fewer than {count} even ports for {count} workers")
    slices, start = [], 0
    for i in range(count):
        size = len(ports) // count + (i < len(ports) % count)
        mine = ports[start : start + size]
        slices.append((mine[0], min(mine[-1] + 1, high)))
        start += size
    return slices


class WorkerPool:
    def __init__(self, config: Any, agent_url: str, count: int, starter: Starter = start_worker) -> None:
        self.config = config
        self.agent_url = agent_url
        ports = config.rtp_ports
        self.specs = [
            WorkerSpec(i, config, agent_url, span)
            for i, span in enumerate(port_slices(ports.low, ports.high, count))
        ]
        self.workers: list[MediaWorkerHandle] = []
        self.restarts = 0
        self._starter = starter
        self._watch: asyncio.Task[None] | None = None
        self._replacing: dict[int, asyncio.Task[None]] = {}  # slot index: its replacement under way
        self._stopping = False

    async def start(self) -> None:
        """Start every worker and wait for each one's first heartbeat."""
        self.workers = [await self._start(spec) for spec in self.specs]
        await asyncio.gather(*(self._up(worker) for worker in self.workers))
        self._watch = asyncio.get_running_loop().create_task(self._supervise(), name="media-workers")

    async def _start(self, spec: WorkerSpec, restarts: int = 0) -> MediaWorkerHandle:
        process, link = await self._starter(spec)
        log.info("media worker %d started: pid %s, RTP ports %d-%d", spec.index, process.pid, *spec.ports)
        return MediaWorkerHandle(spec, process, link, restarts)

    async def _up(self, worker: MediaWorkerHandle) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while worker.link.status is None:
            if worker.link.lost is not None or time.monotonic() > deadline:
                raise WorkerStartFailed(
                    f"media worker {worker.spec.index} did not start: {worker.link.lost or 'no heartbeat'}"
                )
            await asyncio.sleep(0.05)

    # -- placement -----------------------------------------------------------------------------

    def session(self, emit: Callable[[m.MediaEvent], None]) -> RemoteMedia:
        """A new call's media, on the worker ``place`` picks."""
        worker = self.workers[place([w.load for w in self.workers])]
        return RemoteMedia(worker.link, emit, self.config.agent_timeout, worker.spec.index)

    async def refresh(self) -> None:
        """Pull every call's stats, one request per worker, all workers at once."""
        await asyncio.gather(*(w.link.pull_stats() for w in self.workers))

    @property
    def ports_total(self) -> int:
        return sum(worker.capacity for worker in self.workers)

    @property
    def ports_in_use(self) -> int:
        return sum(w.link.calls for w in self.workers)

    def views(self) -> list[dict[str, Any]]:
        return [worker.view() for worker in self.workers]

    # -- watching ------------------------------------------------------------------------------

    async def _supervise(self) -> None:
        while not self._stopping:
            await asyncio.sleep(WATCH_S)
            self._check()

    def _check(self) -> None:
        """Never waits: a failed worker's replacement runs as a task of its own."""
        for index, worker in enumerate(self.workers):
            if index in self._replacing:
                continue
            problem = self._problem(worker)
            if problem is not None:
                self._fail(index, worker, problem)

    def _problem(self, worker: MediaWorkerHandle) -> str | None:
        if worker.link.lost is not None:
            return worker.link.lost
        if worker.link.status is not None and time.monotonic() - worker.link.last_beat > STALL_S:
            return f"no heartbeat for {time.monotonic() - worker.link.last_beat:.1f} s: stalled"
        return None

    def _fail(self, index: int, worker: MediaWorkerHandle, problem: str) -> None:
        log.error("media worker %d (pid %s) failed: %s; replacing it", index, worker.process.pid, problem)
        _kill(worker.process)
        worker.link.lose(problem)  # its calls hear MediaFailed and end, now
        self.restarts += 1
        metrics.worker_restarted()
        task = asyncio.get_running_loop().create_task(
            self._replace(index, worker), name=f"media-worker-{index}-replace"
        )
        self._replacing[index] = task
        task.add_done_callback(lambda _: self._replacing.pop(index, None))

    async def _replace(self, index: int, failed: MediaWorkerHandle) -> None:
        """Reap the failed worker (its RTP ports are free then), start a new one in its slot and
        wait for its first heartbeat; until one comes up, try again with a growing pause."""
        await _reap(failed.process)
        delay = RETRY_FIRST_S
        while not await self._try_start(index, failed.spec, failed.restarts + 1):
            log.error("media worker %d: trying again in %g s", index, delay)
            await asyncio.sleep(delay)
            delay = min(2 * delay, RETRY_MAX_S)

    async def _try_start(self, index: int, spec: WorkerSpec, restarts: int) -> bool:
        try:
            fresh = await self._start(spec, restarts)
        except OSError as exc:
            log.error("media worker %d could not be started: %s", index, exc)
            return False
        self.workers[index] = fresh  # "starting" in the views until its first heartbeat
        try:
            await self._up(fresh)
        except WorkerStartFailed as exc:
            log.error("%s", exc)
            _kill(fresh.process)
            fresh.link.lose(str(exc))
            await _reap(fresh.process)
            return False
        return True

    # -- the end -------------------------------------------------------------------------------

    async def stop(self) -> None:
        """Stop watching and any replacement under way, close every channel (each worker closes its
        sessions and exits), then reap them."""
        self._stopping = True
        pending = [task for task in (self._watch, *self._replacing.values()) if task is not None]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await asyncio.gather(*(w.link.close() for w in self.workers))
        for worker in self.workers:
            await _reap(worker.process)
            _kill(worker.process)


async def _reap(process: BaseProcess) -> None:
    """Wait (in a thread, with a deadline) for the process to end, so it leaves no zombie."""
    await asyncio.get_running_loop().run_in_executor(None, process.join, JOIN_TIMEOUT_S)


def _kill(process: BaseProcess) -> None:
    if process.exitcode is None:
        process.kill()
