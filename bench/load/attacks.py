"""``python -m bench.load.attacks``: running calls while the whole attack set of issue 13 hits the bridge.

The bridge runs as deployed on the open internet: the load's trunk (127.0.0.1, where sipp and the
RTP probe call from), plus what the attacks aim at (a trunk at 127.0.0.2, a PBX by digest, a Twilio
trunk, a TLS listener). N calls carry speech both ways (the load benchmark's harness: sipp
signalling, the RTP probe, the relay agent in its own process); then, for the steady window,
``testbed/attacks.py`` runs everything at once: RTP sprayed in sequence over the whole RTP range
(the running calls' ports included), an ACK flood, 1,500 silent TLS connections, and a cycle of the
other attacks. Measured over exactly that window: the loss of the running calls' speech, their round
trip, the bridge's CPU and worst event-loop lag (its own ``/metrics`` figure: the largest of its last
10 s, read every 5 s and at the window's end), OPTIONS answered from another host, and whether each
defence held. Runs: the calls alone, then with the attacks.

Writes ``bench/RESULTS.md``'s section "Attacks" (``--no-write-results``: only the JSON in the run folder).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from testbed import tls_certs
from testbed.attacks import PARTS
from testbed.procs import free_tcp_port

from ..common import RESULTS_MD, replace_section
from . import flood
from .flood import num
from .plan import AttackPlan

SECTION = "## Attacks"
PART_NAMES = {
    "spray": "RTP spray",
    "acks": "ACK flood",
    "tls": "TLS connection flood",
    "cycle": "the cycle (SIP, digest, REST, fraud)",
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.load.attacks", description=__doc__.split("\n")[0])
    p.add_argument("--calls", type=int, default=20, help="calls up during the attacks (default 20)")
    p.add_argument("--seconds", type=float, default=15.0, help="length of the attack window (default 15)")
    p.add_argument("--no-baseline", action="store_true", help="skip the run without attacks")
    p.add_argument("--split", action="store_true", help="then each part of the set alone, one run each")
    p.add_argument("--out", type=Path, help="run folder (default bench/out/attacks-<time>)")
    p.add_argument("--no-write-results", action="store_true", help="do not touch RESULTS.md")
    return p


def attack_plan(folder: Path, seconds: float) -> AttackPlan:
    certs = tls_certs.make_certs(folder / "tls")
    port = free_tcp_port()
    env = {
        "SIPBRIDGE_TLS_CERT_FILE": str(certs.chain),
        "SIPBRIDGE_TLS_KEY_FILE": str(certs.key),
        "SIPBRIDGE_SIP_TLS_PORT": str(port),
    }
    return AttackPlan(seconds, port, tuple(env.items()))


def run(args: argparse.Namespace) -> dict[str, Any]:
    folder = flood.run_folder("attacks", args.out)
    hold = args.seconds + args.calls / 20.0 + 10.0  # ramp-up, settle, the window, the end margin
    attacks = attack_plan(folder, args.seconds)
    env = {**dict(attacks.tls_env), "SIPBRIDGE_PROVIDER_PBX_INBOUND_PASSWORD": attacks.pbx_password}
    chosen: list[flood.Run] = [] if args.no_baseline else [("no attacks", None, env)]
    chosen.append(("the attack set", attacks, env))
    if args.split:
        for part in PARTS:
            others = tuple(p for p in PARTS if p != part)
            chosen.append((f"{PART_NAMES[part]} only", replace(attacks, without=others), env))
    return flood.measure("attacks", folder, args.calls, hold, chosen, summary)


def summary(record: dict[str, Any]) -> dict[str, Any]:
    """The flood benchmark's figures, what the attacker saw, and where the bridge's delay went."""
    base = flood.summary(record)
    if "error" in base:
        return base
    base["attacks"] = base.pop("flood")
    base["cpu_pct_by_process"] = record["cpu"]["process_pct"]
    base["bridge_loop_lag_ms_max"] = record["cpu"].get("bridge_loop_lag_ms_max")
    calls = record["bridge_calls"]
    base["bridge_buffers"] = {k: calls.get(k) for k in ("jitter_target_ms_median", "playout_wait_ms_median")}
    return base


def markdown(results: dict[str, Any]) -> str:
    lines = [
        SECTION,
        "",
        f"Written by `{results['command']}` ({results['date']}, {results['code']}; "
        "see `bench/load/attacks.py`). "
        "Calls from a trunk address with speech both ways through the relay agent; for the window, "
        "`testbed/attacks.py` runs the whole attack set of issue 13 at once (RTP sprayed over the "
        "whole RTP range, the running calls' ports included; an ACK flood of 2,000/s; 1,500 silent TLS "
        "connections; and in a cycle host names, backtracking text, maddr, digest replay, blind ACK, "
        "a third party's BYE and re-INVITE, a 10 MB body, a rebinding Host, numbers abroad). Loss counts "
        "the calls' speech frames that did not come back, over the window only; loop lag is the "
        "bridge's own `sipbridge_event_loop_lag_seconds` (the largest of its last 10 s), read every 5 s "
        "and at the end.",
        "",
        "| run | window s | calls | speech frames checked | loss % (worst call) | round trip p50/p99 ms "
        "| bridge CPU % of a core | worst loop lag ms | OPTIONS answered (max ms) | defences held |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines.extend(_row(entry) for entry in results["runs"])
    return "\n".join(lines) + "\n"


def _row(entry: dict[str, Any]) -> str:
    if "error" in entry:
        return f"| {entry['name']} | failed: {entry['error']} |||||||||"
    attacks = entry.get("attacks") or {}
    options = attacks.get("options") or {}
    answered = f"{options['answered']}/{options['sent']} ({options['rtt_ms_max']})" if options else "-"
    held = attacks.get("held") or {}
    failed = [name for name, ok in held.items() if not ok]
    verdict = ("all " + str(len(held)) if not failed else "FAILED: " + ", ".join(failed)) if held else "-"
    return (
        f"| {entry['name']} | {entry['window_s']} | {entry['calls_live']} | {entry['frames_checked']} "
        f"| {num(entry['loss_pct'], 3)} ({num(entry['loss_pct_worst_call'], 2)}) "
        f"| {num(entry['rtt_ms_p50'])} / {num(entry['rtt_ms_p99'])} | {num(entry['bridge_cpu_pct'])} "
        f"| {num(entry['bridge_loop_lag_ms_max'])} | {answered} | {verdict} |"
    )


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    results = run(args)
    print(markdown(results))
    if not args.no_write_results:
        replace_section(RESULTS_MD, SECTION, markdown(results))
    failed = any(
        "error" in r or not all((r.get("attacks") or {}).get("held", {}).values()) for r in results["runs"]
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
