"""The latency budget: the one-way delay the bridge adds each way (``python -m bench.latency``).

- :mod:`.budget`: the run, its analysis and where it writes (``bench/RESULTS.md``, ``docs/measurements.md``);
- :mod:`.phone`: the phone sockets that send and time markers; :mod:`.agent`: the measuring agent
  (``python -m bench.latency.agent``); :mod:`.marker`: the tone bursts and their onset detector.
"""
