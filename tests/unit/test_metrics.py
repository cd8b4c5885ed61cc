"""The metrics module: bounded labels, every end reason the code can produce in a known category,
and a scrape that Prometheus's own parser reads."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sipbridge import metrics
from sipbridge.sip.invite_client import end_reason_for

SRC = Path(__file__).resolve().parents[2] / "src" / "sipbridge"
# Calls that end a call with a reason, and which positional argument is the reason.
REASON_ARGUMENT = {"hangup": 0, "_finish_soon": 0, "_mark_ended": 0, "_fail": 0, "on_failed": 0}
REASON_ARGUMENT |= {"_reject": 2, "InviteOutcome": 2}


def _sample(text: str, name: str, **labels: str) -> float:
    """A sample's value; 0 for a labelled series not counted yet in this process."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    if labels:
        return 0.0
    raise AssertionError(f"no sample {name}")


def _literal_start(node: ast.expr) -> str | None:
    """A string literal, or the text of an f-string before its first placeholder."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        start = ""
        for part in node.values:
            if not isinstance(part, ast.Constant):
                break
            start += str(part.value)
        return start
    return None


def _reasons_in_source() -> set[str]:
    reasons: set[str] = set()
    files = [
        *(SRC / "calls").glob("*.py"),
        SRC / "sip" / "invite_session.py",
        SRC / "sip" / "invite_client.py",
    ]
    for path in [*files, SRC / "api" / "app.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            index = REASON_ARGUMENT.get(name or "")
            if index is not None and len(node.args) > index:
                text = _literal_start(node.args[index])
                if text is not None:
                    reasons.add(text)
    return reasons


def test_every_end_reason_the_code_produces_has_a_category() -> None:
    reasons = _reasons_in_source() - {"answered"}  # InviteOutcome of a call that was answered: no end
    reasons |= {end_reason_for(None)} | {end_reason_for(s, "Whatever") for s in range(300, 700)}
    assert len(reasons) > 20, reasons  # the scan found the call sites
    uncategorised = sorted(r for r in reasons if metrics.end_reason_category(r) == metrics.OTHER)
    assert uncategorised == []


@pytest.mark.parametrize(
    ("reason", "category"),
    [
        ("caller hung up", "remote_hangup"),
        ("far end hung up", "remote_hangup"),
        ("hung up through the API", "api_hangup"),
        ("bridge shutting down", "shutdown"),
        (
            "agent link failed (nothing from the agent for 2.0 s) and was not recovered within 20 s: "
            "agent unreachable: connection refused",
            "agent_link_failed",
        ),
        ("agent ended the call: data channel closed", "agent_hangup"),
        ("no RTP from the phone for 30 s", "rtp_timeout"),
        ("rejected with 404: unknown number", "rejected"),
        ("session refresh failed: 408 Request Timeout", "session_timer"),
        ("something nobody wrote yet", "other"),
        (None, "other"),
    ],
)
def test_free_text_reasons_map_to_fixed_categories(reason: str | None, category: str) -> None:
    assert metrics.end_reason_category(reason) == category


def test_categories_are_a_small_fixed_set() -> None:
    categories = {category for _, category in metrics.END_REASON_CATEGORIES} | {metrics.OTHER}
    assert len(categories) <= 25
    assert all(c.replace("_", "").isalpha() and c.islower() for c in categories)


def test_sip_labels_stay_bounded() -> None:
    before = metrics.render().decode()
    for method in ("INVITE", "XYZZY", "invite", "A" * 200):
        metrics.sip_request_received(method)
    metrics.sip_response_sent(486)
    metrics.sip_response_sent(99999)
    after = metrics.render().decode()
    name = "sipbridge_sip_requests_received_total"
    assert _sample(after, name, method="INVITE") == _sample(before, name, method="INVITE") + 1
    assert "XYZZY" not in after and "A" * 200 not in after
    assert _sample(after, name, method="other") >= 3
    assert _sample(after, "sipbridge_sip_responses_sent_total", code="486") >= 1
    assert _sample(after, "sipbridge_sip_responses_sent_total", code="other") >= 1


def test_a_call_end_is_counted_by_direction_provider_and_category() -> None:
    labels = {"direction": "outbound", "provider": "twilio", "end_reason": "busy"}
    start = _sample(metrics.render().decode(), "sipbridge_calls_total", **labels)
    assert metrics.call_ended("outbound", "twilio", "busy", None, None) == "busy"
    assert metrics.call_ended("inbound", None, "caller hung up", 0.004, 0.01) == "remote_hangup"
    after = metrics.render().decode()
    assert _sample(after, "sipbridge_calls_total", **labels) == start + 1
    assert _sample(after, "sipbridge_calls_total", direction="inbound", provider="none") >= 1
    assert _sample(after, "sipbridge_call_rtp_jitter_seconds_count") >= 1


def test_no_created_series_and_the_process_figures_are_there() -> None:
    text = metrics.render().decode()
    assert "_created" not in text
    for name in ("process_open_fds", "process_resident_memory_bytes"):
        assert _sample(text, name) > 0


def test_media_counters_add_up_field_by_field() -> None:
    total = metrics.MediaCounters(rtp_packets_received=5, agent_packets_sent=1)
    total.add(metrics.MediaCounters(rtp_packets_received=2, rtp_packets_lost=3))
    assert total == metrics.MediaCounters(rtp_packets_received=7, agent_packets_sent=1, rtp_packets_lost=3)


def test_the_phone_legs_rtcp_and_srtp_figures_of_an_ended_call_are_counted() -> None:
    names = (
        "sipbridge_call_phone_round_trip_seconds_count",
        "sipbridge_call_phone_reported_loss_ratio_count",
        "sipbridge_srtp_auth_failures_total",
    )
    before = [_sample(metrics.render().decode(), name) for name in names]
    metrics.call_media_reports(0.04, 0.01, 3)
    metrics.call_media_reports(None, None, 0)  # a call without RTCP or SRTP counts nothing
    after = [_sample(metrics.render().decode(), name) for name in names]
    assert [b - a for a, b in zip(before, after, strict=True)] == [1, 1, 3]
