"""The operator's routes without sockets: /health states, /metrics (format, key, cost), POST /calls
while draining."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from types import SimpleNamespace

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sipbridge.api.app import create_app
from sipbridge.calls.call import Call
from sipbridge.calls.manager import CallManager
from sipbridge.loop_lag import LoopLag
from sipbridge.media_session.host import MediaHost
from sipbridge.media_session.messages import MediaStats
from sipbridge.metrics import MediaCounters
from sipbridge.providers.provider import Providers
from sipbridge.rtp.ports import PortAllocator
from sipbridge.rtp.session import RtpSession
from sipbridge.settings.provider import ProviderConfig
from sipbridge.settings.values import HostPort
from sipbridge.sip.gate import GateCounts

KEY = "unit-test-key-0123456789"
PBX = ProviderConfig(
    name="pbx", type="generic", address=HostPort("127.0.0.1", 5099), destinations=(r"^1\d{3}$",)
)


@pytest.fixture
def _call(make_call):
    def make(manager: CallManager, packets_in: int = 0) -> Call:
        """A call in the manager's active list, with RTP stats as if it had run (no sockets)."""
        call = make_call(manager)
        counters = MediaCounters(rtp_packets_received=packets_in, rtp_packets_sent=2 * packets_in)
        call.media.snapshot = MediaStats(counters=counters)
        return call

    return make


def _receive(call: Call, packets: int) -> None:
    """The call goes on: its media counts more packets."""
    counters = call.media.snapshot.counters
    counters.rtp_packets_received += packets


async def _client(manager: CallManager, keys: tuple[str, ...] = ()) -> httpx.AsyncClient:
    # only its counters are read
    gate = SimpleNamespace(counts=GateCounts(rejected=1, dropped=7, scanners=2))
    stats = {"parse_errors": 3, "stray_requests": 5, "stray_acks": 6, "maddr_ignored": 1}
    ua = SimpleNamespace(
        stats=stats, gate=gate, transport=SimpleNamespace(connections_refused=4, connections_timed_out=2)
    )
    app = create_app(manager, Providers((PBX,)), ua, keys, degraded_load=0.5)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8090")


@pytest.fixture
async def manager(make_manager) -> AsyncIterator[CallManager]:
    yield make_manager(max_calls=10)


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_health_is_ok_then_degraded_then_draining_with_503(manager: CallManager, _call) -> None:
    async with await _client(manager) as client:
        response = await client.get("/health")
        assert response.status_code == 200 and response.json()["status"] == "ok"
        assert {"calls_active", "max_calls", "load", "rtp_ports_in_use"} <= set(response.json())
        for _ in range(5):  # 5 of 10: degraded_load 0.5 reached
            _call(manager)
        response = await client.get("/health")
        assert response.status_code == 200 and response.json()["status"] == "degraded"
        manager.start_draining(retry_after=30)
        response = await client.get("/health")
        assert response.status_code == 503 and response.json()["status"] == "draining"
        assert response.json()["calls_active"] == 5


async def test_health_is_degraded_when_the_rtp_ports_run_out(manager: CallManager) -> None:
    ports = manager.media.ports
    held = [await ports.open("127.0.0.1", RtpSession) for _ in range(5)]  # 5 of 10, no calls
    try:
        async with await _client(manager) as client:
            assert (await client.get("/health")).json()["status"] == "degraded"
    finally:
        for protocol, port in held:
            protocol.close()
            ports.release(port)


async def test_metrics_need_the_key_and_speak_the_text_format(manager: CallManager) -> None:
    async with await _client(manager, keys=(KEY,)) as client:
        assert (await client.get("/metrics")).status_code == 401
        assert (await client.get("/health")).status_code == 200
        response = await client.get("/metrics", headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples = _samples(response.text)
    for name in (
        "sipbridge_calls_active",
        "sipbridge_rtp_packets_received_total",
        "sipbridge_rtp_ports_total",
        "sipbridge_process_threads",
        "sipbridge_asyncio_tasks",
        "process_open_fds",
        "process_resident_memory_bytes",
        "sipbridge_sip_rate_limited_total",
        "sipbridge_call_setup_seconds_count",
        "sipbridge_agent_link_failures_total",
    ):
        assert any(key[0] == name for key in samples), name
    assert samples[("sipbridge_rtp_ports_total", ())] == 10
    assert samples[("sipbridge_sip_parse_errors_total", ())] == 3
    assert samples[("sipbridge_sip_rate_limited_total", (("action", "dropped"),))] == 7
    assert samples[("sipbridge_sip_scanner_requests_total", ())] == 2
    assert samples[("sipbridge_sip_connections_refused_total", ())] == 4
    assert samples[("sipbridge_sip_connections_timed_out_total", ())] == 2
    assert samples[("sipbridge_sip_stray_total", (("kind", "ack"),))] == 6
    assert samples[("sipbridge_sip_stray_total", (("kind", "maddr"),))] == 1
    assert samples[("sipbridge_rtp_packets_foreign_total", ())] == 0
    assert samples[("sipbridge_inbound_refused_total", (("action", "challenged"),))] == 0


async def test_packet_counters_are_read_from_the_calls_and_survive_their_end(
    manager: CallManager, _call
) -> None:
    async with await _client(manager) as client:

        async def received() -> float:
            return _samples((await client.get("/metrics")).text)[("sipbridge_rtp_packets_received_total", ())]

        first, second = _call(manager, packets_in=100), _call(manager, packets_in=50)
        assert await received() == 150
        _receive(first, 10)  # the call goes on: the scrape sees its stats as they are
        assert await received() == 160
        first.mark_ended("caller hung up")  # ended: its counts move into the manager's totals
        assert first.id not in manager.active
        assert await received() == 160
        _receive(second, 5)
        assert await received() == 165
        text = (await client.get("/metrics")).text
    active = _samples(text)[("sipbridge_calls_active", (("direction", "inbound"),))]
    assert active == 1


async def test_post_calls_while_draining_gets_503_with_retry_after(manager: CallManager) -> None:
    manager.start_draining(retry_after=30)
    async with await _client(manager) as client:
        response = await client.post("/calls", json={"provider": "pbx", "to": "1001"})
    assert response.status_code == 503 and response.headers["Retry-After"] == "30"
    assert "draining" in response.json()["error"]


async def test_a_scrape_with_500_calls_is_cheap(make_manager, _call) -> None:
    """The figure in the README: one pass over the active calls per scrape, nothing per packet."""
    big = make_manager(max_calls=1000)
    for _ in range(500):
        _call(big, packets_in=1000)
    async with await _client(big) as client:
        await client.get("/metrics")
        started = time.perf_counter()
        for _ in range(5):
            response = await client.get("/metrics")
        per_scrape = (time.perf_counter() - started) / 5
    assert _samples(response.text)[("sipbridge_rtp_packets_received_total", ())] == 500_000
    print(f"\n/metrics with 500 active calls: {per_scrape * 1000:.1f} ms per scrape")
    assert per_scrape < 0.25


async def test_health_is_degraded_while_the_event_loop_lags(manager: CallManager) -> None:
    lag = LoopLag(interval=0.02, window=1.0)
    lag.start()
    try:
        await asyncio.sleep(0.05)
        app = create_app(manager, Providers(()), None, (), loop_lag=lag)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1"
        ) as client:
            assert (await client.get("/health")).json()["status"] == "ok"
            time.sleep(0.6)  # the loop stalls: every call's audio would have stopped
            await asyncio.sleep(0.05)
            assert lag.recent_max >= 0.5
            assert (await client.get("/health")).json()["status"] == "degraded"
            text = (await client.get("/metrics")).text
        assert _samples(text)[("sipbridge_event_loop_lag_seconds", ())] >= 0.5
    finally:
        await lag.stop()


class TwoWorkers(MediaHost):
    """The media as two worker processes would show it: one up, one being replaced."""

    def views(self) -> list[dict[str, object]]:
        up = {"index": 0, "pid": 4321, "calls": 3, "loop_lag_ms": 12.0, "cpu_pct": 20.5, "cpu_s": 3.5}
        starting = {"index": 1, "pid": 4322, "calls": 0, "loop_lag_ms": None, "cpu_pct": None, "cpu_s": None}
        return [
            {**up, "restarts": 0, "ports": "40000-40009", "state": "up"},
            {**starting, "restarts": 2, "ports": "40010-40019", "state": "starting"},
        ]


async def test_metrics_carry_each_worker_by_its_slot_and_health_shows_its_cpu(make_manager) -> None:
    config = make_manager(max_calls=10).config
    manager = CallManager(config, TwoWorkers(config, whip=None, ports=PortAllocator(40000, 40019)))  # type: ignore[arg-type]
    async with await _client(manager) as client:
        text = (await client.get("/metrics")).text
        health = (await client.get("/health")).json()
    samples = _samples(text)
    families = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")]
    assert len(families) == len(set(families))  # Prometheus refuses a scrape that names one twice
    worker = {"0": (("worker", "0"),), "1": (("worker", "1"),)}
    assert samples[("sipbridge_worker_up", worker["0"])] == 1
    assert samples[("sipbridge_worker_up", worker["1"])] == 0
    assert samples[("sipbridge_worker_calls", worker["0"])] == 3
    assert samples[("sipbridge_worker_loop_lag_seconds", worker["0"])] == pytest.approx(0.012)
    assert samples[("sipbridge_worker_cpu_seconds_total", worker["0"])] == 3.5
    assert samples[("sipbridge_worker_slot_restarts_total", worker["1"])] == 2
    # a worker without a heartbeat yet has no lag or CPU to show; the total stays one unlabelled series
    assert ("sipbridge_worker_loop_lag_seconds", worker["1"]) not in samples
    assert ("sipbridge_worker_cpu_seconds_total", worker["1"]) not in samples
    assert [key for key in samples if key[0] == "sipbridge_worker_restarts_total"] == [
        ("sipbridge_worker_restarts_total", ())
    ]
    assert [w["cpu_pct"] for w in health["workers"]] == [20.5, None] and health["status"] == "degraded"


async def test_media_in_this_process_has_no_worker_series(manager: CallManager) -> None:
    async with await _client(manager) as client:
        samples = _samples((await client.get("/metrics")).text)
    assert not [key for key in samples if key[0].startswith("sipbridge_worker_") and key[1]]
