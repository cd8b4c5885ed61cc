"""The call's link to the agent over WHIP/WebRTC, and its recovery when the path fails.

A failed link (ICE failed, or nothing from the agent for a while) is redialled with the resume
token until it answers or the resume window closes; the phone leg stays up meanwhile and hears
comfort silence. What happens is reported as plain-data events (``emit``); a link that is replaced
keeps reporting nothing, whatever its callbacks still say.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from ..agent.link import AgentLink
from ..agent.whip import AgentUnavailable as LinkUnavailable
from ..agent.whip import WhipClient
from ..metrics import MediaCounters
from .messages import AgentClosed, AgentEvent, AgentFailed, AgentLost, AgentRecovered, MediaEvent

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 2.0


class AgentLeg:
    def __init__(
        self,
        whip: WhipClient,
        config: Any,  # the bridge's Config: agent_timeout, agent_resume_window, ice_servers, ...
        *,
        resource_id: str | None,
        direction: str,
        on_packet: Callable[[int, bytes, bool], None],
        on_event: Callable[[dict[str, Any]], None],
        emit: Callable[[MediaEvent], None],
    ) -> None:
        self._config = config
        # Every link of this leg, the first and the redialled ones, is dialled with these.
        self._dial = partial(
            AgentLink,
            whip,
            resource_id=resource_id,
            direction=direction,
            ice_servers=list(config.ice_servers),
            silence_timeout=config.agent_silence_timeout,
        )
        self._on_packet = on_packet
        self._on_event = on_event
        self._emit = emit
        self.link: AgentLink | None = None
        # fmtp for the Opus we offer the agent: a phone on Opus gets the agent's packets as they
        # are, so the agent is asked for what the phone plays (``relay_params``)
        self.opus_params: dict[str, str] = {}
        self.greeting: dict[str, Any] | None = None  # the call's context: first on every link's events
        self._recovery: asyncio.Task[None] | None = None
        self._closed = False
        self.reconnects = 0
        self._replaced = MediaCounters()  # what the links before the current one carried

    # -- setup ---------------------------------------------------------------------------------

    async def connect(self) -> str | None:
        """Dial the agent and wait until media flows: None, or why it could not be reached."""
        timeout = self._config.agent_timeout
        self.link = self._new_link()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            await self.link.connect(timeout)
            # Connected only once media can flow: a WHIP answer alone does not prove the agent hears us.
            await self.link.wait_connected(max(0.0, deadline - loop.time()))
        except LinkUnavailable as exc:
            return exc.reason
        return None

    def _new_link(self, resume_token: str | None = None) -> AgentLink:
        """A link whose end reports to this leg only while it is the leg's link."""

        def closed(reason: str) -> None:
            if link is self.link and not self._closed:
                self._emit(AgentClosed(reason))

        def failed(reason: str) -> None:
            if link is self.link:
                self._link_failed(reason)

        fresh = True  # this link's first packet starts a new stream (sequence numbers) for the leg

        def packet(sequence: int, payload: bytes) -> None:
            nonlocal fresh
            if link is self.link:
                self._on_packet(sequence, payload, fresh)
                fresh = False

        link = self._dial(
            opus_params=self.opus_params,
            greeting=self.greeting,
            on_event=self._agent_event,
            on_closed=closed,
            on_failed=failed,
            on_packet=packet,
            resume_token=resume_token,
        )
        return link

    def _agent_event(self, event: dict[str, Any]) -> None:
        self._on_event(event)
        self._emit(AgentEvent(event, time.time()))

    # -- media and events ----------------------------------------------------------------------

    def send_opus(self, packet: bytes, samples: int | None = None) -> None:
        """One Opus packet to the agent (``samples``: its length at 48 kHz, when not 20 ms)."""
        if self.link is not None:
            self.link.send_opus(packet, samples)

    def send_event(self, event: dict[str, Any]) -> None:
        if self.link is not None:
            self.link.send_event(event)

    # -- recovery ------------------------------------------------------------------------------

    def _link_failed(self, reason: str) -> None:
        if self._closed or self._recovery is not None:
            return
        window = self._config.agent_resume_window
        self._emit(AgentFailed(reason, recovering=window > 0))
        if window <= 0:
            return
        log.warning("agent link failed (%s); redialling with the resume token", reason)
        self._recovery = asyncio.get_running_loop().create_task(self._recover(reason))

    async def _recover(self, reason: str) -> None:
        """Redial the agent with the resume token until it answers or the window closes."""
        assert self.link is not None
        config = self._config
        token = self.link.session.resume_token if self.link.session else ""
        await self.link.abandon()  # no DELETE: that would end the conversation we want back
        loop = asyncio.get_running_loop()
        deadline = loop.time() + config.agent_resume_window
        backoff, last_error = 0.25, reason
        while not self._closed and (remaining := deadline - loop.time()) > 0:
            link = self._new_link(token or None)
            try:
                await link.connect(min(config.agent_timeout, remaining))
                await link.wait_connected(min(config.agent_timeout, max(0.0, deadline - loop.time())))
            except LinkUnavailable as exc:
                last_error = exc.reason
                token = link.session.resume_token if link.session and link.session.resume_token else token
                await link.abandon()
                await asyncio.sleep(min(backoff, max(0.0, deadline - loop.time())))
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            except asyncio.CancelledError:
                await link.close()
                raise
            self._resumed(link)
            return
        self._recovery = None
        if not self._closed:
            window = config.agent_resume_window
            self._emit(
                AgentLost(
                    f"agent link failed ({reason}) and was not recovered within {window:g} s: {last_error}"
                )
            )

    def _resumed(self, link: AgentLink) -> None:
        assert link.session is not None
        if self.link is not None:
            self._replaced.add(link_counters(self.link))
        self.link, self._recovery = link, None
        self.reconnects += 1
        status = link.session.resume_status or "unknown"
        if status == "resumed":
            log.info("agent link resumed")
        else:  # the agent lost the conversation: the call goes on with a new one
            log.warning("agent link back as a new conversation (resume %s)", status)
        self._emit(AgentRecovered(status))

    # -- the end -------------------------------------------------------------------------------

    async def close(self) -> None:
        self._closed = True
        recovery, self._recovery = self._recovery, None
        if recovery is not None and recovery is not asyncio.current_task():
            recovery.cancel()
            await asyncio.gather(recovery, return_exceptions=True)
        if self.link is not None:
            await self.link.close()

    # -- figures -------------------------------------------------------------------------------

    def counters(self) -> MediaCounters:
        counters = MediaCounters()
        counters.add(self._replaced)
        if self.link is not None:
            counters.add(link_counters(self.link))
        return counters

    def view(self) -> dict[str, Any] | None:
        if self.link is None:
            return None
        stats = self.link.stats
        return {
            "state": "reconnecting" if self._recovery is not None else self.link.state,
            "reconnects": self.reconnects,
            "resume_status": self.link.session.resume_status if self.link.session else None,
            "packets_sent": stats.packets_sent,
            "packets_dropped": stats.packets_dropped,
            "packets_received": stats.packets_received,
            "events_received": stats.events_received,
        }


def link_counters(link: AgentLink) -> MediaCounters:
    stats = link.stats
    return MediaCounters(
        agent_packets_sent=stats.packets_sent,
        agent_packets_received=stats.packets_received,
        agent_packets_dropped=stats.packets_dropped,
    )


# The phone's Opus fmtp (RFC 7587 §6.1) as the agent must hear it: what the phone plays at most is
# what the agent should code for (its packets reach the phone as they are), what the phone captures
# is what we send the agent.
_RELAYED_PARAMS = {"maxplaybackrate": "maxplaybackrate", "sprop-maxcapturerate": "sprop-maxcapturerate"}


def relay_params(phone_fmtp: str) -> dict[str, str]:
    """The fmtp parameters to offer the agent for a phone on Opus whose fmtp is ``phone_fmtp``
    (values checked: whole numbers within Opus's 8000-48000)."""
    params = {}
    for item in phone_fmtp.split(";"):
        name, _, value = item.strip().partition("=")
        ours = _RELAYED_PARAMS.get(name.strip().lower())
        if ours and value.strip().isdigit() and 8000 <= int(value) <= 48000:
            params[ours] = value.strip()
    return params
