"""The agent token goes to the agent's own origin only: a WHIP answer whose Location names another
server does not get our DELETE (which carries the token)."""

import pytest
from aiohttp import web
from tests.unit.agent.test_agent_whip import FakeAgent, Handler

from sipbridge.agent.whip import WhipClient, same_origin


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
