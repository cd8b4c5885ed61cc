"""The embedded reference agent: a WHIP server that speaks the StreamCore agent protocol.

``echo`` mode plays the caller's audio back, decoded and re-encoded as a real agent would;
``relay`` sends the caller's Opus packets straight back (no codec work: the cheapest agent, for
load tests of the bridge); ``silence`` mode answers and sends silence. Either way
the agent greets on the ``events`` data channel, and ``GET /sessions`` shows every session (deleted
ones too, the last 1000) so tests can check what reached it (in echo mode also how much of the
caller's audio above 4 kHz came: ``high_band_db``, see band_meter.py).

Resume tokens (``X-Resume-Token``) are single use and expire ``resume_grace`` seconds after the
session they belong to was created or last resumed, like the StreamCore server's. Two routes exist for
tests, to act as the agent would: ``POST /sessions/{id}/events`` sends a JSON event (or a list of
them) to the caller on the ``events`` channel, and ``POST /sessions/{id}/drop`` cuts the session's
network path without a goodbye (no DTLS close, no SCTP abort), as a crash or a network failure would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import socket
import time
import uuid
from collections import OrderedDict
from collections.abc import Coroutine
from typing import Any

import av
import numpy as np
from aiohttp import web
from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, MediaStreamTrack

from ..media.opus import OpusEncoder, OpusSettings, audio_frame_to_mono
from .echo_session import MAX_EVENTS_KEPT, AgentSession
from .ice import loopback_addresses_for, use_host_addresses
from .rtp_tap import tap_receiver
from .tracks import OPUS_SAMPLES_PER_PACKET, OPUS_TIME_BASE, OpusPacketTrack

logger = logging.getLogger(__name__)

MODES = ("echo", "relay", "silence")
MAX_RECORDS = 1000
MAX_RESUME_TOKENS = 1000
RESUME_GRACE_S = 30.0
PC_CLOSE_TIMEOUT = 3.0
GREETING = ({"type": "connection", "state": "connected"}, {"type": "state", "state": "listening"})


# As a real agent encodes: full band, music-grade mode, libopus's default complexity (9), no FEC.
ECHO_OPUS = OpusSettings(bitrate=48000, application="audio", complexity=9, fec=False, pcm_rate=48000)


class EchoTrack(MediaStreamTrack):
    """Plays back what the caller sends, encoded as a real agent would: mono Opus, music-grade mode."""

    kind = "audio"

    def __init__(self, source: MediaStreamTrack, session: AgentSession) -> None:
        super().__init__()
        self._source = source
        self._session = session
        self._encoder = OpusEncoder(ECHO_OPUS)
        self._pending = np.zeros(0, dtype=np.int16)
        self._pts = 0

    async def recv(self) -> av.Packet:
        payload = None
        while payload is None:
            while len(self._pending) < OPUS_SAMPLES_PER_PACKET:
                frame = await self._source.recv()
                self._session.packets_in += 1
                mono = audio_frame_to_mono(frame)
                if frame.sample_rate == self._session.band.rate:
                    self._session.band.add(mono)
                self._pending = np.concatenate((self._pending, mono))
            pcm = self._pending[:OPUS_SAMPLES_PER_PACKET]
            self._pending = self._pending[OPUS_SAMPLES_PER_PACKET:]
            payload = self._encoder.encode(pcm)
        packet = av.Packet(payload)
        packet.pts = self._pts
        packet.time_base = OPUS_TIME_BASE
        self._pts += OPUS_SAMPLES_PER_PACKET
        self._session.packets_out += 1
        return packet

    def stop(self) -> None:
        super().stop()
        self._source.stop()


class SilenceTrack(AudioStreamTrack):
    """Paced 20 ms frames of silence."""

    def __init__(self, session: AgentSession) -> None:
        super().__init__()
        self._session = session

    async def recv(self) -> av.AudioFrame:
        frame = await super().recv()
        self._session.packets_out += 1
        return frame


class EchoAgentServer:
    """A WHIP endpoint at ``/whip`` backed by aiortc. ``port=0`` picks a free port (see ``url``)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8080,
        mode: str = "echo",
        *,
        token: str | None = None,
        resume_grace: float = RESUME_GRACE_S,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        self.host = host
        self.port = port
        self.mode = mode
        self.token = token
        self.resume_grace = resume_grace
        self.sessions: OrderedDict[str, AgentSession] = OrderedDict()
        # token -> (conversation, monotonic expiry)
        self._resume_tokens: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/whip"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/whip", self._post_offer)
        app.router.add_delete("/whip/{id}", self._delete)
        app.router.add_get("/sessions", self._list_sessions)
        app.router.add_post("/sessions/{id}/events", self._send_events)
        app.router.add_post("/sessions/{id}/drop", self._drop)
        app.router.add_get("/health", self._health)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.create_server((self.host, self.port), family=family)
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        logger.info("agent (%s mode) listening on %s", self.mode, self.url)

    async def stop(self) -> None:
        """Stop taking offers, then close every session."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
        for session in list(self.sessions.values()):
            await self._end(session)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # ── routes ───────────────────────────────────────────────────────────────────────────────

    async def _post_offer(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.Response(status=401, text="missing or invalid bearer token")
        if request.content_type != "application/sdp":
            return web.Response(status=415, text="offer must be application/sdp")
        offer = await request.text()
        if not offer.strip():
            return web.Response(status=400, text="empty SDP offer")
        session = self._new_session(request)
        try:
            answer = await self._answer(session, offer)
        except Exception as exc:
            logger.warning("session %s: cannot answer the offer: %s", session.id, exc)
            await self._end(session)
            self.sessions.pop(session.id, None)
            return web.Response(status=400, text=f"invalid SDP offer: {exc}")
        return web.Response(
            status=201,
            text=answer,
            content_type="application/sdp",
            headers={
                "Location": f"/whip/{session.id}",
                "ETag": f'"{uuid.uuid4().hex}"',
                "X-Resume-Token": self._issue_resume_token(session.conversation),
                "X-Resume-Status": session.resume_status,
            },
        )

    async def _delete(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.Response(status=401, text="missing or invalid bearer token")
        session = self.sessions.get(request.match_info["id"])
        if session is None or session.deleted:
            return web.Response(status=404, text="no such session")
        session.deleted = True
        await self._end(session)
        logger.info("session %s deleted", session.id)
        return web.Response(status=200)

    async def _send_events(self, request: web.Request) -> web.Response:
        """Test route: send events to the caller as the agent (``{"type":"dtmf","digits":"12#"}``, ...)."""
        session = self.sessions.get(request.match_info["id"])
        if session is None or session.finished:
            return web.Response(status=404, text="no such live session")
        try:
            body = await request.json()
        except ValueError:
            return web.Response(status=400, text="body must be a JSON object or a list of them")
        events = body if isinstance(body, list) else [body]
        if not all(isinstance(event, dict) for event in events):
            return web.Response(status=400, text="body must be a JSON object or a list of them")
        channel = session.channel
        if channel is None or channel.readyState != "open":
            return web.Response(status=409, text="the events channel is not open")
        for event in events:
            channel.send(json.dumps(event))
        return web.json_response({"sent": len(events)})

    async def _drop(self, request: web.Request) -> web.Response:
        """Test route: the session's network path dies silently; its resume token stays valid."""
        session = self.sessions.get(request.match_info["id"])
        if session is None or session.finished or session.pc is None:
            return web.Response(status=404, text="no such live session")
        session.dropped = True
        await _cut_network(session.pc)
        logger.info("session %s dropped (network cut)", session.id)
        return web.json_response({"dropped": session.id})

    async def _list_sessions(self, request: web.Request) -> web.Response:
        return web.json_response([s.to_json() for s in self.sessions.values()])

    async def _health(self, request: web.Request) -> web.Response:
        live = sum(1 for s in self.sessions.values() if not s.finished)
        return web.json_response({"status": "ok", "mode": self.mode, "sessions": live})

    def _authorized(self, request: web.Request) -> bool:
        return not self.token or request.headers.get("Authorization") == f"Bearer {self.token}"

    # ── sessions ─────────────────────────────────────────────────────────────────────────────

    def _new_session(self, request: web.Request) -> AgentSession:
        conversation, status = self._resume(request.query.get("resume"))
        session = AgentSession(
            id=uuid.uuid4().hex,
            resource_id=request.headers.get("X-StreamCore-Resource-Id", ""),
            direction="outbound" if request.query.get("direction") == "outbound" else "inbound",
            conversation=conversation,
            resume_status=status,
        )
        self.sessions[session.id] = session
        self._prune()
        return session

    def _resume(self, token: str | None) -> tuple[str, str]:
        """The conversation to attach to and the X-Resume-Status: tokens are single use."""
        if not token:
            return uuid.uuid4().hex, "new"
        conversation, expires = self._resume_tokens.pop(token, ("", 0.0))
        if not conversation or time.monotonic() > expires:
            return uuid.uuid4().hex, "expired"
        return conversation, "resumed"

    def _issue_resume_token(self, conversation: str) -> str:
        token = secrets.token_urlsafe(24)
        self._resume_tokens[token] = (conversation, time.monotonic() + self.resume_grace)
        while len(self._resume_tokens) > MAX_RESUME_TOKENS:
            self._resume_tokens.popitem(last=False)
        return token

    def _prune(self) -> None:
        finished = [sid for sid, s in self.sessions.items() if s.finished]
        for sid in finished[: max(0, len(self.sessions) - MAX_RECORDS)]:
            del self.sessions[sid]

    async def _answer(self, session: AgentSession, offer: str) -> str:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        session.pc = pc
        pc.on("track", lambda track: self._on_track(session, pc, track))
        pc.on("datachannel", lambda channel: self._on_datachannel(session, channel))
        pc.on("connectionstatechange", lambda: self._on_connection_state(session, pc))
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        if not any(t.kind == "audio" for t in pc.getTransceivers()):
            raise ValueError("the offer has no audio")
        await pc.setLocalDescription(await pc.createAnswer())
        return pc.localDescription.sdp

    def _on_track(self, session: AgentSession, pc: RTCPeerConnection, track: MediaStreamTrack) -> None:
        if track.kind != "audio":
            return
        if self.mode == "echo":
            pc.addTrack(EchoTrack(track, session))
            return
        if self.mode == "relay":
            self._relay(session, pc, track)
            return
        pc.addTrack(SilenceTrack(session))
        self._spawn(_drain(track, session))

    def _relay(self, session: AgentSession, pc: RTCPeerConnection, track: MediaStreamTrack) -> None:
        relay = OpusPacketTrack(max_packets=50)

        def on_packet(sequence: int, payload: bytes) -> None:
            session.packets_in += 1
            session.packets_out += 1
            relay.push(payload)

        receiver = next(t.receiver for t in pc.getTransceivers() if t.receiver.track is track)
        tap_receiver(receiver, on_packet)
        pc.addTrack(relay)

    def _on_datachannel(self, session: AgentSession, channel: RTCDataChannel) -> None:
        if channel.label != "events":
            return
        session.channel = channel

        def on_message(message: str | bytes) -> None:
            session.events_in += 1
            logger.debug("session %s event from the caller: %.200r", session.id, message)
            with contextlib.suppress(ValueError, TypeError):
                session.events.append(json.loads(message))
                del session.events[:-MAX_EVENTS_KEPT]
            digit = _dtmf_digit(message)
            if digit:
                session.dtmf_in += digit

        channel.on("message", on_message)
        if channel.readyState == "open":
            _greet(channel)
        else:
            channel.on("open", lambda: _greet(channel))

    def _on_connection_state(self, session: AgentSession, pc: RTCPeerConnection) -> None:
        session.state = pc.connectionState
        logger.debug("session %s: %s", session.id, session.state)
        if session.state == "failed":
            self._spawn(self._end(session))

    async def _end(self, session: AgentSession) -> None:
        pc, session.pc = session.pc, None
        if pc is None:
            return
        try:
            await asyncio.wait_for(pc.close(), PC_CLOSE_TIMEOUT)
        except Exception as exc:  # closing is best effort
            logger.warning("session %s: closing the peer connection failed: %s", session.id, exc)
        if session.state != "failed":
            session.state = "closed"

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def _cut_network(pc: RTCPeerConnection) -> None:
    """Close the ICE sockets under the peer connection: nothing more is sent or received, no goodbye.

    Relies on aiortc 1.16's RTCIceTransport._connection (pinned); only this test route uses it.
    """
    ice_transports = {t.receiver.transport.transport for t in pc.getTransceivers() if t.receiver.transport}
    if pc.sctp is not None:
        ice_transports.add(pc.sctp.transport.transport)
    for ice in ice_transports:
        await ice._connection.close()


def _dtmf_digit(message: str | bytes) -> str | None:
    try:
        event = json.loads(message)
    except (ValueError, TypeError):
        return None
    if isinstance(event, dict) and event.get("type") == "dtmf" and isinstance(event.get("digit"), str):
        return event["digit"][:1]
    return None


def _greet(channel: RTCDataChannel) -> None:
    for event in GREETING:
        channel.send(json.dumps(event))


async def _drain(track: MediaStreamTrack, session: AgentSession) -> None:
    try:
        while True:
            await track.recv()
            session.packets_in += 1
    except MediaStreamError:
        pass


async def run_agent(
    host: str, port: int, mode: str, *, token: str | None = None, resume_grace: float = RESUME_GRACE_S
) -> None:
    """Serve the reference agent until cancelled (loopback candidates when it listens on loopback)."""
    use_host_addresses(loopback_addresses_for(host))
    server = EchoAgentServer(host, port, mode, token=token, resume_grace=resume_grace)
    await server.start()
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()
