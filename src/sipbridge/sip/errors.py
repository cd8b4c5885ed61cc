"""Errors raised by the sans-IO SIP layer, carrying the response a UAS should answer with."""

from __future__ import annotations


class SipParseError(ValueError):
    """A message, header or URI that cannot be accepted.

    ``status`` is the response code to answer a request with (400 unless a more specific one
    applies: 505, 416, 413...); ``reason`` is short human text usable as the reason phrase.
    """

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status

    def __repr__(self) -> str:
        return f"SipParseError({self.reason!r}, status={self.status})"
