"""The control process's media workers: start them, place each call's media on one, watch them, and
replace one that dies or stalls (its calls end; every other call goes on).

Placement: the worker with the fewest calls, ties to the one whose loop lags least; each worker has
its own slice of the RTP port range, so no two ever compete for a port. Watching: a worker's
channel closing is noticed at once; a worker whose heartbeat is ``STALL_S`` late (its loop blocked,
or the process stopped) is killed and treated the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
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

    def view(self) -> dict[str, Any]:
        status = self.link.status
        return {
            "index": self.spec.index,
            "pid": self.process.pid,
            "calls": self.link.calls,
            "loop_lag_ms": status.loop_lag_ms if status else None,
            "restarts": self.restarts,
            "ports": f"{self.spec.ports[0]}-{self.spec.ports[1]}",
            "state": "up" if self.healthy else ("starting" if self.link.lost is None else "failed"),
        }


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
    def __init__(self, config: Any, agent_url: str, count: int) -> None:
        self.config = config
        self.agent_url = agent_url
        ports = config.rtp_ports
        self.specs = [
            WorkerSpec(i, config, agent_url, span)
            for i, span in enumerate(port_slices(ports.low, ports.high, count))
        ]
        self.workers: list[MediaWorkerHandle] = []
        self.restarts = 0
        self._watch: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        """Start every worker and wait for each one's first heartbeat."""
        self.workers = [await self._start(spec) for spec in self.specs]
        await asyncio.gather(*(self._up(worker) for worker in self.workers))
        self._watch = asyncio.get_running_loop().create_task(self._supervise(), name="media-workers")

    async def _start(self, spec: WorkerSpec, restarts: int = 0) -> MediaWorkerHandle:
        process, link = await start_worker(spec)
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
        """A new call's media, on the healthy worker with room and the fewest calls."""
        ready = [w for w in self.workers if w.healthy and w.link.calls < w.capacity]
        ready = ready or [w for w in self.workers if w.healthy] or self.workers
        worker = min(ready, key=lambda w: (w.link.calls, w.link.status.loop_lag_ms if w.link.status else 0.0))
        return RemoteMedia(worker.link, emit, self.config.agent_timeout)

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
            for i, worker in enumerate(self.workers):
                if self._stopping:
                    return
                problem = self._problem(worker)
                if problem is not None:
                    await self._replace(i, worker, problem)

    def _problem(self, worker: MediaWorkerHandle) -> str | None:
        if worker.link.lost is not None:
            return worker.link.lost
        if worker.link.status is not None and time.monotonic() - worker.link.last_beat > STALL_S:
            return f"no heartbeat for {time.monotonic() - worker.link.last_beat:.1f} s: stalled"
        return None

    async def _replace(self, index: int, worker: MediaWorkerHandle, problem: str) -> None:
        log.error("media worker %d (pid %s) failed: %s; replacing it", index, worker.process.pid, problem)
        _kill(worker.process)
        worker.link.lose(problem)  # its calls hear MediaFailed and end
        self.restarts += 1
        metrics.worker_restarted()
        try:
            self.workers[index] = fresh = await self._start(worker.spec, worker.restarts + 1)
            await self._up(fresh)
        except (OSError, WorkerStartFailed) as exc:
            log.error("media worker %d could not be restarted: %s", index, exc)
        await asyncio.get_running_loop().run_in_executor(None, worker.process.join, JOIN_TIMEOUT_S)

    # -- the end -------------------------------------------------------------------------------

    async def stop(self) -> None:
        """Close every channel (each worker closes its sessions and exits), then reap them."""
        self._stopping = True
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        await asyncio.gather(*(w.link.close() for w in self.workers))
        loop = asyncio.get_running_loop()
        for worker in self.workers:
            await loop.run_in_executor(None, worker.process.join, JOIN_TIMEOUT_S)
            _kill(worker.process)


def _kill(process: BaseProcess) -> None:
    if process.pid is not None and process.exitcode is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
