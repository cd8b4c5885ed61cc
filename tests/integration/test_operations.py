"""The operator's view of the real process: /metrics after real calls, JSON logs with the call id
and nothing secret in them, call records, and the drain on SIGTERM."""

from __future__ import annotations

import json
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from testbed import sipp
from testbed.bridge_proc import AgentProcess, BridgeProcess, http_json, start_bridge
from testbed.procs import free_port_block, in_background, wait_until
from testbed.sipp import Traced, traced

pytestmark = [
    pytest.mark.integration,
    pytest.mark.sipp,
]

KEY = "ops-test-key-0123456789abcdef"
PASSWORD = "trunk-pass-w0rd-77"
AGENT_TOKEN = "agent-token-5ecret-99"
CALLER = "+14155550142"  # the phone calling in (From user)
DIALLED_IN = "4930123456789"  # what it dialled (Request-URI and To user)
DIALLED_OUT = "+14155550199"  # the number POST /calls dials
CALLER_ID = "+14155550100"  # our caller id towards the trunk


def _get(url: str, key: str | None = KEY) -> tuple[int, str]:
    request = urllib.request.Request(url)
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _post_call(bridge: BridgeProcess, body: dict[str, Any], key: str | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(f"{bridge.api}/calls", data=json.dumps(body).encode(), method="POST")
    request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {
            "error": json.loads(exc.read()).get("error"),
            "retry_after": exc.headers["Retry-After"],
        }


def _samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _value(samples: dict[tuple[str, frozenset], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _json_lines(bridge: BridgeProcess) -> list[dict[str, Any]]:
    """Every line the bridge wrote to stderr; each must be one JSON object."""
    lines = [line for line in bridge.proc.stderr().splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"not a JSON log line: {line!r}") from None
    return parsed


def test_metrics_json_logs_and_records_after_an_inbound_and_an_outbound_call(
    logdir: Path, agent: AgentProcess, tmp_path: Path
) -> None:
    far_port = free_port_block(1)
    records = tmp_path / "calls.jsonl"
    config = tmp_path / "sipbridge.toml"
    config.write_text(
        f"""
log_format = "json"
call_records = "{records}"

[api]
keys = ["{KEY}"]

[providers.pbx]
type = "generic"
address = "127.0.0.1:{far_port}"
destinations = ['^\\+1[2-9][0-9]{{9}}$']
caller_id = "{CALLER_ID}"
username = "sipbridge"
"""
    )
    env = {"SIPBRIDGE_PROVIDER_PBX_PASSWORD": PASSWORD, "SIPBRIDGE_AGENT_TOKEN": AGENT_TOKEN}
    bridge = start_bridge(logdir, agent.whip_url, "--config", str(config), env=env)
    try:
        inbound = sipp.run_scenario(
            "uac_pcmu_call",
            bridge.sip_target,
            hold_ms=1000,
            service=DIALLED_IN,
            keys={"caller": CALLER},
            workdir=tmp_path / "in",
        )
        inbound.assert_success(calls=1)
        keys = {"user": "sipbridge", "password": PASSWORD, "realm": "pbx.test", "algo": "MD5"}
        keys["hangup_ms"] = "1500"
        with sipp.sipp_uas(
            "uas_digest_answer", port=far_port, keys=keys, calls=1, workdir=tmp_path / "out"
        ) as far:
            status, call = _post_call(bridge, {"provider": "pbx", "to": DIALLED_OUT}, key=KEY)
            assert status == 201, call
            far.result(timeout=20).assert_success(calls=1)
        assert wait_until(lambda: len(_records(records)) == 2, 10), _records(records)
        assert "Authorization: Digest" in far.result().messages()  # the credentials were really used

        assert _get(f"{bridge.api}/metrics", key=None)[0] == 401
        status, text = _get(f"{bridge.api}/metrics")
        assert status == 200
        samples = _samples(text)
    finally:
        bridge.proc.stop()
    assert bridge.proc.returncode == 0, bridge.log()

    # -- metrics
    calls = "sipbridge_calls_total"
    assert _value(samples, calls, direction="inbound", provider="none", end_reason="remote_hangup") == 1
    assert _value(samples, calls, direction="outbound", provider="pbx", end_reason="remote_hangup") == 1
    assert _value(samples, "sipbridge_call_setup_seconds_count", direction="inbound") == 1
    assert _value(samples, "sipbridge_call_setup_seconds_count", direction="outbound") == 1
    assert _value(samples, "sipbridge_sip_requests_received_total", method="INVITE") == 1
    assert _value(samples, "sipbridge_sip_requests_received_total", method="BYE") == 2  # both far ends
    assert _value(samples, "sipbridge_sip_responses_sent_total", code="200") >= 2
    assert _value(samples, "sipbridge_rtp_packets_sent_total") > 20
    assert _value(samples, "sipbridge_rtp_packets_received_total") > 20  # sipp echoed the outbound call
    assert _value(samples, "sipbridge_agent_packets_received_total") > 20
    assert _value(samples, "sipbridge_calls_active", direction="inbound") == 0
    assert _value(samples, "sipbridge_sip_rate_limited_total", action="dropped") == 0
    assert _value(samples, "process_open_fds") > 0 and _value(samples, "sipbridge_process_threads") >= 1
    # -- each media worker by its slot; the total unchanged beside them
    workers = sorted(dict(labels)["worker"] for name, labels in samples if name == "sipbridge_worker_up")
    assert workers and workers == [str(i) for i in range(len(workers))]
    for worker in workers:
        assert _value(samples, "sipbridge_worker_up", worker=worker) == 1
        assert _value(samples, "sipbridge_worker_calls", worker=worker) == 0
        assert _value(samples, "sipbridge_worker_cpu_seconds_total", worker=worker) > 0
        assert ("sipbridge_worker_loop_lag_seconds", frozenset({("worker", worker)})) in samples
        assert _value(samples, "sipbridge_worker_slot_restarts_total", worker=worker) == 0
    assert ("sipbridge_worker_restarts_total", frozenset()) in samples
    assert _value(samples, "sipbridge_worker_restarts_total") == 0

    # -- call records: each call once, numbers masked
    by_direction = {r["direction"]: r for r in _records(records)}
    assert set(by_direction) == {"inbound", "outbound"} and len(_records(records)) == 2
    assert by_direction["inbound"]["from"].endswith("0142") and by_direction["inbound"]["end_reason"] == (
        "caller hung up"
    )
    assert by_direction["outbound"]["to"] == "+*******0199" and by_direction["outbound"]["provider"] == "pbx"
    assert by_direction["outbound"]["rtp"]["packets_received"] > 20

    # -- logs: JSON lines, no number and no secret, the call id on every line of a call
    lines = _json_lines(bridge)
    everything = bridge.proc.stderr() + records.read_text()
    for secret in (PASSWORD, AGENT_TOKEN, KEY, CALLER, DIALLED_IN, DIALLED_OUT, CALLER_ID, "14155550"):
        assert secret not in everything, secret
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    for record in by_direction.values():
        own = [line for line in lines if line.get("call_id") == record["id"]]
        mentioning = [line for line in lines if record["id"] in line["message"]]
        assert len(own) >= 2 and any("ending" in line["message"] for line in own), own
        assert all(line.get("call_id") == record["id"] for line in mentioning), mentioning
    sip_call_ids = {r["sip_call_id"] for r in by_direction.values()}
    for line in lines:  # lines logged by the SIP layer for a call name its SIP Call-ID
        if any(sip_id in line["message"] for sip_id in sip_call_ids):
            assert line.get("call_id") in {r["id"] for r in by_direction.values()}, line


@pytest.fixture
def draining_bridge(logdir: Path, agent: AgentProcess, tmp_path: Path, request: pytest.FixtureRequest):
    """A bridge with call records and the drain grace the test names; stopped whatever happens."""
    grace = request.param
    records = tmp_path / "calls.jsonl"
    config = tmp_path / "sipbridge.toml"
    config.write_text(
        f"""
drain_grace = {grace}
call_records = "{records}"

[providers.pbx]
type = "generic"
address = "127.0.0.1:{free_port_block(1)}"
destinations = ['^1[0-9]{{3}}$']
"""
    )
    bridge = start_bridge(logdir, agent.whip_url, "--config", str(config))
    yield bridge, records
    bridge.proc.stop()


def _our_bye(result: sipp.SippResult) -> Traced:
    """The BYE the bridge sent to a caller (sipp's uac_wait_for_bye) that completed its call."""
    result.assert_success(calls=1)
    return next(m for m in traced(result) if not m.sent and m.method == "BYE" and m.is_request)


def _answered(bridge: BridgeProcess) -> bool:
    return any(c["state"] == "answered" for c in bridge.calls())


@pytest.mark.parametrize("draining_bridge", [20], indirect=True)
def test_sigterm_drains_new_calls_get_503_and_the_running_call_ends_by_itself(
    draining_bridge: tuple[BridgeProcess, Path], tmp_path: Path
) -> None:
    bridge, records = draining_bridge
    thread = in_background(
        lambda: sipp.run_scenario("uac_pcmu_call", bridge.sip_target, hold_ms=8000, workdir=tmp_path / "call")
    )
    try:
        assert wait_until(lambda: _answered(bridge), 10), bridge.log()
        (call,) = bridge.calls()
        signalled = time.monotonic()
        bridge.proc.proc.send_signal(signal.SIGTERM)
        assert wait_until(lambda: http_json("GET", f"{bridge.api}/health")[0] == 503, 5), bridge.log()
        status, health = http_json("GET", f"{bridge.api}/health")
        assert health["status"] == "draining" and health["calls_active"] == 1, health

        status, body = _post_call(bridge, {"provider": "pbx", "to": "1001"})
        assert status == 503 and "draining" in body["error"] and body["retry_after"] == "20"
        assert "sipbridge_draining 1.0" in _get(f"{bridge.api}/metrics", key=None)[1]
        refused = sipp.run_scenario("uac_expect_503", bridge.sip_target, workdir=tmp_path / "refused")
        refused.assert_success(calls=1)
        answer = next(m for m in traced(refused) if not m.sent and m.status == 503)
        assert "draining" in (answer.header("Warning") or "") and answer.header("Retry-After") == "20"
        assert [c["state"] for c in bridge.calls()] == ["answered"]  # the running call goes on
    finally:
        thread.join(30)
    thread.result().assert_success(calls=1)  # the caller hung up when it meant to: BYE, 200
    assert bridge.proc.wait(10) == 0, bridge.log()
    drain_s = time.monotonic() - signalled
    print(f"\nSIGTERM to exit with one call ending by itself: {drain_s:.2f} s")
    assert drain_s < 15  # the call ended 8 s after its answer: well within the 20 s grace
    (record,) = _records(records)  # the refused INVITE made no call
    assert record["id"] == call["id"] and record["end_reason"] == "caller hung up"


@pytest.mark.parametrize("draining_bridge", [2], indirect=True)
def test_at_the_drain_grace_remaining_calls_get_our_bye(
    draining_bridge: tuple[BridgeProcess, Path], tmp_path: Path
) -> None:
    bridge, records = draining_bridge
    thread = in_background(
        lambda: sipp.run_scenario("uac_wait_for_bye", bridge.sip_target, workdir=tmp_path, timeout=30)
    )
    try:
        assert wait_until(lambda: _answered(bridge), 10), bridge.log()
        (call,) = bridge.calls()
        signalled = time.time()
        bridge.proc.proc.send_signal(signal.SIGTERM)
    finally:
        thread.join(30)
    bye = _our_bye(thread.result())
    assert 'text="bridge shutting down"' in (bye.header("Reason") or ""), bye.text
    print(f"\nSIGTERM to our BYE with drain_grace 2: {bye.at - signalled:.2f} s")
    assert 1.8 <= bye.at - signalled <= 6
    assert bridge.proc.wait(10) == 0, bridge.log()
    (record,) = _records(records)
    assert record["id"] == call["id"] and record["end_category"] == "shutdown"


@pytest.mark.parametrize("draining_bridge", [60], indirect=True)
def test_a_second_signal_ends_the_drain_at_once(
    draining_bridge: tuple[BridgeProcess, Path], tmp_path: Path
) -> None:
    bridge, records = draining_bridge
    thread = in_background(
        lambda: sipp.run_scenario("uac_wait_for_bye", bridge.sip_target, workdir=tmp_path, timeout=30)
    )
    try:
        assert wait_until(lambda: _answered(bridge), 10), bridge.log()
        bridge.proc.proc.send_signal(signal.SIGTERM)
        assert wait_until(lambda: http_json("GET", f"{bridge.api}/health")[0] == 503, 5), bridge.log()
        second = time.time()
        bridge.proc.proc.send_signal(signal.SIGINT)
    finally:
        thread.join(30)
    bye = _our_bye(thread.result())
    assert bye.at - second < 2, "the second signal did not end the 60 s drain"
    assert bridge.proc.wait(10) == 0, bridge.log()
    assert len(_records(records)) == 1
