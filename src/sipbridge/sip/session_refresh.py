"""An INVITE session's RFC 4028 timer on the UA's clock: when we are the refresher it refreshes the
session at half the interval (one attempt per half); when the peer is, it reports the session dead
once the peer's refresh is overdue. The terms and deadlines are ``session_timer``'s, pure."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from .message import SipResponse
from .session_timer import SessionTimer, SessionTimerTerms, TimerAction, terms_after_refresh
from .session_ua import SessionHost

Refresh = Callable[[SessionTimerTerms], Awaitable[SipResponse | None]]


class SessionRefresh:
    def __init__(self, ua: SessionHost, refresh: Refresh, fail: Callable[[str], None]) -> None:
        self._ua = ua
        self._refresh = refresh  # sends our refresh (UPDATE or re-INVITE) and returns its answer
        self._fail = fail
        self._timer: SessionTimer | None = None
        self._stopped = False
        self.refreshing = False  # our own refresh is in flight (a peer's offer meanwhile is glare)

    def restart(self, terms: SessionTimerTerms | None) -> None:
        """The session (re)negotiated ``terms``: count the interval from now; None: no timer."""
        if terms is None:
            self._disarm()
        elif self._timer is None:
            self._timer = SessionTimer(terms, self._ua.now())
            self._ua.arm(self._timer, self._on_timer)
        else:
            self._timer.refreshed(terms, self._ua.now())
            self._ua.arm(self._timer, self._on_timer)

    def stop(self) -> None:
        """The session is ending: no timer, and no outcome of a refresh in flight acted upon."""
        self._stopped = True
        self._disarm()

    def _disarm(self) -> None:
        self._ua.disarm(self._timer)
        self._timer = None

    def _on_timer(self, timer: SessionTimer) -> None:
        if timer is not self._timer or self._stopped:
            return
        action = timer.on_timer(self._ua.now())
        if action is TimerAction.EXPIRED:
            self._fail("session timer expired: no refresh from the caller")
        elif action is TimerAction.REFRESH:
            timer.deadline = self._ua.now() + timer.terms.interval / 2  # one refresh attempt per half
            asyncio.get_running_loop().create_task(self._refresh_once(timer.terms))
        self._ua.arm(timer, self._on_timer)

    async def _refresh_once(self, terms: SessionTimerTerms) -> None:
        """Refresh the session (RFC 4028 §7.4) unless a refresh is already in flight."""
        if self.refreshing or self._stopped:
            return
        self.refreshing = True
        try:
            response = await self._refresh(terms)
        finally:
            self.refreshing = False
        if self._stopped:
            return
        if response is None or not 200 <= response.status < 300:
            status = "no response" if response is None else f"{response.status} {response.reason}"
            self._fail(f"session refresh failed: {status}")
            return
        self.restart(terms_after_refresh(response, terms))
