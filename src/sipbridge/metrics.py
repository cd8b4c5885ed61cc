"""Prometheus metrics: the process-wide counters that events feed, and the bounded label sets.

Any layer may import this module (it imports nothing of sipbridge). Events are counted where they
happen, once each: a SIP message, a call's end, an agent link failure. Nothing here is touched per
RTP packet: the per-packet figures live in each call's own stats and are read at scrape time
(``api/metrics.py``), with what ended calls left behind added up once per call in
:class:`MediaCounters`.

Labels stay bounded: SIP methods outside the standard set count as ``other``, status codes are
three-digit numbers, providers are configured names (or ``none``), and end reasons, which are free
text, are mapped to the fixed categories of :data:`END_REASON_CATEGORIES`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.registry import Collector

# The text exposition format the scrape answers with (Prometheus 0.0.4).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

disable_created_metrics()  # no *_created series: one start time is enough (process_start_time_seconds)

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)  # process_open_fds, process_resident_memory_bytes, cpu, start time

SIP_METHODS = frozenset(
    {"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "UPDATE", "INFO", "PRACK", "SUBSCRIBE"}
    | {"NOTIFY", "REFER", "MESSAGE", "PUBLISH"}
)
# Why an INVITE was refused before a call existed (the admission's own refusals are counted by
# the gate and the admission, read at scrape time).
REFUSAL_REASONS = ("call_limit", "source_cap", "draining")

# Free-text end reasons (what GET /calls/{id} shows) by their start, lower case, first match wins.
END_REASON_CATEGORIES: tuple[tuple[str, str], ...] = (
    ("caller hung up", "remote_hangup"),
    ("far end hung up", "remote_hangup"),
    ("caller cancelled", "cancelled"),
    ("cancelled", "cancelled"),
    ("hung up through the api", "api_hangup"),
    ("bridge shutting down", "shutdown"),
    ("agent ended the call", "agent_hangup"),
    ("agent hung up", "agent_hangup"),
    ("transferred to", "transferred"),
    ("agent link failed", "agent_link_failed"),
    ("agent unavailable", "agent_unavailable"),
    ("codec mismatch", "codec_mismatch"),
    ("bad sdp", "bad_sdp"),
    ("no usable sdp", "bad_sdp"),
    ("no free rtp port", "no_rtp_port"),
    ("no ack", "no_ack"),
    ("no rtp from the phone", "rtp_timeout"),
    ("media worker failed", "media_worker_failed"),
    ("maximum duration reached", "max_duration"),
    ("session timer expired", "session_timer"),
    ("session refresh failed", "session_timer"),
    ("busy", "busy"),
    ("no answer", "no_answer"),
    ("auth failed", "auth_failed"),
    ("rejected with", "rejected"),
    ("unreachable", "unreachable"),
    ("internal error", "internal_error"),
)
OTHER = "other"

SETUP_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0)
JITTER_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1)
LOSS_BUCKETS = (0.0, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2)
ROUND_TRIP_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0)
WEBHOOK_FATES = ("delivered", "refused", "expired", "dropped")  # calls/webhooks/outbox.py's Fate
WEBHOOK_FAILURES = ("status", "timeout", "connection")

_sip_requests = Counter(
    "sipbridge_sip_requests_received",
    "SIP requests received (retransmissions included), by method; non-standard methods count as other",
    ["method"],
    registry=REGISTRY,
)
_sip_responses = Counter(
    "sipbridge_sip_responses_sent",
    "SIP responses sent (retransmissions included), by status code",
    ["code"],
    registry=REGISTRY,
)
_calls = Counter(
    "sipbridge_calls",
    "Calls ended, by direction, provider (none: no provider matched) and end reason category",
    ["direction", "provider", "end_reason"],
    registry=REGISTRY,
)
_refused = Counter(
    "sipbridge_calls_refused",
    "INVITEs refused before a call was created: call_limit (max_calls reached), source_cap"
    " (max_calls_per_source reached by a source no trunk admitted) or draining",
    ["reason"],
    registry=REGISTRY,
)
_setup = Histogram(
    "sipbridge_call_setup_seconds",
    "Time to answer of answered calls: INVITE received to 200 OK sent (inbound), POST /calls to answered"
    " (outbound)",
    ["direction"],
    buckets=SETUP_BUCKETS,
    registry=REGISTRY,
)
_agent_failures = Counter(
    "sipbridge_agent_link_failures",
    "Agent links that failed: at setup (the caller got 503 or the outbound call ended) or mid-call",
    ["stage"],
    registry=REGISTRY,
)
_agent_reconnects = Counter(
    "sipbridge_agent_reconnects",
    "Agent links restored after a mid-call failure: resumed (same conversation) or new (conversation lost)",
    ["resume"],
    registry=REGISTRY,
)
_call_jitter = Histogram(
    "sipbridge_call_rtp_jitter_seconds",
    "Interarrival jitter (RFC 3550) of the phone's RTP at the end of each call that received RTP",
    buckets=JITTER_BUCKETS,
    registry=REGISTRY,
)
_call_loss = Histogram(
    "sipbridge_call_rtp_loss_ratio",
    "Share of the phone's RTP frames lost, per call that received RTP (at its end)",
    buckets=LOSS_BUCKETS,
    registry=REGISTRY,
)
_phone_round_trip = Histogram(
    "sipbridge_call_phone_round_trip_seconds",
    "Round trip to the phone from its last RTCP report on our stream, per call that had one (at its end)",
    buckets=ROUND_TRIP_BUCKETS,
    registry=REGISTRY,
)
_phone_loss = Histogram(
    "sipbridge_call_phone_reported_loss_ratio",
    "Share of our RTP the phone's last RTCP report says it lost, per call that had one (at its end)",
    buckets=LOSS_BUCKETS,
    registry=REGISTRY,
)
_srtp_auth_failures = Counter(
    "sipbridge_srtp_auth_failures",
    "SRTP packets from phones that did not authenticate (or replayed one): dropped, counted at call end",
    registry=REGISTRY,
)
_worker_restarts = Counter(
    "sipbridge_worker_restarts",
    "Media worker processes replaced after they died or stalled (their calls ended)",
    registry=REGISTRY,
)
_records_failed = Counter(
    "sipbridge_call_records_failed",
    "Call records that could not be written to the call_records file",
    registry=REGISTRY,
)
_webhook_events = Counter(
    "sipbridge_webhook_events",
    "Webhook events by what became of them: delivered, refused (a 3xx/4xx answer), expired (not"
    " delivered within 5 minutes) or dropped (the queue was full)",
    ["fate"],
    registry=REGISTRY,
)
_webhook_failures = Counter(
    "sipbridge_webhook_delivery_failures",
    "Webhook POSTs that failed, each try: status (an answer other than 2xx), timeout, connection",
    ["reason"],
    registry=REGISTRY,
)
_webhook_queue = Gauge(
    "sipbridge_webhook_queue_events", "Webhook events waiting to be sent (or retried)", registry=REGISTRY
)

for _reason in REFUSAL_REASONS:
    _refused.labels(_reason)
for _stage in ("setup", "mid_call"):
    _agent_failures.labels(_stage)
for _resume in ("resumed", "new"):
    _agent_reconnects.labels(_resume)
for _direction in ("inbound", "outbound"):
    _setup.labels(_direction)
for _fate in WEBHOOK_FATES:
    _webhook_events.labels(_fate)
for _failure in WEBHOOK_FAILURES:
    _webhook_failures.labels(_failure)


# -- the hooks the layers call -----------------------------------------------------------------


def sip_request_received(method: str) -> None:
    _sip_requests.labels(method if method in SIP_METHODS else OTHER).inc()


def sip_response_sent(status: int) -> None:
    _sip_responses.labels(str(status) if 100 <= status <= 699 else OTHER).inc()


def call_refused(reason: str) -> None:
    _refused.labels(reason).inc()


def call_set_up(direction: str, seconds: float) -> None:
    _setup.labels(direction).observe(max(0.0, seconds))


def agent_link_failed(stage: str) -> None:
    _agent_failures.labels(stage).inc()


def agent_reconnected(resumed: bool) -> None:
    _agent_reconnects.labels("resumed" if resumed else "new").inc()


def worker_restarted() -> None:
    _worker_restarts.inc()


def call_record_failed() -> None:
    _records_failed.inc()


def webhook_event(fate: str) -> None:
    _webhook_events.labels(fate).inc()


def webhook_failed(reason: str) -> None:
    _webhook_failures.labels(reason).inc()


def webhook_queue(events: int) -> None:
    _webhook_queue.set(events)


def call_ended(
    direction: str, provider: str | None, reason: str | None, jitter_s: float | None, loss: float | None
) -> str:
    """Count an ended call; returns its end reason category."""
    category = end_reason_category(reason)
    _calls.labels(direction, provider or "none", category).inc()
    if jitter_s is not None:
        _call_jitter.observe(jitter_s)
    if loss is not None:
        _call_loss.observe(loss)
    return category


def call_media_reports(round_trip_s: float | None, phone_loss: float | None, srtp_failures: int) -> None:
    """What RTCP and SRTP said of an ended call's phone leg."""
    if round_trip_s is not None:
        _phone_round_trip.observe(round_trip_s)
    if phone_loss is not None:
        _phone_loss.observe(phone_loss)
    if srtp_failures:
        _srtp_auth_failures.inc(srtp_failures)


def end_reason_category(reason: str | None) -> str:
    text = (reason or "").strip().lower()
    for start, category in END_REASON_CATEGORIES:
        if text.startswith(start):
            return category
    return OTHER


# -- per-packet figures, added up once per call --------------------------------------------------


@dataclass
class MediaCounters:
    """A call's media counters (phone-side RTP, agent leg), or a sum of several calls'."""

    rtp_packets_received: int = 0
    rtp_packets_sent: int = 0
    rtp_bytes_received: int = 0
    rtp_bytes_sent: int = 0
    rtp_packets_invalid: int = 0
    rtp_packets_foreign: int = 0
    rtp_packets_lost: int = 0
    rtp_packets_late: int = 0
    rtp_frames_concealed: int = 0
    agent_packets_sent: int = 0
    agent_packets_received: int = 0
    agent_packets_dropped: int = 0

    def add(self, other: MediaCounters) -> None:
        mine, theirs = self.__dict__, other.__dict__
        for name in _MEDIA_FIELDS:
            mine[name] += theirs[name]


_MEDIA_FIELDS = tuple(field.name for field in fields(MediaCounters))


def render(*collectors: Collector) -> bytes:
    """The process-wide metrics followed by those of ``collectors``, in the text format."""
    return generate_latest(REGISTRY) + b"".join(generate_latest(c) for c in collectors)
