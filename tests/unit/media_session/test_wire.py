"""The seam's messages on the wire: every message comes back equal, anything else is a clear error."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from sipbridge.media_session import messages as m
from sipbridge.media_session import wire
from sipbridge.metrics import MediaCounters

PHONE = m.PhoneMedia("PCMA", 8, 101, ("127.0.0.1", 4000), "recvonly")
SAMPLES: list[object] = [
    m.OpenMedia("c1", "outbound", "+14155550100", ("192.0.2.1", 5060)),
    m.OpenMedia("c1", "inbound", None, None),
    m.OpenMedia("c1", "inbound", "alice", None, "/var/lib/sipbridge/recordings/c1.wav"),
    m.MediaOpened(40002),
    m.MediaRefused("no free RTP port in 40000-40100"),
    PHONE,
    m.UpdateMedia(PHONE, None),
    m.UpdateMedia(m.PhoneMedia("PCMU", 0, None, None), ("::1", 5060)),
    m.StartSending(False),
    m.ConfirmPeer(),
    m.CallAnswered(),
    m.ConnectAgent(),
    m.ConnectAgent({"type": "call", "id": "c1", "headers": {"X-Id": "7"}, "metadata": {}}),
    m.SendAgentEvent({"type": "note", "items": [1, "two", None]}),
    m.AgentConnected(),
    m.AgentUnavailable("agent did not answer within 5 s"),
    m.SendDigits("12#"),
    m.DigitsSent("12#", 1.5),
    m.ForwardDigit("*"),
    m.StatsRequest(),
    m.CloseMedia("caller hung up"),
    m.MediaStats(
        MediaCounters(rtp_packets_received=7), "PCMU", True, {"remote": "x", "n": [1, 2]}, None, 0.01
    ),
    m.PhoneDigit("5", "rfc4733", 2.0),
    m.AgentEvent({"type": "transcript", "text": "héllo", "final": True}, 3.0),
    m.AgentClosed("bye"),
    m.AgentFailed("ICE failed", True),
    m.AgentRecovered("resumed"),
    m.AgentLost("not recovered"),
    m.RtpTimeout(30.0),
    m.CodecChanged("PCMU", "PCMA"),
    m.WorkerStatus(1234, 3, 0.5, 12.5, 3.25, 9),
    m.Failed("KeyError: 'x'"),
    m.MediaFailed("media worker closed its channel"),
    m.RecordingFailed("recording stopped: No space left on device"),
    m.StatsBatch(["a", "b"]),
    m.StatsBatchReply({"a": m.MediaStats(MediaCounters(rtp_packets_sent=2), "PCMA"), "b": m.MediaStats()}),
]


def _roundtrip(message: object) -> object:
    frame = wire.encode(wire.Envelope(wire.REPLY, 9, "call-1", message))
    (body,) = wire.FrameReader().feed(frame)
    envelope = wire.decode(body)
    assert (envelope.kind, envelope.seq, envelope.call) == (wire.REPLY, 9, "call-1")
    return envelope.message


@pytest.mark.parametrize("message", SAMPLES, ids=lambda s: type(s).__name__)
def test_every_message_comes_back_equal(message):
    assert _roundtrip(message) == message


def test_the_samples_cover_every_message():
    names = {n for n, c in vars(m).items() if dataclasses.is_dataclass(c) and isinstance(c, type)}
    assert names - {"MediaCounters"} <= {type(s).__name__ for s in SAMPLES}
    assert {typing.get_type_hints(m.PhoneMedia)["remote"]} == {tuple[str, int] | None}


def test_a_frame_is_small():
    assert len(wire.encode(wire.Envelope(wire.COMMAND, 1, "0123456789abcdef", m.UpdateMedia(PHONE)))) < 140


def test_frames_split_and_joined_anyhow_come_out_whole():
    frames = [wire.encode(wire.Envelope(wire.EVENT, 0, "c", s)) for s in SAMPLES]
    stream = b"".join(frames)
    reader, out = wire.FrameReader(), []
    for i in range(0, len(stream), 7):
        out += reader.feed(stream[i : i + 7])
    assert [wire.decode(body).message for body in out] == SAMPLES


def test_a_frame_without_the_trailing_fields_a_message_grew_decodes_with_their_defaults():
    # a heartbeat as a worker sent it before WorkerStatus carried its CPU figures
    envelope = wire.decode(b'[1,"h",0,"","WorkerStatus",[1234,3,0.5]]')
    assert envelope.message == m.WorkerStatus(1234, 3, 0.5, cpu_pct=0.0, cpu_s=0.0, asyncio_tasks=0)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b'[2,"c",1,"c","ConfirmPeer",[]]', "wire version 2"),
        (b'[1,"c",1,"c","Nope",[]]', "unknown message"),
        (b'[1,"c",1,"c","SendDigits",[]]', "expected 1 fields"),
        (b'[1,"h",0,"","WorkerStatus",[1,2]]', "expected 6 fields"),
        (b'[1,"h",0,"","WorkerStatus",[1,2,0.5,1.0,2.0,3,4]]', "expected 6 fields"),
        (b'[1,"x",1,"c","ConfirmPeer",[]]', "bad envelope"),
        (b"garbage", "not a frame"),
        (b'[1,"c",1,"c","UpdateMedia",[["PCMU",0,null,[1],"sendrecv"],null]]', "UpdateMedia"),
    ],
)
def test_what_is_not_a_frame_of_ours_is_a_clear_error(body, error):
    with pytest.raises(wire.WireError, match=error):
        wire.decode(body)


def test_an_oversized_frame_is_refused_before_it_is_read():
    with pytest.raises(wire.WireError, match="over the"):
        wire.FrameReader(max_frame=100).feed(wire.HEADER.pack(101))
