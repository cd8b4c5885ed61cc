"""What the kernel says about processes and the machine: CPU time and memory, read from /proc.

Everything is measured from outside the measured process: ``/proc/PID/stat`` (utime + stime of all
its threads, in clock ticks), ``/proc/PID/task/PID/stat`` (its main thread alone: the one that runs
the asyncio loop and holds the GIL most), ``/proc/PID/status`` (VmRSS, VmHWM) and ``/proc/stat``
(the whole machine's busy and idle ticks).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_fields(path: Path) -> list[str]:
    """The fields of a /proc stat file after ``pid (comm)``: state is [0], utime [11], stime [12]."""
    text = path.read_text()
    return text[text.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) used so far by all threads of `pid`."""
    fields = _stat_fields(Path(f"/proc/{pid}/stat"))
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def main_thread_cpu_seconds(pid: int) -> float:
    """CPU seconds used so far by the main thread of `pid` alone."""
    fields = _stat_fields(Path(f"/proc/{pid}/task/{pid}/stat"))
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def memory_kib(group: int | tuple[int, ...]) -> dict[str, int]:
    """VmRSS (resident now) and VmHWM (resident peak) of `group` (a pid, or a tree's pids added up),
    in KiB."""
    out: dict[str, int] = {"VmRSS": 0, "VmHWM": 0}
    for pid in group if isinstance(group, tuple) else (group,):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in out:
                out[key] += int(value.split()[0])
    return out


def part_of_bridge(name: str) -> bool:
    """A watched name that is a part of the "bridge" tree (counted in it already)."""
    return name == "control" or name.startswith("worker")


def tree(pid: int) -> tuple[int, ...]:
    """`pid` and its live child processes (the bridge and its media workers)."""
    return (pid, *sorted(children(pid)))


def machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs since boot; idle and iowait count as not busy."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal (guest is inside user)
    return total - fields[3] - fields[4], total


def children(parent: int | None = None) -> dict[int, str]:
    """Live child processes of `parent` (default: this process): {pid: command name}."""
    parent = os.getpid() if parent is None else parent
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        if int(fields[1]) == parent and fields[0] not in ("Z", "X"):
            found[int(entry.name)] = text[text.index("(") + 1 : text.rindex(")")]
    return found


def child_pid(name: str, parent: int | None = None) -> int | None:
    """A live child process of `parent` (default: this process) whose command name is `name`."""
    return next((pid for pid, comm in children(parent).items() if comm == name), None)


def cpu_count() -> int:
    return len(os.sched_getaffinity(0))


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


@dataclass(frozen=True)
class Snapshot:
    """CPU counters of the watched processes and of the machine at one moment (monotonic `at`)."""

    at: float
    cpu: dict[str, float]
    main_thread: dict[str, float]
    machine_busy: int
    machine_total: int

    @classmethod
    def take(cls, pids: dict[str, int | tuple[int, ...]]) -> Snapshot:
        """``pids``: a name's process, or a tuple of them counted as one (a process tree: the first
        is the one whose main thread is watched)."""
        cpu: dict[str, float] = {}
        main: dict[str, float] = {}
        for name, group in pids.items():
            members = group if isinstance(group, tuple) else (group,)
            try:
                cpu[name] = sum(cpu_seconds(pid) for pid in members)
                main[name] = main_thread_cpu_seconds(members[0])
            except (OSError, ValueError, IndexError):
                pass  # exited: it simply has no numbers in this snapshot
        busy, total = machine_ticks()
        return cls(time.monotonic(), cpu, main, busy, total)


def usage_between(a: Snapshot, b: Snapshot) -> dict[str, float | dict[str, float]]:
    """CPU used between two snapshots, as % of one core, per process (and main thread) and machine."""
    wall = b.at - a.at
    if wall <= 0:
        raise ValueError("snapshots out of order")

    def pct(x: dict[str, float], y: dict[str, float]) -> dict[str, float]:
        return {k: 100.0 * (y[k] - x[k]) / wall for k in x if k in y}

    ticks = b.machine_total - a.machine_total
    busy = 100.0 * (b.machine_busy - a.machine_busy) / ticks if ticks > 0 else 0.0
    return {
        "seconds": wall,
        "process_pct": pct(a.cpu, b.cpu),
        "main_thread_pct": pct(a.main_thread, b.main_thread),
        "cpu_seconds": {k: b.cpu[k] - a.cpu[k] for k in a.cpu if k in b.cpu},
        # share of all cores that were busy (100 % = every core busy the whole time)
        "machine_busy_pct": busy,
    }
