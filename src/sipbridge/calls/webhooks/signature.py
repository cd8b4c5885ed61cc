"""The ``X-Sipbridge-Signature`` header: Stripe's scheme, so receivers can reuse what they know.

``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + body, keyed by webhook_secret>``. The time is the
POST's own (each retry signs anew), so a receiver that refuses a signature older than a few minutes
refuses a replayed POST, and the HMAC over ``t`` keeps the time from being changed.
"""

from __future__ import annotations

import hashlib
import hmac

HEADER = "X-Sipbridge-Signature"
SCHEME = "v1"
TOLERANCE_S = 300  # what verify() accepts by default: a receiver's choice, Stripe's default


def signature(secret: str, body: bytes, t: int) -> str:
    """The header's value for ``body`` sent at unix time ``t``."""
    return f"t={t},{SCHEME}={_mac(secret, body, t)}"


def verify(secret: str, body: bytes, header: str, now: float, tolerance: float = TOLERANCE_S) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` no more than ``tolerance`` seconds before
    (or after) ``now``: what a receiver checks."""
    fields = [part.split("=", 1) for part in header.split(",") if "=" in part]
    times = [value for name, value in fields if name.strip() == "t"]
    macs = [value.strip() for name, value in fields if name.strip() == SCHEME]
    if len(times) != 1 or not times[0].strip().isdigit() or not macs:
        return False
    t = int(times[0])
    if abs(now - t) > tolerance:
        return False
    expected = _mac(secret, body, t)
    return any(hmac.compare_digest(expected, mac) for mac in macs)


def _mac(secret: str, body: bytes, t: int) -> str:
    return hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
