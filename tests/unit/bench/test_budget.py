"""bench.latency.budget writes its row into docs/measurements.md, below the marker, and nowhere else."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.latency.budget import MEASUREMENTS, NoLatencyRow, latency_row, update_measurements

RESULTS = {
    "phone_to_agent": {"p50_ms": 21.5, "p95_ms": 23, "p99_ms": 24, "max_ms": 30},
    "agent_to_phone": {"p50_ms": 31, "p95_ms": 33, "p99_ms": 34.5, "max_ms": 40},
    "command": ".venv/bin/python -m bench.latency",
}
MARKER = "<!-- latency-row: bench/latency/budget.py rewrites the next table row -->"
HEADER = ["| what | figure | command |", "|---|---|---|"]
OTHER_TABLE = ["| a | b |", "|---|---|", "| an older row | stays |"]


def page(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "measurements.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_it_writes_into_docs_measurements_by_default() -> None:
    assert MEASUREMENTS.parts[-2:] == ("docs", "measurements.md")


def test_the_first_row_below_the_marker_is_replaced(tmp_path: Path) -> None:
    rows = ["| old latency | x | y |", "| next | 1 | 2 |"]
    path = page(tmp_path, "# Measured", *OTHER_TABLE, "", MARKER, *HEADER, *rows)
    update_measurements(RESULTS, path)
    lines = path.read_text().splitlines()
    assert lines[1:4] == OTHER_TABLE
    row = lines.index(MARKER) + 3
    assert lines[row] == latency_row(RESULTS) and lines[row + 1] == "| next | 1 | 2 |"
    assert "**21.5/23/24/30** ms" in lines[row] and "`.venv/bin/python -m bench.latency`" in lines[row]


def test_a_table_without_rows_gets_the_row(tmp_path: Path) -> None:
    path = page(tmp_path, MARKER, "", *HEADER, "", "text after")
    update_measurements(RESULTS, path)
    assert path.read_text().splitlines() == [MARKER, "", *HEADER, latency_row(RESULTS), "", "text after"]


@pytest.mark.parametrize(
    "lines",
    [
        ["# Measured", *HEADER, "| One-way delay the bridge adds | x | y |"],  # no marker
        ["# Measured", MARKER, "no table here"],
    ],
)
def test_without_marker_and_table_it_fails_and_writes_nothing(tmp_path: Path, lines: list[str]) -> None:
    path = page(tmp_path, *lines)
    before = path.read_text()
    with pytest.raises(NoLatencyRow, match="measurements.md"):
        update_measurements(RESULTS, path)
    assert path.read_text() == before


def test_a_missing_page_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(NoLatencyRow, match="latency-row"):
        update_measurements(RESULTS, tmp_path / "measurements.md")
    assert not (tmp_path / "measurements.md").exists()
