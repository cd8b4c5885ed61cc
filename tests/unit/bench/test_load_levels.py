"""The load benchmark's plan and report without running it: which levels run with which worker
counts, and what the report says about workers and about the machine as the bound."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.load.cli import parser, plans
from bench.load.report import COLUMNS, machine_bound, row, workers_cell


def test_each_level_runs_with_each_worker_count_back_to_back(tmp_path: Path) -> None:
    args = parser().parse_args(["--calls", "20,50", "--workers", "1,2"])

    planned = [(p.calls, p.workers, p.folder.name) for p in plans(args, tmp_path)]

    assert planned == [(20, 1, "level-20-w1"), (20, 2, "level-20-w2"), (50, 1, "level-50-w1"),
                       (50, 2, "level-50-w2")]  # fmt: skip


def test_without_workers_the_bridge_keeps_its_own_default(tmp_path: Path) -> None:
    planned = plans(parser().parse_args(["--calls", "10"]), tmp_path)

    assert [(p.workers, p.folder.name) for p in planned] == [(None, "level-10")]


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
    failed = {"concurrency": 80, "workers": workers, "error": "boom\nmore"}

    cells = row(failed)

    assert len(cells) == len(COLUMNS) and cells[:3] == ["80", "2", "error: boom"]
