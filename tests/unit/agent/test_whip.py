"""WhipClient against small real HTTP servers on loopback: what it sends, how it fails."""

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
from aiohttp import web

from sipbridge.agent.whip import AgentUnavailable, WhipClient, same_origin

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class FakeAgent:
    """An aiohttp app on a free loopback port that records requests and answers with ``handler``."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[tuple[str, str, dict[str, str], str]] = []
        self.runner: web.AppRunner | None = None
        self.base = ""

    async def _record(self, request: web.Request) -> web.StreamResponse:
        body = await request.text()
        self.requests.append((request.method, str(request.rel_url), dict(request.headers), body))
        return await self.handler(request)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._record)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        sock = socket.create_server(("127.0.0.1", 0))
        self.base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        await web.SockSite(self.runner, sock).start()

    async def stop(self) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


async def _created(request: web.Request) -> web.Response:
    if request.method == "DELETE":
        return web.Response(status=200)
    return web.Response(
        status=201,
        text="v=0\r\nanswer\r\n",
        content_type="application/sdp",
        headers={
            "Location": "/whip/abc123",
            "ETag": '"e1"',
            "X-Resume-Token": "tok-1",
            "X-Resume-Status": "new",
        },
    )


async def _busy(request: web.Request) -> web.Response:
    return web.Response(status=503, text="all agents busy", headers={"Retry-After": "5"})


@pytest.fixture
async def fake_agent() -> AsyncIterator[Callable[[Handler], Awaitable[FakeAgent]]]:
    started: list[FakeAgent] = []

    async def start(handler: Handler) -> FakeAgent:
        agent = FakeAgent(handler)
        await agent.start()
        started.append(agent)
        return agent

    yield start
    for agent in started:
        await agent.stop()


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A bound TCP port that is not listening: connecting to it is refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


async def test_offer_sends_the_protocol_headers_and_reads_the_answer(fake_agent):
    agent = await fake_agent(_created)
    client = WhipClient(f"{agent.base}/whip", token="jwt-1")
    try:
        session = await client.offer("v=0\r\noffer\r\n", resource_id="+15551234567")
    finally:
        await client.close()
    method, url, headers, body = agent.requests[0]
    assert (method, url, body) == ("POST", "/whip", "v=0\r\noffer\r\n")
    assert headers["Content-Type"] == "application/sdp"
    assert headers["Authorization"] == "Bearer jwt-1"
    assert headers["X-StreamCore-Resource-Id"] == "+15551234567"
    assert session.session_url == f"{agent.base}/whip/abc123"
    assert session.answer_sdp == "v=0\r\nanswer\r\n"
    assert (session.etag, session.resume_token, session.resume_status) == ('"e1"', "tok-1", "new")


async def test_outbound_and_resume_go_in_the_query(fake_agent):
    agent = await fake_agent(_created)
    client = WhipClient(f"{agent.base}/whip")
    try:
        await client.offer("v=0", resource_id=None, direction="outbound", resume_token="tok-1")
        await client.offer("v=0", resource_id=None)
    finally:
        await client.close()
    (_, outbound_url, outbound_headers, _), (_, inbound_url, inbound_headers, _) = agent.requests
    assert outbound_url == "/whip?direction=outbound&resume=tok-1"
    assert inbound_url == "/whip"
    assert "Authorization" not in inbound_headers
    assert "X-StreamCore-Resource-Id" not in outbound_headers


async def test_unknown_direction_is_a_programming_error():
    client = WhipClient("http://127.0.0.1:9/whip")
    with pytest.raises(ValueError):
        await client.offer("v=0", resource_id=None, direction="sideways")
    await client.close()


async def test_nothing_listening_is_unreachable(refusing_port):
    endpoint = f"http://127.0.0.1:{refusing_port}/whip"
    client = WhipClient(endpoint)
    with pytest.raises(AgentUnavailable) as caught:
        await client.offer("v=0", resource_id=None)
    await client.close()
    assert caught.value.status is None
    assert caught.value.reason == f"agent unreachable: connection refused at {endpoint}"


async def test_busy_agent_is_refused_with_retry_after(fake_agent):
    agent = await fake_agent(_busy)
    client = WhipClient(f"{agent.base}/whip")
    with pytest.raises(AgentUnavailable) as caught:
        await client.offer("v=0", resource_id=None)
    await client.close()
    assert caught.value.status == 503
    assert caught.value.retry_after == 5
    assert caught.value.reason.startswith("agent refused: 503 Service Unavailable (Retry-After 5)")
    assert "all agents busy" in caught.value.reason


async def test_silent_agent_times_out():
    accepted: list[asyncio.StreamWriter] = []
    server = await asyncio.start_server(lambda reader, writer: accepted.append(writer), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = WhipClient(f"http://127.0.0.1:{port}/whip", timeout=0.3)
    started = time.monotonic()
    with pytest.raises(AgentUnavailable) as caught:
        await client.offer("v=0", resource_id=None)
    elapsed = time.monotonic() - started
    await client.close()
    server.close()
    for writer in accepted:
        writer.close()
    assert "agent unreachable: no answer within 0.3 s" in caught.value.reason
    assert elapsed < 2


def _late(delay: float) -> Handler:
    async def answer(request: web.Request) -> web.StreamResponse:
        if request.method == "POST":
            await asyncio.sleep(delay)
        return await _created(request)

    return answer


async def _deleted(agent: FakeAgent) -> list[str]:
    deadline = time.monotonic() + 3
    while not any(method == "DELETE" for method, *_ in agent.requests) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return [url for method, url, *_ in agent.requests if method == "DELETE"]


async def test_an_answer_after_the_timeout_has_its_session_deleted(fake_agent):
    agent = await fake_agent(_late(0.5))
    client = WhipClient(f"{agent.base}/whip", timeout=0.2)
    try:
        with pytest.raises(AgentUnavailable) as caught:
            await client.offer("v=0", resource_id=None)
        assert "no answer within 0.2 s" in caught.value.reason
        assert await _deleted(agent) == ["/whip/abc123"]  # the seat it took at the agent is given back
    finally:
        await client.close()


async def test_an_offer_given_up_by_its_caller_has_a_late_session_deleted(fake_agent):
    """The caller's own deadline (AgentLink.connect) or a CANCEL from the phone stops the wait."""
    agent = await fake_agent(_late(0.3))
    client = WhipClient(f"{agent.base}/whip", timeout=5)
    try:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.1):
                await client.offer("v=0", resource_id=None)
        assert await _deleted(agent) == ["/whip/abc123"]
    finally:
        await client.close()


async def test_close_stops_waiting_for_late_answers(fake_agent):
    release = asyncio.Event()

    async def held(request: web.Request) -> web.StreamResponse:
        await release.wait()  # answers only once the client has closed
        return await _created(request)

    agent = await fake_agent(held)
    client = WhipClient(f"{agent.base}/whip", timeout=0.1)
    with pytest.raises(AgentUnavailable):
        await client.offer("v=0", resource_id=None)
    await client.close()  # returns although the agent has not answered yet
    release.set()
    assert [method for method, *_ in agent.requests] == ["POST"]


async def test_201_without_a_body_is_unavailable(fake_agent):
    async def empty(request: web.Request) -> web.Response:
        return web.Response(status=201, headers={"Location": "/whip/x"})

    agent = await fake_agent(empty)
    client = WhipClient(f"{agent.base}/whip")
    with pytest.raises(AgentUnavailable) as caught:
        await client.offer("v=0", resource_id=None)
    await client.close()
    assert caught.value.status == 201


async def test_delete_carries_the_token(fake_agent):
    agent = await fake_agent(_created)
    client = WhipClient(f"{agent.base}/whip", token="jwt-2")
    await client.delete(f"{agent.base}/whip/abc123")
    await client.close()
    method, url, headers, _ = agent.requests[0]
    assert (method, url, headers["Authorization"]) == ("DELETE", "/whip/abc123", "Bearer jwt-2")


async def test_delete_never_raises(refusing_port, caplog):
    client = WhipClient("http://127.0.0.1:1/whip")
    await client.delete(f"http://127.0.0.1:{refusing_port}/whip/gone")
    await client.delete("")
    await client.close()
    assert "connection refused" in caplog.text


# -- the token goes to the agent's own origin only: a WHIP answer whose Location names another server
# -- does not get our DELETE (which carries the token)


def answering_at(location: str) -> Handler:
    async def answer(request: web.Request) -> web.Response:
        headers = {"Location": location} if request.method == "POST" else {}
        return web.Response(status=201, text="v=0\r\n", content_type="application/sdp", headers=headers)

    return answer


async def offer_then_delete(agent: FakeAgent) -> str:
    """The session URL our client kept from the agent's answer, after hanging it up."""
    client = WhipClient(f"{agent.base}/whip", token="jwt-secret")
    try:
        session = await client.offer("v=0", resource_id=None)
        await client.delete(session.session_url)
    finally:
        await client.close()
    return session.session_url


async def test_a_session_at_another_origin_is_never_sent_the_token():
    elsewhere = FakeAgent(answering_at(""))
    await elsewhere.start()
    agent = FakeAgent(answering_at(elsewhere.base + "/x"))  # another port: another server
    await agent.start()
    try:
        assert await offer_then_delete(agent) == ""
        assert elsewhere.requests == []
    finally:
        await agent.stop()
        await elsewhere.stop()


async def test_a_session_at_the_agents_origin_is_deleted_with_the_token():
    agent = FakeAgent(answering_at("/whip/s1"))
    await agent.start()
    try:
        await offer_then_delete(agent)
    finally:
        await agent.stop()
    method, path, headers, _ = agent.requests[-1]
    assert (method, path, headers["Authorization"]) == ("DELETE", "/whip/s1", "Bearer jwt-secret")


@pytest.mark.parametrize(
    ("url", "other", "same"),
    [
        ("http://a:8080/whip/1", "http://a:8080/whip", True),
        ("http://a/whip/1", "http://a:80/whip", True),
        ("https://a/whip/1", "http://a:443/whip", False),
        ("http://b:8080/x", "http://a:8080/whip", False),
        ("http://a:9/x", "http://a:8080/whip", False),
        ("http://a:bad/x", "http://a:8080/whip", False),
    ],
)
def test_same_origin(url, other, same):
    assert same_origin(url, other) is same
