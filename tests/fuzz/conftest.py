"""Hypothesis profiles for the parser fuzz targets.

``default`` is the short run inside ``make test``: few examples per target, derandomised so that a
test run is reproducible (all targets together take a few seconds). ``fuzz`` is the long run of
``make fuzz``: random, ``FUZZ_EXAMPLES`` examples per target (default 20000). Select one with
``HYPOTHESIS_PROFILE``. Both give every example a deadline: a parser is microseconds per input, so an
input that takes a second is a pathological case (a backtracking regex, a quadratic loop), and
``tests.fuzz.corpus.checked`` turns an outright hang into a failure after ``HANG_SECONDS``.
"""

from __future__ import annotations

import os
from datetime import timedelta

from hypothesis import HealthCheck, Phase, settings

DEADLINE = timedelta(seconds=1)
_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large]

settings.register_profile(
    "default",
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "150")),
    deadline=DEADLINE,
    derandomize=True,
    database=None,
    suppress_health_check=_SLOW_OK,
)
settings.register_profile(
    "fuzz",
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "20000")),
    deadline=DEADLINE,
    suppress_health_check=_SLOW_OK,
    # The explicit examples and the saved failures run first; then generate and shrink.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
