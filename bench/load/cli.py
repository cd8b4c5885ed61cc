"""``python -m bench``: the load benchmark of the bridge (``make bench``). See bench/README.md."""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import sipbridge
from testbed import audio, sipp

from ..common import DEFAULT_OUT, REPO
from . import procstat, report, speech
from .plan import LevelPlan, level_name
from .reference import Reference, reference
from .run import run_level
from .wire import WireCodec, codecs_from, encode_loop

QUIET_PCT = 10.0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument(
        "--calls",
        default="10,50,100",
        metavar="N[,N...]",
        help="concurrency levels, run in this order (default 10,50,100)",
    )
    p.add_argument(
        "--workers",
        metavar="N[,N...]",
        help="run every level with the bridge started with each of these --workers counts in turn "
        "(default: the bridge's own default, auto = one per CPU; the count it used is recorded)",
    )
    p.add_argument(
        "--codecs",
        default="PCMU",
        metavar="CODEC[,CODEC...]",
        help="run every level with the calls in each of these codecs in turn: PCMU, G722, OPUS "
        "(offered alone; OPUS is relayed to the agent untranscoded; default PCMU)",
    )
    p.add_argument(
        "--srtp",
        default="off",
        metavar="off|on[,...]",
        help="run every level plain (off) and/or with SRTP (on: RTP/SAVP, SDES AES_CM_128_HMAC_SHA1_80), "
        "e.g. off,on (default off)",
    )
    p.add_argument(
        "--hold",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long each call lasts once answered (sipp -d; default 30)",
    )
    p.add_argument(
        "--rate",
        type=float,
        default=20.0,
        metavar="CPS",
        help="new calls per second during the ramp-up (sipp -r; default 20)",
    )
    p.add_argument(
        "--stop-loss",
        type=float,
        default=5.0,
        metavar="PCT",
        help="skip the higher levels once loss or failed calls pass this %% (default 5)",
    )
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="before each level, wait up to this long for the machine to be idle (default 30)",
    )
    p.add_argument(
        "--agent-mode",
        choices=["relay", "echo"],
        default="relay",
        help="reference agent: relay sends the caller's Opus packets back untouched (default: the bridge "
        "is what gets loaded), echo decodes and re-encodes like a real agent (costs more than the bridge)",
    )
    p.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="folder for results.json, chart.png and logs (default bench/out/<timestamp>)",
    )
    p.add_argument(
        "--no-write-results",
        action="store_true",
        help="leave bench/RESULTS.md as it is (smoke tests, trial runs)",
    )
    return p  # fmt: skip


def levels_from(text: str, option: str = "--calls") -> list[int]:
    try:
        levels = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        levels = []
    if not levels or min(levels) < 1:
        raise SystemExit(f"{option}: give one or more positive numbers, e.g. 10,50,100")
    return levels


def workers_from(text: str | None) -> list[int | None]:
    """The worker counts to run each level with; [None]: the bridge's own default."""
    return [None] if text is None else list(levels_from(text, "--workers"))


def srtp_from(text: str) -> list[bool]:
    """``--srtp off,on``: plain and/or SRTP, in the order given."""
    words = [w.strip().lower() for w in text.split(",") if w.strip()]
    if not words or any(w not in ("off", "on") for w in words):
        raise SystemExit("--srtp: give off, on or both (off,on)")
    return [w == "on" for w in dict.fromkeys(words)]


def plans(args: argparse.Namespace, folder: Path) -> list[LevelPlan]:
    """Every level with every codec, worker count and SRTP setting; what is compared runs back to
    back (the machine's speed drifts over minutes): the worker counts of one level and codec, and
    innermost plain and SRTP, whose difference is SRTP's cost."""
    return [
        LevelPlan(
            calls,
            args.hold,
            args.rate,
            folder / level_name(calls, n, codec.name, srtp),
            args.agent_mode,
            workers=n,
            codec=codec,
            srtp=srtp,
        )
        for calls in levels_from(args.calls)
        for codec in codecs_from(args.codecs)
        for n in workers_from(args.workers)
        for srtp in srtp_from(args.srtp)
    ]


def code_state() -> str:
    """Which sipbridge is measured: the commit of the checkout it is imported from, whether its src/
    differs from that commit, and the checkout's path when it is not this one."""
    root = Path(sipbridge.__file__).resolve().parent.parent.parent  # <root>/src/sipbridge/__init__.py

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
        return done.stdout.strip() if done.returncode == 0 else ""

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", "src")
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", ""
    where = "" if root == REPO else f" (checkout at {root})"
    if not commit:
        return f"sipbridge from {root / 'src'}, not a git checkout"
    return f"commit {commit}" + (" + uncommitted changes in src/" if dirty else "") + where


def busy_pct(seconds: float = 1.0) -> float:
    """How busy all cores were over the next `seconds` (% of all cores)."""
    before = procstat.Snapshot.take({})
    time.sleep(seconds)
    return float(procstat.usage_between(before, procstat.Snapshot.take({}))["machine_busy_pct"])


def wait_quiet(max_seconds: float) -> float:
    """Wait until the machine is idle (under QUIET_PCT busy for a second), at most `max_seconds`;
    returns the last busy % measured. Other work on a shared machine skews every number here."""
    deadline = time.monotonic() + max_seconds
    busy = busy_pct()
    while busy > QUIET_PCT and time.monotonic() < deadline:
        busy = busy_pct()
    return busy


def machine() -> dict[str, Any]:
    busy = busy_pct()
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return {
        "cores": procstat.cpu_count(),
        "cpu_model": procstat.cpu_model(),
        "memory_gib": pages / 2**30,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sipp": "sip-tester (sipp) 3.6.x" if sipp.available() else "missing",
        "busy_before_pct": busy,
        "loadavg": os.getloadavg(),
    }


def check_tools() -> None:
    missing = audio.missing_tools("sipp", "espeak-ng", "sox")
    if missing:
        needed = ", ".join(missing)
        raise SystemExit(f"bench needs {needed} (Debian: sip-tester, espeak-ng, sox): make system-deps")


def _stop_reason(level: dict[str, Any], stop_loss: float) -> str | None:
    where = report.name(level)
    if "error" in level:
        return f"level {where} failed"
    loss = level["media"]["loss_pct"]
    failed_pct = 100.0 * level["calls"]["failed"] / max(1, level["concurrency"])
    if loss is None or loss > stop_loss or failed_pct > stop_loss:
        shown = "none measured" if loss is None else f"{loss:.1f} %"
        return f"at {where} loss was {shown} and {failed_pct:.0f} % of calls failed"
    return None


def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    """Every level in turn (stopping early past --stop-loss); returns the results, writes the files."""
    check_tools()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    folder = (args.out or DEFAULT_OUT / stamp).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"meta": _meta(args), "levels": []}
    chosen = plans(args, folder)  # first: a bad option stops the run before anything is made
    voice = speech.make(folder)
    coded = {plan.codec.name: _Coded.of(voice, plan.codec) for plan in chosen}
    results["meta"]["speech"] = _speech_meta(voice, coded)
    stopped: dict[tuple[str, bool, int | None], str] = {}  # why the higher levels of a kind are skipped
    for plan in chosen:
        kind = (plan.codec.name, plan.srtp, plan.workers)
        if kind in stopped:
            continue
        busy = wait_quiet(args.quiet_wait)
        print(f"bench: {_describe(plan)}, hold {args.hold:g} s, rate {args.rate:g}/s ...", flush=True)
        level = _one_level(plan, voice, coded[plan.codec.name])
        level["machine_busy_before_pct"] = busy
        results["levels"].append(level)
        report.write_json(results, folder)
        reason = _stop_reason(level, args.stop_loss)
        if reason:
            stopped[kind] = reason
            results["meta"]["stopped_early"] = "; ".join(stopped.values())
    return _finish(results, folder, write_md=not args.no_write_results)


@dataclass(frozen=True)
class _Coded:
    """The speech in one codec of the axis: the probe's payloads and the checkable frames."""

    payloads: list[bytes]
    ref: Reference

    @classmethod
    def of(cls, voice: speech.Speech, codec: WireCodec) -> _Coded:
        return cls(encode_loop(codec, voice), reference(voice, codec))


def _describe(plan: LevelPlan) -> str:
    workers = "the bridge's default workers" if plan.workers is None else f"{plan.workers} worker(s)"
    return f"{plan.calls} calls, {plan.codec.name}{' + SRTP' if plan.srtp else ''}, {workers}"


def _speech_meta(voice: speech.Speech, coded: dict[str, _Coded]) -> dict[str, Any]:
    """The speech, and per codec how many of its frames the analysis checks (bench.load.reference)."""
    per_codec = {
        name: {"active": c.ref.active, "codec_robust": c.ref.codec_robust, "checkable": c.ref.count}
        for name, c in coded.items()
    }
    first = next(iter(per_codec.values()))  # as before the codec axis: the first codec's figures
    return {"seconds": voice.seconds, "frames": voice.count, **first, "per_codec": per_codec}


def _one_level(plan: LevelPlan, voice: speech.Speech, coded: _Coded) -> dict[str, Any]:
    try:
        return run_level(plan, voice, coded.ref, coded.payloads)
    except (RuntimeError, OSError, TimeoutError) as exc:
        return {
            "concurrency": plan.calls,
            "codec": plan.codec.name,
            "srtp": plan.srtp,
            "workers": {"requested": plan.workers, "count": None, "list": []},
            "error": str(exc),
            "logs": str(plan.folder),
        }


def _meta(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": shlex.join(getattr(sys, "orig_argv", sys.argv)),
        "code": code_state(),
        "machine": machine(),
        "options": {
            "calls": args.calls,
            "hold_s": args.hold,
            "rate_cps": args.rate,
            "stop_loss_pct": args.stop_loss,
            "quiet_wait_s": args.quiet_wait,
            "agent_mode": args.agent_mode,
            "workers": args.workers or "the bridge's default (auto: one per CPU)",
            "codecs": args.codecs,
            "srtp": args.srtp,
        },
    }


def _finish(results: dict[str, Any], folder: Path, write_md: bool) -> dict[str, Any]:
    chart = report.chart(results["levels"], folder)
    results["meta"]["chart"] = str(chart) if chart else "not drawn: matplotlib is not installed"
    results["meta"]["folder"] = str(folder)
    report.write_json(results, folder)
    if write_md:
        report.update_results_md(results)
    return results


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def stop_leftovers(grace: float = 3.0) -> None:
    """Last resort after an interruption: stop what this process started and is still running (an
    interruption while the agent or the bridge was starting leaves it without an owner). Every
    child runs in a process group of its own (ManagedProcess), stopped here by its id."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        left = procstat.children()
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, sig)
        deadline = time.monotonic() + grace
        while procstat.children() and time.monotonic() < deadline:
            time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    for sig in (signal.SIGINT, signal.SIGTERM):  # SIGINT too: a background job starts with it ignored
        signal.signal(sig, _terminate)  # clean up the same way as on Ctrl-C
    try:
        results = run_bench(args)
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        stop_leftovers()
        print("bench: interrupted; every process it started has been stopped", file=sys.stderr)
        return 130
    print()
    print(report.markdown(results))
    print(f"results: {results['meta']['folder']}/results.json, chart: {results['meta']['chart']}")
    return 1 if any("error" in level for level in results["levels"]) else 0
