"""The declarations of the webhook settings: where the bridge POSTs what happens to its calls."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .declare import setting
from .security import key_problem
from .values import ConfigError, Url, Value


class WebhookSecret(Value):
    """The key both ends sign with: the API keys' sanity check (never showing the value)."""

    form = "16 or more visible ASCII characters"
    metavar = "SECRET"

    def parse(self, raw: Any, name: str) -> str:
        secret = str(raw).strip()
        problem = key_problem(secret)
        if problem:
            raise ConfigError(f"{name}: the secret {problem} (make one with `openssl rand -hex 32`)")
        return secret


@dataclass(frozen=True)
class WebhookSettings:
    """Webhooks

    Status callbacks: a signed POST to your URL as each call rings, is answered, is transferred,
    gets a digit from the phone and ends.
    """

    webhook_url: str | None = setting(
        None,
        Url(),
        "URL that gets a POST (JSON) for each call event: ringing, answered, transfer, dtmf, ended",
        more="Delivered in order, retried with backoff for up to 5 minutes per event; at most 1,000"
        " events wait while the receiver is down (the oldest are dropped, counted in `/metrics`); a"
        " slow or dead receiver never delays a call. Events and their bodies: [webhooks.md](webhooks.md).",
    )
    webhook_secret: str | None = setting(
        None,
        WebhookSecret(),
        "key of the `X-Sipbridge-Signature` HMAC-SHA256 on each webhook POST (never logged)",
        more="Without it the POSTs are unsigned and a receiver cannot tell them from forgeries. Keep it"
        " in the environment or a file only you read, as the other secrets.",
        secret=True,
    )
