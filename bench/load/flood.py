"""``python -m bench.load.flood``: running calls under an INVITE flood from one hostile host (issue 7).

The bridge runs as deployed on the open internet: a trunk (``inbound_cidrs = 127.0.0.1/32``, where
sipp and the RTP probe call from, as every benchmark level has it) and default settings. N calls
are set up with speech both ways (the load benchmark's harness: sipp signalling, the RTP probe, the
relay agent in its own process);
then, for the steady window, ``testbed/flood.py`` sends INVITEs from 127.0.0.2 at the given rate,
each a new call attempt. Measured over exactly the flood's duration: the loss of the running calls'
speech (frames that did not come back through bridge, agent and bridge again), their round trip,
the bridge's CPU, and what the flooder got back. Runs: the calls alone, the flood against the
default rate limit, and (``--without-limit``) the flood with ``sip_rate_limit = 0``, where every
INVITE is parsed and refused with 403.

Writes ``bench/RESULTS.md``'s section "Flood" (``--no-write-results``: only the JSON in the run folder).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..common import DEFAULT_OUT, RESULTS_MD, replace_section
from . import speech
from .cli import check_tools, code_state, machine, wait_quiet
from .plan import AttackPlan, FloodPlan, LevelPlan
from .reference import reference
from .run import run_level

SECTION = "## Flood"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.load.flood", description=__doc__.split("\n")[0])
    p.add_argument("--calls", type=int, default=20, help="calls up during the flood (default 20)")
    p.add_argument("--rate", type=float, default=5000.0, help="INVITEs per second (default 5000)")
    p.add_argument("--seconds", type=float, default=10.0, help="length of the flood (default 10)")
    p.add_argument("--without-limit", action="store_true", help="also run with sip_rate_limit = 0")
    p.add_argument("--no-baseline", action="store_true", help="skip the run without a flood")
    p.add_argument("--out", type=Path, help="run folder (default bench/out/flood-<time>)")
    p.add_argument("--no-write-results", action="store_true", help="do not touch RESULTS.md")
    return p


def runs(args: argparse.Namespace) -> list[Run]:
    flood = FloodPlan(args.rate, args.seconds)
    chosen = [] if args.no_baseline else [("no flood", None, {})]
    chosen.append(("flood, default rate limit", flood, {}))
    if args.without_limit:
        chosen.append(("flood, rate limit off", flood, {"SIPBRIDGE_SIP_RATE_LIMIT": "0"}))
    return chosen


def run(args: argparse.Namespace) -> dict[str, Any]:
    folder = run_folder("flood", args.out)
    hold = args.seconds + args.calls / 20.0 + 8.0  # ramp-up, settle, the flood, the end margin
    return measure("flood", folder, args.calls, hold, runs(args), summary)


Run = tuple[str, FloodPlan | AttackPlan | None, dict[str, str]]


def run_folder(kind: str, out: Path | None) -> Path:
    """Where a hostile-traffic benchmark writes (bench/out/KIND-<time> by default), made."""
    check_tools()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    folder = (out or DEFAULT_OUT / f"{kind}-{stamp}").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def measure(
    kind: str,
    folder: Path,
    calls: int,
    hold: float,
    chosen: list[Run],
    summarise: Callable[[dict[str, Any]], dict[str, Any]],
) -> dict[str, Any]:
    """Each run of ``chosen`` (name, adversary or None, bridge environment) as one level of ``calls``
    calls held ``hold`` s, summarised; written to KIND-results.json after each run."""
    voice = speech.make(folder)
    ref = reference(voice)
    results: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": shlex.join(["python", "-m", f"bench.load.{kind}", *sys.argv[1:]]),
        "code": code_state(),
        "machine": machine(),
        "runs": [],
    }
    for index, (name, adversary, env) in enumerate(chosen):
        wait_quiet(20)
        print(f"bench.load.{kind}: {name} ...", flush=True)
        plan = LevelPlan(
            calls, hold, 20.0, folder / f"run-{index}", flood=adversary, bridge_env=tuple(env.items())
        )
        results["runs"].append({"name": name, **summarise(run_level(plan, voice, ref))})
        (folder / f"{kind}-results.json").write_text(json.dumps(results, indent=2, default=str))
    return results


def summary(record: dict[str, Any]) -> dict[str, Any]:
    if "error" in record:
        return {"error": record["error"]}
    media, cpu, calls = record["media"], record["cpu"], record["calls"]
    return {
        "window_s": round(record["window"]["seconds"], 1),
        "calls_live": record["window"]["calls_live"],
        "calls_failed": calls.get("failed"),
        "frames_checked": media.get("frames_checked"),
        "loss_pct": media.get("loss_pct"),
        "loss_pct_worst_call": media.get("loss_pct_worst_call"),
        "rtt_ms_p50": media.get("rtt_ms_p50"),
        "rtt_ms_p99": media.get("rtt_ms_p99"),
        "bridge_cpu_pct": cpu["process_pct"].get("bridge"),
        "machine_busy_pct": cpu.get("machine_busy_pct"),
        "flood": record.get("flood"),
        "notes": record["notes"],
    }


def markdown(results: dict[str, Any]) -> str:
    lines = [
        SECTION,
        "",
        f"Written by `{results['command']}` ({results['date']}, {results['code']}; "
        "see `bench/load/flood.py`). "
        "Calls from a trunk address with speech both ways through the relay agent; INVITEs from "
        "127.0.0.2 (an unknown source) for the window. Loss counts the calls' speech frames that did "
        "not come back, over the window only.",
        "",
        "| run | window s | calls | speech frames checked | loss % (worst call) | round trip p50/p99 ms "
        "| bridge CPU % of a core | INVITEs sent (per s) | answers to the flooder |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in results["runs"]:
        lines.append(_row(entry))
    return "\n".join(lines) + "\n"


def _row(entry: dict[str, Any]) -> str:
    if "error" in entry:
        return f"| {entry['name']} | failed: {entry['error']} ||||||||"
    flood = entry.get("flood") or {}
    sent = f"{flood['sent']} ({flood['rate_sent']:g})" if flood else "-"
    answers = ", ".join(f"{n}× {code}" for code, n in flood.get("replies", {}).items()) or "-"
    return (
        f"| {entry['name']} | {entry['window_s']} | {entry['calls_live']} | {entry['frames_checked']} "
        f"| {num(entry['loss_pct'], 3)} ({num(entry['loss_pct_worst_call'], 2)}) "
        f"| {num(entry['rtt_ms_p50'])} / {num(entry['rtt_ms_p99'])} | {num(entry['bridge_cpu_pct'])} "
        f"| {sent} | {answers} |"
    )


def num(value: float | None, digits: int = 1) -> str:
    """A figure for a table cell: ``?`` when it was not measured."""
    return "?" if value is None else f"{value:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    results = run(args)
    print(markdown(results))
    if not args.no_write_results:
        replace_section(RESULTS_MD, SECTION, markdown(results))
    return 0 if all("error" not in r for r in results["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
