"""Benchmarks of the bridge, grouped by what they measure (see bench/README.md):

- ``bench.load``: calls at a time, CPU and loss (``make bench`` / ``python -m bench``), also under attack;
- ``bench.latency``: the one-way delay the bridge adds (``python -m bench.latency``);
- ``bench.micro``: per-frame costs of single pieces (``python -m bench.micro.jitter_cost``);
- ``bench.common``: what they share (paths, results sections, receive stamps, the call's pipelines).

The peers and bridge processes they drive come from ``testbed``.
"""
