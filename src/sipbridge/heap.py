"""Giving memory back once the calls are over.

What a call leaves behind is freed in two ways that both keep the process large after a burst of
calls: the objects of a call sit in reference cycles (peer connection, transports, callbacks) until a
full garbage collection, which the start-up ``gc.freeze()`` makes rare; and glibc keeps the freed
pages in its heap. While no call is up, for a while after the last one, the bridge collects and
returns free pages to the system (``malloc_trim``), at no risk to audio: there is none to disturb.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import os
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def _find_malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``; None elsewhere (musl, macOS), where only the collection is done."""
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None


_malloc_trim = _find_malloc_trim()


def rss_kib() -> int:
    """Resident memory of this process, in KiB (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * PAGE_KIB
    except OSError:
        return 0


def settle_heap() -> None:
    """Keep what start-up made (modules, the app, ~100k objects) out of later garbage collections.

    A full collection walks every tracked object: 35-70 ms with the loop stopped, i.e. a gap in the
    audio of every call. Frozen, the start-up objects are never walked again; what calls create is.
    Every process that carries calls does this once it is up (the control process and each media
    worker: a worker's aiortc, PyAV and numpy would otherwise be walked by every full collection).
    """
    gc.collect()
    gc.freeze()


def tidy_heap() -> None:
    """Collect cyclic garbage and hand free heap pages back to the system."""
    started, before = time.perf_counter(), rss_kib()
    gc.collect()
    if _malloc_trim is not None:
        _malloc_trim(0)
    log.debug(
        "heap tidied: RSS %.1f -> %.1f MiB in %.1f ms",
        before / 1024,
        rss_kib() / 1024,
        (time.perf_counter() - started) * 1000,
    )


class IdleTidy:
    """When to tidy: each check while no call is up, until ``window`` seconds after the last check
    that saw a call up or new work (the last calls' transactions hold their objects 64·T1).

    ``work`` is any count that only grows and whose growth leaves garbage behind: the calls so far,
    plus the SIP messages in thousands (a flood of INVITEs that made no call takes heap too)."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._work_seen = 0
        self._busy_at: float | None = None

    def due(self, now: float, active: int, work: int) -> bool:
        if active or work != self._work_seen:
            self._work_seen, self._busy_at = work, now
            return False
        return self._busy_at is not None and now - self._busy_at <= self.window


TIDY_INTERVAL_S = 5.0


async def tidy_when_idle(window: float, active: Callable[[], int], work: Callable[[], int]) -> None:
    """Every TIDY_INTERVAL_S, tidy the heap when ``IdleTidy(window)`` says so: the control process
    and each media worker run this, with what counts as busy and as work in each."""
    policy, loop = IdleTidy(window), asyncio.get_running_loop()
    while True:
        await asyncio.sleep(TIDY_INTERVAL_S)
        if policy.due(loop.time(), active(), work()):
            tidy_heap()
