"""The webhook sender: the thin asyncio shell around the outbox, POSTing with aiohttp.

A call's part is ``call_event``: it makes the event's body and queues it, never awaits, so a slow or
dead receiver cannot delay a call. One task sends, one event at a time, in order; what to try when is
the outbox's (pure) business. Each POST has REQUEST_TIMEOUT_S; redirects are not followed.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

import aiohttp

from ... import __version__, metrics
from .events import Event, make_event
from .outbox import Fate, Outbox, Pending, Verdict, verdict_of
from .signature import HEADER, signature

if TYPE_CHECKING:
    from ..call import Call

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 5.0
STOP_GRACE_S = 1.5  # at shutdown: what waits may go out for this long, then it is given up
DROP_LOG_INTERVAL_S = 10.0  # a full queue drops on every event: one log line per interval says so


class Attempt(NamedTuple):
    verdict: Verdict
    retry_after: float | None = None  # what the receiver asked for (Retry-After), in seconds
    failure: str | None = None  # what went wrong, for the log


class WebhookSender:
    def __init__(
        self,
        url: str,
        secret: str | None = None,
        *,
        outbox: Outbox | None = None,
        timeout: float = REQUEST_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self._secret = secret
        self.outbox = outbox if outbox is not None else Outbox()  # an empty one is falsy
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._clock = clock
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._http: aiohttp.ClientSession | None = None
        self._drops_unlogged = 0
        self._drop_logged_at: float | None = None

    # -- what the calls do: queue ----------------------------------------------------------------

    def call_event(self, call: Call, kind: str, data: dict[str, Any]) -> None:
        """The calls' observer (``Call.notify``): the event's body is made now, sent later."""
        event = make_event(call, kind, data, time.time())
        if event is not None:
            self.queue(event)

    def queue(self, event: Event) -> None:
        dropped = self.outbox.add(event, self._clock())
        if dropped is not None:
            self._dropped(dropped)
        metrics.webhook_queue(len(self.outbox))
        self._wake.set()

    # -- start and stop ----------------------------------------------------------------------------

    async def start(self) -> None:
        self._http = aiohttp.ClientSession(headers={"User-Agent": f"sipbridge/{__version__}"})
        # Its own empty context: its log lines must not carry the id of a call that happened to start it.
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run(), name="webhooks", context=contextvars.Context())
        signed = "signed" if self._secret else "UNSIGNED (no webhook_secret)"
        log.info("webhooks: POST to %s, %s", _origin(self.url), signed)

    async def stop(self, grace: float = STOP_GRACE_S) -> None:
        """Let what waits go out for up to ``grace`` seconds, then give the rest up."""
        deadline = self._clock() + grace
        while self._task is not None and len(self.outbox) and self._clock() < deadline:
            await asyncio.sleep(0.02)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if len(self.outbox):
            log.warning("webhooks: %d event(s) not delivered at shutdown", len(self.outbox))
        if self._http is not None:
            await self._http.close()
            self._http = None

    # -- sending -----------------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            now = self._clock()
            for event in self.outbox.expire(now):
                self._gave_up(event, Fate.EXPIRED)
            pending = self.outbox.due(now)
            if pending is None:
                await self._sleep(self.outbox.wake_at(), now)
                continue
            attempt = await self._attempt(pending.event)
            fate = self.outbox.settle(pending, attempt.verdict, self._clock(), attempt.retry_after)
            self._note(pending, attempt, fate)
            metrics.webhook_queue(len(self.outbox))

    async def _sleep(self, wake_at: float | None, now: float) -> None:
        """Until the head is due (or expires), or a new event comes."""
        metrics.webhook_queue(len(self.outbox))  # some may have expired
        self._wake.clear()
        timeout = None if wake_at is None else max(0.0, wake_at - now)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    async def _attempt(self, event: Event) -> Attempt:
        """One POST of ``event``; a failed one is counted by its reason."""
        assert self._http is not None
        headers = {
            "Content-Type": "application/json",
            "X-Sipbridge-Event": event.type,
            "X-Sipbridge-Event-Id": event.id,
        }
        if self._secret:
            headers[HEADER] = signature(self._secret, event.body, int(time.time()))
        try:
            async with self._http.post(
                self.url, data=event.body, headers=headers, timeout=self._timeout, allow_redirects=False
            ) as resp:
                status, retry_after = resp.status, _seconds(resp.headers.get("Retry-After"))
        except TimeoutError:
            metrics.webhook_failed("timeout")
            return Attempt(Verdict.RETRY, failure=f"no answer within {self._timeout.total:g} s")
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            metrics.webhook_failed("connection")
            return Attempt(Verdict.RETRY, failure=str(exc) or type(exc).__name__)
        except Exception as exc:  # a bug of ours or aiohttp's must not stop the sender for good
            log.exception("webhook %s %s: POST failed", event.type, event.id)
            metrics.webhook_failed("connection")
            return Attempt(Verdict.RETRY, failure=type(exc).__name__)
        verdict = verdict_of(status)
        if verdict is Verdict.DELIVERED:
            return Attempt(verdict)
        metrics.webhook_failed("status")
        return Attempt(verdict, retry_after, f"answered {status}")

    def _note(self, pending: Pending, attempt: Attempt, fate: Fate | None) -> None:
        """Count and log what the attempt made of the event."""
        event = pending.event
        extra = {"call_id": event.call_id}
        if attempt.failure is not None:
            log.debug("webhook %s %s: %s", event.type, event.id, attempt.failure, extra=extra)
        if fate is Fate.DELIVERED:
            metrics.webhook_event(fate)
        elif fate is not None:
            self._gave_up(event, fate, attempt.failure)
        elif attempt.verdict is Verdict.RETRY and pending.failures == 1:  # once an event, not per retry
            log.warning(
                "webhook %s %s not delivered (%s): retrying for up to %g s",
                event.type,
                event.id,
                attempt.failure,
                self.outbox.max_age,
                extra=extra,
            )

    def _gave_up(self, event: Event, fate: Fate, failure: str | None = None) -> None:
        metrics.webhook_event(fate)
        why = f" ({failure})" if failure else ""
        extra = {"call_id": event.call_id}
        log.warning("webhook %s %s given up: %s%s", event.type, event.id, fate, why, extra=extra)

    def _dropped(self, event: Event) -> None:
        """The queue was full: ``event``, the oldest, made room. Logged once per interval."""
        metrics.webhook_event(Fate.DROPPED)
        self._drops_unlogged += 1
        now = self._clock()
        if self._drop_logged_at is None or now - self._drop_logged_at >= DROP_LOG_INTERVAL_S:
            log.warning(
                "webhooks: queue full (%d events): dropped the %d oldest",
                self.outbox.capacity,
                self._drops_unlogged,
            )
            self._drops_unlogged, self._drop_logged_at = 0, now


def _seconds(value: str | None) -> float | None:
    """A ``Retry-After`` in seconds (an HTTP date is not worth parsing here: None)."""
    if value is None or not value.strip().isdigit():
        return None
    return float(value.strip())


def _origin(url: str) -> str:
    """Scheme, host and port only: a webhook URL's path or query may hold a token."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}"
