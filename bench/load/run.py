"""Run the levels one after the other and turn what each measured into its result record."""

from __future__ import annotations

import asyncio
import csv
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from testbed import sipp

from . import echo, floor, procstat
from .level import LiveLevel, Measured, start_processes, warm_up
from .plan import LevelPlan
from .reference import Reference
from .speech import Speech

# A level is machine-bound when the cores were this busy, and a process's main thread (its asyncio
# loop, which holds the GIL) is saturated when it used this much of one core.
MACHINE_BOUND_PCT = 90.0
THREAD_SATURATED_PCT = 90.0
# More busy CPU than this (% of one core) outside the four processes means something else ran.
UNATTRIBUTED_WARN_PCT = 25.0
# A stage that passes on less than this share of what it got is not keeping up.
KEEP_UP_SHARE = 0.95
# A change of the machine's speed over a level beyond this (%) is noted.
SPEED_DRIFT_WARN_PCT = 10.0
# Above this loss the bridge did not do all the work, so its CPU per call is not its cost per call.
STARVED_LOSS_PCT = 1.0


def run_level(
    plan: LevelPlan, speech: Speech, ref: Reference, payloads: list[bytes] | None = None
) -> dict[str, Any]:
    """One level, start to finish: processes, calls, measurement, analysis, floor. `payloads`: the
    speech coded in the level's codec (bench.load.wire.encode_loop; the μ-law frames by default),
    `ref` its checkable frames in that codec."""
    plan.folder.mkdir(parents=True, exist_ok=True)
    speed_before = floor.speed_check(speech)
    with ExitStack() as stack:
        agent, bridge = start_processes(plan, stack)
        warm_up(bridge, plan.folder)
        live = LiveLevel(plan, agent, bridge, speech, payloads)
        stack.callback(live.probe.close)
        measured = asyncio.run(live.run())
        measured.memory["peak_rss_kib"] = procstat.memory_kib(live.pids["bridge"])["VmHWM"]  # the tree
    record = _record(plan, measured, live, speech, ref, payloads)
    record["machine_speed"] = _speed(speed_before, floor.speed_check(speech), record["notes"])
    return record


def _record(
    plan: LevelPlan,
    measured: Measured,
    live: LiveLevel,
    speech: Speech,
    ref: Reference,
    payloads: list[bytes] | None,
) -> dict[str, Any]:
    window_s = measured.usage["seconds"]
    call_seconds = measured.calls_live * window_s
    media = _media(live, speech, measured, ref)
    floor_result = _floor(plan, measured.calls_live, window_s, speech, payloads)
    cpu = _cpu(measured.usage, measured.calls_live)
    cpu["idle_pct"] = measured.idle_pct  # before any call: the fixed part of the CPU per call
    per_second = [s["cpu_pct"]["bridge"] for s in measured.samples if "bridge" in s["cpu_pct"]]
    cpu["bridge_pct_per_second_min_max"] = [min(per_second), max(per_second)] if per_second else None
    lags = [s["loop_lag_s"] for s in measured.samples if s.get("loop_lag_s") is not None]
    cpu["bridge_loop_lag_ms_max"] = round(max(lags) * 1000, 1) if lags else None
    sent = sum(1 for c in live.probe.calls for t in c.sent_ns if t <= measured.window_ns[1])
    counters = _bridge_counters(measured.bridge_calls, sent)
    bound = _bound(measured.usage, counters)
    workers = _workers(plan, live.workers_at_start, measured)
    cpu["bridge_other_pct"] = _tree_rest(cpu, workers)
    if cpu["unattributed_pct"] > UNATTRIBUTED_WARN_PCT:
        measured.notes.append(
            f"{cpu['unattributed_pct']:.0f} % of a core was busy outside bridge, agent, probe and sipp: "
            "other work on the machine makes this level's numbers less reliable"
        )
    record = {
        "concurrency": plan.calls,
        "codec": plan.codec.name,
        "srtp": plan.srtp,
        "plan": {"hold_s": plan.hold_s, "rate_cps": plan.rate},
        "calls": _calls(measured.sipp, plan.calls),
        "setup_ms": _setup_times(measured.sipp),
        "window": {
            "seconds": window_s,
            "calls_live": measured.calls_live,
            "all_answered": measured.all_answered,
            "call_seconds": call_seconds,
        },
        "cpu": cpu,
        "workers": workers,
        "floor": floor_result,
        "ratio_bridge_to_floor": _ratio(cpu, floor_result),
        "memory": _memory(measured.memory, measured.calls_live),
        "media": media,
        "probe": _probe_health(live),
        "bound": bound,
        # CPU per call is the bridge's cost per call only if it got all the CPU it needed
        "cost_valid": not bound and (media["loss_pct"] or 0.0) <= STARVED_LOSS_PCT,
        "notes": measured.notes,
        "samples": measured.samples,
        "bridge_calls": counters,
        "logs": str(plan.folder),
    }
    if measured.flood is not None:
        record["flood"] = measured.flood
    return record


def _speed(before: float, after: float, notes: list[str]) -> dict[str, float]:
    """The same small transcoding job before and after the level: how steady the machine was."""
    drift = 100.0 * (after - before) / before if before > 0 else 0.0
    if abs(drift) > SPEED_DRIFT_WARN_PCT:
        notes.append(
            f"the same CPU work took {drift:+.0f} % CPU time after the level than before it: the machine's "
            "speed changed (VM or host), so compare this level's CPU figures with care"
        )
    return {"check_pct_per_call_before": before, "check_pct_per_call_after": after, "drift_pct": drift}


def _floor(
    plan: LevelPlan, calls: int, window_s: float, speech: Speech, payloads: list[bytes] | None
) -> dict[str, Any] | None:
    """The transcoding floor of the level's calls; none for a codec the bridge relays (Opus)."""
    if not calls or plan.codec.phone_codec is None:
        return None
    return floor.measure(calls, window_s, speech, plan.codec.phone_codec, payloads)


def _media(live: LiveLevel, speech: Speech, measured: Measured, ref: Reference) -> dict[str, Any]:
    codec = live.plan.codec
    results = [echo.analyse_call(c, speech, ref, measured.window_ns, codec) for c in live.probe.latched()]
    return echo.summarise(results, live.plan.calls, ref)


def _cpu(usage: dict[str, Any], calls: int) -> dict[str, Any]:
    pct: dict[str, float] = usage["process_pct"]
    bridge = pct.get("bridge")
    agent = pct.get("agent")
    control = pct.get("control")
    return {
        "bridge_pct": bridge,  # % of one core: the control process and its media workers, all threads
        "bridge_pct_per_call": bridge / calls if bridge is not None and calls else None,
        "control_pct": control,  # the control process alone (SIP, API, call registry)
        "control_pct_per_call": control / calls if control is not None and calls else None,
        "bridge_cpu_seconds": usage["cpu_seconds"].get("bridge"),
        "agent_pct": agent,
        "agent_pct_per_call": agent / calls if agent is not None and calls else None,
        "process_pct": pct,
        "main_thread_pct": usage["main_thread_pct"],
        "watched_total_pct": sum(v for k, v in pct.items() if not procstat.part_of_bridge(k)),
        "machine_busy_pct": usage["machine_busy_pct"],  # of all cores
        # busy CPU not charged to the four processes: kernel work outside their context (softirq
        # of loopback traffic) and anything else running on the machine, in % of one core
        "unattributed_pct": usage["machine_busy_pct"] * procstat.cpu_count()
        - sum(v for k, v in pct.items() if not procstat.part_of_bridge(k)),
        "cores": procstat.cpu_count(),
    }


def _workers(plan: LevelPlan, at_start: list[dict[str, Any]], measured: Measured) -> dict[str, Any]:
    """Each media worker over the window: its calls and loop lag (sampled from /health each second)
    and its CPU (its own /proc counters: all its threads, and its main thread, the asyncio loop)."""
    pct, loop = measured.usage["process_pct"], measured.usage["main_thread_pct"]
    tree = pct.get("bridge") or 0.0
    listed = []
    for worker in at_start:
        name, index = f"worker{worker['index']}", worker["index"]
        seen = [w for s in measured.samples for w in s.get("workers") or [] if w["index"] == index]
        calls = [w["calls"] for w in seen if w["calls"] is not None]
        lags = [w["loop_lag_ms"] for w in seen if w["loop_lag_ms"] is not None]
        cpu = pct.get(name)
        if any(w["pid"] != worker["pid"] for w in seen):
            measured.notes.append(f"{name} (pid {worker['pid']}) was replaced during the window")
        listed.append({
            "index": index,
            "pid": worker["pid"],
            "calls": calls[-1] if calls else None,  # at the window's end
            "calls_max": max(calls) if calls else None,
            "loop_lag_ms_max": max(lags) if lags else None,
            "loop_lag_ms_median": float(np.median(lags)) if lags else None,
            "cpu_pct": cpu,  # % of one core, all its threads
            "loop_pct": loop.get(name),  # its main thread alone
            "cpu_share_pct": 100.0 * cpu / tree if cpu is not None and tree > 0 else None,  # of the tree's
            "cpu_pct_per_call": cpu / calls[-1] if cpu is not None and calls and calls[-1] else None,
        })  # fmt: skip
    return {"requested": plan.workers, "count": len(at_start), "list": listed}


def _tree_rest(cpu: dict[str, Any], workers: dict[str, Any]) -> float | None:
    """The tree's CPU outside the control process and the workers (multiprocessing's helper)."""
    if cpu["bridge_pct"] is None or cpu["control_pct"] is None:
        return None
    rest = cpu["bridge_pct"] - cpu["control_pct"] - sum(w["cpu_pct"] or 0.0 for w in workers["list"])
    return round(rest, 3)  # sums of the same ticks: no float noise


def _ratio(cpu: dict[str, Any], floor_result: dict[str, Any] | None) -> float | None:
    if not floor_result or cpu["bridge_pct_per_call"] is None or floor_result["pct_per_call"] <= 0:
        return None
    # both per call-second of the same calls (the floor: its median part, see bench/load/floor.py)
    return cpu["bridge_pct_per_call"] / floor_result["pct_per_call"]


def _memory(memory: dict[str, int], calls: int) -> dict[str, Any]:
    grown = memory["steady_rss_kib"] - memory["baseline_rss_kib"]
    return {**memory, "rss_per_call_kib": grown / calls if calls else None}


def _bound(usage: dict[str, Any], counters: dict[str, Any]) -> list[str]:
    """Who could not keep up: the machine (all cores busy), a process's main thread (a core), the
    bridge reading the phone side, or the agent echoing (from the bridge's counters)."""
    bound = []
    if usage["machine_busy_pct"] >= MACHINE_BOUND_PCT:
        bound.append("machine")
    for name, pct in usage["main_thread_pct"].items():
        if pct >= THREAD_SATURATED_PCT:
            bound.append(f"{name} loop")
    for share, label in (("bridge_rx_share", "bridge rx"), ("agent_echo_share", "agent")):
        if counters.get(share) is not None and counters[share] < KEEP_UP_SHARE:
            bound.append(f"{label} {100 * counters[share]:.0f} %")
    return bound


def _calls(result: sipp.SippResult | None, planned: int) -> dict[str, Any]:
    if result is None:
        return {"attempted": 0, "ok": 0, "failed": planned, "sipp_exit": None}
    attempted = int(result.stats.get("TotalCallCreated", "0") or 0) or result.successful + result.failed
    return {
        "attempted": attempted,
        "ok": result.successful,
        "failed": result.failed + max(0, planned - attempted),
        "failures": result.failures,
        "sip_retransmissions": int(result.stats.get("Retransmissions(C)", "0") or 0),
        "sipp_exit": result.returncode,
        "sipp_timed_out": result.timed_out,
    }


def _setup_times(result: sipp.SippResult | None) -> dict[str, Any]:
    """INVITE -> 200 OK per call, from sipp's -trace_rtt file (response time 1, in ms)."""
    values: list[float] = []
    if result is not None:
        for path in Path(result.workdir).glob("*_rtt.csv"):
            with path.open() as f:
                values += [float(row["response_time_ms"]) for row in csv.DictReader(f, delimiter=";")]
    if not values:
        return {"n": 0, "p50": None, "p99": None, "max": None}
    a = np.asarray(values)
    return {"n": len(a), "p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)),
            "max": float(a.max())}  # fmt: skip


def _probe_health(live: LiveLevel) -> dict[str, Any]:
    """Did the probe keep its own schedule? (a late probe is jitter the bridge had to absorb)"""
    late = [ns for c in live.probe.calls for ns in c.late_ns]
    lateness = np.asarray(late, dtype=np.float64) / 1e6 if late else np.zeros(1)
    return {
        "frames_sent": len(late),
        "frames_skipped": sum(c.skipped for c in live.probe.calls),
        "send_late_ms_p50": float(np.percentile(lateness, 50)),
        "send_late_ms_p99": float(np.percentile(lateness, 99)),
        "send_late_ms_max": float(lateness.max()),
        "packets_received": sum(len(c.recv_packets) for c in live.probe.calls),
    }


def _bridge_counters(calls: list[dict[str, Any]], probe_sent: int) -> dict[str, Any]:
    """The bridge's own view (GET /calls at the window's end), summed: a diagnostic, not a result.
    bridge_rx_share: RTP packets the bridge took in / frames the probe had sent by then;
    agent_echo_share: Opus frames back from the agent / frames the bridge sent it."""
    keys_rtp = ("packets_in", "packets_out", "invalid_in")
    keys_agent = ("packets_sent", "packets_dropped", "packets_received", "playout_dropped_ms")
    out: dict[str, Any] = {"calls": len(calls)}
    for key in keys_rtp:
        out[f"rtp_{key}"] = sum((c.get("rtp") or {}).get(key, 0) for c in calls)
    for key in keys_agent:
        out[f"agent_{key}"] = sum((c.get("agent") or {}).get(key, 0) for c in calls)
    buffered = [(c.get("agent") or {}).get("playout_buffered_ms", 0) for c in calls]
    out["playout_buffered_ms_max"] = max(buffered) if buffered else 0
    # Where delay builds up when the bridge is busy: the phone-side jitter buffer's target and the
    # wait allowed for the agent leg's jitter (medians over the calls)
    targets = [((c.get("rtp") or {}).get("jitter_buffer") or {}).get("target_ms", 0) for c in calls]
    waits = [(c.get("agent") or {}).get("playout_wait_ms", 0) for c in calls]
    out["jitter_target_ms_median"] = float(np.median(targets)) if targets else None
    out["playout_wait_ms_median"] = float(np.median(waits)) if waits else None
    out["probe_frames_sent"] = probe_sent
    out["bridge_rx_share"] = out["rtp_packets_in"] / probe_sent if calls and probe_sent else None
    sent = out["agent_packets_sent"]
    out["agent_echo_share"] = out["agent_packets_received"] / sent if calls and sent else None
    return out
