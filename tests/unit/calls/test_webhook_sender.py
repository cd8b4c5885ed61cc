"""The webhook sender against real HTTP receivers on loopback: signed POSTs in order, retries of a
failing receiver, refusals, a dead one's bounded backlog, and a hanging one that delays nothing."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from sipbridge import metrics
from sipbridge.calls.call import CallState
from sipbridge.calls.webhooks.events import Event
from sipbridge.calls.webhooks.outbox import Backoff, Outbox
from sipbridge.calls.webhooks.sender import WebhookSender

SECRET = "whsec-0123456789abcdef"
Answer = Callable[[int], Awaitable[web.Response]]  # by the number of the request (0, 1, ...)


class Receiver:
    """An aiohttp receiver on a loopback port that keeps every POST and answers with ``answer``."""

    def __init__(self, answer: Answer | None = None, port: int = 0) -> None:
        self.answer = answer or _ok
        self.posts: list[tuple[dict[str, str], bytes]] = []
        self.port = port
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks?token=t0k"

    async def _post(self, request: web.Request) -> web.Response:
        self.posts.append((dict(request.headers), await request.read()))
        return await self.answer(len(self.posts) - 1)

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hooks", self._post)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        sock = socket.create_server(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def types(self) -> list[str]:
        return [json.loads(body)["type"] for _, body in self.posts]

    def ids(self) -> list[str]:
        return [json.loads(body)["id"] for _, body in self.posts]


async def _ok(n: int) -> web.Response:
    return web.Response(status=204)


@pytest.fixture
async def receivers() -> AsyncIterator[list[Receiver]]:
    started: list[Receiver] = []
    yield started
    for receiver in started:
        await receiver.stop()


@pytest.fixture
async def senders() -> AsyncIterator[list[WebhookSender]]:
    started: list[WebhookSender] = []
    yield started
    for sender in started:
        await sender.stop(grace=0)


async def _sender(senders: list[WebhookSender], url: str, **options) -> WebhookSender:
    sender = WebhookSender(url, **options)
    await sender.start()
    senders.append(sender)
    return sender


def _count(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def _events(n: int) -> list[Event]:
    bodies = [json.dumps({"id": f"evt_{i}", "type": "call.dtmf"}).encode() for i in range(n)]
    return [Event(f"evt_{i}", "call.dtmf", "call-1", body) for i, body in enumerate(bodies)]


async def _until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def _signed(headers: dict[str, str], body: bytes, now: float) -> bool:
    """The receiver's check, written from the docs (not with sipbridge's verify)."""
    fields = dict(part.split("=", 1) for part in headers["X-Sipbridge-Signature"].split(","))
    mac = hmac.new(SECRET.encode(), f"{fields['t']}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(mac, fields["v1"]) and abs(now - int(fields["t"])) <= 300


async def test_a_calls_events_are_posted_signed_in_order_and_counted(make_call, receivers, senders):
    receiver = await Receiver().start()
    receivers.append(receiver)
    sender = await _sender(senders, receiver.url, secret=SECRET)
    delivered = _count("sipbridge_webhook_events_total", fate="delivered")

    call = make_call()
    for kind in ("ringing", "answered"):  # as the call would, without a manager
        sender.call_event(call, kind, {})
    call.set_state(CallState.ANSWERED)
    sender.call_event(call, "dtmf", {"digit": "7", "via": "rfc4733"})
    call.mark_ended("caller hung up")
    sender.call_event(call, "ended", {})
    await _until(lambda: len(receiver.posts) == 4)

    assert receiver.types() == ["call.ringing", "call.answered", "call.dtmf", "call.ended"]
    for headers, body in receiver.posts:
        assert _signed(headers, body, time.time()), headers
        assert headers["Content-Type"] == "application/json"
        assert headers["X-Sipbridge-Event-Id"] == json.loads(body)["id"]
        assert headers["User-Agent"].startswith("sipbridge/")
    assert len(set(receiver.ids())) == 4
    assert _count("sipbridge_webhook_events_total", fate="delivered") == delivered + 4
    assert len(sender.outbox) == 0


async def test_a_failing_receiver_gets_the_same_event_again_until_it_takes_it(receivers, senders):
    async def answer(n: int) -> web.Response:
        return web.Response(status=503 if n < 2 else 200)

    receiver = await Receiver(answer).start()
    receivers.append(receiver)
    outbox = Outbox(backoff=Backoff(first=0.02, cap=0.05))
    sender = await _sender(senders, receiver.url, secret=SECRET, outbox=outbox)
    failures = _count("sipbridge_webhook_delivery_failures_total", reason="status")
    for event in _events(2):
        sender.queue(event)
    await _until(lambda: len(receiver.posts) == 4)
    assert receiver.ids() == ["evt_0", "evt_0", "evt_0", "evt_1"]  # evt_1 waited its turn
    assert all(_signed(headers, body, time.time()) for headers, body in receiver.posts)
    assert _count("sipbridge_webhook_delivery_failures_total", reason="status") == failures + 2


async def test_a_refused_event_is_not_retried_and_the_next_goes_on(receivers, senders):
    async def answer(n: int) -> web.Response:
        return web.Response(status=400 if n == 0 else 200)

    receiver = await Receiver(answer).start()
    receivers.append(receiver)
    refused = _count("sipbridge_webhook_events_total", fate="refused")
    sender = await _sender(senders, receiver.url)
    for event in _events(2):
        sender.queue(event)
    await _until(lambda: len(receiver.posts) == 2)
    await asyncio.sleep(0.1)
    assert receiver.ids() == ["evt_0", "evt_1"]
    assert "X-Sipbridge-Signature" not in receiver.posts[0][0]  # no secret: unsigned
    assert _count("sipbridge_webhook_events_total", fate="refused") == refused + 1


async def test_a_dead_receiver_keeps_the_newest_events_and_gets_them_in_order_once_up(receivers, senders):
    with socket.socket() as probe:  # a port nobody listens on, for now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    receiver = Receiver(port=port)
    outbox = Outbox(capacity=5, backoff=Backoff(first=0.05, cap=0.2))
    sender = await _sender(senders, receiver.url, outbox=outbox)
    dropped = _count("sipbridge_webhook_events_total", fate="dropped")
    failed = _count("sipbridge_webhook_delivery_failures_total", reason="connection")

    for event in _events(8):
        sender.queue(event)
    assert len(sender.outbox) == 5
    assert _count("sipbridge_webhook_events_total", fate="dropped") == dropped + 3
    await _until(lambda: _count("sipbridge_webhook_delivery_failures_total", reason="connection") > failed)

    receivers.append(await receiver.start())
    await _until(lambda: len(receiver.posts) == 5)
    assert receiver.ids() == ["evt_3", "evt_4", "evt_5", "evt_6", "evt_7"]
    assert _count("sipbridge_webhook_events_total", fate="dropped") == dropped + 3


async def test_a_hanging_receiver_delays_neither_the_call_nor_the_shutdown(make_call, receivers, senders):
    hang = asyncio.Event()

    async def answer(n: int) -> web.Response:
        await hang.wait()
        return web.Response(status=200)

    receiver = await Receiver(answer).start()
    receivers.append(receiver)
    timeouts = _count("sipbridge_webhook_delivery_failures_total", reason="timeout")
    sender = await _sender(senders, receiver.url, timeout=0.3)
    call = make_call()
    took = []
    for kind in ("ringing", "answered", "ended"):
        start = time.perf_counter()
        sender.call_event(call, kind, {})
        took.append(time.perf_counter() - start)

    await _until(lambda: _count("sipbridge_webhook_delivery_failures_total", reason="timeout") > timeouts)
    start = time.monotonic()
    await sender.stop(grace=0.2)
    stopped_in = time.monotonic() - start
    hang.set()
    print(f"queueing took {max(took) * 1000:.2f} ms at most; stop took {stopped_in:.2f} s")
    assert max(took) < 0.05 and stopped_in < 1.0
