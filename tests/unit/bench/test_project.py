"""bench.load.project: calls per node from a run's measured per-worker calls and control cost."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from bench.load.project import (
    Assumptions,
    Measured,
    NoMeasurement,
    calls_by_cpu,
    main,
    measured_from,
    project,
    report,
)


def level(
    calls: int,
    workers: int,
    loss: float | None,
    control: float | None = 0.05,
    failed: int = 0,
    worker_cpu: float = 40.0,
) -> dict[str, Any]:
    """A level record as bench/load/run.py writes it, with only what the projection reads."""
    return {
        "concurrency": calls,
        "window": {"calls_live": calls},
        "calls": {"ok": calls - failed, "failed": failed},
        "media": {"loss_pct": loss},
        "cpu": {"control_pct_per_call": control},
        "bound": [],
        "workers": {
            "requested": workers,
            "count": workers,
            "list": [{"cpu_pct": worker_cpu} for _ in range(workers)],
        },
    }


def results(*levels: dict[str, Any]) -> dict[str, Any]:
    return {"meta": {"date": "2026-12-07 20:00 UTC", "code": "commit abc", "machine": {"cores": 2}},
            "levels": list(levels)}  # fmt: skip


MEASURED = Measured(
    calls_per_worker=40.0,
    per_worker_level="80 calls × 2 workers, loss 0.40 %",
    per_worker_reached=True,
    per_worker_bound=(),
    control_pct_per_call=0.05,
    control_level="80 calls × 2 workers, loss 0.40 %",
    worker_pct_per_call=2.0,
)


def test_workers_are_the_cores_left_after_the_os_and_the_control_process() -> None:
    p = project(8, MEASURED, Assumptions(reserve_cores=1, control_cores=1))

    assert p.workers == 6
    assert p.worker_bound == 6 * 40
    assert p.control_bound == pytest.approx(90 / 0.05)  # 1800 calls at 90 % of its core
    assert p.calls == 240 and p.limit == "workers"
    assert p.control_pct == pytest.approx(240 * 0.05)


def test_the_control_process_is_the_limit_once_workers_could_carry_more() -> None:
    costly = Measured(**{**MEASURED.__dict__, "control_pct_per_call": 0.1})  # 900 calls at most

    p = project(32, costly, Assumptions())

    assert p.worker_bound == 30 * 40 and p.control_bound == pytest.approx(900)
    assert p.calls == 900 and p.limit == "control"


def test_the_assumptions_move_the_projection() -> None:
    p = project(4, MEASURED, Assumptions(reserve_cores=0, control_cores=0, control_budget_pct=50))

    assert p.workers == 4 and p.worker_bound == 160
    assert p.control_bound == pytest.approx(1000)


def test_no_core_left_means_no_worker_and_no_call() -> None:
    p = project(2, MEASURED, Assumptions(reserve_cores=1, control_cores=1))

    assert p.workers == 0 and p.calls == 0


def test_a_control_process_that_costs_nothing_measured_never_limits() -> None:
    free = Measured(**{**MEASURED.__dict__, "control_pct_per_call": 0.0})

    p = project(16, free, Assumptions())

    assert math.isinf(p.control_bound) and p.limit == "workers" and p.calls == 14 * 40


def test_calls_per_node_are_whole_calls() -> None:
    odd = Measured(**{**MEASURED.__dict__, "calls_per_worker": 12.5})

    assert project(4, odd, Assumptions()).calls == 25  # 2 workers × 12.5
    assert project(5, odd, Assumptions()).calls == 37  # 3 workers × 12.5 = 37.5


def test_per_worker_calls_come_from_the_most_loaded_level_within_the_loss_bound() -> None:
    run = results(
        level(20, 1, 0.1), level(20, 2, 0.0), level(50, 1, 3.0), level(50, 2, 0.2, control=0.04),
        level(80, 2, 4.0),
    )  # fmt: skip

    m = measured_from(run, loss_bound=1.0)

    assert m.calls_per_worker == 25  # 50 calls over 2 workers; 50 on 1 worker lost 3 %
    assert m.per_worker_reached  # 50 on one worker (50 per worker) went past the bound
    assert m.control_pct_per_call == 0.04  # the within-bound level with the most calls
    assert m.worker_pct_per_call == pytest.approx(2 * 40.0 / 50)
    assert m.per_worker_level.startswith("50 calls × 2 workers")


def test_a_failed_call_or_an_error_keeps_a_level_out() -> None:
    failed = level(50, 1, 0.0, failed=1)
    broken = {"concurrency": 80, "workers": {"requested": 1, "count": None, "list": []}, "error": "no"}

    m = measured_from(results(level(20, 1, 0.0), failed, broken), loss_bound=1.0)

    assert m.calls_per_worker == 20 and m.per_worker_reached


def test_per_worker_calls_are_a_lower_bound_when_no_level_went_past_it() -> None:
    m = measured_from(results(level(20, 1, 0.0), level(40, 2, 0.5)), loss_bound=1.0)

    assert m.calls_per_worker == 20 and not m.per_worker_reached


def test_no_level_within_the_bound_gives_no_projection() -> None:
    with pytest.raises(NoMeasurement):
        measured_from(results(level(50, 1, 6.0)), loss_bound=1.0)
    with pytest.raises(NoMeasurement):  # a run from before the control process was measured
        measured_from(results(level(20, 1, 0.0, control=None)), loss_bound=1.0)


def test_cpu_alone_is_shown_beside_it_as_a_projection() -> None:
    assert calls_by_cpu(MEASURED) == pytest.approx(90 / 2.0)
    assert calls_by_cpu(Measured(**{**MEASURED.__dict__, "worker_pct_per_call": None})) is None


def test_the_report_labels_what_is_measured_and_what_is_projected() -> None:
    text = report(results(level(20, 1, 0.0), level(50, 2, 0.2)), Assumptions(), cores=(4, 8))

    assert "Measured (" in text and "Assumptions (not measured)" in text
    assert "calls per node (projected)" in text
    rows = [line for line in text.splitlines() if line.startswith("| 4 |") or line.startswith("| 8 |")]
    assert rows == [
        "| 4 | 2 | 50 | 1800 | 50 | workers | 2.5 |",
        "| 8 | 6 | 150 | 1800 | 150 | workers | 7.5 |",
    ]


def test_the_command_prints_the_table_or_says_why_not(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps(results(level(20, 1, 0.0))))
    bad.write_text(json.dumps(results(level(20, 1, 9.0))))

    assert main([str(good), "--cores", "16"]) == 0
    assert "| 16 | 14 | 280 |" in capsys.readouterr().out
    assert main([str(bad)]) == 1
    assert "no projection" in capsys.readouterr().out


def test_a_run_with_several_codecs_is_projected_from_its_plain_pcmu_levels() -> None:
    pcmu, g722 = {"codec": "PCMU", "srtp": False}, {"codec": "G722", "srtp": False}
    run = results(
        {**level(20, 1, 0.0), **pcmu},
        {**level(50, 1, 0.0), **g722},
        {**level(50, 1, 0.0), **pcmu, "srtp": True},
    )

    m = measured_from(run, loss_bound=1.0)

    assert m.calls_per_worker == 20 and m.per_worker_level == "20 calls PCMU × 1 worker, loss 0.00 %"
    g722_only = measured_from(results({**level(50, 1, 0.0), **g722}), loss_bound=1.0)
    assert g722_only.calls_per_worker == 50  # none of plain PCMU: the first level's kind
