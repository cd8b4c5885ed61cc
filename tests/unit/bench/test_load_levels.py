"""The load benchmark's plan and report without running it: which levels run with which worker
counts, and what the report says about workers and about the machine as the bound."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.load.cli import parser, plans
from bench.load.report import COLUMNS, by_codec, machine_bound, name, row, workers_cell


def test_each_level_runs_with_each_worker_count_back_to_back(tmp_path: Path) -> None:
    args = parser().parse_args(["--calls", "20,50", "--workers", "1,2"])

    planned = [(p.calls, p.workers, p.folder.name) for p in plans(args, tmp_path)]

    assert planned == [(20, 1, "level-20-w1"), (20, 2, "level-20-w2"), (50, 1, "level-50-w1"),
                       (50, 2, "level-50-w2")]  # fmt: skip


def test_without_workers_the_bridge_keeps_its_own_default(tmp_path: Path) -> None:
    planned = plans(parser().parse_args(["--calls", "10"]), tmp_path)

    assert [(p.workers, p.folder.name) for p in planned] == [(None, "level-10")]


def test_each_level_runs_in_each_codec_plain_then_with_srtp(tmp_path: Path) -> None:
    args = parser().parse_args(["--calls", "20,50", "--codecs", "pcmu,G722", "--srtp", "off,on"])

    planned = [(p.calls, p.codec.name, p.srtp, p.folder.name) for p in plans(args, tmp_path)]

    assert planned == [
        (20, "PCMU", False, "level-20"), (20, "PCMU", True, "level-20-srtp"),
        (20, "G722", False, "level-20-g722"), (20, "G722", True, "level-20-g722-srtp"),
        (50, "PCMU", False, "level-50"), (50, "PCMU", True, "level-50-srtp"),
        (50, "G722", False, "level-50-g722"), (50, "G722", True, "level-50-g722-srtp"),
    ]  # fmt: skip


def test_by_default_the_calls_are_plain_pcmu_as_before_the_codec_axis(tmp_path: Path) -> None:
    (plan,) = plans(parser().parse_args(["--calls", "10"]), tmp_path)

    assert (plan.codec.name, plan.srtp, plan.folder.name) == ("PCMU", False, "level-10")


@pytest.mark.parametrize("option", [["--codecs", "GSM"], ["--srtp", "maybe"], ["--srtp", ","]])
def test_unknown_codecs_and_srtp_settings_are_refused(tmp_path: Path, option: list[str]) -> None:
    with pytest.raises(SystemExit):
        plans(parser().parse_args(option), tmp_path)


@pytest.mark.parametrize("bad", ["0", "two", ","])
def test_worker_counts_must_be_positive_numbers(tmp_path: Path, bad: str) -> None:
    with pytest.raises(SystemExit):
        plans(parser().parse_args(["--workers", bad]), tmp_path)


def busy_level(calls: int, workers: int | None, busy: float, count: int = 2) -> dict[str, Any]:
    return {
        "concurrency": calls,
        "cpu": {"machine_busy_pct": busy, "cores": 2},
        "workers": {"requested": workers, "count": count, "list": []},
    }


def test_the_report_says_where_the_machine_is_the_bound() -> None:
    text = machine_bound([busy_level(20, 1, 50.0), busy_level(50, 2, 80.0), busy_level(80, 2, 96.0)])

    assert "The machine itself is the bound at 80 calls × 2 workers at 96 %" in text
    assert "Close to it" in text and "50 calls × 2 workers at 80 %" in text
    assert "20 calls" not in text


def test_the_report_says_when_the_machine_was_never_the_bound() -> None:
    text = machine_bound([busy_level(20, None, 40.0), busy_level(50, None, 60.0)])

    assert text.startswith("The machine itself was not the bound at any level (busiest: 50 calls at 60 %")


def test_the_worker_count_shows_whether_it_was_asked_for() -> None:
    assert workers_cell(busy_level(20, 2, 0.0)) == "2"
    assert workers_cell(busy_level(20, None, 0.0)) == "2 (auto)"
    assert workers_cell({"concurrency": 20}) == "–"  # a run from before the workers were recorded


def test_a_failed_level_fills_every_column() -> None:
    workers = {"requested": 2, "count": None, "list": []}
    failed = {"concurrency": 80, "codec": "G722", "srtp": True, "workers": workers, "error": "boom\nmore"}

    cells = row(failed)

    assert len(cells) == len(COLUMNS) and cells[:5] == ["80", "G722", "on", "2", "error: boom"]


def cost_level(calls: int, codec: str, srtp: bool, cpu: float, valid: bool = True) -> dict[str, Any]:
    return {
        "concurrency": calls,
        "codec": codec,
        "srtp": srtp,
        "cpu": {"bridge_pct_per_call": cpu},
        "workers": {"requested": None, "count": 2, "list": []},
        "cost_valid": valid,
    }


def test_the_report_gives_cpu_per_call_per_codec_srtp_and_load_and_srtps_cost() -> None:
    levels = [
        cost_level(20, "PCMU", False, 0.80), cost_level(20, "PCMU", True, 0.90),
        cost_level(20, "G722", False, 1.00), cost_level(20, "G722", True, 1.05),
        cost_level(50, "PCMU", False, 0.70), cost_level(50, "PCMU", True, 0.77, valid=False),
        cost_level(50, "G722", False, 0.95),
    ]  # fmt: skip

    text = by_codec(levels)

    assert "| codec | 20 calls | 50 calls |" in text
    assert "| PCMU | 0.80 | 0.70 |" in text and "| PCMU + SRTP | 0.90 | 0.77 * |" in text
    assert "| G722 + SRTP | 1.05 | – |" in text
    assert "- PCMU, 20 calls: +0.100 % of a core per call (0.800 → 0.900, +12 %)" in text
    assert "- G722, 20 calls: +0.050 % of a core per call (1.000 → 1.050, +5 %)" in text
    assert "- PCMU, 50 calls: +0.070" in text and "starved" in text.split("- PCMU, 50 calls")[1]
    assert "G722, 50 calls" not in text  # no SRTP level to compare with


def test_a_run_of_plain_pcmu_alone_has_no_codec_summary() -> None:
    assert by_codec([cost_level(20, "PCMU", False, 0.8)]) == ""
    level = cost_level(20, "PCMU", False, 0.8)
    before_the_axis = {k: v for k, v in level.items() if k not in ("codec", "srtp")}
    assert by_codec([before_the_axis]) == ""


def test_a_level_is_named_with_its_codec_when_it_has_one() -> None:
    assert name(cost_level(20, "G722", True, 1.0)) == "20 calls G722 + SRTP"
    assert name(busy_level(20, 2, 0.0)) == "20 calls × 2 workers"  # from before the codec axis
