"""The accepting side of a TCP/TLS transport: the listening socket read in batches, and room made
for as many file descriptors as the connection caps allow."""

from __future__ import annotations

import asyncio
import functools
import logging
import resource
import socket
from collections.abc import Callable

from .stream_limits import RareLog

log = logging.getLogger(__name__)

ACCEPT_BATCH = 16  # connections accepted per turn of the event loop
ACCEPT_PAUSE_S = 1.0
# File descriptors wanted beyond the connection caps: the calls' RTP sockets, the agent's links.
FD_HEADROOM = 4096


class Listener:
    """The listening socket, read by us rather than by ``loop.create_server``: asyncio makes a
    transport, a task and a protocol for every connection before anyone may say no, which under a
    flood of thousands of connections held the loop for tens of milliseconds a batch (every call's
    audio waited). Here each accepted socket goes to ``take_accepted`` at once, and at most
    ``ACCEPT_BATCH`` are taken per turn of the loop; out of file descriptors, accepting pauses a
    second (as asyncio does) with one warning per 10 s."""

    def __init__(self, take_accepted: Callable[[socket.socket, str], None], sock: socket.socket) -> None:
        self._take_accepted = take_accepted
        self.sock = sock
        sock.setblocking(False)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._paused: asyncio.TimerHandle | None = None
        self._rare = RareLog()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        loop.add_reader(self.sock.fileno(), self._ready)

    def _ready(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                conn, address = self.sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:  # EMFILE, ENFILE, ENOBUFS: wait for descriptors to come back
                self._pause(exc)
                return
            self._take_accepted(conn, address[0])

    def _pause(self, exc: OSError) -> None:
        assert self._loop is not None
        count = self._rare.note(self._loop.time())
        if count:
            log.warning(
                "SIP: accepting paused %d time(s) for want of file descriptors (%s): raise the limit"
                " (ulimit -n, LimitNOFILE) or lower sip_max_connections",
                count,
                exc,
            )
        self._loop.remove_reader(self.sock.fileno())
        self._paused = self._loop.call_later(ACCEPT_PAUSE_S, self.start, self._loop)

    def close(self) -> None:
        if self._paused is not None:
            self._paused.cancel()
        if self._loop is not None and self.sock.fileno() >= 0:
            self._loop.remove_reader(self.sock.fileno())
        self.sock.close()


@functools.cache  # once per process is enough (the TCP and TLS listeners ask alike)
def make_fd_room(connections: int) -> None:
    """Raise the soft open-file limit (up to the hard one) so the caps, not EMFILE, bound connections."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + FD_HEADROOM
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    raised = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
    if raised > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            log.info("open-file limit raised from %d to %d for SIP connections", soft, raised)
            soft = raised
        except (ValueError, OSError) as exc:
            log.debug("open-file limit not raised: %s", exc)
    if soft < connections + 256:
        log.warning(
            "open-file limit %d leaves little room beyond sip_max_connections (%d): raise it"
            " (ulimit -n, LimitNOFILE) or lower sip_max_connections",
            soft,
            connections,
        )
