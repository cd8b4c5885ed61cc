"""The embedded reference agent's HTTP side: status codes, resume tokens, records, run_agent."""

import asyncio
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from sipbridge.agent.echo import MAX_RECORDS, EchoAgentServer, run_agent
from sipbridge.agent.echo_session import AgentSession
from sipbridge.agent.whip import WhipClient


@pytest.fixture
async def agent() -> AsyncIterator[EchoAgentServer]:
    server = EchoAgentServer(port=0)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def offer() -> AsyncIterator[str]:
    """A real offer (audio + events channel) from a peer that is closed afterwards."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.createDataChannel("events")
    pc.addTransceiver("audio", direction="sendrecv")
    await pc.setLocalDescription(await pc.createOffer())
    yield pc.localDescription.sdp
    await pc.close()


def base(agent: EchoAgentServer) -> str:
    return agent.url.removesuffix("/whip")


async def test_post_answers_201_with_the_protocol_headers(agent, http, offer):
    async with http.post(agent.url, data=offer, headers={"Content-Type": "application/sdp"}) as resp:
        assert resp.status == 201
        assert resp.content_type == "application/sdp"
        assert resp.headers["Location"].startswith("/whip/")
        assert resp.headers["ETag"]
        assert resp.headers["X-Resume-Token"]
        assert resp.headers["X-Resume-Status"] == "new"
        answer = await resp.text()
    assert answer.startswith("v=0") and "a=sendrecv" in answer


async def test_wrong_content_type_is_415_and_empty_offer_400(agent, http, offer):
    async with http.post(agent.url, data=offer, headers={"Content-Type": "text/plain"}) as resp:
        assert resp.status == 415
    async with http.post(agent.url, data=b"", headers={"Content-Type": "application/sdp"}) as resp:
        assert resp.status == 400
    async with http.post(agent.url, data=b"garbage", headers={"Content-Type": "application/sdp"}) as resp:
        assert resp.status == 400
    assert agent.sessions == {}


async def test_delete_unknown_is_404_and_twice_is_404(agent, http, offer):
    async with http.delete(f"{agent.url}/nope") as resp:
        assert resp.status == 404
    async with http.post(agent.url, data=offer, headers={"Content-Type": "application/sdp"}) as resp:
        location = resp.headers["Location"]
    async with http.delete(base(agent) + location) as resp:
        assert resp.status == 200
    async with http.delete(base(agent) + location) as resp:
        assert resp.status == 404
    async with http.get(base(agent) + "/sessions") as resp:
        [record] = await resp.json()
    assert record["deleted"] is True
    assert set(record) >= {"id", "resource_id", "direction", "created", "state", "packets_in", "packets_out"}


async def test_resume_tokens_are_single_use_and_rotate(agent, offer):
    whip = WhipClient(agent.url)
    try:
        first = await whip.offer(offer, resource_id="+1555")
        second = await whip.offer(offer, resource_id="+1555", resume_token=first.resume_token)
        replayed = await whip.offer(offer, resource_id="+1555", resume_token=first.resume_token)
    finally:
        await whip.close()
    statuses = [first.resume_status, second.resume_status, replayed.resume_status]
    assert statuses == ["new", "resumed", "expired"]
    assert second.resume_token != first.resume_token
    conversations = [s.conversation for s in agent.sessions.values()]
    assert conversations[0] == conversations[1] != conversations[2]


async def test_health(agent, http):
    async with http.get(base(agent) + "/health") as resp:
        assert await resp.json() == {"status": "ok", "mode": "echo", "sessions": 0}


def test_records_are_bounded_keeping_live_ones():
    server = EchoAgentServer(port=0)
    live = AgentSession("live", "", "inbound", "c", "new")
    server.sessions["live"] = live
    for i in range(MAX_RECORDS + 5):
        server.sessions[str(i)] = AgentSession(str(i), "", "inbound", "c", "new", deleted=True)
    server._prune()
    assert len(server.sessions) == MAX_RECORDS
    assert "live" in server.sessions and "0" not in server.sessions


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError):
        EchoAgentServer(mode="karaoke")


async def test_run_agent_serves_until_cancelled(http):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    task = asyncio.create_task(run_agent("127.0.0.1", port, "silence"))
    try:
        for _ in range(200):
            try:
                async with http.get(f"http://127.0.0.1:{port}/health") as resp:
                    assert (await resp.json())["mode"] == "silence"
                    break
            except aiohttp.ClientConnectorError:
                await asyncio.sleep(0.01)
        else:
            raise AssertionError("run_agent never became ready")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    with pytest.raises(aiohttp.ClientConnectorError):
        await http.get(f"http://127.0.0.1:{port}/health")
