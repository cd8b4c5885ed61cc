"""Results on disk and on screen: results.json, chart.png, the table, and bench/RESULTS.md."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ..common import RESULTS_MD
from .run import MACHINE_BOUND_PCT

RUN_HEADING = "## Run of "
KEEP_RUNS = 10
# A level this busy (% of all cores) is close to where the machine itself becomes the bound.
NEAR_MACHINE_BOUND_PCT = 75.0

COLUMNS = (
    "calls", "codec", "SRTP", "workers", "ok / failed", "bridge CPU %/call", "control %/call", "floor %/call",
    "bridge ÷ floor", "RSS/call MiB", "peak RSS MiB", "setup p50 / p99 ms", "loss %",
    "echo RTT p50 / p99 ms", "agent CPU %", "machine busy %", "bound",
    "per worker: calls · CPU % · loop lag ms",
)  # fmt: skip


def _num(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _pair(a: float | None, b: float | None, digits: int = 0) -> str:
    return f"{_num(a, digits)} / {_num(b, digits)}"


def _mib(kib: float | None) -> float | None:
    return None if kib is None else kib / 1024


def workers_cell(level: dict[str, Any]) -> str:
    """How many media workers the bridge ran: "2", "2 (auto)" for its own default, "–" unknown."""
    workers = level.get("workers") or {}
    count = workers.get("count")
    if count is None:
        return "–" if workers.get("requested") is None else str(workers["requested"])
    return str(count) + (" (auto)" if workers.get("requested") is None else "")


def codec_cell(level: dict[str, Any]) -> str:
    return str(level.get("codec", "PCMU"))  # runs from before the codec axis were PCMU


def srtp_cell(level: dict[str, Any]) -> str:
    return "on" if level.get("srtp") else "off"


def variant(level: dict[str, Any]) -> str:
    """The level's codec, and SRTP if on: "PCMU", "G722 + SRTP"."""
    return codec_cell(level) + (" + SRTP" if level.get("srtp") else "")


def with_codec(level: dict[str, Any]) -> str:
    """ " G722 + SRTP" for a level of the codec axis, "" for one from before it."""
    return f" {variant(level)}" if "codec" in level else ""


def with_workers(level: dict[str, Any]) -> str:
    """ " × 2 workers" for a level run with a given worker count, else ""."""
    requested = (level.get("workers") or {}).get("requested")
    return "" if requested is None else f" × {requested} worker{'s' if requested != 1 else ''}"


def name(level: dict[str, Any]) -> str:
    """ "20 calls", "20 calls G722 + SRTP × 2 workers": a level in a sentence."""
    return f"{level['concurrency']} calls{with_codec(level)}{with_workers(level)}"


def per_worker_cell(level: dict[str, Any]) -> str:
    """Each worker: its calls at the window's end, its CPU (% of one core), its worst loop lag."""
    listed = (level.get("workers") or {}).get("list") or []
    return (
        "; ".join(
            f"{_num(w['calls'], 0)} · {_num(w['cpu_pct'], 0)} % · {_num(w['loop_lag_ms_max'], 0)}"
            for w in listed
        )
        or "–"
    )


def row(level: dict[str, Any]) -> list[str]:
    if "error" in level:
        first = [str(level["concurrency"]), codec_cell(level), srtp_cell(level), workers_cell(level)]
        first.append("error: " + level["error"].splitlines()[0])
        return first + [""] * (len(COLUMNS) - len(first))
    cpu, media, setup = level["cpu"], level["media"], level["setup_ms"]
    floor, memory, calls = level["floor"] or {}, level["memory"], level["calls"]
    mark = "" if level.get("cost_valid", True) else " *"
    return [
        str(level["concurrency"]),
        codec_cell(level),
        srtp_cell(level),
        workers_cell(level),
        f"{calls['ok']} / {calls['failed']}",
        _num(cpu["bridge_pct_per_call"], 2) + mark,
        _num(cpu.get("control_pct_per_call"), 3),
        _num(floor.get("pct_per_call"), 2),
        _num(level["ratio_bridge_to_floor"], 2) + mark,
        _num(_mib(memory["rss_per_call_kib"]), 2),
        _num(_mib(memory["peak_rss_kib"]), 0),
        _pair(setup["p50"], setup["p99"]),
        _num(media["loss_pct"], 2),
        _pair(media["rtt_ms_p50"], media["rtt_ms_p99"]),
        _num(cpu["agent_pct"], 0),
        _num(cpu["machine_busy_pct"], 0),
        ", ".join(level["bound"]) or "no",
        per_worker_cell(level),
    ]


STARVED_NOTE = (
    "\\* starved: the level was CPU-bound or lost audio, so the bridge did not do all the work and its "
    "CPU per call is not its cost per call."
)


def table(levels: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row(level)) + " |" for level in levels]
    if any(not level.get("cost_valid", True) for level in levels if "error" not in level):
        lines += ["", STARVED_NOTE]
    return "\n".join(lines)


Load = tuple[int, int | None]  # calls, workers asked for


def _load(level: dict[str, Any]) -> Load:
    return level["concurrency"], (level.get("workers") or {}).get("requested")


def _load_label(load: Load) -> str:
    calls, workers = load
    return f"{calls} calls" + with_workers({"workers": {"requested": workers}})


def _cpu_per_call(level: dict[str, Any]) -> float | None:
    return level["cpu"]["bridge_pct_per_call"]


def by_codec(levels: list[dict[str, Any]]) -> str:
    """Bridge CPU per call for each codec and SRTP setting at each load, and SRTP's added cost per
    call (with minus without, same codec and load); "" for a run of plain PCMU alone."""
    done = [lv for lv in levels if "error" not in lv and _cpu_per_call(lv) is not None]
    variants = list(dict.fromkeys(variant(lv) for lv in done))
    if variants in ([], ["PCMU"]):
        return ""
    loads = list(dict.fromkeys(_load(lv) for lv in done))
    cells = {(variant(lv), _load(lv)): lv for lv in done}

    def shown(level: dict[str, Any] | None) -> str:
        if level is None:
            return "–"
        return _num(_cpu_per_call(level), 2) + ("" if level.get("cost_valid", True) else " *")

    lines = [
        "Bridge CPU per call (% of one core), by codec and SRTP:",
        "",
        "| codec | " + " | ".join(_load_label(load) for load in loads) + " |",
        "|" + "---|" * (len(loads) + 1),
    ]
    for v in variants:
        lines.append(f"| {v} | " + " | ".join(shown(cells.get((v, load))) for load in loads) + " |")
    costs = [
        _srtp_cost(codec, load, plain, secure)
        for codec in dict.fromkeys(codec_cell(lv) for lv in done)
        for load in loads
        if (plain := cells.get((codec, load))) and (secure := cells.get((f"{codec} + SRTP", load)))
    ]
    if costs:
        lines += ["", "SRTP's added cost per call (with SRTP − without, same codec and load):", "", *costs]
    return "\n".join(lines)


def _srtp_cost(codec: str, load: Load, plain: dict[str, Any], secure: dict[str, Any]) -> str:
    off, on = _cpu_per_call(plain) or 0.0, _cpu_per_call(secure) or 0.0
    share = f", {100 * (on - off) / off:+.0f} %" if off > 0 else ""
    starved = not (plain.get("cost_valid", True) and secure.get("cost_valid", True))
    return (
        f"- {codec}, {_load_label(load)}: {on - off:+.3f} % of a core per call ({off:.3f} → {on:.3f}{share})"
        + (" * (a level was starved: not the cost)" if starved else "")
    )


def machine_bound(levels: list[dict[str, Any]]) -> str:
    """Where the machine itself, not the bridge, is the bound: the load generator (probe and sipp),
    the agent and the bridge all run on its cores, so past that point the figures are the machine's."""
    done = [level for level in levels if "error" not in level]
    if not done:
        return ""
    cores = done[0]["cpu"]["cores"]

    def busy(level: dict[str, Any]) -> float:
        return float(level["cpu"]["machine_busy_pct"])

    def named(chosen: list[dict[str, Any]]) -> str:
        return ", ".join(f"{name(lv)} at {busy(lv):.0f} %" for lv in chosen)

    bound = [lv for lv in done if busy(lv) >= MACHINE_BOUND_PCT]
    near = [lv for lv in done if NEAR_MACHINE_BOUND_PCT <= busy(lv) < MACHINE_BOUND_PCT]
    if bound:
        text = (
            f"The machine itself is the bound at {named(bound)}: at least {MACHINE_BOUND_PCT:.0f} % of its "
            f"{cores} cores were busy, shared by the load generator (probe, sipp), the agent and the "
            "bridge; there loss and round trip are the machine's, and the bridge's CPU per call is its "
            "cost when starved."
        )
    else:
        text = (
            f"The machine itself was not the bound at any level (busiest: {named([max(done, key=busy)])} of "
            f"its {cores} cores; bound from {MACHINE_BOUND_PCT:.0f} %)."
        )
    if near:
        text += f" Close to it ({NEAR_MACHINE_BOUND_PCT:.0f}–{MACHINE_BOUND_PCT:.0f} % busy): {named(near)}."
    return text


def where_cpu_went(levels: list[dict[str, Any]]) -> str:
    """One line per level: % of one core per process (main thread in brackets), and the machine."""
    lines = []
    for level in levels:
        if "error" in level:
            continue
        cpu = level["cpu"]
        parts = [
            f"{name} {pct:.0f} % (loop {cpu['main_thread_pct'].get(name, 0):.0f} %)"
            for name, pct in sorted(cpu["process_pct"].items(), key=lambda kv: -kv[1])
        ]
        lines.append(
            f"- {name(level)}: " + ", ".join(parts)
            + f", unattributed {cpu['unattributed_pct']:.0f} %"
            + f"; machine {cpu['machine_busy_pct']:.0f} % of {cpu['cores']} cores busy"
            + _idle(cpu.get("idle_pct"))
        )  # fmt: skip
        lines += [f"  - note: {note}" for note in level["notes"]]
    return "\n".join(lines)


def _idle(idle: dict[str, float] | None) -> str:
    if not idle:
        return ""
    return "; with no call: " + ", ".join(f"{name} {pct:.0f} %" for name, pct in sorted(idle.items()))


def markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    machine = meta["machine"]
    text = [
        f"{RUN_HEADING}{meta['date']}",
        "",
        f"- machine: {machine['cores']} cores ({machine['cpu_model']}), {machine['memory_gib']:.0f} GiB, "
        f"Linux {machine['kernel']}, Python {machine['python']}; busy before the run: "
        f"{machine['busy_before_pct']:.0f} %",
        f"- code: {meta['code']}",
        f"- command: `{meta['command']}`",
        f"- settings: hold {meta['options']['hold_s']:g} s, rate {meta['options']['rate_cps']:g} calls/s, "
        f"stop when loss > {meta['options']['stop_loss_pct']:g} %, "
        f"workers: {meta['options'].get('workers', 'the bridge default')}, "
        f"codecs: {meta['options'].get('codecs', 'PCMU')}, SRTP: {meta['options'].get('srtp', 'off')}",
        "",
        table(results["levels"]),
        "",
        *([codecs, ""] if (codecs := by_codec(results["levels"])) else []),
        machine_bound(results["levels"]),
        "",
        "Where the CPU went (% of one core over the steady window):",
        "",
        where_cpu_went(results["levels"]),
    ]
    if meta.get("stopped_early"):
        text += ["", f"Stopped early: {meta['stopped_early']}"]
    return "\n".join(text) + "\n"


def write_json(results: dict[str, Any], folder: Path) -> Path:
    path = folder / "results.json"
    path.write_text(json.dumps(results, indent=2, default=_jsonable) + "\n")
    return path


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def update_results_md(results: dict[str, Any], path: Path = RESULTS_MD) -> Path:
    """Put this run at the top of RESULTS.md, keeping the previous KEEP_RUNS - 1 below it."""
    header = (
        "# Load benchmark results\n\n"
        "Written by `make bench` (see bench/README.md for what each column means), newest run first.\n\n"
    )
    old = path.read_text() if path.exists() else ""
    parts = re.split(rf"^{re.escape(RUN_HEADING)}", old, flags=re.M)
    # Sections above the runs (the latency budget, before/after comparisons) are kept as they are.
    other = re.search(r"^## ", parts[0], flags=re.M)
    sections = [parts[0][other.start() :].rstrip() + "\n"] if other else []
    runs = [RUN_HEADING + r for r in parts[1:]]
    runs = [markdown(results)] + runs[: KEEP_RUNS - 1]
    path.write_text(header + "\n".join(r.rstrip() + "\n" for r in [*sections, *runs]))
    return path


def chart(levels: list[dict[str, Any]], folder: Path) -> Path | None:
    """CPU per call and loss against concurrency, one line per worker count (None when matplotlib
    is not installed)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    done = [lv for lv in levels if "error" not in lv]
    if not done:
        return None
    fig, (ax_cpu, ax_loss) = plt.subplots(1, 2, figsize=(11, 4.2))
    rtt = ax_loss.twinx()
    groups = _by_workers(done)
    for i, (suffix, group) in enumerate(groups.items()):
        colour = None if len(groups) == 1 else f"C{i}"  # one colour per worker count, in both panels
        _cpu_lines(ax_cpu, group, suffix, colour)
        _loss_lines(ax_loss, rtt, group, suffix, colour)
    _finish_cpu_panel(ax_cpu)
    _finish_loss_panel(ax_loss, rtt)
    fig.tight_layout()
    path = folder / "chart.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _by_workers(levels: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The levels by codec, SRTP and the worker count they ran with, keyed by a label suffix ("" for
    one group)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for level in levels:
        groups.setdefault(with_codec(level) + with_workers(level), []).append(level)
    return groups if len(groups) > 1 else {"": levels}


def _series(levels: list[dict[str, Any]], *keys: str) -> list[float]:
    out = []
    for level in levels:
        value: Any = level
        for key in keys:
            value = (value or {}).get(key)
        out.append(float("nan") if value is None else float(value))
    return out


def _cpu_lines(ax: Any, levels: list[dict[str, Any]], suffix: str, colour: str | None) -> None:
    x = [lv["concurrency"] for lv in levels]
    ax.plot(x, _series(levels, "cpu", "bridge_pct_per_call"), "o-", color=colour, label="bridge" + suffix)
    # With several worker counts the floor and the agent would repeat per group (they do not depend
    # on it): they are drawn for a single group only.
    if colour is None:
        ax.plot(x, _series(levels, "floor", "pct_per_call"), "s--", label="transcoding floor")
        ax.plot(x, _series(levels, "cpu", "agent_pct_per_call"), "^:", label="echo agent")
    for xi, level in zip(x, levels, strict=True):
        if not level.get("cost_valid", True):
            why = ", ".join(level["bound"]) or "lossy"
            y = level["cpu"]["bridge_pct_per_call"] or 0
            ax.annotate(
                f"starved: {why}",
                (xi, y),
                fontsize=7,
                textcoords="offset points",
                xytext=(-6, 10),
                ha="right",
            )


def _finish_cpu_panel(ax: Any) -> None:
    ax.set_xlabel("concurrent calls")
    ax.set_ylabel("CPU per call (% of one core)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("CPU per call")


def _loss_lines(ax: Any, rtt: Any, levels: list[dict[str, Any]], suffix: str, colour: str | None) -> None:
    x = [lv["concurrency"] for lv in levels]
    loss = _series(levels, "media", "loss_pct")
    ax.plot(x, loss, "o-", color=colour or "tab:red", label="frame loss %" + suffix)
    for key, style in (("rtt_ms_p50", "s--"), ("rtt_ms_p99", "^:")):
        label = f"echo RTT {key[-3:]}{suffix}"
        rtt.plot(x, _series(levels, "media", key), style, color=colour or "tab:gray", label=label)


def _finish_loss_panel(ax: Any, rtt: Any) -> None:
    ax.set_xlabel("concurrent calls")
    ax.set_ylabel("frames lost in the echo round trip (%)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    rtt.set_ylabel("echo round trip (ms)")
    rtt.set_ylim(bottom=0)
    lines = ax.get_lines() + rtt.get_lines()
    ax.legend(lines, [line.get_label() for line in lines], loc="upper left", fontsize=8)
    ax.set_title("Loss and echo round trip")
