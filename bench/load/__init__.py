"""The load benchmark: N concurrent calls through the bridge, its CPU, memory and loss per level
(``python -m bench`` = ``make bench``), and the same under hostile traffic (``python -m bench.load.flood``,
``python -m bench.load.attacks``). See bench/README.md.
"""
