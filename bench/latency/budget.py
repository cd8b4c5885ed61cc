"""``python -m bench.latency``: the one-way delay the bridge adds, phone -> agent and agent -> phone.

    .venv/bin/python -m bench.latency [--markers 150] [--every-ms 500] [--no-write-results]

``--calls`` calls on loopback (10 by default), one after the other so that the machine is otherwise
idle: sipp sets them up (signalling only; each
SDP names the port of a phone socket of ``bench/latency/phone.py``), the bridge runs as ``make run``
runs it (defaults; the jitter buffer stays at its minimum depth since loopback has no jitter) and
calls the measuring agent of ``bench/latency/agent.py`` in its own process. The bridge plays every
call out on one shared 20 ms tick; phone ``i`` sends ``i / calls`` of a frame after that tick, and
the agent's session ``i`` likewise, so the markers meet the tick at evenly spread phases, as
independent phones and agents do (one call would measure one phase).

The phone puts a marker (a tone burst with a step onset) into its audio every ``--every-ms``; the
agent finds each onset in the Opus it receives. The agent puts markers into its own stream; the
phone finds them in the G.711 it receives. All times are CLOCK_REALTIME on the same host, an
onset's time is its packet's time plus its sample's offset in the packet (``bench/latency/marker.py``), and
a marker's delay is (onset heard) - (onset sent):

- phone -> agent: from the phone's send of the packet to the agent's user-space arrival stamp: the
  bridge's receive, jitter buffer and playout tick, G.711 decode, Opus encode (with its lookahead),
  aiortc's packetising, SRTP, loopback both hops, and the agent's own receive path (SRTP, aiortc);
- agent -> phone: from the agent's send to the kernel's receive stamp at the phone: SRTP and aiortc
  in the bridge, Opus decode, the playout queue and the wait for the 20 ms send tick, G.711, loopback.

The agent's own share (its receive path above, under a millisecond idle) is counted as the bridge's,
and both senders stamp just before they send (a stall of theirs there counts against the bridge):
the figures err high, never low. Writes the table into ``bench/RESULTS.md`` (section "Latency budget") and the
latency row of ``docs/measurements.md`` (below its ``<!-- latency-row: ... -->`` line) unless
``--no-write-results``.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from contextlib import ExitStack
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from sipbridge.media.g711 import ulaw_decode, ulaw_encode
from sipbridge.media.opus import OpusDecoder
from testbed import sipp
from testbed.bridge_proc import BridgeProcess, http_json, start_bridge
from testbed.procs import ManagedProcess, free_tcp_port, wait_until

from ..common import DEFAULT_OUT, REPO, RESULTS_MD, SCENARIOS, Pipelines, bridge_config, replace_section
from . import marker
from .phone import LEAD_MS, Phone

SCENARIO = SCENARIOS / "uac_latency.xml"
MEASUREMENTS = REPO / "docs" / "measurements.md"
# The line above the table whose first row is ours (its text after the prefix says who writes it).
LATENCY_ROW_MARKER = "<!-- latency-row:"
SECTION = "## Latency budget"
MATCH_WINDOW_NS = 400_000_000  # an onset heard this long after a marker was sent is its return
TAIL_S = 1.5  # the call goes on this long after the last marker
END_NS = 600_000_000  # markers sent this close to the end of a call's media are not counted
COMMAND = ".venv/bin/python -m bench.latency"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__.split("\n\n")[0])
    p.add_argument("--markers", type=int, default=150, help="markers each way, all calls (default 150)")
    p.add_argument("--calls", type=int, default=10, help="calls, one after the other = phases (default 10)")
    p.add_argument("--every-ms", type=int, default=500, help="one marker per call this often (default 500)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for logs")
    p.add_argument(
        "--no-write-results", action="store_true", help="do not touch RESULTS.md or docs/measurements.md"
    )
    return p


# ------------------------------------------------------------------------------------ running


def start_agent(logdir: Path, every_ms: int, phases: int) -> tuple[ManagedProcess, str]:
    port = free_tcp_port()
    argv = [sys.executable, "-m", "bench.latency.agent", "--listen", f"127.0.0.1:{port}"]
    argv += ["--every-ms", str(every_ms), "--phases", str(phases)]
    proc = ManagedProcess(argv, name=f"latency-agent-{port}", logdir=logdir, cwd=REPO).start()
    health = f"http://127.0.0.1:{port}/health"
    if not wait_until(lambda: _answers(health) or not proc.running, 20) or not proc.running:
        proc.stop()
        raise RuntimeError(f"the latency agent did not start:\n{proc.tail()}")
    return proc, f"http://127.0.0.1:{port}"


def _answers(url: str) -> bool:
    try:
        return http_json("GET", url, timeout=1.0)[0] == 200
    except OSError:
        return False


def markers_per_call(args: argparse.Namespace) -> int:
    return -(-args.markers // args.calls)


def call_seconds(args: argparse.Namespace) -> float:
    return LEAD_MS / 1000 + markers_per_call(args) * args.every_ms / 1000 + TAIL_S


def caller(index: int) -> str:
    return f"phone{index}"


def run(args: argparse.Namespace) -> dict[str, Any]:
    folder = args.out / f"latency-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    logs = folder / "logs"
    with ExitStack() as stack:
        agent, agent_url = start_agent(logs, args.every_ms, args.calls)
        stack.callback(agent.stop)
        bridge = start_bridge(
            logs, f"{agent_url}/whip", "--log-level", "warning", rtp_ports=2 * args.calls + 16
        )
        stack.callback(bridge.proc.stop)
        phones = [Phone(args.every_ms, i * marker.FRAME_NS // args.calls) for i in range(args.calls)]
        for phone in phones:
            stack.callback(phone.close)
        call = _live_calls(args, bridge, phones, folder)
        for phone in phones:
            phone.close()
        sessions = http_json("GET", f"{agent_url}/records")[1]
    return analyse(args, phones, sessions, call, folder)


def _live_calls(
    args: argparse.Namespace, bridge: BridgeProcess, phones: list[Phone], folder: Path
) -> dict[str, Any]:
    """Run the calls; returns sipp's result and the bridge's jitter-buffer views sampled each second."""
    folder.mkdir(parents=True, exist_ok=True)
    inf = folder / "phones.csv"
    inf.write_text("SEQUENTIAL\n" + "".join(f"{p.port};{caller(i)};\n" for i, p in enumerate(phones)))
    result: list[sipp.SippResult] = []
    hold = call_seconds(args)

    def signalling() -> None:
        result.append(
            sipp.run_scenario(
                SCENARIO,
                bridge.sip_target,
                calls=args.calls,
                limit=1,
                hold_ms=int(hold * 1000),
                timeout=args.calls * (hold + 10) + 60,
                trace_messages=False,
                workdir=folder / "sipp",
                extra_args=["-inf", str(inf)],
            )
        )

    thread = threading.Thread(target=signalling, name="sipp")
    for phone in phones:
        phone.start()
    thread.start()
    if not phones[0].latched.wait(30):
        thread.join()
        raise RuntimeError(
            f"the bridge never sent RTP to the phone\n{result[0].report(40) if result else ''}"
        )
    views = _sample_bridge(bridge, thread)
    thread.join()
    return {
        "sipp_ok": bool(result and result[0].ok),
        "sipp": result[0].report(0) if result else "",
        "views": views,
    }


def _sample_bridge(bridge: BridgeProcess, sipp_thread: threading.Thread) -> list[dict[str, Any]]:
    views: list[dict[str, Any]] = []
    while sipp_thread.is_alive():
        sipp_thread.join(1.0)
        try:
            calls = bridge.calls()
        except OSError:
            continue
        for call in calls:
            if call.get("rtp") and call.get("state") == "answered":
                views.append({"jitter": call["rtp"]["jitter_buffer"], "agent": call.get("agent")})
    return views


# ------------------------------------------------------------------------------------ analysis


def onset_ns(record: dict[str, int]) -> int:
    return record["at_ns"] + record["sample"] * 1_000_000_000 // marker.RATE


def match(
    sent: list[dict[str, int]], heard: list[dict[str, int]], until_ns: int | None = None
) -> tuple[list[float], int]:
    """Delays (ms) of the markers sent before `until_ns` whose onset was heard within
    MATCH_WINDOW_NS; and how many of them were not heard."""
    heard_ns = np.sort(np.array([onset_ns(h) for h in heard], dtype=np.int64))
    delays: list[float] = []
    missing = 0
    for record in sent:
        start = onset_ns(record)
        if until_ns is not None and start > until_ns:
            continue
        i = int(np.searchsorted(heard_ns, start))
        if i < len(heard_ns) and heard_ns[i] - start < MATCH_WINDOW_NS:
            delays.append((int(heard_ns[i]) - start) / 1e6)
        else:
            missing += 1
    return delays, missing


def summary(delays: list[float], missing: int) -> dict[str, Any]:
    if not delays:
        return {"n": 0, "missing": missing}
    q = np.percentile(delays, [50, 95, 99])
    return {
        "n": len(delays),
        "missing": missing,
        "min_ms": round(min(delays), 1),
        "p50_ms": round(float(q[0]), 1),
        "p95_ms": round(float(q[1]), 1),
        "p99_ms": round(float(q[2]), 1),
        "max_ms": round(max(delays), 1),
    }


def codec_calibration() -> dict[str, Any]:
    """The same detector on the audio after the codecs alone, offline (no network, no clock).

    Uplink: G.711 -> the bridge's PhoneToAgent (its configured Opus) -> an 8 kHz decoder, as at the
    agent. Downlink: the agent's reference decode is the reference, so the bridge's chain (the same
    decoder, AgentToPhone, G.711) should add nothing there."""
    pipelines = Pipelines(bridge_config())
    decoder = OpusDecoder(marker.RATE)
    stream, planned = calibration_stream()

    def uplink(frame: np.ndarray) -> np.ndarray:
        (packet,) = pipelines.up.push_pcm(_g711(frame))
        return decoder.decode(packet)

    found = marker.codec_shift(stream, uplink)
    shifts = [f - p for f, p in zip(found, planned, strict=False)] if len(found) == len(planned) else []
    return {
        "uplink_codec_shift_ms": [round(s / marker.RATE * 1000, 3) for s in sorted(set(shifts))],
        "markers": len(planned),
        "found": len(found),
        "pipeline": pipelines.describe(),
    }


def _g711(frame: np.ndarray) -> np.ndarray:
    return ulaw_decode(ulaw_encode(frame))


def calibration_stream(count: int = 20) -> tuple[list[np.ndarray], list[int]]:
    silence = np.zeros(marker.FRAME, dtype=np.int16)
    frames: list[np.ndarray] = [silence] * 10
    planned: list[int] = []
    for i in range(count):
        offset = marker.onset_offset(i)
        planned.append(len(frames) * marker.FRAME + offset)
        frames += marker.burst_frames(offset) + [silence] * 20
    return frames, planned


def paired(phones: list[Phone], sessions: list[dict[str, Any]]) -> list[tuple[Phone, dict[str, Any]]]:
    """Each phone with the agent session of its call (the caller is the session's resource id)."""
    by_caller = {s["resource_id"]: s for s in sessions}
    empty = {"received": [], "sent": [], "packets_in": 0, "packets_out": 0}
    return [(phone, by_caller.get(caller(i), empty)) for i, phone in enumerate(phones)]


def both_ways(pairs: list[tuple[Phone, dict[str, Any]]]) -> dict[str, Any]:
    """Both directions over all calls, and each call's median (its phase to the bridge's tick)."""
    up: list[float] = []
    down: list[float] = []
    missing = [0, 0]
    per_call: list[list[float | None]] = []
    for phone, session in pairs:
        end = min(phone.records.last_in_ns, phone.records.last_out_ns) - END_NS  # the BYE is near
        call_up, lost_up = match(phone.records.sent, session["received"], end)
        call_down, lost_down = match(session["sent"], phone.records.heard, end)
        up, down = up + call_up, down + call_down
        missing = [missing[0] + lost_up, missing[1] + lost_down]
        per_call.append([_median(call_up), _median(call_down)])
    return {
        "phone_to_agent": summary(up, missing[0]),
        "agent_to_phone": summary(down, missing[1]),
        "per_call_p50_ms": per_call,
    }


def _median(delays: list[float]) -> float | None:
    return round(float(np.median(delays)), 1) if delays else None


def analyse(
    args: argparse.Namespace,
    phones: list[Phone],
    sessions: list[dict[str, Any]],
    call: dict[str, Any],
    folder: Path,
) -> dict[str, Any]:
    pairs = paired(phones, sessions)
    late = np.array([n for p in phones for n in p.records.send_late_ns] or [0]) / 1e6
    results = {
        "date": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "command": command(args),
        **both_ways(pairs),
        "calls": args.calls,
        "detector_bias_samples": sorted({e for p in phones for e in p.records.detector_errors}),
        "codec": codec_calibration(),
        "jitter_buffer": _jitter_summary(call["views"]),
        "phone": {
            "packets_out": sum(p.records.packets_out for p in phones),
            "packets_in": sum(p.records.packets_in for p in phones),
            "send_late_ms_p99": round(float(np.percentile(late, 99)), 3),
            # a phone that sent late (its thread stalled) looks like network jitter to the bridge
            "send_late_ms_max_per_call": [round(max(p.records.send_late_ns or [0]) / 1e6, 1) for p in phones],
        },
        "agent": {k: sum(s.get(k) or 0 for _, s in pairs) for k in ("packets_in", "packets_out")},
        "sipp_ok": call["sipp_ok"],
        "folder": str(folder),
    }
    phone_raw = [asdict(p.records) | {"send_late_ns": []} for p in phones]
    raw = {"phones": phone_raw, "agent": sessions, "bridge_views": call["views"]}
    (folder / "results.json").write_text(json.dumps(results | {"raw": raw}, indent=1))
    return results


def _jitter_summary(views: list[dict[str, Any]]) -> dict[str, Any]:
    targets = [v["jitter"]["target_ms"] for v in views]
    depths = [v["agent"]["playout_buffered_ms"] for v in views if v.get("agent")]
    last = views[-1]["jitter"] if views else {}
    return {
        "target_ms_min_max": [min(targets), max(targets)] if targets else None,
        "jitter_ms_last": last.get("jitter_ms"),
        "concealed": last.get("concealed"),
        "lost": last.get("lost"),
        "late": last.get("late"),
        "playout_queue_ms_min_max": [min(depths), max(depths)] if depths else None,
    }


# ------------------------------------------------------------------------------------ output


def command(args: argparse.Namespace) -> str:
    defaults = parser().parse_args([])
    extra = [
        f"--{name.replace('_', '-')} {getattr(args, name)}"
        for name in ("markers", "calls", "every_ms")
        if getattr(args, name) != getattr(defaults, name)
    ]
    return " ".join([COMMAND, *extra])


def _row(name: str, s: dict[str, Any]) -> str:
    if not s.get("n"):
        return f"| {name} | 0 | {s.get('missing')} | | | | |"
    cells = [s["n"], s["missing"], s["p50_ms"], s["p95_ms"], s["p99_ms"], s["max_ms"]]
    return f"| {name} | " + " | ".join(str(c) for c in cells) + " |"


def markdown(results: dict[str, Any]) -> str:
    jb = results["jitter_buffer"]
    codec = results["codec"]
    return "\n".join(
        [
            SECTION,
            "",
            f"Written by `{results['command']}` ({results['date']}; see `bench/latency/budget.py` for what "
            f"is timed). {results['calls']} calls in turn on loopback, default settings; the bridge's "
            "added one-way delay per marker, ms:",
            "",
            "| direction | markers | missed | p50 | p95 | p99 | max |",
            "|---|---|---|---|---|---|---|",
            _row("phone → agent", results["phone_to_agent"]),
            _row("agent → phone", results["agent_to_phone"]),
            "",
            f"Medians per call (each at its own phase to the tick): phone → agent "
            f"{_spread(results, 0)} ms, agent → phone {_spread(results, 1)} ms. "
            f"Jitter-buffer target during the call {_pair(jb['target_ms_min_max'])} ms (minimum 20), "
            f"playout queue towards the phone {_pair(jb['playout_queue_ms_min_max'])} ms. "
            f"Phones and agent sessions send at {results['calls']} phases spread evenly over the "
            "bridge's 20 ms tick. Onset detector on the sent audio: error "
            f"{results['detector_bias_samples']} samples; the uplink codecs alone (offline) move the "
            f"onset by {codec['uplink_codec_shift_ms']} ms (Opus lookahead, part of the phone → agent "
            "figure).",
            "",
        ]
    )


def _spread(results: dict[str, Any], direction: int) -> str:
    medians = [m[direction] for m in results["per_call_p50_ms"] if m[direction] is not None]
    return _pair([min(medians), max(medians)] if medians else None)


def _pair(pair: list[float] | None) -> str:
    return "?" if not pair else f"{pair[0]:g}–{pair[1]:g}"


def update_results_md(results: dict[str, Any], path: Path = RESULTS_MD) -> None:
    """Replace (or add, after the file's introduction) the latency section of RESULTS.md."""
    replace_section(path, SECTION, markdown(results))


class NoLatencyRow(RuntimeError):
    """The measurements page has no place marked for the latency row."""


def latency_row(results: dict[str, Any]) -> str:
    up, down = results["phone_to_agent"], results["agent_to_phone"]
    return (
        "| One-way delay the bridge adds on loopback, jitter buffer at its minimum (marker onsets timed "
        "at the phone and at a measuring agent, ≥ 100 each way) | phone → agent p50/p95/p99/max "
        f"**{_ms(up)}** ms; agent → phone **{_ms(down)}** ms | `{results['command']}` |"
    )


def update_measurements(results: dict[str, Any], path: Path = MEASUREMENTS) -> None:
    """Rewrite the latency row of docs/measurements.md: the first row of the table that follows the
    line starting with LATENCY_ROW_MARKER (added there when the table has no row yet). Raises
    NoLatencyRow, writing nothing, when the page or its marker or the table is missing."""
    text = path.read_text() if path.exists() else ""
    lines = text.splitlines()
    marker = next((i for i, line in enumerate(lines) if line.startswith(LATENCY_ROW_MARKER)), None)
    if marker is None:
        raise NoLatencyRow(f"{path} has no line starting {LATENCY_ROW_MARKER!r}: latency row not written")
    header = next((i for i in range(marker + 1, len(lines)) if lines[i].startswith("|")), None)
    if header is None or header + 1 >= len(lines) or not lines[header + 1].startswith("|"):
        raise NoLatencyRow(f"{path}: no table (header and separator) after {LATENCY_ROW_MARKER!r}")
    at = header + 2
    if at < len(lines) and lines[at].startswith("|"):
        lines[at] = latency_row(results)
    else:
        lines.insert(at, latency_row(results))
    path.write_text("\n".join(lines) + "\n")


def _ms(s: dict[str, Any]) -> str:
    return "/".join(f"{s.get(k, float('nan')):g}" for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms"))


def print_results(results: dict[str, Any]) -> None:
    print(markdown(results))
    print(f"(raw records and logs: {results['folder']})")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    started = time.monotonic()
    results = run(args)
    print_results(results)
    print(f"({time.monotonic() - started:.0f} s)")
    ok = results["phone_to_agent"].get("n") and results["agent_to_phone"].get("n")
    if ok and not args.no_write_results:
        update_results_md(results)
        try:
            update_measurements(results)
        except NoLatencyRow as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
