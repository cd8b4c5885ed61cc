"""The agent token goes to the agent's own origin only: a WHIP answer whose Location names another
server does not get our DELETE (which carries the token)."""

import socket

import pytest
from aiohttp import web

from sipbridge.agent.whip import WhipClient, same_origin


class Recorder:
    """An HTTP server on a free loopback port that records what reaches it."""

    def __init__(self, location: str = "") -> None:
        self.location = location
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.runner: web.AppRunner | None = None
        self.base = ""

    async def _answer(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, str(request.rel_url), dict(request.headers)))
        headers = {"Location": self.location} if self.location else {}
        return web.Response(status=201, text="v=0\r\n", content_type="application/sdp", headers=headers)

    async def __aenter__(self) -> "Recorder":
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._answer)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        sock = socket.create_server(("127.0.0.1", 0))
        self.base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        await web.SockSite(self.runner, sock).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


async def test_a_session_at_another_origin_is_never_sent_the_token():
    async with Recorder() as elsewhere, Recorder() as agent:
        agent.location = elsewhere.base + "/x"  # another port: another server
        client = WhipClient(f"{agent.base}/whip", token="jwt-secret")
        try:
            session = await client.offer("v=0", resource_id=None)
            await client.delete(session.session_url)
        finally:
            await client.close()
    assert session.session_url == ""
    assert elsewhere.requests == []


async def test_a_session_at_the_agents_origin_is_deleted_with_the_token():
    async with Recorder() as agent:
        agent.location = "/whip/s1"
        client = WhipClient(f"{agent.base}/whip", token="jwt-secret")
        try:
            session = await client.offer("v=0", resource_id=None)
            await client.delete(session.session_url)
        finally:
            await client.close()
    method, path, headers = agent.requests[-1]
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
