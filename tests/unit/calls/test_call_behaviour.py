"""A Call's own rules without the network: barge-in drops stale agent audio, hold pauses the RTP timeout."""

from __future__ import annotations

import numpy as np

from sipbridge.calls.call import Call, CallSettings
from sipbridge.media.pipeline import AgentToPhone
from sipbridge.rtp.session import RtpSession

SETTINGS = CallSettings(
    rtp_host="127.0.0.1",
    agent_timeout=1.0,
    ice_servers=(),
    opus_bitrate=32000,
    opus_application="audio",
    rtp_timeout=30.0,
)


def _call() -> Call:
    return Call(None, SETTINGS, None, None, None, lambda call: None)  # type: ignore[arg-type]


def test_agent_leaving_speaking_drops_what_it_queued_for_the_caller():
    call = _call()
    call._downlink = AgentToPhone("PCMU", pcm_rate=8000)
    call._downlink.push_pcm(np.zeros(2400, dtype=np.int16))  # 300 ms of agent speech queued
    assert call._downlink.buffered_ms > 200
    call._agent_event({"type": "state", "state": "speaking"})
    assert call._downlink.buffered_ms > 200  # still speaking: nothing dropped
    call._agent_event({"type": "state", "state": "listening"})
    assert call._downlink.buffered_ms == 0 and call.barge_ins == 1 and call.barge_in_dropped_ms > 200
    assert call.events[-1] == {"type": "state", "state": "listening"}


def test_after_an_interrupt_the_very_next_frame_to_the_caller_is_silence():
    """Worst case of stale audio: the playout queue full (400 ms) when the interrupt comes."""
    call = _call()
    call._downlink = AgentToPhone("PCMU", pcm_rate=8000)
    call._silence = b"\xff" * 160
    tone = (np.sin(np.arange(8000) * 2 * np.pi * 440 / 8000) * 8000).astype(np.int16)
    call._downlink.push_pcm(tone)  # a bursty agent: one second at once; the queue keeps its cap
    played = [call._next_phone_frame() for _ in range(3)]
    assert all(frame != call._silence for frame in played)
    call._agent_event({"type": "state", "state": "listening"})  # the caller barged in
    after = [call._next_phone_frame() for _ in range(25)]
    assert after == [call._silence] * 25  # nothing queued before the interrupt is ever played
    assert 340 <= call.barge_in_dropped_ms <= 400


def test_rtp_timeout_counts_from_the_last_packet_and_not_while_on_hold():
    call = _call()
    call.rtp = RtpSession()
    call.rtp.stats.last_packet_at = 100.0
    assert call._rtp_silent_for(now=120.0, started=90.0) is None
    assert call._rtp_silent_for(now=131.0, started=90.0) == 31.0
    call.on_hold = True
    assert call._rtp_silent_for(now=200.0, started=90.0) is None
    call.on_hold = False  # resumed: the count starts again from the resume
    assert call._rtp_silent_for(now=210.0, started=90.0) is None
    assert call._rtp_silent_for(now=231.0, started=90.0) == 31.0


class _Socket:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def sendto(self, data: bytes, addr: tuple) -> None:
        self.sent.append(data)

    def is_closing(self) -> bool:
        return False


def test_agent_digits_go_to_the_phone_as_rfc4733_events_instead_of_audio():
    from sipbridge.rtp.dtmf import parse_event
    from sipbridge.rtp.packet import parse_rtp
    from sipbridge.sip.sdp import AudioAnswer

    call = _call()
    call.rtp = RtpSession()
    socket = _Socket()
    call.rtp.connection_made(socket)  # type: ignore[arg-type]
    call.rtp.configure(0, 101, ("127.0.0.1", 4000))
    call.rtp.dtmf_source = call._next_dtmf_packet
    call._media = AudioAnswer(0, "PCMU", 8000, 101, ("127.0.0.1", 4000))
    call._agent_event({"type": "dtmf", "digits": "7#"})
    for _ in range(40):
        call.rtp.send_frame(b"\xff" * 160)
    packets = [parse_rtp(data) for data in socket.sent]
    events = [p for p in packets if p.payload_type == 101]
    ends = [parse_event(p.payload) for p in events if parse_event(p.payload).end]
    assert [e.digit for e in ends] == ["7", "7", "7", "#", "#", "#"]
    assert events[0].marker and len(packets) == 40  # events replace audio frames, the stream goes on
    assert "".join(d["digit"] for d in call.digits if d["from"] == "agent") == "7#"


def test_the_playout_follows_the_phones_packet_time_even_against_our_answer(monkeypatch):
    """We asked for 20 ms, the phone sends 30 ms anyway: played at its pace, nothing concealed."""
    import types

    from sipbridge.media.pipeline import PhoneToAgent
    from sipbridge.rtp.packet import RtpPacket

    clock = types.SimpleNamespace(now=100.0)
    monkeypatch.setattr(
        "sipbridge.calls.call.time",
        types.SimpleNamespace(monotonic=lambda: clock.now, time=lambda: clock.now),
    )
    call = _call()
    call._uplink = PhoneToAgent("PCMU", 32000, "audio")
    heard: list[int] = []
    call._phone_pcm = lambda pcm: heard.append(len(pcm))  # type: ignore[method-assign]
    events = [(100.0 + 0.03 * i, "packet", i) for i in range(100)]  # 3 s of 30 ms packets ...
    events += [(100.001 + 0.02 * k, "tick", k) for k in range(145)]  # ... played on the 20 ms clock
    for at, kind, i in sorted(events):
        clock.now = at
        if kind == "packet":
            call._phone_packet(RtpPacket(sequence=i, timestamp=240 * i, ssrc=5, payload=b"\x7f" * 240), at)
        else:
            call._playout_tick(1)
    assert call._jitter.config.frame_samples == 240
    assert call._jitter.stats.concealed == 0 and call._jitter.stats.late == 0, call._jitter.stats
    assert heard == [240] * len(heard) and len(heard) >= 95
