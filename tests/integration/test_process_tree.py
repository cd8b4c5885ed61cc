"""The bridge as one process tree: one stop signal ends it all, and media workers never outlive
the control process (a killed control process leaves no orphan holding RTP ports)."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import pytest

from testbed.bridge_proc import BridgeProcess, http_json, start_bridge
from testbed.procs import wait_until

pytestmark = pytest.mark.integration


def _worker_pids(bridge: BridgeProcess) -> list[int]:
    health = http_json("GET", f"{bridge.api}/health")[1]
    return [worker["pid"] for worker in health["workers"]]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def _ports_free(low: int, high: int) -> bool:
    for port in range(low, high + 1):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def test_sigterm_ends_the_control_process_and_every_worker(tmp_path: Path) -> None:
    bridge = start_bridge(tmp_path, None, "--workers", "2")
    try:
        workers = _worker_pids(bridge)
        assert len(workers) == 2 and all(_alive(pid) for pid in workers)
        os.kill(bridge.proc.pid, signal.SIGTERM)
        assert bridge.proc.wait(20) == 0, bridge.log()
        assert wait_until(lambda: not any(_alive(pid) for pid in workers), 5)
        assert _ports_free(bridge.rtp_low, bridge.rtp_high)
    finally:
        bridge.proc.stop()


def test_a_killed_control_process_leaves_no_worker_behind(tmp_path: Path) -> None:
    bridge = start_bridge(tmp_path, None, "--workers", "2")
    workers = _worker_pids(bridge)
    stopped = workers[1]
    try:
        os.kill(stopped, signal.SIGSTOP)  # a worker that cannot read its channel closing
        os.kill(bridge.proc.pid, signal.SIGKILL)
        assert wait_until(lambda: not any(_alive(pid) for pid in workers), 5), [
            pid for pid in workers if _alive(pid)
        ]
        assert _ports_free(bridge.rtp_low, bridge.rtp_high)
    finally:
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        bridge.proc.stop()
