"""testbed.procs: the helpers every integration test leans on."""

from __future__ import annotations

import threading

import pytest

from testbed.procs import in_background


class PeerFailed(RuntimeError):
    pass


def test_in_background_gives_the_peers_result() -> None:
    assert in_background(lambda: 42).result(5) == 42


def test_in_background_raises_the_peers_own_error_where_the_result_is_taken() -> None:
    def peer() -> int:
        raise PeerFailed("sipp exited 1")

    with pytest.raises(PeerFailed, match="sipp exited 1"):
        in_background(peer).result(5)


def test_in_background_join_waits_and_does_not_raise() -> None:
    def peer() -> int:
        raise PeerFailed("late")

    running = in_background(peer)
    running.join(5)
    assert not running.is_alive()


def test_in_background_result_times_out_while_the_peer_runs() -> None:
    release = threading.Event()
    running = in_background(lambda: release.wait(10))
    with pytest.raises(TimeoutError):
        running.result(0.05)
    release.set()
    assert running.result(5) is True
