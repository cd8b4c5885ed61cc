"""The measuring agent of the latency benchmark: a WHIP server (aiortc) that times markers.

    python -m bench.latency.agent --listen 127.0.0.1:PORT [--every-ms 500] [--phases 10]

Incoming: the bridge's Opus packets are taken from aiortc's receiver as they arrive (as the bridge
itself does, ``sipbridge.agent.rtp_tap``), stamped ``time.time_ns()`` (CLOCK_REALTIME, as the phone's
kernel timestamps), decoded at 8 kHz and run through the onset detector: each onset found is kept
with its packet's arrival time and its sample in the packet.

Outgoing: not a relay. The agent speaks its own paced stream: Opus (8 kHz mono) of silence with a
marker every ``--every-ms``, on its own 20 ms clock. Once the bridge's first packet has come in (it is
sent on the bridge's shared 20 ms tick), session ``i`` puts its clock ``i / phases`` of a frame after
that packet's arrival: over ``--phases`` calls the agent's packets meet the bridge's send tick at
evenly spread phases, as independent agents' would (a relay would send each packet back right after
the bridge's tick and measure a single phase). Each marker packet is
stamped as aiortc hands it to its SRTP transport, just before SRTP and the socket; the onset's
sample in it is what a reference 8 kHz decoder finds. ``GET /records`` returns all of it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import av
import numpy as np
from aiohttp import web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from sipbridge.agent.ice import loopback_addresses_for, use_host_addresses
from sipbridge.agent.rtp_tap import tap_receiver
from sipbridge.agent.tracks import OPUS_SAMPLES_PER_PACKET, OPUS_TIME_BASE
from sipbridge.media.opus import OpusDecoder, OpusEncoder, OpusSettings

from .marker import FRAME, FRAME_NS, OnsetDetector, burst_frames, onset_offset

log = logging.getLogger(__name__)

LEAD_MS = 2000  # silence before the first marker (the bridge's buffers settle)
AGENT_OPUS = OpusSettings(bitrate=32000, application="audio", complexity=9, fec=False, pcm_rate=8000)


@dataclass
class Session:
    id: str
    resource_id: str
    pc: RTCPeerConnection
    received: list[dict[str, int]] = field(default_factory=list)  # onsets heard: arrival, sample
    sent: list[dict[str, int]] = field(default_factory=list)  # markers sent: time, sample
    packets_in: int = 0
    packets_out: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "resource_id": self.resource_id,
            "received": self.received,
            "sent": self.sent,
            "packets_in": self.packets_in,
            "packets_out": self.packets_out,
        }


class Listener:
    """Decodes every incoming packet and records the onsets, stamped as the packet came in."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._decoder = OpusDecoder(8000)
        self._detector = OnsetDetector()
        self.first_ns: int | None = None

    def packet(self, sequence: int, payload: bytes) -> None:
        at = time.time_ns()
        if self.first_ns is None:
            self.first_ns = at
        self._session.packets_in += 1
        onset = self._detector.feed(self._decoder.decode(payload))
        if onset is not None:
            self._session.received.append({"at_ns": at, "sample": onset, "seq": sequence})


class MarkerTrack(MediaStreamTrack):
    """The agent's voice: paced 20 ms Opus packets, silence and markers, stamped when sent."""

    kind = "audio"

    def __init__(self, session: Session, listener: Listener, every_ms: int, phase_ns: int) -> None:
        super().__init__()
        self._session = session
        self._listener = listener
        self._phase_ns = phase_ns
        self._aligned = False
        self._every = max(1, round(every_ms / 20))
        self._lead = round(LEAD_MS / 20)
        self._encoder = OpusEncoder(AGENT_OPUS)
        self._reference = OpusDecoder(8000)
        self._detector = OnsetDetector()
        self._origin_ns: int | None = None
        self._k = 0
        self._queued: list[np.ndarray] = []
        self._markers = 0
        self._unsent: tuple[bytes, int] | None = None  # (payload, onset sample) to stamp on send

    def stamp_sends(self, send: Callable[[bytes], Awaitable[None]]) -> Callable[[bytes], Awaitable[None]]:
        """Wrap the SRTP transport's send: the marker packet is stamped as it is handed on (before
        SRTP and the socket, so a stall of this process there counts against the bridge, never for)."""

        async def stamped(data: bytes) -> None:
            unsent = self._unsent
            if unsent is not None and data.endswith(unsent[0]):
                self._unsent = None
                self._session.sent.append({"at_ns": time.time_ns(), "sample": unsent[1]})
            await send(data)

        return stamped

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.time_ns()
        self._align(now)
        due = self._origin_ns + self._k * FRAME_NS
        if due > now:
            await asyncio.sleep((due - now) / 1e9)
        payload = self._encoder.encode(self._next_pcm())
        onset = self._detector.feed(self._reference.decode(payload))
        if onset is not None:
            self._unsent = (payload, onset)
        packet = av.Packet(payload)
        packet.pts = self._k * OPUS_SAMPLES_PER_PACKET
        packet.time_base = OPUS_TIME_BASE
        self._k += 1
        self._session.packets_out += 1
        return packet

    def _align(self, now: int) -> None:
        """Free-running until the bridge's first packet is here, then at the session's phase to it."""
        if self._origin_ns is None:
            self._origin_ns = now
        first = self._listener.first_ns
        if self._aligned or first is None:
            return
        self._aligned = True
        origin = first + self._phase_ns
        origin += -(-(now - origin) // FRAME_NS) * FRAME_NS  # the first such time from now
        self._origin_ns = origin - self._k * FRAME_NS

    def _next_pcm(self) -> np.ndarray:
        if not self._queued and self._k >= self._lead and (self._k - self._lead) % self._every == 0:
            self._queued = burst_frames(onset_offset(self._markers))
            self._markers += 1
        return self._queued.pop(0) if self._queued else np.zeros(FRAME, dtype=np.int16)


class LatencyAgent:
    def __init__(self, every_ms: int, phases: int) -> None:
        self.every_ms = every_ms
        self.phases = phases
        self.sessions: dict[str, Session] = {}

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/whip", self._offer)
        app.router.add_delete("/whip/{id}", self._delete)
        app.router.add_get("/records", self._records)
        app.router.add_get("/health", self._health)
        app.on_shutdown.append(self._close_all)
        return app

    async def _offer(self, request: web.Request) -> web.Response:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        session = Session(uuid.uuid4().hex, request.headers.get("X-StreamCore-Resource-Id", ""), pc)
        self.sessions[session.id] = session
        pc.on("track", lambda track: self._on_track(session, track))
        await pc.setRemoteDescription(RTCSessionDescription(sdp=await request.text(), type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        return web.Response(
            status=201,
            text=pc.localDescription.sdp,
            content_type="application/sdp",
            headers={"Location": f"/whip/{session.id}"},
        )

    def _on_track(self, session: Session, track: MediaStreamTrack) -> None:
        if track.kind != "audio":
            return
        pc = session.pc
        receiver = next(t.receiver for t in pc.getTransceivers() if t.receiver.track is track)
        listener = Listener(session)
        tap_receiver(receiver, listener.packet)
        phase_ns = (len(self.sessions) - 1) % self.phases * FRAME_NS // self.phases
        voice = MarkerTrack(session, listener, self.every_ms, phase_ns)
        sender = pc.addTrack(voice)

        @pc.on("connectionstatechange")
        def wrap_once_connected() -> None:
            if pc.connectionState == "connected" and sender.transport is not None:
                sender.transport._send_rtp = voice.stamp_sends(sender.transport._send_rtp)

    async def _delete(self, request: web.Request) -> web.Response:
        session = self.sessions.get(request.match_info["id"])
        if session is not None:
            await session.pc.close()
        return web.Response(status=200 if session else 404)

    async def _records(self, request: web.Request) -> web.Response:
        return web.json_response([s.to_json() for s in self.sessions.values()])

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _close_all(self, app: web.Application) -> None:
        await asyncio.gather(*(s.pc.close() for s in self.sessions.values()), return_exceptions=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.latency.agent", description=__doc__)
    p.add_argument("--listen", default="127.0.0.1:8080", metavar="HOST:PORT")
    p.add_argument("--every-ms", type=int, default=500, help="one marker this often (default 500)")
    p.add_argument("--phases", type=int, default=1, help="sessions spread over this many phases")
    args = p.parse_args(argv)
    host, port = args.listen.rsplit(":", 1)
    logging.basicConfig(level=logging.WARNING)
    use_host_addresses(loopback_addresses_for(host))
    web.run_app(LatencyAgent(args.every_ms, args.phases).app(), host=host, port=int(port), print=None)


if __name__ == "__main__":
    main()
