"""``python -m bench.load.project RESULTS.json``: calls per node on 4, 8, 16 and 32 cores, projected
from what a load benchmark measured (the calls a media worker carried within the loss bound, and the
control process's CPU per call-second) and assumptions printed beside the table.

calls per node = min(workers × calls per worker, what the control process can carry), with
workers = cores − the cores kept for the OS and for the control process (one worker per core), and
what the control process can carry = its CPU budget ÷ its CPU per active call.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .report import variant, with_codec
from .run import THREAD_SATURATED_PCT

CORES = (4, 8, 16, 32)


@dataclass(frozen=True)
class Measured:
    """What a run measured that the projection stands on."""

    calls_per_worker: float  # the most a worker carried at a level within the loss bound
    per_worker_level: str  # that level, e.g. "80 calls × 2 workers, loss 0.4 %"
    per_worker_reached: bool  # a level with more calls per worker went past the bound
    per_worker_bound: tuple[str, ...]  # who could not keep up at that level (run.py's "bound")
    control_pct_per_call: float  # the control process, % of one core per active call
    control_level: str
    worker_pct_per_call: float | None  # the workers' CPU per call at the per-worker level


@dataclass(frozen=True)
class Assumptions:
    loss_bound_pct: float = 1.0  # a level counts when its loss is at most this and no call failed
    reserve_cores: int = 1  # kept for the OS, the kernel's network work, anything else on the node
    control_cores: int = 1  # the control process: one event loop, so at most one core
    control_budget_pct: float = THREAD_SATURATED_PCT  # of its core, before its loop saturates


@dataclass(frozen=True)
class Projection:
    cores: int
    workers: int
    worker_bound: float  # workers × calls per worker
    control_bound: float  # control budget ÷ control CPU per call
    calls: int  # the smaller of the two, whole calls
    limit: str  # "workers" or "control"
    control_pct: float  # the control process's CPU at that many calls, % of one core


class NoMeasurement(ValueError):
    """The results hold no level the projection can stand on."""


def _level_name(level: dict[str, Any]) -> str:
    workers = level["workers"]["count"]
    loss = level["media"]["loss_pct"]
    calls = f"{level['concurrency']} calls{with_codec(level)}"
    return f"{calls} × {workers} worker{'s' if workers != 1 else ''}, loss {loss:.2f} %"


def one_variant(levels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The levels of one codec and SRTP setting (a run with --codecs or --srtp has several, whose
    calls per worker differ): plain PCMU when the run has it, else the first level's."""
    kinds = [variant(level) for level in levels]
    chosen = "PCMU" if "PCMU" in kinds else (kinds[0] if kinds else "PCMU")
    return [level for level, kind in zip(levels, kinds, strict=True) if kind == chosen]


def _workers(level: dict[str, Any]) -> int | None:
    """The workers the level ran with: as /health listed them, else as asked (a level that failed)."""
    workers = level.get("workers") or {}
    return workers.get("count") or workers.get("requested")


def _within(level: dict[str, Any], loss_bound: float) -> bool:
    """Measured cleanly enough to stand on: no error, no failed call, loss within the bound."""
    if "error" in level or not _workers(level) or not level["window"]["calls_live"]:
        return False
    loss = level["media"]["loss_pct"]
    return loss is not None and loss <= loss_bound and level["calls"]["failed"] == 0


def _per_worker(level: dict[str, Any]) -> float:
    """Calls per worker: the level's live calls (planned calls for a level that failed) shared over
    its workers, as placement shares them; 0 when its worker count is unknown."""
    workers = _workers(level)
    if not workers:
        return 0.0
    calls = level["concurrency"] if "error" in level else level["window"]["calls_live"]
    return calls / workers


def measured_from(results: dict[str, Any], loss_bound: float) -> Measured:
    levels = one_variant(results["levels"])
    good = [level for level in levels if _within(level, loss_bound)]
    if not good:
        raise NoMeasurement(
            f"no level had at most {loss_bound:g} % loss, no failed call and a known worker count"
        )
    best = max(good, key=_per_worker)
    reached = any(not _within(lv, loss_bound) and _per_worker(lv) > _per_worker(best) for lv in levels)
    costed = [lv for lv in good if lv["cpu"].get("control_pct_per_call") is not None]
    if not costed:
        raise NoMeasurement("no level within the bound measured the control process's CPU")
    steady = max(costed, key=lambda lv: lv["window"]["calls_live"])  # its fixed cost spread the most
    worker_cpu = [w["cpu_pct"] for w in best["workers"]["list"] if w.get("cpu_pct") is not None]
    return Measured(
        calls_per_worker=_per_worker(best),
        per_worker_level=_level_name(best),
        per_worker_reached=reached,
        per_worker_bound=tuple(best.get("bound") or ()),
        control_pct_per_call=steady["cpu"]["control_pct_per_call"],
        control_level=_level_name(steady),
        worker_pct_per_call=sum(worker_cpu) / best["window"]["calls_live"] if worker_cpu else None,
    )


def project(cores: int, measured: Measured, assume: Assumptions) -> Projection:
    workers = max(0, cores - assume.reserve_cores - assume.control_cores)
    worker_bound = workers * measured.calls_per_worker
    cost = measured.control_pct_per_call
    control_bound = assume.control_budget_pct / cost if cost > 0 else math.inf
    calls = math.floor(min(worker_bound, control_bound))
    return Projection(
        cores=cores,
        workers=workers,
        worker_bound=worker_bound,
        control_bound=control_bound,
        calls=calls,
        limit="workers" if worker_bound <= control_bound else "control",
        control_pct=calls * measured.control_pct_per_call,
    )


def _measured_lines(m: Measured, assume: Assumptions, meta: dict[str, Any]) -> list[str]:
    at_least = (
        "a level with more calls per worker went past the bound"
        if m.per_worker_reached
        else "no level with more calls per worker went past the bound, so a worker carries at least this many"
    )
    if m.per_worker_bound:
        at_least += f"; bound there: {', '.join(m.per_worker_bound)}"
    lines = [
        f"Measured (run of {meta.get('date', '?')}, {meta.get('code', '?')}, "
        f"{meta.get('machine', {}).get('cores', '?')} cores shared with the load generator and the agent):",
        "",
        f"- calls per worker within {assume.loss_bound_pct:g} % loss: {m.calls_per_worker:.1f} "
        f"(at {m.per_worker_level}; {at_least})",
        f"- control process CPU per active call: {m.control_pct_per_call:.4f} % of a core "
        f"(at {m.control_level})",
    ]
    if m.worker_pct_per_call is not None:
        lines.append(f"- media workers' CPU per call: {m.worker_pct_per_call:.2f} % of a core (same level)")
    return lines


def _assumption_lines(m: Measured, assume: Assumptions) -> list[str]:
    lines = [
        "Assumptions (not measured):",
        "",
        f"- one media worker per core; {assume.reserve_cores} core(s) kept for the OS, the kernel's "
        "network work (loopback here, NICs there) and anything else on the node; the agent runs elsewhere",
        f"- the control process has {assume.control_cores} core(s) of its own (one event loop: it uses at "
        f"most one) and carries calls up to {assume.control_budget_pct:g} % of it, at its measured CPU per "
        "call-second; call set-up and tear-down are outside the steady window, so not in that figure",
        "- a worker carries on its own core what it carried here within the loss bound; here it shared "
        "the machine with the load generator and the agent, so where the machine was the bound this "
        "understates it",
        "- calls like the bench's: G.711 to the phone, Opus to the agent, 20 ms frames, speech both ways",
    ]
    cpu_only = calls_by_cpu(m)
    if cpu_only is not None:
        lines.append(
            f"- for comparison, from CPU alone (projected): a worker's loop at {THREAD_SATURATED_PCT:g} % of "
            f"its core would carry {cpu_only:.0f} calls at the measured {m.worker_pct_per_call:.2f} % per "
            "call; the table uses the calls measured within the loss bound instead"
        )
    return lines


def calls_by_cpu(m: Measured) -> float | None:
    """Calls one worker's core would carry if CPU were its only limit (up to the saturated-loop mark)."""
    return THREAD_SATURATED_PCT / m.worker_pct_per_call if m.worker_pct_per_call else None


def report(results: dict[str, Any], assume: Assumptions, cores: tuple[int, ...] = CORES) -> str:
    m = measured_from(results, assume.loss_bound_pct)
    header = (
        "| cores | workers (projected) | workers × calls per worker | control process can carry "
        "| calls per node (projected) | limited by | control CPU at that load, % of a core |"
    )
    rows = [
        f"| {p.cores} | {p.workers} | {p.worker_bound:.0f} | {p.control_bound:.0f} | {p.calls} | {p.limit} "
        f"| {p.control_pct:.1f} |"
        for p in (project(n, m, assume) for n in cores)
    ]
    return "\n".join(
        [
            *_measured_lines(m, assume, results.get("meta", {})),
            "",
            *_assumption_lines(m, assume),
            "",
            "Projected calls per node:",
            "",
            header,
            "|" + "---|" * 7,
            *rows,
        ]
    )


def parser() -> argparse.ArgumentParser:
    d = Assumptions()
    p = argparse.ArgumentParser(prog="python -m bench.load.project", description=__doc__.split("\n\n")[0])
    p.add_argument("results", type=Path, help="a results.json of python -m bench (bench/out/<time>/)")
    p.add_argument("--cores", default=",".join(map(str, CORES)), help="core counts (default 4,8,16,32)")
    p.add_argument(
        "--loss-bound",
        type=float,
        default=d.loss_bound_pct,
        metavar="PCT",
        help=f"a level counts with at most this loss (default {d.loss_bound_pct:g})",
    )
    p.add_argument(
        "--reserve-cores",
        type=int,
        default=d.reserve_cores,
        help=f"cores kept for the OS and the rest (default {d.reserve_cores})",
    )
    p.add_argument(
        "--control-cores",
        type=int,
        default=d.control_cores,
        help=f"cores kept for the control process (default {d.control_cores})",
    )
    p.add_argument(
        "--control-budget",
        type=float,
        default=d.control_budget_pct,
        metavar="PCT",
        help=f"of its core the control process may use (default {d.control_budget_pct:g})",
    )
    return p  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    assume = Assumptions(args.loss_bound, args.reserve_cores, args.control_cores, args.control_budget)
    cores = tuple(int(v) for v in args.cores.split(",") if v.strip())
    try:
        print(report(json.loads(args.results.read_text()), assume, cores))
    except NoMeasurement as exc:
        print(f"no projection: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
