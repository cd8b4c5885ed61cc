"""Micro-costs: what one piece of the media path costs per frame, measured in this process alone
(``python -m bench.micro.jitter_cost``)."""
