"""Start a media worker process and connect to it: a socketpair, one end to the new process."""

from __future__ import annotations

import asyncio
import multiprocessing
import socket
from collections.abc import Callable
from multiprocessing.process import BaseProcess

from .remote import WorkerLink
from .worker import WorkerSpec, run_worker


async def start_worker(
    spec: WorkerSpec, on_lost: Callable[[str], None] | None = None
) -> tuple[BaseProcess, WorkerLink]:
    """The worker's process and the control process's link to it (the worker starts in the
    background: its first heartbeat says it is up)."""
    ours, theirs = socket.socketpair()
    # spawn: a fresh interpreter, not a fork of this one with its event loop, threads and sockets
    process = multiprocessing.get_context("spawn").Process(
        target=run_worker, args=(spec, theirs), name=f"sipbridge-media-{spec.index}", daemon=True
    )
    process.start()
    theirs.close()
    try:
        reader, writer = await asyncio.open_connection(sock=ours)
    except BaseException:  # cancelled (the pool stopping) or failed: no process is left behind
        ours.close()
        process.kill()
        process.join(1.0)  # SIGKILL: it is gone at once
        raise
    return process, WorkerLink(reader, writer, on_lost)
