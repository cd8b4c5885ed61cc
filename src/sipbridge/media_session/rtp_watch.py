"""RTP inactivity: how long the phone has sent nothing, not counting while the caller holds the call."""

from __future__ import annotations


class RtpWatch:
    """Sans-IO: the times come in as arguments (``time.monotonic()`` seconds)."""

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout  # None: never
        self._since: float | None = None  # the count starts here (the call's start, a resume)
        self._on_hold = False

    def start(self, now: float) -> None:
        self._since = now

    def hold(self, on_hold: bool, now: float) -> None:
        """The caller holds (or resumes) the call: no count meanwhile, and a fresh one after."""
        if on_hold or self._on_hold:
            self._since = now
        self._on_hold = on_hold

    def silent_for(self, now: float, last_packet_at: float | None) -> float | None:
        """Seconds without RTP once they reach the timeout; None before (or on hold)."""
        if self.timeout is None or self._on_hold:
            self._since = now  # holding restarts the count
            return None
        last = max(t for t in (last_packet_at, self._since, 0.0) if t is not None)
        return now - last if now - last >= self.timeout else None
