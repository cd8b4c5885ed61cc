"""One concurrency level: a fresh agent and bridge, N calls from sipp, media from the probe, measured.

Timeline (all times from the first call the bridge answered, t0):

    ramp-up: sipp starts calls at --rate; each is answered after its WHIP set-up
    steady window: from SETTLE_S after all N calls are answered (or after the ramp deadline) to
        END_MARGIN_S before the first call's BYE (t0 + hold): CPU is sampled at its two ends, RSS at
        its end, and only frames the probe sent inside it count for loss and round trip
    ramp-down: BYEs, then the probe stops and every process is stopped

The bridge and the agent are new processes for every level, so VmHWM is the peak of this level
alone; the baseline RSS is that of the idle bridge after one short warm-up call. Whatever happens
(an error, Ctrl-C), every process started here is stopped by its own id before this returns.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testbed import sipp
from testbed.bridge_proc import (
    AgentProcess,
    BridgeProcess,
    http_json,
    start_agent,
    start_bridge,
    trunk_config,
)

from ..common import SCENARIOS
from . import offer, procstat
from .plan import LevelPlan
from .probe import RtpProbe
from .speech import Speech

SCENARIO = SCENARIOS / "uac_bench.xml"
SETTLE_S = 1.0  # after the last call is answered, before the window opens
END_MARGIN_S = 2.0  # window closes this long before the first BYE, so late echoes still come back
MIN_WINDOW_S = 3.0
SAMPLE_EVERY_S = 1.0
# /metrics pulls every call's stats from the workers: the bridge's loop lag (the largest of its last
# 10 s) is read from it only this often, so the bench's own polling costs the control process little.
METRICS_EVERY_S = 5.0
SETUP_TIMEOUT_S = 20.0  # for the first call to be answered
IDLE_S = 2.0  # CPU of the idle processes is measured this long before the first call


@dataclass
class Measured:
    """What the live phase of a level measured; `window_ns` is CLOCK_REALTIME for the echo analysis."""

    window_ns: tuple[int, int]
    usage: dict[str, Any]
    memory: dict[str, int]
    calls_live: int
    all_answered: bool
    samples: list[dict[str, Any]]
    bridge_calls: list[dict[str, Any]]
    sipp: sipp.SippResult | None
    notes: list[str]
    idle_pct: dict[str, float] | None = None
    flood: dict[str, Any] | None = None


def start_processes(plan: LevelPlan, stack: ExitStack) -> tuple[AgentProcess, BridgeProcess]:
    """The reference agent (its own process) and the bridge, both stopped when `stack` closes."""
    logs = plan.folder / "logs"
    agent = start_agent(logs, mode=plan.agent_mode)
    stack.callback(agent.proc.stop)
    # The load comes from 127.0.0.1 as a carrier's calls would come from its edge: a configured
    # trunk, so the limits for strangers (sip_rate_limit, max_calls_per_source) do not apply to it.
    config = trunk_config(plan.folder, extra=plan.flood.config_extra if plan.flood is not None else "")
    bridge = start_bridge(
        logs,
        agent.whip_url,
        "--log-level",
        "warning",
        "--config",
        str(config),
        "--workers",
        "auto" if plan.workers is None else str(plan.workers),
        rtp_ports=2 * plan.calls + 32,
        env=dict(plan.bridge_env),
    )
    stack.callback(bridge.proc.stop)
    return agent, bridge


def warm_up(bridge: BridgeProcess, folder: Path) -> None:
    """One short call before the baseline is read: what the first call loads once (modules, codec
    and TLS state, allocator pools) is then in the baseline, not counted as memory per call."""
    result = sipp.run_scenario(
        "uac_pcmu_call",
        bridge.sip_target,
        hold_ms=1000,
        timeout=30,
        trace_messages=False,
        workdir=folder / "warm-up",
    )
    if not result.ok:
        raise RuntimeError(f"the warm-up call failed\n{result.report(20)}")
    time.sleep(0.5)  # let the call's teardown finish


def injection_file(probe: RtpProbe, folder: Path) -> Path:
    """sipp's -inf file: call i (SEQUENTIAL) puts the port of probe socket i in its SDP, and with
    SRTP the call's key."""
    path = folder / "probe_ports.csv"
    keys = [base64.b64encode(c.srtp_key).decode() if c.srtp_key else None for c in probe.calls]
    path.write_text(offer.injection_text(probe.ports, keys))
    return path


def scenario_file(plan: LevelPlan) -> Path:
    """uac_bench.xml with the level's offer (bench.load.offer: its codec, plain or SRTP)."""
    path = plan.folder / SCENARIO.name
    text = offer.scenario(SCENARIO.read_text(encoding="latin-1"), plan.codec, plan.srtp)
    path.write_text(text, encoding="latin-1")
    return path


def answer_log(plan: LevelPlan) -> Path:
    """Where sipp logs the key of each SRTP answer (bench.load.offer)."""
    return plan.folder / "sipp" / offer.ANSWER_LOG


def sipp_runner(plan: LevelPlan, bridge: BridgeProcess, inf: Path) -> Callable[[], sipp.SippResult]:
    timeout = plan.ramp_s + plan.hold_s + 60
    scenario = scenario_file(plan)
    logs = ["-trace_logs", "-log_file", str(answer_log(plan))] if plan.srtp else []

    def run() -> sipp.SippResult:
        return sipp.run_scenario(
            scenario,
            bridge.sip_target,
            calls=plan.calls,
            rate=plan.rate,
            limit=plan.calls,
            hold_ms=int(plan.hold_s * 1000),
            timeout=timeout,
            recv_timeout_ms=30_000,
            trace_messages=False,
            workdir=plan.folder / "sipp",
            extra_args=["-inf", str(inf), "-trace_rtt", "-rtt_freq", "1", *logs],
        )

    return run


def stop_sipp() -> None:
    """SIGTERM our sipp child's process group (it leads its own session), if it is still running."""
    pid = procstat.child_pid("sipp")
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)


class LiveLevel:
    """The live phase: drives the probe and sipp and samples /proc, in one asyncio loop."""

    def __init__(
        self,
        plan: LevelPlan,
        agent: AgentProcess,
        bridge: BridgeProcess,
        speech: Speech,
        payloads: list[bytes] | None = None,
    ) -> None:
        self.plan = plan
        self.agent = agent
        self.bridge = bridge
        self.probe = RtpProbe(plan.calls, speech, codec=plan.codec, payloads=payloads, srtp=plan.srtp)
        # The bridge is its whole process tree (the control process, its media workers and
        # multiprocessing's helper); the control process and each worker (named by /health's index)
        # alone too: one of their loops may saturate while the tree does not.
        self.workers_at_start = self._health().get("workers", [])
        self.pids: dict[str, int | tuple[int, ...]] = {
            "bridge": procstat.tree(bridge.proc.pid),
            "control": bridge.proc.pid,
            **{f"worker{w['index']}": w["pid"] for w in self.workers_at_start},
            "agent": agent.proc.pid,
            "probe": os.getpid(),
        }
        self.samples: list[dict[str, Any]] = []
        self.notes: list[str] = []

    async def run(self) -> Measured:
        stop = asyncio.Event()
        probe_task = asyncio.create_task(self.probe.run(stop))
        sipp_task: asyncio.Task | None = None
        try:
            idle = await self._idle()
            calls = sipp_runner(self.plan, self.bridge, injection_file(self.probe, self.plan.folder))
            sipp_task = asyncio.create_task(asyncio.to_thread(calls))
            measured = await self._measure(sipp_task)
            measured.idle_pct = idle
            measured.sipp = await self._finish(sipp_task)
            self._answer_keys()
            return measured
        finally:
            stop_sipp()
            stop.set()
            await asyncio.gather(probe_task, *([sipp_task] if sipp_task else []), return_exceptions=True)

    async def _idle(self) -> dict[str, float]:
        """CPU % of the processes with no call: the fixed cost the per-call figures include."""
        before = procstat.Snapshot.take(self.pids)
        await asyncio.sleep(IDLE_S)
        usage = procstat.usage_between(before, procstat.Snapshot.take(self.pids))
        return usage["process_pct"]

    async def _measure(self, sipp_task: asyncio.Task) -> Measured:
        memory: dict[str, int] = {"baseline_rss_kib": procstat.memory_kib(self.pids["bridge"])["VmRSS"]}
        t0 = await self._first_answer(sipp_task)
        all_answered = await self._all_answered(t0)
        await asyncio.sleep(SETTLE_S)
        window_end = t0 + self.plan.hold_s - END_MARGIN_S
        if window_end - time.monotonic() < MIN_WINDOW_S:
            raise RuntimeError(
                f"steady window under {MIN_WINDOW_S:g} s: the calls took too long to come up; "
                "raise --hold or --rate"
            )
        self._find_sipp()
        flood = self._start_flood()
        if self.plan.flood is not None:
            window_end = min(window_end, time.monotonic() + self.plan.flood.seconds)
        start, start_ns = procstat.Snapshot.take(self.pids), time.time_ns()
        calls_live = len(self.probe.latched())
        await self._sample_until(window_end)
        end, end_ns = procstat.Snapshot.take(self.pids), time.time_ns()
        flooded = await self._flood_result(flood)
        memory["steady_rss_kib"] = procstat.memory_kib(self.pids["bridge"])["VmRSS"]
        bridge_calls = await asyncio.to_thread(self._bridge_calls)
        usage = procstat.usage_between(start, end)
        return Measured(
            (start_ns, end_ns), usage, memory, calls_live, all_answered, self.samples, bridge_calls,
            None, self.notes, flood=flooded,
        )  # fmt: skip

    def _start_flood(self) -> subprocess.Popen | None:
        """The flooder in its own process (its sending must not share the probe's loop or GIL)."""
        plan = self.plan.flood
        if plan is None:
            return None
        argv = plan.command(self.bridge, self.plan.folder / "flood.json")
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.pids["flooder"] = proc.pid
        return proc

    async def _flood_result(self, proc: subprocess.Popen | None) -> dict[str, Any] | None:
        if proc is None:
            return None
        try:
            _, errors = await asyncio.to_thread(proc.communicate, timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise RuntimeError("the flooder did not finish") from None
        if proc.returncode != 0:
            raise RuntimeError(f"the flooder failed: {errors[-500:]}")
        result = json.loads((self.plan.folder / "flood.json").read_text())
        result["bridge_health"] = await asyncio.to_thread(self._health)
        return result

    def _health(self, timeout: float = 5.0) -> dict[str, Any]:
        return http_json("GET", f"{self.bridge.api}/health", timeout=timeout)[1]

    async def _first_answer(self, sipp_task: asyncio.Task) -> float:
        deadline = time.monotonic() + SETUP_TIMEOUT_S
        while not self.probe.latched():
            if sipp_task.done() or time.monotonic() > deadline:
                result = sipp_task.result() if sipp_task.done() else None
                detail = result.report(20) if result else "sipp still running"
                raise RuntimeError(f"no call was answered within {SETUP_TIMEOUT_S:g} s\n{detail}")
            await asyncio.sleep(0.05)
        first = min(c.latched_ns for c in self.probe.latched() if c.latched_ns is not None)
        return time.monotonic() - (time.time_ns() - first) / 1e9

    async def _all_answered(self, t0: float) -> bool:
        """Wait for every call to be answered, at most until half the hold time after the first."""
        deadline = t0 + max(self.plan.hold_s / 2, self.plan.ramp_s + 5)
        while len(self.probe.latched()) < self.plan.calls:
            if time.monotonic() > deadline:
                self.notes.append(
                    f"only {len(self.probe.latched())} of {self.plan.calls} calls were answered "
                    f"{deadline - t0:.1f} s after the first: the window covers those"
                )
                return False
            await asyncio.sleep(0.05)
        return True

    def _answer_keys(self) -> None:
        """SRTP: the key of each call's answer (logged by sipp), for the analysis to unprotect with."""
        if not self.plan.srtp:
            return
        keys = offer.read_answer_keys(answer_log(self.plan))
        for call in self.probe.calls:
            call.answer_key = keys.get(call.port)
        if missing := sum(1 for c in self.probe.latched() if c.answer_key is None):
            self.notes.append(f"{missing} answered call(s) without their answer's SRTP key in sipp's log")

    def _find_sipp(self) -> None:
        pid = procstat.child_pid("sipp")
        if pid is not None:
            self.pids["sipp"] = pid

    async def _sample_until(self, end: float) -> None:
        """Every SAMPLE_EVERY_S until `end`: CPU % per process over the last second, and RSS."""
        previous = procstat.Snapshot.take(self.pids)
        next_metrics = time.monotonic() + METRICS_EVERY_S
        while (left := end - time.monotonic()) > 0:
            await asyncio.sleep(min(SAMPLE_EVERY_S, left))
            now = procstat.Snapshot.take(self.pids)
            usage = procstat.usage_between(previous, now)
            rss = procstat.memory_kib(self.pids["bridge"]).get("VmRSS", 0)
            busy = usage["machine_busy_pct"]
            lag = None
            if time.monotonic() >= min(next_metrics, end):  # and at the end: the last seconds count too
                next_metrics = time.monotonic() + METRICS_EVERY_S
                lag = await asyncio.to_thread(self._loop_lag)
            workers = await asyncio.to_thread(self._workers)
            self.samples.append(
                {"cpu_pct": usage["process_pct"], "machine_busy_pct": busy, "rss_kib": rss, "loop_lag_s": lag,
                 "workers": workers}
            )  # fmt: skip
            previous = now

    def _workers(self) -> list[dict[str, Any]] | None:
        """Each media worker's pid, calls and loop lag (the largest of its last 10 s), from /health."""
        try:
            listed = self._health(timeout=2).get("workers", [])
        except (OSError, ValueError):
            return None
        keys = ("index", "pid", "calls", "loop_lag_ms", "state")
        return [{key: w.get(key) for key in keys} for w in listed]

    def _loop_lag(self) -> float | None:
        """The bridge's own figure: the largest event-loop lag of its last 10 s (GET /metrics)."""
        try:
            with urllib.request.urlopen(f"{self.bridge.api}/metrics", timeout=2) as response:
                text = response.read().decode()
        except OSError:
            return None
        match = re.search(r"^sipbridge_event_loop_lag_seconds ([0-9.e+-]+)$", text, re.MULTILINE)
        return float(match.group(1)) if match else None

    def _bridge_calls(self) -> list[dict[str, Any]]:
        try:
            return self.bridge.calls()
        except OSError as exc:
            self.notes.append(f"GET /calls failed: {exc}")
            return []

    async def _finish(self, sipp_task: asyncio.Task) -> sipp.SippResult:
        """Let the calls end (BYE), then stop the probe shortly after."""
        try:
            async with asyncio.timeout(self.plan.ramp_s + self.plan.hold_s + 75):
                result = await asyncio.shield(sipp_task)
        except TimeoutError:
            stop_sipp()
            result = await sipp_task
            self.notes.append("sipp did not finish in time and was stopped")
        await asyncio.sleep(0.5)
        return result
