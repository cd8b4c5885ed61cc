"""A process's recent CPU share, from its CPU seconds sampled at given times (no clock, no load)."""

from __future__ import annotations

import pytest

from sipbridge.cpu_share import CpuShare


def test_nothing_is_known_before_two_samples():
    share = CpuShare(window=3.0)
    assert share.percent == 0.0
    assert share.sample(10.0, 5.0) == 0.0


def test_the_share_is_cpu_seconds_over_wall_seconds():
    share = CpuShare(window=3.0)
    share.sample(0.0, 1.0)
    assert share.sample(1.0, 1.25) == pytest.approx(25.0)
    assert share.sample(2.0, 2.25) == pytest.approx(62.5)  # 1.25 s of CPU in 2 s


def test_only_the_last_window_counts():
    share = CpuShare(window=3.0)
    share.sample(0.0, 0.0)
    share.sample(1.0, 1.0)  # a busy second...
    for t in range(2, 10):
        share.sample(float(t), 1.0)  # ... then idle
    assert share.percent == 0.0
    assert share.sample(10.0, 1.5) == pytest.approx(50.0 / 3.0)  # 0.5 s in the last 3 s


def test_the_window_is_always_spanned_whole_even_with_sparse_samples():
    share = CpuShare(window=3.0)
    share.sample(0.0, 0.0)
    share.sample(5.0, 1.0)
    assert share.sample(6.0, 1.0) == pytest.approx(100.0 / 6.0)  # 0..6: nothing newer spans 3 s


def test_several_threads_can_use_more_than_a_core_and_a_clock_that_stands_still_is_no_error():
    share = CpuShare(window=3.0)
    share.sample(0.0, 0.0)
    assert share.sample(1.0, 1.5) == pytest.approx(150.0)
    fresh = CpuShare()
    fresh.sample(1.0, 0.0)
    assert fresh.sample(1.0, 0.1) == 0.0
