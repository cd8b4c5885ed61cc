"""The REST API against a hostile client, without sockets: the key before the body, the body cap, the
Host rule of a keyless API, no CORS, toll-fraud numbers, and the caps under concurrent POST /calls."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from sipbridge.api.app import create_app
from sipbridge.api.guard import MAX_BODY_BYTES, is_loopback_authority
from sipbridge.calls.manager import CallManager
from sipbridge.calls.outbound import OutboundTarget
from sipbridge.providers.policy import Refused
from sipbridge.providers.provider import DialRequest, Provider, Providers
from sipbridge.rtp.ports import PortAllocator
from sipbridge.settings.provider import ProviderConfig
from sipbridge.settings.values import HostPort

KEY = "security-test-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
TRUNK = ProviderConfig(
    name="trunk",
    type="generic",
    address=HostPort("127.0.0.1", 5099),
    destinations=(r"^1[0-9]{3}$",),
    max_outbound_calls=5,
    max_attempts_per_minute=1000,
)
TWILIO = ProviderConfig(name="twilio", type="twilio", address=HostPort("127.0.0.1", 5061))


class HeldPorts(PortAllocator):
    """RTP ports that never come: a placed call stays 'dialing' (and counted) until shut down."""

    async def open(self, host: str, factory: Callable[[], Any]) -> Any:
        await asyncio.Event().wait()


class SlowProvider(Provider):
    """A trunk whose address takes a while to resolve: placing a call awaits, as with a DNS name."""

    async def target(self, number: str, dial: DialRequest) -> OutboundTarget:
        await asyncio.sleep(0.02)
        return await super().target(number, dial)


class UnreachableProvider(Provider):
    async def target(self, number: str, dial: DialRequest) -> OutboundTarget:
        await asyncio.sleep(0)
        raise Refused(502, "cannot resolve trunk.invalid: no such name")


@pytest.fixture
def _manager(make_manager):
    def make(max_calls: int = 100, max_duration: float | None = None) -> CallManager:
        return make_manager(
            ports=HeldPorts(40000, 40019), max_calls=max_calls, max_call_duration=max_duration or 0
        )

    return make


def _providers(*configs: ProviderConfig, kind: type[Provider] = Provider) -> Providers:
    providers = Providers(())
    providers.by_name = {config.name: kind(config) for config in configs}
    return providers


def _client(
    manager: CallManager,
    keys: tuple[str, ...] = (),
    providers: Providers | None = None,
    base_url: str = "http://127.0.0.1:8090",
) -> httpx.AsyncClient:
    ua = SimpleNamespace()  # never reached: the calls wait for an RTP port forever
    app = create_app(manager, providers or _providers(TRUNK, TWILIO), ua, keys)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url, timeout=10)


@pytest.fixture
async def manager(_manager) -> AsyncIterator[CallManager]:
    manager = _manager()
    yield manager
    await manager.shutdown()


class CountingBody:
    """A request body that counts how much of it was pulled."""

    def __init__(self, chunks: int, size: int = 64 * 1024) -> None:
        self.chunks, self.size, self.pulled = chunks, size, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.chunks):
            self.pulled += 1
            yield b"{" * self.size


# -- the key before the body ---------------------------------------------------------------------


async def test_a_10_mb_body_without_a_key_gets_401_before_a_byte_is_read(manager: CallManager) -> None:
    body = CountingBody(chunks=160)  # 10 MiB, chunked
    async with _client(manager, keys=(KEY,)) as client:
        started = time.perf_counter()
        response = await client.post("/calls", content=body)
        elapsed = time.perf_counter() - started
        assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Bearer"
        assert response.json() == {"error": "this API needs 'Authorization: Bearer <key>'"}
        assert body.pulled == 0 and elapsed < 1.0
        sized = await client.post("/calls", content=b"{" * 10_000_000)  # with Content-Length
        assert sized.status_code == 401
        wrong = await client.post("/calls", content=b"{", headers={"Authorization": "Bearer nope-nope"})
        assert wrong.status_code == 401 and wrong.json()["error"] == "unknown API key"
        assert (await client.get("/health")).status_code == 200  # open without a key


async def test_every_route_but_health_needs_the_key(manager: CallManager) -> None:
    async with _client(manager, keys=(KEY,)) as client:
        for path in ("/calls", "/providers", "/metrics", "/openapi.json", "/docs", "/nowhere", "/health/"):
            assert (await client.get(path)).status_code == 401, path
        assert (await client.get("/providers", headers=AUTH)).status_code == 200


# -- the body cap --------------------------------------------------------------------------------


async def test_a_body_over_the_cap_gets_413_by_length_and_while_streaming(manager: CallManager) -> None:
    async with _client(manager, keys=(KEY,)) as client:
        response = await client.post("/calls", content=b" " * (MAX_BODY_BYTES + 1), headers=AUTH)
        assert response.status_code == 413 and response.json() == {"error": "request body over 64 KiB"}
        chunked = CountingBody(chunks=100, size=1024)  # 100 KiB without a Content-Length
        response = await client.post("/calls", content=chunked, headers=AUTH)
        assert response.status_code == 413 and "error" in response.json()
        assert chunked.pulled <= MAX_BODY_BYTES // 1024 + 1  # reading stopped at the cap
        padded = {"provider": "trunk", "to": "1001", "metadata": {"note": "x" * 200}}
        response = await client.post("/calls", json=padded, headers=AUTH)
        assert response.status_code == 201, response.json()


async def test_a_chunked_body_within_the_cap_reaches_the_route(manager: CallManager) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b'{"provider": "trunk",'
        yield b' "to": "1002"}'

    async with _client(manager) as client:
        response = await client.post("/calls", content=body(), headers={"Content-Type": "application/json"})
    assert response.status_code == 201 and response.json()["to"] == "1002"


# -- Host (DNS rebinding), Origin, CORS ----------------------------------------------------------


@pytest.mark.parametrize(
    ("authority", "local"),
    [
        ("localhost", True),
        ("LOCALHOST:8090", True),
        ("127.0.0.1", True),
        ("127.0.0.1:8090", True),
        ("127.9.8.7:1", True),
        ("[::1]", True),
        ("[::1]:8090", True),
        ("evil.example", False),
        ("evil.example:8090", False),
        ("localhost.evil.example", False),
        ("127.0.0.1.nip.io", False),
        ("10.0.0.1:8090", False),
        ("127.0.0.1:http", False),
        ("[::1]x", False),
        ("", False),
    ],
)
def test_which_host_headers_are_loopback(authority: str, local: bool) -> None:
    assert is_loopback_authority(authority) is local


async def test_a_keyless_api_answers_only_loopback_host_names(manager: CallManager) -> None:
    async with _client(manager) as client:
        for host in ("evil.example", "evil.example:8090", "192.168.1.10:8090"):
            for method, path in (("GET", "/health"), ("POST", "/calls"), ("GET", "/calls")):
                response = await client.request(method, path, headers={"Host": host})
                assert response.status_code == 400, (host, path)
                assert "localhost" in response.json()["error"]
        for host in ("127.0.0.1:8090", "localhost", "localhost:8090", "[::1]:8090"):
            assert (await client.get("/health", headers={"Host": host})).status_code == 200, host


async def test_with_keys_any_host_is_fine(manager: CallManager) -> None:
    async with _client(manager, keys=(KEY,), base_url="http://bridge.example") as client:
        assert (await client.get("/health")).status_code == 200
        assert (await client.get("/calls", headers=AUTH)).status_code == 200


async def test_a_keyless_api_refuses_pages_of_other_sites(manager: CallManager) -> None:
    async with _client(manager) as client:
        response = await client.post(
            "/calls", json={"provider": "trunk", "to": "1001"}, headers={"Origin": "http://evil.example"}
        )
        assert response.status_code == 403 and "Origin" in response.json()["error"]
        same = await client.get("/calls", headers={"Origin": "http://127.0.0.1:8090"})
        assert same.status_code == 200
    assert manager.list_active() == []


@pytest.mark.parametrize("keys", [(), (KEY,)])
async def test_no_cors_headers_ever(manager: CallManager, keys: tuple[str, ...]) -> None:
    preflight = {
        "Origin": "http://127.0.0.1:3000",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    async with _client(manager, keys=keys) as client:
        responses = [
            await client.options("/calls", headers=preflight),
            await client.get("/health", headers={"Origin": "http://127.0.0.1:3000"}),
            await client.get("/calls", headers={"Origin": "http://127.0.0.1:3000", **AUTH}),
        ]
    for response in responses:
        assert not [h for h in response.headers if h.lower().startswith("access-control-")], response.headers
    assert responses[0].status_code in (401, 405) and "error" in responses[0].json()


async def test_errors_are_json_even_for_unknown_paths(manager: CallManager) -> None:
    async with _client(manager) as client:
        response = await client.get("/nowhere")
        assert response.status_code == 404 and response.json() == {"error": "Not Found"}
        response = await client.put("/calls")
        assert response.status_code == 405 and "error" in response.json()


# -- toll fraud ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("to", "says"),
    [
        ("00441234567890", "is international"),
        ("011441234567890", "is international"),
        ("0019005551234", "is a premium-rate range"),
        ("00882123456", "is a premium-rate range"),
        ("+18765551234", "is international (+1 876 is Jamaica, not the US or Canada)"),
        ("+447700900123", "is international"),
        ("1001", "not in this provider's allowed destinations"),
    ],
)
async def test_fraud_numbers_are_refused_with_their_reason(manager: CallManager, to: str, says: str) -> None:
    async with _client(manager) as client:
        response = await client.post("/calls", json={"provider": "twilio", "to": to})
    assert response.status_code == 403 and says in response.json()["error"], response.json()
    assert manager.list_active() == []


async def test_a_us_number_still_goes_out_in_e164(manager: CallManager) -> None:
    async with _client(manager) as client:
        response = await client.post("/calls", json={"provider": "twilio", "to": "(415) 555-0123"})
    assert response.status_code == 201 and response.json()["to"] == "+14155550123"


# -- the caps under concurrent requests ----------------------------------------------------------


async def test_30_concurrent_posts_place_at_most_the_provider_cap(manager: CallManager) -> None:
    async with _client(manager, providers=_providers(TRUNK, kind=SlowProvider)) as client:
        responses = await asyncio.gather(
            *(client.post("/calls", json={"provider": "trunk", "to": "1001"}) for _ in range(30))
        )
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201] * 5 + [429] * 25
    assert len(manager.list_active()) == 5 and manager.outbound_active("trunk") == 5
    assert "outbound calls up (the cap)" in next(r for r in responses if r.status_code == 429).json()["error"]


async def test_outbound_calls_count_against_max_calls_even_before_they_are_placed(_manager) -> None:
    manager = _manager(max_calls=3)
    trunk = replace(TRUNK, max_outbound_calls=100)
    try:
        async with _client(manager, providers=_providers(trunk, kind=SlowProvider)) as client:
            responses = await asyncio.gather(
                *(client.post("/calls", json={"provider": "trunk", "to": "1001"}) for _ in range(10))
            )
            busy = [r for r in responses if r.status_code == 503]
            assert sum(r.status_code == 201 for r in responses) == 3 and len(busy) == 7
            assert busy[0].headers["Retry-After"] == "5" and "max_calls" in busy[0].json()["error"]
            health = (await client.get("/health")).json()
            assert health["calls_active"] == 3 and health["calls_rejected_busy"] == 7
            assert manager.calls_in_use == 3
    finally:
        await manager.shutdown()


async def test_a_call_that_cannot_be_placed_gives_its_place_back(manager: CallManager) -> None:
    async with _client(manager, providers=_providers(TRUNK, kind=UnreachableProvider)) as client:
        for _ in range(7):  # more than the cap of 5: each place came back
            response = await client.post("/calls", json={"provider": "trunk", "to": "1001"})
            assert response.status_code == 502 and "cannot resolve" in response.json()["error"]
    assert manager.outbound_active("trunk") == 0 and manager.calls_in_use == 0


# -- max_duration --------------------------------------------------------------------------------


async def test_max_duration_may_not_exceed_max_call_duration(_manager) -> None:
    manager = _manager(max_duration=600)
    try:
        async with _client(manager) as client:
            response = await client.post(
                "/calls", json={"provider": "trunk", "to": "1001", "max_duration": 601}
            )
            assert response.status_code == 422
            assert response.json()["error"] == (
                "max_duration 601 s is above this bridge's max_call_duration of 600 s"
            )
            response = await client.post(
                "/calls", json={"provider": "trunk", "to": "1001", "max_duration": 600}
            )
            assert response.status_code == 201
    finally:
        await manager.shutdown()
    unlimited = _manager(max_duration=None)  # max_call_duration = 0: no limit but the API's own
    try:
        async with _client(unlimited) as client:
            body = {"provider": "trunk", "to": "1001", "max_duration": 86400}
            assert (await client.post("/calls", json=body)).status_code == 201
    finally:
        await unlimited.shutdown()
