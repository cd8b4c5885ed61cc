"""Webhooks from the real bridge process to a receiver in the test: sipp calls, every event of a call
signed and in order, a receiver down for 10 s gets the backlog once up, and a receiver that hangs
does not delay call set-up."""

from __future__ import annotations

import csv
import hashlib
import hmac
import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from testbed import sipp
from testbed.bridge_proc import AgentProcess, BridgeProcess, SilentHttpServer, start_bridge
from testbed.procs import free_tcp_port, wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.sipp,
]

SECRET = "whsec-7d1e0b9c4a5f3268"
DIGITS = "12#"
DELIVERED = "sipbridge_webhook_events_total"


class Receiver:
    """A webhook receiver on 127.0.0.1 that keeps each POST (headers, body) and answers 200."""

    def __init__(self, port: int = 0) -> None:
        self.posts: list[tuple[dict[str, str], bytes]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/sipbridge/events"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        posts = self.posts

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                posts.append((dict(self.headers), body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        return Handler

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.posts]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def verified(headers: dict[str, str], body: bytes, secret: str, tolerance: float = 300) -> bool:
    """What a receiver checks (as docs/webhooks.md shows): the HMAC of "t.body", and a recent t."""
    fields = dict(
        part.split("=", 1) for part in headers.get("X-Sipbridge-Signature", "").split(",") if "=" in part
    )
    if "t" not in fields or "v1" not in fields:
        return False
    expected = hmac.new(secret.encode(), fields["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, fields["v1"]) and abs(time.time() - int(fields["t"])) <= tolerance


def by_call(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    calls: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        calls.setdefault(event["call_id"], []).append(event)
    return calls


def metric(bridge: BridgeProcess, name: str, **labels: str) -> float:
    """One sample of the bridge's /metrics (0 when absent)."""
    with urllib.request.urlopen(f"{bridge.api}/metrics", timeout=5) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def _webhooks(url: str, secret: str | None = None) -> dict[str, str]:
    """The bridge's environment for webhooks to ``url``."""
    return {"SIPBRIDGE_WEBHOOK_URL": url, **({"SIPBRIDGE_WEBHOOK_SECRET": secret} if secret else {})}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


def test_every_event_of_a_call_arrives_signed_and_in_order(
    logdir: Path, agent: AgentProcess, receiver: Receiver, tmp_path: Path
) -> None:
    bridge = start_bridge(logdir, agent.whip_url, env=_webhooks(receiver.url, SECRET))
    silence = tmp_path / "silence.ul"
    silence.write_bytes(b"\xff" * 16000)  # two seconds of mu-law silence, looped
    try:
        result = sipp.run_scenario(
            "uac_pcmu_play_dtmf",
            bridge.sip_target,
            hold_ms=400 + 2 * 60 * (len(DIGITS) + 1) + 1500,
            keys={"audio_file": silence, "dtmf_digits": f"{DIGITS},60", "caller": "+15550007777"},
            workdir=tmp_path / "sipp",
            timeout=30,
        )
        result.assert_success(calls=1)
        assert wait_until(lambda: "call.ended" in [e["type"] for e in receiver.events()], 10), (
            receiver.events()
        )
        # Counted once the receiver's 200 is read, a moment after the receiver has the POST.
        expected = 3 + len(DIGITS)
        delivered = wait_until(lambda: metric(bridge, DELIVERED, fate="delivered") == expected, 5)
    finally:
        bridge.proc.stop()
    assert bridge.proc.returncode == 0, bridge.log()
    assert SECRET not in bridge.proc.stderr()

    assert all(verified(headers, body, SECRET) for headers, body in receiver.posts), receiver.posts
    ((call_id, events),) = by_call(receiver.events()).items()
    types = [e["type"] for e in events]
    print("events:", types)
    assert types == ["call.ringing", "call.answered", *["call.dtmf"] * len(DIGITS), "call.ended"]
    assert "".join(e["data"]["digit"] for e in events if e["type"] == "call.dtmf") == DIGITS
    assert len({e["id"] for e in events}) == len(events)
    assert [e["timestamp"] for e in events] == sorted(e["timestamp"] for e in events)
    identity = events[0]["call"]
    assert identity["id"] == call_id and identity["direction"] == "inbound"
    assert identity["from"] == "+15550007777" and all(e["call"] == identity for e in events)
    ended = events[-1]["data"]
    print("ended:", ended["end_reason"], ended["durations"], ended["counters"]["rtp_packets_received"])
    assert ended["end_reason"] == "caller hung up" and ended["end_category"] == "remote_hangup"
    assert ended["durations"]["talk_s"] > 1.0 and ended["durations"]["setup_s"] > 0
    assert ended["counters"]["rtp_packets_received"] > 50
    assert delivered and len(events) == expected


def test_a_receiver_down_for_10_s_gets_the_backlog_once_up(
    logdir: Path, agent: AgentProcess, tmp_path: Path
) -> None:
    port = free_tcp_port()  # nobody listens there for the first 10 s
    url = f"http://127.0.0.1:{port}/sipbridge/events"
    bridge = start_bridge(logdir, agent.whip_url, env=_webhooks(url, SECRET))
    receiver: Receiver | None = None
    try:
        down_since = time.monotonic()
        result = sipp.run_scenario("uac_pcmu_call", bridge.sip_target, calls=2, hold_ms=500, workdir=tmp_path)
        result.assert_success(calls=2)
        failures = metric(bridge, "sipbridge_webhook_delivery_failures_total", reason="connection")
        time.sleep(max(0.0, 10.0 - (time.monotonic() - down_since)))
        receiver = Receiver(port)
        up_at = time.monotonic()
        backlog = wait_until(lambda: len(receiver.posts) >= 6, 45)  # type: ignore[union-attr]
        took = time.monotonic() - up_at
        print(f"backlog of {len(receiver.posts)} events delivered {took:.1f} s after the receiver came up")
        assert backlog, (receiver.events(), bridge.log())
        delivered = wait_until(lambda: metric(bridge, DELIVERED, fate="delivered") == 6, 5)
    finally:
        bridge.proc.stop()
        if receiver is not None:
            receiver.close()
    assert failures >= 1 and delivered
    assert all(verified(headers, body, SECRET) for headers, body in receiver.posts)
    calls = by_call(receiver.events())
    assert len(calls) == 2
    for events in calls.values():
        assert [e["type"] for e in events] == ["call.ringing", "call.answered", "call.ended"]


def _setup_ms(result: sipp.SippResult) -> list[float]:
    """INVITE -> 200 OK of each call, from sipp's -trace_rtt file (response time 1)."""
    values: list[float] = []
    for path in Path(result.workdir).glob("*_rtt.csv"):
        with path.open() as f:
            values += [float(row["response_time_ms"]) for row in csv.DictReader(f, delimiter=";")]
    return values


def _ten_calls(bridge: BridgeProcess, workdir: Path) -> list[float]:
    result = sipp.run_scenario(
        "uac_pcmu_call",
        bridge.sip_target,
        calls=10,
        rate=5,
        hold_ms=1000,
        workdir=workdir,
        extra_args=["-trace_rtt", "-rtt_freq", "1"],
        timeout=40,
    )
    result.assert_success(calls=10)
    return _setup_ms(result)


def test_a_hanging_receiver_does_not_delay_call_setup(
    logdir: Path, agent: AgentProcess, tmp_path: Path
) -> None:
    """Ten calls each, with no webhooks and with a receiver that accepts and never answers; each
    POST to it waits the 5 s request timeout, which would show in the set-up times if a call waited."""
    figures: dict[str, list[float]] = {}
    bridge = start_bridge(logdir, agent.whip_url)
    try:
        figures["none"] = _ten_calls(bridge, tmp_path / "none")
    finally:
        bridge.proc.stop()
    hanging = SilentHttpServer()
    bridge = start_bridge(logdir, agent.whip_url, env=_webhooks(hanging.url))
    try:
        figures["hanging"] = _ten_calls(bridge, tmp_path / "hanging")
        timed_out = wait_until(
            lambda: metric(bridge, "sipbridge_webhook_delivery_failures_total", reason="timeout") >= 1, 10
        )
        stop_started = time.monotonic()
    finally:
        bridge.proc.stop()
        hanging.close()
    stopped_in = time.monotonic() - stop_started
    summary = {
        name: (len(v), float(np.percentile(v, 50)), float(np.percentile(v, 99)))
        for name, v in figures.items()
    }
    for name, (n, p50, p99) in summary.items():
        print(f"set-up with {name} receiver: n={n} p50={p50:.0f} ms p99={p99:.0f} ms")
    print(f"bridge with a hanging receiver stopped in {stopped_in:.1f} s")
    assert timed_out and bridge.proc.returncode == 0, bridge.log()
    assert summary["none"][0] == summary["hanging"][0] == 10
    # Generous: a call that waited for the receiver would take the 5 s request timeout at least.
    assert summary["hanging"][2] < summary["none"][2] + 2000, summary
    assert stopped_in < 5.0
