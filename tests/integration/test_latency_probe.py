"""The latency benchmark (bench/latency/budget.py) end to end on a short run: markers go through the real
bridge both ways, are detected and timed. Behaviour only; the figures come from the benchmark."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench.latency.budget import parser, run
from bench.latency.marker import FRAME, OnsetDetector, burst_frames

pytestmark = [
    pytest.mark.integration,
    pytest.mark.sipp,
]


def test_markers_come_back_detected_both_ways(tmp_path: Path) -> None:
    args = parser().parse_args(
        ["--markers", "8", "--calls", "2", "--every-ms", "400", "--no-write-results", "--out", str(tmp_path)]
    )

    results = run(args)

    assert results["sipp_ok"], results
    for direction in ("phone_to_agent", "agent_to_phone"):
        figures = results[direction]
        assert figures["n"] >= 6 and figures["missing"] == 0, (direction, figures, results["folder"])
        delays = [figures[k] for k in ("min_ms", "p50_ms", "p99_ms", "max_ms")]
        assert all(math.isfinite(d) and d > 0 for d in delays), (direction, figures)
    assert results["detector_bias_samples"] == [0]  # exact on what the phone sent
    assert results["codec"]["found"] == results["codec"]["markers"]
    assert (tmp_path / Path(results["folder"]).name / "results.json").is_file()


def test_detector_finds_the_onset_at_its_sample_and_once_per_burst() -> None:
    detector = OnsetDetector()
    silence = burst_frames(0)[-1] * 0
    frames = [silence] * 6 + burst_frames(57) + [silence] * 6 + burst_frames(0)
    found = [(k, at) for k, frame in enumerate(frames) if (at := detector.feed(frame)) is not None]
    assert found == [(6, 57), (6 + 4 + 6, 0)]
    assert all(len(f) == FRAME for f in frames)
