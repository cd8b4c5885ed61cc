"""Load benchmark of the bridge: ``make bench`` / ``python -m bench`` (see bench/README.md)."""
