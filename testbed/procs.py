"""Processes and ports for tests that drive real peers (sipp, baresip, the bridge itself).

Everything binds to 127.0.0.1. A :class:`ManagedProcess` runs in a session of its own, so stopping it
stops everything it forked; its output goes to files, so a failing test can show it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import os
import random
import shlex
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Generic, Self, TypeVar, cast

LOOPBACK = "127.0.0.1"

T = TypeVar("T")


class Background(Generic[T]):
    """``fn`` running in a thread (a peer that blocks until its call is over, while the test acts on
    the call). ``result()`` waits for it and gives ``fn``'s return value, or raises what ``fn`` raised:
    a peer that failed fails the test there, with its own error (not a missing result later)."""

    def __init__(self, fn: Callable[[], T]) -> None:
        self._fn = fn
        self._value: T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._value = self._fn()
        except BaseException as error:  # handed to whoever asks for the result
            self._error = error

    def join(self, timeout: float | None = None) -> None:
        """Wait up to ``timeout`` s for ``fn`` to return; never raises (for a ``finally``)."""
        self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def result(self, timeout: float | None = None) -> T:
        """``fn``'s return value once it returned (waiting up to ``timeout`` s), or its exception."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"still running after {timeout} s: {self._fn!r}")
        if self._error is not None:
            raise self._error
        return cast(T, self._value)


def in_background(fn: Callable[[], T]) -> Background[T]:
    """Start ``fn`` in a thread; see :class:`Background`."""
    return Background(fn)


# --------------------------------------------------------------------------------------------- ports


# Ports handed out lately by this process: the kernel's choice for port 0 may be the very port it
# gave a moment ago (its socket is closed once we have read the number), and a test that asks for a
# SIP port and then a media block must not get the same port twice (sipp: EADDRINUSE on its RTP).
_HANDED_OUT: collections.deque[int] = collections.deque(maxlen=4096)


def _hand_out(first: int, count: int = 1) -> bool:
    """Record ports first..first+count-1 as handed out; False (nothing recorded) if one already was."""
    block = range(first, first + count)
    if any(port in _HANDED_OUT for port in block):
        return False
    _HANDED_OUT.extend(block)
    return True


# Ports are picked below the kernel's ephemeral range (32768-60999 on Linux): a port we pick is only
# bound later, by the process we pass it to, and meanwhile any process binding port 0 (an ICE
# candidate, an HTTP client, sipp's own sockets) could be given it if it lay in that range.
PICK_RANGE = (10000, 32000)
_pick = random.Random()


def _candidate(kind: int, host: str) -> int:
    """A port in PICK_RANGE that is free now for ``kind``."""
    for _ in range(1000):
        port = _pick.randrange(*PICK_RANGE)
        if _port_free(port, kind, host):
            return port
    raise RuntimeError(f"no free port in {PICK_RANGE} on {host}")


def _bind_free(kind: int, host: str = LOOPBACK) -> int:
    for _ in range(100):
        port = _candidate(kind, host)
        if _hand_out(port):
            return port
    raise RuntimeError(f"no free port on {host} that was not handed out already")


def free_udp_port(host: str = LOOPBACK) -> int:
    """A UDP port that was free on `host` a moment ago, never handed out before by this process."""
    return _bind_free(socket.SOCK_DGRAM, host)


def free_tcp_port(host: str = LOOPBACK) -> int:
    """A TCP port that was free on `host` a moment ago, never handed out before by this process."""
    return _bind_free(socket.SOCK_STREAM, host)


def _port_free(port: int, kind: int, host: str) -> bool:
    with socket.socket(socket.AF_INET, kind) as s:
        if kind == socket.SOCK_STREAM:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return False
            raise
        return True


def free_port_block(count: int, *, udp: bool = True, tcp: bool = False, host: str = LOOPBACK) -> int:
    """The first of `count` consecutive ports free on `host` for every protocol asked for.

    sipp's media port needs base and base+2 (audio, video); baresip's SIP port needs UDP and TCP on
    base and TCP on base+1 (TLS). The block starts at an even port, as RTP wants.
    """
    kinds = [k for k, on in ((socket.SOCK_DGRAM, udp), (socket.SOCK_STREAM, tcp)) if on]
    if not kinds or count < 1:
        raise ValueError("ask for at least one port of at least one protocol")
    for _ in range(200):
        base = _candidate(socket.SOCK_DGRAM if udp else socket.SOCK_STREAM, host)
        base -= base % 2
        if base + count > 65535 or base < 1024:
            continue
        if all(_port_free(base + i, k, host) for i in range(count) for k in kinds) and _hand_out(base, count):
            return base
    raise RuntimeError(f"no block of {count} free ports found on {host}")


def udp_port_bound(port: int, host: str = LOOPBACK) -> bool:
    """True when something already holds UDP `port` on `host` (so binding it fails)."""
    return not _port_free(port, socket.SOCK_DGRAM, host)


def tcp_port_listening(port: int, host: str = LOOPBACK) -> bool:
    """True when a TCP connect to `host:port` succeeds."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


# --------------------------------------------------------------------------------------------- waiting


def wait_until(predicate: Callable[[], T], timeout: float, interval: float = 0.05) -> T:
    """Poll `predicate` until it returns something truthy, and return that.

    After `timeout` seconds, returns the last (falsy) value instead: ``assert wait_until(...)`` or
    ``if not wait_until(...)``. Use :func:`wait_for` to get an exception that says what was awaited.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def wait_for(
    predicate: Callable[[], T],
    timeout: float,
    interval: float = 0.05,
    *,
    what: str | Callable[[], str] = "",
) -> T:
    """:func:`wait_until`, raising TimeoutError on timeout with `what` in the message.

    `what` may be a function, called only then (e.g. to show the tail of a process's log).
    """
    value = wait_until(predicate, timeout, interval)
    if not value:
        detail = what() if callable(what) else what
        raise TimeoutError(f"not true after {timeout:g} s: {detail or predicate!r}")
    return value


async def wait_until_async(
    predicate: Callable[[], T | Awaitable[T]],
    timeout: float,
    interval: float = 0.05,
) -> T:
    """:func:`wait_until` for async tests: `predicate` may be a plain or an async function."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if isinstance(value, Awaitable):
            value = await value
        if value or time.monotonic() >= deadline:
            return value  # type: ignore[return-value]
        await asyncio.sleep(interval)


# --------------------------------------------------------------------------------------------- processes


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, process group) of `pid` from /proc, or None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": state ppid pgrp ...
    return fields[0], int(fields[2])


def process_alive(pid: int) -> bool:
    """True while `pid` runs. A zombie (dead, not yet reaped) does not count: the init process of
    these machines reaps orphans late, so a killed grandchild can linger as one for a while."""
    stat = _proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group `pgid`."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _proc_stat(int(entry.name))
            if stat is not None and stat[1] == pgid and stat[0] not in ("Z", "X"):
                members.append(int(entry.name))
    return members


class ManagedProcess:
    """A child process in its own session, with its output in files, that never outlives its `with`.

    ``with ManagedProcess(["sipp", ...], name="uas") as p: ...`` starts it; leaving the block (normally or
    by an exception) calls :meth:`stop`: SIGTERM to the whole process group, then SIGKILL after `grace`
    seconds. Output lands in ``logdir/NAME.out`` and ``logdir/NAME.err`` (a fresh temporary folder when
    no `logdir` is given: pass pytest's ``tmp_path`` to keep it with the test).
    """

    def __init__(
        self,
        argv: Sequence[str | os.PathLike[str]],
        *,
        name: str | None = None,
        logdir: Path | None = None,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        grace: float = 2.0,
    ) -> None:
        self.argv = [os.fspath(a) for a in argv]
        self.name = name or Path(self.argv[0]).name
        self.logdir = Path(logdir) if logdir is not None else Path(tempfile.mkdtemp(prefix=f"{self.name}-"))
        self.cwd = cwd
        self.env = dict(env) if env is not None else None
        self.grace = grace
        self.stdout_path = self.logdir / f"{self.name}.out"
        self.stderr_path = self.logdir / f"{self.name}.err"
        self.proc: subprocess.Popen[bytes] | None = None

    # -- lifecycle

    def start(self) -> Self:
        if self.proc is not None:
            raise RuntimeError(f"{self.name} already started")
        self.logdir.mkdir(parents=True, exist_ok=True)
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=self.cwd,
                env=self.env,
                start_new_session=True,
            )
        return self

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError(f"{self.name} not started")
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    @property
    def running(self) -> bool:
        """Started and not exited yet."""
        return self.proc is not None and self.proc.poll() is None

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit by itself; raises subprocess.TimeoutExpired, leaving it running."""
        if self.proc is None:
            raise RuntimeError(f"{self.name} not started")
        return self.proc.wait(timeout)

    def _group_alive(self) -> bool:
        return bool(group_members(self.pid))

    def _signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)

    def stop(self, grace: float | None = None) -> int | None:
        """SIGTERM the process group, SIGKILL it after `grace` seconds; returns the exit code.

        Safe to call more than once, and on a process that already exited (its forked children, if any
        are left in the group, are stopped too).
        """
        if self.proc is None:
            return None
        grace = self.grace if grace is None else grace
        if self.proc.poll() is None or self._group_alive():
            self._signal_group(signal.SIGTERM)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                if self.proc.poll() is not None and not self._group_alive():
                    break
                time.sleep(0.02)
            else:
                self._signal_group(signal.SIGKILL)
        try:
            return self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL cannot be ignored
            self._signal_group(signal.SIGKILL)
            return self.proc.wait()

    # -- output

    def stdout(self) -> str:
        return _read_text(self.stdout_path)

    def stderr(self) -> str:
        return _read_text(self.stderr_path)

    def tail(self, lines: int = 40) -> str:
        """The last lines of stdout and stderr, and how it was started: for assertion messages."""
        parts = [f"$ {shlex.join(self.argv)}  (exit {self.returncode})"]
        for label, text in (("stdout", self.stdout()), ("stderr", self.stderr())):
            if text.strip():
                # baresip redraws its status line with \r: keep the last state of each line
                cleaned = [line.rsplit("\r", 1)[-1] for line in text.splitlines()]
                parts.append(f"--- {self.name} {label} (last {lines} lines)")
                parts.extend(cleaned[-lines:])
        return "\n".join(parts)

    def __repr__(self) -> str:
        state = "not started" if self.proc is None else f"pid {self.proc.pid}, exit {self.returncode}"
        return f"<ManagedProcess {self.name} ({state})>"


def _read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
