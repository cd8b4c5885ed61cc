"""The media workers through the whole bridge: SIP calls from sipp, their audio from the benchmark's
RTP probe, echoed by the reference agent in relay mode, and the bridge run with two media workers.

Each call's placement is read from the API (``worker`` in GET /calls), matched to its probe socket
by the call's RTP peer address; the BYEs and their Reason are read as sipp received them
(-trace_msg), and the audio by the benchmark's echo analysis (bench/load/echo.py): which checkable
frames the probe sent came back. A worker killed mid-call takes only its own calls (BYE with
``Reason: ... "media worker failed"`` within 2 s), the other worker's calls lose no frame and end
when sipp hangs up, and a new worker comes up and takes the next call; a worker stopped for 3 s is
found stalled and replaced the same way.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.load import echo, speech
from bench.load.level import injection_file
from bench.load.probe import RtpProbe
from bench.load.reference import Reference, reference
from testbed import audio, sipp
from testbed.bridge_proc import BridgeProcess, http_json, start_agent, start_bridge, trunk_config
from testbed.procs import in_background, wait_until
from testbed.sipp import Traced, traced

pytestmark = [
    pytest.mark.integration,
    pytest.mark.sipp,
    pytest.mark.skipif(bool(audio.missing_tools("espeak-ng", "sox")), reason="needs espeak-ng and sox"),
]

CALLS = 20
HOLD_S = 12.0  # from each call's ACK to sipp's BYE, unless the bridge hangs up first
RATE = 20.0  # calls per second
FAILED = 'text="media worker failed"'
BYE_WITHIN_S = 2.0  # issue 15: a dead worker's calls get their BYE within 2 s
STALL_BYE_WITHIN_S = 3.0  # a heartbeat 2 s late is a stall; noticed within 1 s like a death


@pytest.fixture(scope="module")
def voice(tmp_path_factory: pytest.TempPathFactory) -> tuple[speech.Speech, Reference]:
    made = speech.make(tmp_path_factory.mktemp("speech"))
    return made, reference(made)


@pytest.fixture(scope="module")
def bridge(logdir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BridgeProcess]:
    """Two media workers; the calls come from 127.0.0.1 as a trunk's (no per-source limits)."""
    agent = start_agent(logdir, "relay")
    config = trunk_config(tmp_path_factory.mktemp("config"))
    try:
        bridge = start_bridge(
            logdir, agent.whip_url, "--workers", "2", "--config", str(config), "--log-level", "info",
            rtp_ports=4 * CALLS,
        )  # fmt: skip
    except Exception:
        agent.proc.stop()
        raise
    yield bridge
    bridge.proc.stop()
    agent.proc.stop()


class ProbedCalls:
    """`n` calls from sipp (uac_probe_hold) whose audio is the probe's, running in the background:
    the probe in a thread with its own event loop, sipp in another."""

    def __init__(self, bridge: BridgeProcess, voice: speech.Speech, n: int, hold_s: float, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        self.bridge = bridge
        self.probe = RtpProbe(n, voice)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)
        self._thread.start()
        assert self._ready.wait(5), "the probe did not start"
        inf = injection_file(self.probe, folder)
        self.sipp = in_background(
            lambda: sipp.run_scenario(
                "uac_probe_hold", bridge.sip_target, calls=n, rate=RATE, limit=n, timeout=hold_s + 60,
                recv_timeout_ms=30_000, keys={"hold_ms": str(int(hold_s * 1000))},
                workdir=folder / "sipp", extra_args=["-inf", str(inf)],
            )
        )  # fmt: skip

    async def _serve(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        self._ready.set()
        await self.probe.run(self._stop)

    def all_up(self, timeout: float = 30.0) -> float:
        """Wait until every call's audio flows (the bridge's first packet latched each probe
        socket); when that was, time.time()."""
        calls = len(self.probe.calls)
        assert wait_until(lambda: len(self.probe.latched()) == calls, timeout), (
            f"{len(self.probe.latched())} of {calls} calls answered\n{self.bridge.log()}"
        )
        return max(c.latched_ns for c in self.probe.calls if c.latched_ns is not None) / 1e9

    def placement(self) -> dict[int, dict[str, Any]]:
        """The bridge's view of each call, by probe call index (matched by the call's RTP peer)."""
        index = {f"127.0.0.1:{port}": i for i, port in enumerate(self.probe.ports)}
        listed = self.bridge.calls()
        peers = [((c["rtp"] or {}).get("remote"), c) for c in listed]
        views = {index[peer]: call for peer, call in peers if peer in index}
        assert len(views) == len(self.probe.calls), listed
        return views

    def finish(self) -> sipp.SippResult:
        """Wait for sipp, then stop the probe."""
        try:
            return self.sipp.result(timeout=120)
        finally:
            self.close()

    def close(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)
        self.probe.close()


def _workers(bridge: BridgeProcess) -> list[dict[str, Any]]:
    return http_json("GET", f"{bridge.api}/health")[1]["workers"]


def _on_worker(views: dict[int, dict[str, Any]], worker: int) -> list[int]:
    return sorted(i for i, view in views.items() if view["worker"] == worker)


def _by_call(result: sipp.SippResult) -> dict[str, list[Traced]]:
    messages: dict[str, list[Traced]] = collections.defaultdict(list)
    for message in traced(result):
        messages[message.header("Call-ID") or ""].append(message)
    return messages


def _bye_from_bridge(messages: list[Traced]) -> Traced | None:
    return next((m for m in messages if not m.sent and m.is_request and m.method == "BYE"), None)


def _hung_up_by_sipp(messages: list[Traced]) -> bool:
    """sipp sent the BYE and got its 200; the bridge sent none."""
    sent = any(m.sent and m.is_request and m.method == "BYE" for m in messages)
    answered = any(not m.sent and m.status == 200 and m.method == "BYE" for m in messages)
    return sent and answered and _bye_from_bridge(messages) is None


def _echo(
    calls: ProbedCalls, voice: tuple[speech.Speech, Reference], index: int, window: tuple[float, float]
) -> echo.CallEcho:
    """What came back of the checkable frames call `index` sent within `window` (time.time())."""
    made, ref = voice
    window_ns = (int(window[0] * 1e9), int(window[1] * 1e9))
    return echo.analyse_call(calls.probe.calls[index], made, ref, window_ns)


def _wait_replaced(bridge: BridgeProcess, index: int, old_pid: int, restarts: int) -> dict[str, Any]:
    def replaced() -> dict[str, Any] | None:
        worker = _workers(bridge)[index]
        up = worker["state"] == "up" and worker["pid"] not in (None, old_pid)
        return worker if up and worker["restarts"] == restarts else None

    worker = wait_until(replaced, 30)
    assert worker, f"worker {index} was not replaced: {_workers(bridge)}\n{bridge.log()}"
    return worker


def _cut_points(view: dict[str, Any]) -> int:
    """Where the bridge moved the agent's audio in time on purpose (media/pipeline.py AgentToPhone:
    a backlog standing for a second dropped, or a tick with no agent audio yet, filled with silence):
    the relay agent's own timing on a loaded machine, not a loss. The echo analysis may miss the
    two frames either side of each such cut."""
    agent = view["agent"] or {}
    return agent.get("playout_dropped_ms", 0) // 20 + agent.get("playout_underruns", 0)


def test_a_killed_worker_takes_only_its_own_calls_and_a_new_one_takes_the_next(
    bridge: BridgeProcess, voice: tuple[speech.Speech, Reference], tmp_path: Path
) -> None:
    calls = ProbedCalls(bridge, voice[0], CALLS, HOLD_S, tmp_path)
    try:
        up = calls.all_up()
        on = {w: _on_worker(calls.placement(), w) for w in (0, 1)}
        assert all(8 <= len(on[w]) <= 12 for w in (0, 1)), {w: len(on[w]) for w in on}
        time.sleep(max(0.0, up + 3.0 - time.time()))  # 2.5 s of audio on every call before the kill

        views = calls.placement()  # the calls' figures up to the kill
        old = _workers(bridge)[0]
        killed_at = time.time()
        os.kill(old["pid"], signal.SIGKILL)

        fresh = _wait_replaced(bridge, 0, old["pid"], restarts=old["restarts"] + 1)
        assert len([c for c in bridge.calls() if c["worker"] == 1]) == len(on[1]), (
            "the new worker came up after the other worker's calls ended: no test of where the next goes"
        )
        next_call = in_background(
            lambda: sipp.run_scenario(
                "uac_pcmu_call", bridge.sip_target, hold_ms=3000, keys={"caller": "next"},
                workdir=tmp_path / "next",
            )
        )  # fmt: skip
        assert wait_until(lambda: [c for c in bridge.calls() if c["from"] == "next"], 15), bridge.log()
        (placed,) = [c for c in bridge.calls() if c["from"] == "next"]
        next_call.result(30).assert_success(calls=1)
        result = calls.finish()
    finally:
        calls.close()

    assert placed["worker"] == 0, (placed, fresh)  # the new worker, with the fewest calls
    result.assert_success(calls=CALLS)
    messages = _by_call(result)
    sip_id = {i: view["sip_call_id"] for i, view in views.items()}

    # the killed worker's calls: the bridge's BYE, with the Reason, within 2 s of the kill
    for i in on[0]:
        bye = _bye_from_bridge(messages[sip_id[i]])
        assert bye is not None, f"call {i} on the killed worker got no BYE"
        assert FAILED in (bye.header("Reason") or ""), bye.text
        assert -0.1 < bye.at - killed_at < BYE_WITHIN_S, (i, bye.at - killed_at)
        status, view = bridge.call(views[i]["id"])
        assert status == 200 and view["end_reason"] == "media worker failed", view

    # before the kill, every call's audio came back: all of it, but at the agent audio's cut points
    for i in range(CALLS):
        heard = _echo(calls, voice, i, (up + 0.5, killed_at - 0.5))
        missed = heard.checked - heard.returned
        assert heard.checked > 20 and missed <= 2 * _cut_points(views[i]), (i, views[i], heard)

    # the other worker's calls, from before the kill until sipp hung up: no frame lost either way
    hung_up = min(m.at for i in on[1] for m in messages[sip_id[i]] if m.sent and m.method == "BYE")
    for i in on[1]:
        assert _hung_up_by_sipp(messages[sip_id[i]]), f"call {i} on the surviving worker did not end normally"
        status, view = bridge.call(views[i]["id"])
        assert status == 200 and view["end_reason"] == "caller hung up", view
        jitter = view["rtp"]["jitter_buffer"]  # the caller's audio, at the bridge
        unsent = calls.probe.calls[i].skipped  # frames the probe itself never sent (a late loop)
        assert jitter["lost"] <= unsent and jitter["late"] == 0 and jitter["concealed"] <= unsent, jitter
        heard = _echo(calls, voice, i, (killed_at - 1.0, hung_up - 1.5))
        assert heard.missing_packets == 0, (i, heard)  # the bridge sent every 20 ms frame back
        missed = heard.checked - heard.returned
        assert heard.checked > 100 and missed <= 2 * _cut_points(view), (i, view, heard)


def test_a_stopped_worker_is_found_stalled_and_its_calls_end(
    bridge: BridgeProcess, voice: tuple[speech.Speech, Reference], tmp_path: Path
) -> None:
    calls = ProbedCalls(bridge, voice[0], 4, 8.0, tmp_path)
    try:
        calls.all_up()
        views = calls.placement()
        on = {w: _on_worker(views, w) for w in (0, 1)}
        assert [len(on[0]), len(on[1])] == [2, 2], views
        stopped = _workers(bridge)[1]
        stopped_at = time.time()
        os.kill(stopped["pid"], signal.SIGSTOP)
        try:
            time.sleep(3.0)
        finally:
            with contextlib.suppress(ProcessLookupError):  # replaced by then: killed, maybe reaped
                os.kill(stopped["pid"], signal.SIGCONT)
        _wait_replaced(bridge, 1, stopped["pid"], restarts=stopped["restarts"] + 1)
        result = calls.finish()
    finally:
        calls.close()

    result.assert_success(calls=4)
    messages = _by_call(result)
    for i in on[1]:
        bye = _bye_from_bridge(messages[views[i]["sip_call_id"]])
        assert bye is not None and FAILED in (bye.header("Reason") or ""), f"call {i}: {bye}"
        assert bye.at - stopped_at < STALL_BYE_WITHIN_S, (i, bye.at - stopped_at)
    for i in on[0]:
        assert _hung_up_by_sipp(messages[views[i]["sip_call_id"]]), f"call {i} did not end normally"
    assert "stalled" in bridge.proc.stderr(), "the bridge did not log the worker as stalled"
