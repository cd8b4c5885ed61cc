"""What happened on a call that its view shows: the agent's events, the conversation, the digits."""

from __future__ import annotations

import time
from typing import Any

MAX_DIGITS = 200
MAX_EVENTS = 200


class CallActivity:
    """Bounded records (a long call keeps the last ``MAX_EVENTS`` and ``MAX_DIGITS``)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.conversation: list[dict[str, str]] = []  # final transcripts and the agent's responses
        self.digits: list[dict[str, Any]] = []

    def agent_event(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        del self.events[:-MAX_EVENTS]
        kind, text = event.get("type"), event.get("text")
        if isinstance(text, str) and (kind == "response" or (kind == "transcript" and event.get("final"))):
            self.conversation.append({"from": "agent" if kind == "response" else "caller", "text": text})
            del self.conversation[:-MAX_EVENTS]

    def link_event(self, state: str, **detail: str) -> None:
        """The agent link failed, resumed or came back as a new conversation."""
        self.events.append({"type": "link", "state": state, **detail, "at": time.time()})
        del self.events[:-MAX_EVENTS]

    def digits_in(self, digits: str, source: str, via: str, at: float) -> None:
        """Digits from the ``phone`` or the ``agent``, sent ``via`` rfc4733 or sip-info."""
        self.digits.extend({"digit": d, "from": source, "via": via, "at": at} for d in digits)
        del self.digits[:-MAX_DIGITS]

    def phone_digits(self) -> str:
        return "".join(d["digit"] for d in self.digits if d["from"] == "phone")
