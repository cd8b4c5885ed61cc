"""AgentLink against the embedded echo agent: real WebRTC (ICE, DTLS, SRTP, SCTP) on this host."""

import asyncio
import contextlib
import fractions
import gc
import logging
import socket
import time
import weakref
from collections.abc import AsyncIterator, Callable

import aiohttp
import av
import numpy as np
import pytest

from sipbridge.agent.echo import EchoAgentServer
from sipbridge.agent.link import AgentLink
from sipbridge.agent.receiver import AgentAudioReceiver
from sipbridge.agent.whip import AgentUnavailable, WhipClient

RATE = 48000
PACKET = 960

logger = logging.getLogger(__name__)


def opus_tone(seconds: float, freq: float = 440.0, amplitude: int = 8000) -> list[bytes]:
    """A tone as 20 ms mono Opus packets, encoded with libopus the way the media layer will."""
    codec = av.CodecContext.create("libopus", "w")
    codec.sample_rate = RATE
    codec.layout = "mono"
    codec.format = "s16"
    codec.bit_rate = 32000
    codec.time_base = fractions.Fraction(1, RATE)
    n = int(RATE * seconds)
    pcm = (np.sin(2 * np.pi * freq * np.arange(n) / RATE) * amplitude).astype(np.int16)
    packets: list[bytes] = []
    for start in range(0, n - PACKET + 1, PACKET):
        chunk = pcm[start : start + PACKET].reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = start
        packets += [bytes(p) for p in codec.encode(frame)]
    return packets


async def send_paced(link: AgentLink, packets: list[bytes]) -> None:
    """Feed packets every 20 ms on a drift-free schedule, as RTP from a phone would arrive."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i, packet in enumerate(packets):
        link.send_opus(packet)
        await asyncio.sleep(max(0.0, start + (i + 1) * 0.02 - loop.time()))


async def until(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def peak_frequency(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / RATE)[int(np.argmax(spectrum))])


class Recorder:
    def __init__(self) -> None:
        self.audio: list[np.ndarray] = []
        self.events: list[dict] = []
        self.closed: list[tuple[float, str]] = []
        self.failed: list[tuple[float, str]] = []

    def on_closed(self, reason: str) -> None:
        self.closed.append((time.monotonic(), reason))

    def on_failed(self, reason: str) -> None:
        self.failed.append((time.monotonic(), reason))

    def link(self, whip: WhipClient, **kwargs: object) -> AgentLink:
        """A link whose audio is decoded as the bridge does for a G.711 phone."""
        kwargs.setdefault("resource_id", "+15551230000")
        receiver = AgentAudioReceiver(RATE, self.audio.append)
        return AgentLink(
            whip,
            on_packet=receiver.packet,
            on_event=self.events.append,
            on_closed=self.on_closed,
            on_failed=self.on_failed,
            **kwargs,
        )


@pytest.fixture
async def agent() -> AsyncIterator[EchoAgentServer]:
    server = EchoAgentServer(port=0)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def whip(agent: EchoAgentServer) -> AsyncIterator[WhipClient]:
    client = WhipClient(agent.url)
    yield client
    await client.close()


async def sessions(agent: EchoAgentServer) -> list[dict]:
    async with aiohttp.ClientSession() as http:
        async with http.get(agent.url.removesuffix("/whip") + "/sessions") as resp:
            return await resp.json()


async def test_tone_comes_back_from_the_echo_agent(agent, whip):
    rec = Recorder()
    link = rec.link(whip)
    await link.connect(timeout=5)
    assert link.state == "answered"
    assert "a=rtpmap:111 opus/48000/2" in link.session.answer_sdp.splitlines()
    await link.wait_connected(timeout=5)
    await send_paced(link, opus_tone(2.0))
    await until(lambda: sum(map(len, rec.audio)) >= RATE * 1.5)

    received = np.concatenate(rec.audio)
    assert all(chunk.dtype == np.int16 and chunk.ndim == 1 for chunk in rec.audio)
    steady = received[RATE // 4 : RATE // 4 + RATE].astype(np.float64)  # skip the start-up
    assert abs(peak_frequency(steady) - 440) < 10
    assert np.sqrt(np.mean(steady**2)) > 2000  # a 8000-peak sine is 5657 RMS
    assert {"type": "state", "state": "listening"} in rec.events
    assert link.stats.packets_sent == 100 and link.stats.packets_received > 50

    await link.close()
    [record] = await sessions(agent)
    assert record["deleted"] is True
    assert record["packets_in"] > 50
    assert rec.closed == []  # our own close is not the agent going away
    assert link.state == "closed"


async def test_agent_hanging_up_fires_on_closed_once(agent, whip):
    rec = Recorder()
    link = rec.link(whip)
    await link.connect(timeout=5)
    await link.wait_connected(timeout=5)
    [record] = await sessions(agent)

    hung_up = time.monotonic()
    async with aiohttp.ClientSession() as http:  # another party ends the session at the agent
        async with http.delete(f"{agent.url}/{record['id']}") as resp:
            assert resp.status == 200
    await until(lambda: bool(rec.closed), timeout=2)
    delay = rec.closed[0][0] - hung_up
    logger.info("on_closed %.3f s after the agent hung up: %s", delay, rec.closed[0][1])
    assert delay < 2
    assert link.state == "disconnected"

    await link.close()  # still ours to call: the DELETE now gets a 404 and is not an error
    await asyncio.sleep(0.05)
    assert len(rec.closed) == 1


async def test_resource_id_and_outbound_reach_the_agent(agent, whip):
    link = Recorder().link(whip, resource_id="+442071234567", direction="outbound")
    await link.connect(timeout=5)
    await link.close()
    [record] = await sessions(agent)
    assert (record["resource_id"], record["direction"]) == ("+442071234567", "outbound")


async def test_events_go_both_ways(agent, whip):
    rec = Recorder()
    link = rec.link(whip)
    await link.connect(timeout=5)
    await until(lambda: len(rec.events) >= 2)
    greeting = [{"type": "connection", "state": "connected"}, {"type": "state", "state": "listening"}]
    assert rec.events == greeting
    link.send_event({"type": "dtmf", "digit": "5"})
    session = next(iter(agent.sessions.values()))
    await until(lambda: session.events_in == 1)
    await link.close()


async def test_unreachable_agent_fails_connect_and_cleans_up():
    closed_port = socket.socket()  # bound, not listening: connections are refused
    closed_port.bind(("127.0.0.1", 0))
    whip = WhipClient(f"http://127.0.0.1:{closed_port.getsockname()[1]}/whip", timeout=2)
    link = Recorder().link(whip)
    with pytest.raises(AgentUnavailable, match="agent unreachable"):
        await link.connect(timeout=5)
    assert link.state == "failed"
    assert link._pc is None
    with pytest.raises(AgentUnavailable):
        await link.wait_connected(timeout=1)
    await link.close()  # idempotent after a failed connect
    await whip.close()
    closed_port.close()


async def test_connect_timeout_is_enforced():
    server = await asyncio.start_server(lambda reader, writer: None, "127.0.0.1", 0)
    whip = WhipClient(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/whip")
    link = Recorder().link(whip)
    started = time.monotonic()
    with pytest.raises(AgentUnavailable, match="did not answer within 0.5 s"):
        await link.connect(timeout=0.5)
    assert time.monotonic() - started < 1.5
    assert link.state == "failed"
    await whip.close()
    server.close()


async def test_close_is_idempotent_and_concurrent(agent, whip):
    link = Recorder().link(whip)
    await link.connect(timeout=5)
    await asyncio.gather(link.close(), link.close())
    await link.close()
    link.send_opus(b"\xf8\xff\xfe")  # after close: silently ignored
    link.send_event({"type": "dtmf"})
    deleted = [s for s in await sessions(agent) if s["deleted"]]
    assert len(deleted) == 1


async def test_a_closed_link_keeps_nothing_of_its_peer_connection(agent, whip):
    """An ended call stays readable for a while: its closed link must not hold the peer connection's
    transports, sockets and SDP (0.25 MiB a call), e.g. through the cancelled liveness task's frames."""
    link = Recorder().link(whip, silence_timeout=5)
    await link.connect(timeout=5)
    await link.wait_connected(timeout=5)
    pc = weakref.ref(link._pc)
    await link.close()
    await asyncio.sleep(0)  # the cancelled liveness task finishes
    gc.collect()
    assert pc() is None
    assert link.stats.packets_sent == 0 and link.session is not None  # what the call's view reads


@contextlib.asynccontextmanager
async def linked_to(mode: str) -> AsyncIterator[tuple[EchoAgentServer, AgentLink, Recorder]]:
    """A running reference agent in ``mode`` and a connected link to it, all closed afterwards."""
    server = EchoAgentServer(port=0, mode=mode)
    await server.start()
    whip = WhipClient(server.url)
    rec = Recorder()
    link = rec.link(whip)
    try:
        await link.connect(timeout=5)
        yield server, link, rec
    finally:
        await link.close()
        await whip.close()
        await server.stop()


async def test_silence_agent_answers_with_silence():
    async with linked_to("silence") as (server, link, rec):
        await send_paced(link, opus_tone(0.4))
        await until(lambda: len(rec.audio) >= 10)
        assert not np.any(np.concatenate(rec.audio))
        assert next(iter(server.sessions.values())).packets_in > 0


async def test_bearer_token_is_required_and_used_for_delete():
    server = EchoAgentServer(port=0, token="s3cret")
    await server.start()
    good, bad = WhipClient(server.url, token="s3cret"), WhipClient(server.url)
    try:
        with pytest.raises(AgentUnavailable) as caught:
            await Recorder().link(bad).connect(timeout=5)
        assert caught.value.status == 401
        link = Recorder().link(good)
        await link.connect(timeout=5)
        await link.close()
        assert [s.deleted for s in server.sessions.values()] == [True]
    finally:
        await good.close()
        await bad.close()
        await server.stop()


async def test_close_aborts_a_pending_connect():
    server = await asyncio.start_server(lambda reader, writer: None, "127.0.0.1", 0)
    whip = WhipClient(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/whip")
    link = Recorder().link(whip)
    connecting = asyncio.create_task(link.connect(timeout=10))
    await asyncio.sleep(0.2)  # offer made, POST in flight
    started = time.monotonic()
    await link.close()
    with pytest.raises(AgentUnavailable, match="closed while connecting"):
        await connecting
    assert time.monotonic() - started < 1
    assert link.state == "closed"
    await whip.close()
    server.close()


async def test_cancelling_connect_propagates():
    server = await asyncio.start_server(lambda reader, writer: None, "127.0.0.1", 0)
    whip = WhipClient(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/whip")
    link = Recorder().link(whip)
    connecting = asyncio.create_task(link.connect(timeout=10))
    await asyncio.sleep(0.2)
    connecting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await connecting
    assert link.state == "failed" and link._pc is None
    await whip.close()
    server.close()


async def test_relay_agent_sends_the_same_opus_packets_back():
    async with linked_to("relay") as (server, link, rec):
        await link.wait_connected(timeout=5)
        await send_paced(link, opus_tone(1.0))
        await until(lambda: len(rec.audio) >= 40)
        heard = np.concatenate(rec.audio)
        assert abs(peak_frequency(heard[len(heard) // 4 :]) - 440) < 10
        session = next(iter(server.sessions.values()))
        assert session.packets_out == session.packets_in > 40


async def test_a_silent_path_fails_the_link_and_a_resume_reattaches(agent, whip):
    rec = Recorder()
    link = rec.link(whip, silence_timeout=1.5)
    await link.connect(timeout=5)
    await link.wait_connected(timeout=5)
    first = link.session
    [record] = await sessions(agent)
    async with aiohttp.ClientSession() as http:  # the agent's network path dies without a goodbye
        async with http.post(agent.url.removesuffix("/whip") + f"/sessions/{record['id']}/drop") as resp:
            assert resp.status == 200
    dropped = time.monotonic()
    await until(lambda: bool(rec.failed), timeout=5)
    logger.info("on_failed %.2f s after the drop: %s", rec.failed[0][0] - dropped, rec.failed[0][1])
    assert rec.closed == [] and "nothing from the agent" in rec.failed[0][1]
    assert link.state == "failed"
    await link.abandon()
    assert not agent.sessions[record["id"]].deleted  # no DELETE: the conversation is kept

    again = Recorder()
    resumed = again.link(whip, resume_token=first.resume_token)
    await resumed.connect(timeout=5)
    await resumed.wait_connected(timeout=5)
    assert resumed.session.resume_status == "resumed"
    assert resumed.session.resume_token not in ("", first.resume_token)
    await send_paced(resumed, opus_tone(0.6))
    await until(lambda: len(again.audio) > 5)  # media flows on the new link
    await resumed.close()
    records = {r["id"]: r for r in await sessions(agent)}
    assert len(records) == 2
    new = next(r for r in records.values() if r["id"] != record["id"])
    assert new["conversation"] == record["conversation"] and new["resume_status"] == "resumed"


async def test_resume_tokens_are_single_use_and_expire(agent, whip):
    agent.resume_grace = 0.3
    link = Recorder().link(whip)
    await link.connect(timeout=5)
    token = link.session.resume_token
    await link.close()
    await asyncio.sleep(0.4)
    late = Recorder().link(whip, resume_token=token)
    await late.connect(timeout=5)
    assert late.session.resume_status == "expired"
    await late.close()
    again = Recorder().link(whip, resume_token=token)
    await again.connect(timeout=5)
    assert again.session.resume_status == "expired"  # used once already
    await again.close()


def test_the_offer_to_the_agent_carries_a_relayed_phones_band():
    from sipbridge.agent.link import opus_offer
    from sipbridge.media_session.agent_leg import relay_params

    params = relay_params("maxplaybackrate=16000; sprop-maxcapturerate=16000;stereo=1;maxplaybackrate=x")
    assert params == {"maxplaybackrate": "16000", "sprop-maxcapturerate": "16000"}
    assert relay_params("maxplaybackrate=96000;useinbandfec=1") == {}
    sdp = (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 96\r\n"
        "c=IN IP4 127.0.0.2\r\na=rtpmap:96 opus/48000/2\r\n"
    )
    offer = opus_offer(sdp, params)
    fmtp = next(line for line in offer.splitlines() if line.startswith("a=fmtp:111"))
    assert "maxplaybackrate=16000" in fmtp and "useinbandfec=1" in fmtp
