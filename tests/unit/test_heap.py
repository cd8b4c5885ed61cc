"""Giving memory back while no call is up (sipbridge.heap)."""

from __future__ import annotations

import gc
import weakref

from sipbridge.heap import IdleTidy, rss_kib, tidy_heap


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def test_tidy_collects_garbage_in_reference_cycles():
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    alive = weakref.ref(a)
    gc.disable()
    try:
        del a, b
        assert alive() is not None  # a cycle outlives its last reference until a collection
        tidy_heap()
        assert alive() is None
    finally:
        gc.enable()


def test_rss_is_read_from_proc():
    assert rss_kib() > 1024


def test_no_tidy_before_any_call_nor_while_calls_are_up():
    policy = IdleTidy(window=42)
    assert not policy.due(now=5, active=0, work=0)  # a fresh bridge: nothing to give back
    assert not policy.due(now=10, active=2, work=2)
    assert not policy.due(now=15, active=1, work=3)


def test_tidy_while_idle_until_the_window_after_the_last_call_passes():
    policy = IdleTidy(window=42)
    policy.due(now=10, active=1, work=1)  # last seen busy at 10
    assert policy.due(now=15, active=0, work=1)
    assert policy.due(now=52, active=0, work=1)
    assert not policy.due(now=53, active=0, work=1)  # everything the calls held is gone by now


def test_calls_that_came_and_went_between_two_checks_count_as_busy():
    policy = IdleTidy(window=42)
    policy.due(now=10, active=1, work=1)
    assert not policy.due(now=100, active=0, work=4)  # three short calls since: busy at 100
    assert policy.due(now=105, active=0, work=4)
    assert policy.due(now=142, active=0, work=4)


def test_a_flood_without_calls_is_tidied_after_too():
    """Work that made no call (thousands of refused INVITEs) leaves garbage as well."""
    policy = IdleTidy(window=42)
    assert not policy.due(now=5, active=0, work=0)
    assert not policy.due(now=10, active=0, work=30)  # 30,000 messages, no call: busy
    assert not policy.due(now=15, active=0, work=55)  # still flooding
    assert policy.due(now=20, active=0, work=55)  # quiet again: give the heap back
