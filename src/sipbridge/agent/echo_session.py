"""One session of the reference agent (``echo.py``) as ``GET /sessions`` shows it: who called, its
state, what went each way, the caller's JSON events (the last ``MAX_EVENTS_KEPT``) and the band of
the audio that came (``band_meter.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiortc import RTCDataChannel, RTCPeerConnection

from .band_meter import BandMeter

MAX_EVENTS_KEPT = 50


@dataclass
class AgentSession:
    id: str
    resource_id: str
    direction: str
    conversation: str
    resume_status: str
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    deleted: bool = False
    state: str = "new"
    packets_in: int = 0
    packets_out: int = 0
    events_in: int = 0
    dtmf_in: str = ""
    events: list = field(default_factory=list)  # the caller's JSON events, the last MAX_EVENTS_KEPT
    dropped: bool = False
    band: BandMeter = field(default_factory=BandMeter, repr=False)  # echo mode: what band came
    pc: RTCPeerConnection | None = field(default=None, repr=False)
    channel: RTCDataChannel | None = field(default=None, repr=False)

    @property
    def finished(self) -> bool:
        return self.deleted or self.state in ("closed", "failed")

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "resource_id": self.resource_id,
            "direction": self.direction,
            "conversation": self.conversation,
            "resume_status": self.resume_status,
            "created": self.created,
            "deleted": self.deleted,
            "state": self.state,
            "packets_in": self.packets_in,
            "packets_out": self.packets_out,
            "events_in": self.events_in,
            "dtmf_in": self.dtmf_in,
            "events": list(self.events),
            "dropped": self.dropped,
            "high_band_db": self.band.high_band_db,
        }
