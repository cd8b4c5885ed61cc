"""Agent → phone: the agent's audio queued in the phone's codec and sent a frame per tick, just
after it arrives.

Sans-IO and clock-fed: ``packet`` takes each Opus packet the agent sends, ``next_frame`` gives each
20 ms tick its frame (comfort silence when none is queued) and says when the next tick should run:
just after the agent's next frame arrives, not up to 20 ms later at our own phase. For a phone on
G.711 or G.722 the packets are decoded and queued as PCM (``AgentToPhone``); for a phone on Opus
they are queued as they are (``OpusToPhone``). A barge-in (the agent stops speaking) drops what was
queued for the caller: it is stale.
"""

from __future__ import annotations

from ..agent.receiver import AgentAudioReceiver, AgentPacketReceiver
from ..media.opus_relay import OpusToPhone
from ..media.phone_codec import phone_codec
from ..media.pipeline import AgentToPhone
from ..rtp.arrival import ArrivalTiming
from .recorder import CallRecorder

IDLE_VIEW = {  # before any codec was settled
    "playout_buffered_ms": 0,
    "playout_dropped_ms": 0,
    "playout_underruns": 0,
    "playout_wait_ms": 0.0,
    "barge_ins": 0,
    "barge_in_dropped_ms": 0,
    "agent_lost": 0,
    "agent_concealed": 0,
}


class AgentPlayout:
    def __init__(self, codec: str, pcm_rate: int) -> None:
        self.codec = codec
        self._queue: AgentToPhone | OpusToPhone
        self._receiver: AgentAudioReceiver | AgentPacketReceiver
        if phone_codec(codec).relayed:
            self._queue = relay = OpusToPhone()
            self._receiver = AgentPacketReceiver(relay.push_packet)
        else:
            # decoded at the phone codec's rate when wider (G.722: 16 kHz, which libopus decodes
            # to itself), so the agent's wideband voice reaches a wideband phone
            rate = max(pcm_rate, phone_codec(codec).pcm_rate)
            self._queue = pcm = AgentToPhone(codec, pcm_rate=rate)
            self._receiver = AgentAudioReceiver(rate, pcm.push_pcm)
        self._timing = ArrivalTiming()  # when the agent's frames come: we send just after
        self.barge_ins = 0
        self.barge_in_dropped_ms = 0

    def packet(self, sequence: int, payload: bytes, now: float, fresh: bool = False) -> None:
        """One of the agent's Opus packets as it arrived (``fresh``: the first of a new link)."""
        if fresh:
            self._receiver.restart()
        if self._receiver.packet(sequence, payload):  # not late, not a duplicate
            self._timing.arrived(sequence, now)
            self._queue.keep_frames = self._timing.keep_frames

    def next_frame(self, scheduled: float | None, now: float) -> tuple[bytes, float | None]:
        """The frame for this tick, and when the next tick should be (None: at the clock's phase).

        ``scheduled`` is when the clock means to tick next: a frame that comes a little late is
        sent just after it arrives, not 20 ms later after a frame of silence.
        """
        frame = self._queue.pop_frame()
        at = None
        if scheduled is not None:
            at = self._timing.tick_at(scheduled, now, self._queue.queued_frames)
        return (frame if frame is not None else self._queue.silence()), at

    def record(self, recorder: CallRecorder | None) -> None:
        """Hand ``recorder`` each frame the phone gets from the agent (None: no longer): the PCM it
        is coded from, or the relayed packet. Ticks of comfort silence are the recorder's silence."""
        queue = self._queue
        if recorder is None:
            queue.on_frame = None
        elif isinstance(queue, OpusToPhone):
            queue.on_frame = recorder.agent_opus
        else:
            rate = queue.phone.pcm_rate
            queue.on_frame = lambda pcm: recorder.agent_pcm(pcm, rate)

    @property
    def silence(self) -> bytes:
        """What a tick with nothing queued sends: 20 ms of silence in the phone's codec."""
        return self._queue.silence()

    def barge_in(self) -> None:
        """The agent stopped speaking (interrupted): what it had queued for the caller is stale."""
        if self._queue.buffered_ms:
            self.barge_ins += 1
            self.barge_in_dropped_ms += int(self._queue.buffered_ms)
            self._queue.clear()

    @property
    def buffered_ms(self) -> float:
        return self._queue.buffered_ms

    def view(self) -> dict[str, float | int]:
        queue, received = self._queue, self._receiver.stats
        return {
            "playout_buffered_ms": queue.buffered_ms,
            "playout_dropped_ms": queue.dropped_ms,
            "playout_underruns": queue.underruns,
            "playout_wait_ms": round(self._timing.wait_s * 1000, 1),
            "barge_ins": self.barge_ins,
            "barge_in_dropped_ms": self.barge_in_dropped_ms,
            "agent_lost": received.lost,
            "agent_concealed": received.concealed + received.recovered_fec,
        }
