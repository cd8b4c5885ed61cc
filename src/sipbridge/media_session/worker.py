"""A media worker process: the media sessions of the calls placed on it, driven over one channel.

The control process starts it (``spawn``: a fresh interpreter, no copy of the parent's loop or
threads) with its ``WorkerSpec`` and one end of a socketpair. Frames come in as commands for a
call (``wire.py``); the worker runs them on that call's ``MediaSession`` and answers those that
want an answer; each session's events go out as they happen, and a heartbeat every
``HEARTBEAT_S`` says the worker is alive, how late its loop runs and how much CPU it used lately.
When the channel closes (the control process went away) every session is closed and the process
ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass
from typing import Any

from .. import logs
from ..agent.ice import loopback_addresses_for, use_host_addresses
from ..agent.whip import WhipClient
from ..cpu_share import CpuShare
from ..heap import TIDY_INTERVAL_S, settle_heap, tidy_when_idle
from ..loop_lag import LoopLag
from ..rtp.ports import PortAllocator
from . import messages as m
from . import wire
from .control import ANSWERED, METHODS
from .host import MediaHost
from .session import MediaSession

log = logging.getLogger(__name__)

HEARTBEAT_S = 0.25
PR_SET_PDEATHSIG = 1  # linux/prctl.h
READ_SIZE = 1 << 16


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker is started with (pickled to the new process)."""

    index: int
    config: Any  # the bridge's Config
    agent_url: str  # the agent's WHIP endpoint as the control process resolved it
    ports: tuple[int, int]  # this worker's slice of the RTP port range


class MediaWorker:
    """The worker's dispatcher, without the process around it: frames in, frames out (``send``)."""

    def __init__(self, host: MediaHost, send: Any) -> None:
        self._host = host
        self._send = send
        self.sessions: dict[str, MediaSession] = {}
        self.opened = 0  # sessions so far: work whose garbage an idle tidy gives back
        self._tasks: set[asyncio.Task] = set()

    def handle(self, envelope: wire.Envelope) -> None:
        if envelope.kind == wire.COMMAND and isinstance(envelope.message, m.StatsBatch):
            wanted = (call for call in envelope.message.calls if call in self.sessions)
            self._answer(envelope, m.StatsBatchReply({c: self.sessions[c].stats() for c in wanted}))
            return
        if envelope.kind != wire.COMMAND or type(envelope.message) not in METHODS:
            log.warning("worker: ignoring %s frame %s", envelope.kind, type(envelope.message).__name__)
            return
        command, call = envelope.message, envelope.call
        session = self.sessions.get(call)
        if session is None and isinstance(command, m.OpenMedia):
            session = self.sessions[call] = self._host.session(lambda event: self._event(call, event))
            self.opened += 1
        if session is None:
            self._answer(envelope, m.Failed(f"no media session for call {call:.40}"))
            return
        context = logs.call_context(call)  # the call's id on every log line of its media
        result = context.run(getattr(session, METHODS[type(command)]), command)
        if asyncio.iscoroutine(result):
            task = asyncio.get_running_loop().create_task(self._finish(envelope, result), context=context)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif type(command) in ANSWERED:
            self._answer(envelope, result)

    async def _finish(self, envelope: wire.Envelope, pending: Any) -> None:
        try:
            result = await pending
        except Exception as exc:  # a bug of ours: the call is told, the worker goes on
            log.exception("worker: %s for call %s failed", type(envelope.message).__name__, envelope.call)
            result = m.Failed(f"{type(exc).__name__}: {exc}")
        if isinstance(envelope.message, m.CloseMedia) or isinstance(result, m.MediaRefused):
            self.sessions.pop(envelope.call, None)
        self._answer(envelope, result)

    def _answer(self, envelope: wire.Envelope, result: Any) -> None:
        self._send(wire.encode(wire.Envelope(wire.REPLY, envelope.seq, envelope.call, result)))

    def _event(self, call: str, event: m.MediaEvent) -> None:
        self._send(wire.encode(wire.Envelope(wire.EVENT, 0, call, event)))

    def status(self, lag: LoopLag, cpu: CpuShare, now: float, cpu_s: float) -> bytes:
        """The heartbeat: ``cpu_s`` is the process's CPU seconds at ``now`` (monotonic)."""
        lag_ms, cpu_pct = round(lag.recent_max * 1000, 1), round(cpu.sample(now, cpu_s), 1)
        beat = m.WorkerStatus(
            os.getpid(), len(self.sessions), lag_ms, cpu_pct, round(cpu_s, 3), len(asyncio.all_tasks())
        )
        return wire.encode(wire.Envelope(wire.HEARTBEAT, 0, "", beat))

    async def close_all(self) -> None:
        sessions, self.sessions = list(self.sessions.values()), {}
        await asyncio.gather(*(s.close(m.CloseMedia("media worker stopping")) for s in sessions))


def run_worker(spec: WorkerSpec, channel: socket.socket) -> None:
    """The worker process's entry point."""
    config = spec.config
    _die_with_parent()
    # The control process stops a worker by closing its channel, after the calls drained: a SIGINT
    # or SIGTERM meant for the whole process tree (Ctrl-C, systemd) must not cut the calls first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logs.setup(config.log_level, config.log_format, config.log_redact, config.secrets)
    # aioice skips 127.0.0.1: the agent leg needs the same host addresses as in the control process
    use_host_addresses(config.ice_host_addresses or loopback_addresses_for(spec.agent_url))
    asyncio.run(_serve(spec, channel))


def _die_with_parent() -> None:
    """Linux: the kernel kills this worker when the control process dies, even one killed -9 while
    this worker's loop is blocked (a worker that can read sees its channel close and ends anyway):
    no orphan keeps a slice of the RTP ports."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the control process was already gone before prctl
        os._exit(1)


async def _serve(spec: WorkerSpec, channel: socket.socket) -> None:
    config = spec.config
    reader, writer = await asyncio.open_connection(sock=channel)
    whip = WhipClient(spec.agent_url, token=config.agent_token, timeout=config.agent_timeout)
    worker = MediaWorker(MediaHost(config, whip, PortAllocator(*spec.ports)), writer.write)
    lag = LoopLag()
    lag.start()
    loop = asyncio.get_running_loop()
    beats = loop.create_task(_beat(worker, lag, writer))
    # give back what the last calls' media left (heap.py), once no session is up
    tidy = loop.create_task(
        tidy_when_idle(2 * TIDY_INTERVAL_S, lambda: len(worker.sessions), lambda: worker.opened)
    )
    settle_heap()
    frames = wire.FrameReader()
    try:
        while data := await reader.read(READ_SIZE):
            for frame in frames.feed(data):
                worker.handle(wire.decode(frame))
    except (ConnectionError, wire.WireError) as exc:
        log.error("worker %d: channel to the control process broken: %s", spec.index, exc)
    finally:
        beats.cancel()
        tidy.cancel()
        await worker.close_all()
        await lag.stop()
        await whip.close()
        writer.close()


async def _beat(worker: MediaWorker, lag: LoopLag, writer: asyncio.StreamWriter) -> None:
    cpu = CpuShare()
    while True:
        started = time.monotonic()
        writer.write(worker.status(lag, cpu, started, time.process_time()))
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        await asyncio.sleep(max(0.0, HEARTBEAT_S - (time.monotonic() - started)))
