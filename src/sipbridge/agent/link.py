"""AgentLink: one call's WebRTC peer connection to the voice agent, set up over WHIP.

Audio goes out as ready-made Opus packets (``send_opus``) and comes back as the agent's Opus RTP
payloads, each handed on as it arrives (``on_packet``: decoding or relaying them is the caller's
choice, see ``receiver.py``). The agent's JSON events arrive on the ``events`` data channel
(``on_event``).

How the agent side goes away decides what can follow, and one of two callbacks fires, once:
- ``on_closed``: the agent hung up (its DTLS close or SCTP abort arrived: the channel or the connection
  closed). The conversation is over.
- ``on_failed``: the path failed (ICE failed, or nothing at all, not even RTCP, arrived for
  ``silence_timeout`` seconds). The agent may still hold the conversation: a new link made with
  ``resume_token=session.resume_token`` can reattach to it; ``abandon()`` lets this one go without
  the WHIP DELETE that would end the conversation.
``close()`` (or ``abandon()``) is ours to call in every case, and never raises.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc import sdp as aiortc_sdp

from sipbridge.agent.rtp_tap import tap_receiver
from sipbridge.agent.tracks import OpusPacketTrack
from sipbridge.agent.whip import AgentUnavailable, WhipClient, WhipSession

logger = logging.getLogger(__name__)

EVENTS_LABEL = "events"
OPUS_PAYLOAD_TYPE = 111
OPUS_FMTP = {"minptime": 10, "useinbandfec": 1}
PC_CLOSE_TIMEOUT = 3.0
NO_CANDIDATES = (
    "no local ICE candidates: aioice skips 127.0.0.1, so the host needs another address "
    "(any interface, or a second loopback address such as 127.0.0.2)"
)

EventHandler = Callable[[dict], None]
ClosedHandler = Callable[[str], None]
PacketHandler = Callable[[int, bytes], None]  # an agent audio packet's sequence number and payload
LIVENESS_INTERVAL = 1.0
DEFAULT_SILENCE_TIMEOUT = 5.0  # aiortc sends RTCP every 0.5-1.5 s, libwebrtc audio at least every 7.5 s


@dataclass(frozen=True)
class LinkStats:
    packets_sent: int = 0
    packets_dropped: int = 0
    packets_received: int = 0
    events_received: int = 0


class AgentLink:
    """One call's link to the agent.

    ``state`` goes ``new`` → ``connecting`` → ``answered`` (WHIP answer applied) → ``connected`` (ICE and
    DTLS up); ``disconnected`` when the agent side went away, ``failed`` when ``connect`` failed, and
    ``closed`` after ``close()``.
    """

    def __init__(
        self,
        whip: WhipClient,
        *,
        resource_id: str | None,
        direction: str = "inbound",
        ice_servers: Sequence[str] = (),
        on_event: EventHandler | None = None,
        on_closed: ClosedHandler | None = None,
        on_failed: ClosedHandler | None = None,
        on_packet: PacketHandler | None = None,
        resume_token: str | None = None,
        silence_timeout: float | None = DEFAULT_SILENCE_TIMEOUT,
        opus_params: dict[str, str] | None = None,
        greeting: dict | None = None,
    ) -> None:
        self._whip = whip
        self.resource_id = resource_id
        self.direction = direction
        self.resume_token = resume_token
        self._silence_timeout = silence_timeout
        self._opus_params = opus_params or {}  # more fmtp for the offer (a phone on Opus: its band)
        self._greeting = greeting  # sent first once the events channel opens (the call's context)
        self._on_failed = on_failed
        self._liveness: asyncio.Task[None] | None = None
        self._ice_servers = list(ice_servers)
        self._on_event = on_event
        self._on_closed = on_closed
        self._on_packet = on_packet
        self.session: WhipSession | None = None
        self.state = "new"
        self._pc: RTCPeerConnection | None = None
        self._channel: RTCDataChannel | None = None
        self._track = OpusPacketTrack()
        self._received = 0
        self._negotiation: asyncio.Task[None] | None = None
        self._undeleted: WhipSession | None = None
        self._settled = asyncio.Event()  # media connected, or the link is over
        self._close_lock = asyncio.Lock()
        self._closing = False
        self._gone = False
        self._events = 0

    @property
    def stats(self) -> LinkStats:
        return LinkStats(self._track.sent, self._track.dropped, self._received, self._events)

    # ── setup ────────────────────────────────────────────────────────────────────────────────

    async def connect(self, timeout: float) -> None:
        """Offer, POST over WHIP, apply the answer. Raises :class:`AgentUnavailable`, cleaned up.

        ``close()`` while this runs aborts it: it then raises :class:`AgentUnavailable` at once.
        """
        if self.state != "new":
            raise RuntimeError(f"AgentLink.connect() called in state {self.state}")
        self.state = "connecting"
        self._negotiation = asyncio.create_task(self._negotiate(), name="agent-negotiation")
        try:
            async with asyncio.timeout(timeout):
                await self._negotiation
        except (Exception, asyncio.CancelledError) as exc:
            await self._fail()
            error = self._connect_error(exc, timeout)
            if error is exc:
                raise
            raise error from exc
        if self.state == "connecting":
            self.state = "answered"

    def _connect_error(self, exc: BaseException, timeout: float) -> BaseException:
        if isinstance(exc, AgentUnavailable):
            return exc
        if isinstance(exc, asyncio.CancelledError):
            task = asyncio.current_task()
            cancelled_by_close = self._closing and task is not None and not task.cancelling()
            return AgentUnavailable("agent link closed while connecting") if cancelled_by_close else exc
        if isinstance(exc, TimeoutError):
            return AgentUnavailable(f"agent did not answer within {timeout:g} s")
        return AgentUnavailable(f"agent negotiation failed: {exc}")

    async def wait_connected(self, timeout: float) -> None:
        """Wait until ICE and DTLS are up. Raises :class:`AgentUnavailable` on timeout or loss."""
        try:
            async with asyncio.timeout(timeout):
                await self._settled.wait()
        except TimeoutError as exc:
            raise AgentUnavailable(f"agent media did not connect within {timeout:g} s") from exc
        if self.state != "connected":
            raise AgentUnavailable(f"agent link is {self.state}")

    async def _negotiate(self) -> None:
        pc = RTCPeerConnection(self._configuration())
        self._pc = pc
        self._channel = pc.createDataChannel(EVENTS_LABEL)
        self._watch_channel(self._channel)
        transceiver = pc.addTransceiver(self._track, direction="sendrecv")
        _prefer_opus(transceiver)
        tap_receiver(transceiver.receiver, self._agent_packet)
        pc.on("connectionstatechange", lambda: self._on_connection_state(pc))
        await pc.setLocalDescription(await pc.createOffer())  # aiortc gathers all candidates here
        offer = opus_offer(pc.localDescription.sdp, self._opus_params)
        if "a=candidate:" not in offer:
            raise AgentUnavailable(NO_CANDIDATES)
        session = await self._whip.offer(
            offer, resource_id=self.resource_id, direction=self.direction, resume_token=self.resume_token
        )
        self.session = self._undeleted = session
        if self._closing:
            raise AgentUnavailable("agent link closed while connecting")
        await pc.setRemoteDescription(RTCSessionDescription(sdp=session.answer_sdp, type="answer"))

    def _configuration(self) -> RTCConfiguration:
        return RTCConfiguration(iceServers=[RTCIceServer(urls=url) for url in self._ice_servers])

    # ── media and events ─────────────────────────────────────────────────────────────────────

    def send_opus(self, payload: bytes, samples: int | None = None) -> None:
        """Queue one Opus packet for the agent (``samples``: its length at 48 kHz, None: 20 ms);
        never blocks (drops the oldest when full)."""
        self._track.push(payload, samples)

    def send_event(self, obj: dict) -> None:
        """Send a JSON message on the ``events`` channel, if it is open."""
        channel = self._channel
        if channel is None or channel.readyState != "open":
            logger.debug("events channel not open, dropping %s", obj.get("type"))
            return
        channel.send(json.dumps(obj))

    def _agent_packet(self, sequence: int, payload: bytes) -> None:
        self._received += 1
        if self._on_packet is not None:
            try:
                self._on_packet(sequence, payload)
            except Exception:
                logger.exception("on_packet handler failed")

    def _watch_channel(self, channel: RTCDataChannel) -> None:
        channel.on("message", self._on_message)
        if self._greeting is not None:
            greeting = self._greeting
            channel.on("open", lambda: self.send_event(greeting))
        channel.on("close", lambda: self._agent_gone("agent events channel closed"))

    def _on_message(self, message: str | bytes) -> None:
        try:
            event = json.loads(message)
        except ValueError:
            logger.warning("ignoring invalid JSON on the events channel: %.100r", message)
            return
        if not isinstance(event, dict):
            logger.warning("ignoring non-object event: %.100r", message)
            return
        self._events += 1
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:
                logger.exception("on_event handler failed")

    def _on_connection_state(self, pc: RTCPeerConnection) -> None:
        state = pc.connectionState
        logger.debug("agent connection state: %s", state)
        if state == "connected" and self.state in ("connecting", "answered"):
            self.state = "connected"
            self._settled.set()
            if self._silence_timeout is not None:
                self._liveness = asyncio.create_task(self._watch_liveness(pc), name="agent-liveness")
        elif state == "failed":
            self._agent_gone("agent connection failed", failed=True)
        elif state == "closed":
            self._agent_gone("agent connection closed")

    async def _watch_liveness(self, pc: RTCPeerConnection) -> None:
        """Fail the link when nothing arrives from the agent (media, RTCP, data) for the timeout."""
        assert self._silence_timeout is not None
        loop = asyncio.get_running_loop()
        last_count, last_change = -1, loop.time()
        while not (self._closing or self._gone):
            await asyncio.sleep(LIVENESS_INTERVAL)
            count = await _packets_received(pc)
            now = loop.time()
            if count != last_count:
                last_count, last_change = count, now
            elif now - last_change >= self._silence_timeout:
                self._agent_gone(f"nothing from the agent for {now - last_change:.1f} s", failed=True)

    def _agent_gone(self, reason: str, *, failed: bool = False) -> None:
        """Report the agent side's end once, unless we are the ones closing."""
        if self._closing or self._gone:
            return
        self._gone = True
        self.state = "failed" if failed else "disconnected"
        self._settled.set()
        logger.info("agent link %s: %s", "failed" if failed else "lost", reason)
        handler = self._on_failed if failed and self._on_failed is not None else self._on_closed
        if handler is not None:
            try:
                handler(reason)
            except Exception:
                logger.exception("agent link handler failed")

    # ── teardown ─────────────────────────────────────────────────────────────────────────────

    async def abandon(self) -> None:
        """Close the peer connection but keep the agent's session (no DELETE), for a resume."""
        self._undeleted = None
        await self.close()

    async def close(self) -> None:
        """DELETE the WHIP session, close the peer connection, stop the tasks. Idempotent."""
        self._closing = True
        liveness, self._liveness = self._liveness, None
        if liveness is not None and liveness is not asyncio.current_task():
            liveness.cancel()
        if self._negotiation is not None and not self._negotiation.done():
            self._negotiation.cancel()
        await self._teardown()
        self.state = "closed"

    async def _fail(self) -> None:
        self._closing = True
        await self._teardown()
        if self.state != "closed":
            self.state = "failed"

    async def _teardown(self) -> None:
        self._settled.set()
        async with self._close_lock:
            self._track.stop()
            session, self._undeleted = self._undeleted, None
            if session is not None:
                await self._whip.delete(session.session_url)
            pc, self._pc = self._pc, None
            if pc is not None:
                await _close_pc(pc)
            self._release_peer_objects()

    def _release_peer_objects(self) -> None:
        """Let go of what reaches the closed peer connection's objects (transports, sockets, SDP,
        codecs: about 0.25 MiB a call), so a closed link, however long it is kept, holds none of
        them. A finished task keeps its exception, whose traceback keeps the frames and their locals."""
        self._channel = None
        if self._negotiation is not None and self._negotiation.done():
            self._negotiation = None


async def _packets_received(pc: RTCPeerConnection) -> int:
    """Every datagram the peer connection's transports took in (ICE checks aside)."""
    report = await pc.getStats()
    return sum(stats.packetsReceived for stats in report.values() if stats.type == "transport")


def _prefer_opus(transceiver: RTCRtpTransceiver) -> None:
    codecs = RTCRtpSender.getCapabilities("audio").codecs
    transceiver.setCodecPreferences([c for c in codecs if c.mimeType.lower() == "audio/opus"])


def opus_offer(sdp: str, params: dict[str, str] | None = None) -> str:
    """The offer with Opus on payload type 111 and ``useinbandfec=1``, as the StreamCore server expects
    (``params``: more fmtp parameters, e.g. ``maxplaybackrate``).

    aiortc numbers Opus 96. The answer mirrors the offer's number, and aiortc sends and receives with
    the numbers of the answer, so renumbering the offer before it is POSTed is all it takes.
    """
    description = aiortc_sdp.SessionDescription.parse(sdp)
    for media in description.media:
        if media.kind != "audio" or OPUS_PAYLOAD_TYPE in media.fmt:
            continue
        for codec in media.rtp.codecs:
            if codec.mimeType.lower() == "audio/opus":
                media.fmt = [OPUS_PAYLOAD_TYPE if pt == codec.payloadType else pt for pt in media.fmt]
                codec.payloadType = OPUS_PAYLOAD_TYPE
                codec.parameters = {**OPUS_FMTP, **codec.parameters, **(params or {})}
    return str(description)


async def _close_pc(pc: RTCPeerConnection) -> None:
    try:
        await asyncio.wait_for(pc.close(), PC_CLOSE_TIMEOUT)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # never raise from teardown
        logger.warning("closing the agent peer connection failed: %s", exc)
