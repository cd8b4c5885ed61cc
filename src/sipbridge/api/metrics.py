"""What ``GET /metrics`` adds to the process-wide counters: figures read at scrape time.

The live state (active calls, ports, drain), the per-packet counters (summed from each active
call's own stats, plus what ended calls left in ``CallManager.ended_media``), each media worker
process (by its slot: the ``worker`` label) and the process (threads, asyncio tasks). The cost is
one pass over the active calls per scrape.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..calls.manager import CallManager
from ..loop_lag import LoopLag
from ..metrics import MediaCounters
from ..providers.admission import AdmissionCounts, InboundAdmission
from ..providers.provider import Providers
from ..sip.gate import GateCounts
from ..sip.useragent import UserAgent

# (name without _total, help, MediaCounters field)
_MEDIA_COUNTERS: tuple[tuple[str, str, str], ...] = (
    ("sipbridge_rtp_packets_received", "RTP packets received from the phones", "rtp_packets_received"),
    ("sipbridge_rtp_packets_sent", "RTP packets sent to the phones", "rtp_packets_sent"),
    ("sipbridge_rtp_bytes_received", "RTP bytes received from the phones", "rtp_bytes_received"),
    ("sipbridge_rtp_bytes_sent", "RTP bytes sent to the phones", "rtp_bytes_sent"),
    ("sipbridge_rtp_packets_invalid", "Datagrams on RTP ports that were not RTP", "rtp_packets_invalid"),
    (
        "sipbridge_rtp_packets_foreign",
        "RTP packets from others than the call's peer (rtp_latch): dropped, never played",
        "rtp_packets_foreign",
    ),
    (
        "sipbridge_rtp_packets_lost",
        "Phone frames missing at their playout time (lost, or too late for the jitter buffer)",
        "rtp_packets_lost",
    ),
    (
        "sipbridge_rtp_packets_late",
        "Phone packets that came after their frame was given up",
        "rtp_packets_late",
    ),
    (
        "sipbridge_rtp_frames_concealed",
        "Phone frames concealed (PLC) towards the agent",
        "rtp_frames_concealed",
    ),
    ("sipbridge_agent_packets_sent", "Opus packets sent to the agent", "agent_packets_sent"),
    ("sipbridge_agent_packets_received", "Opus packets received from the agent", "agent_packets_received"),
    (
        "sipbridge_agent_packets_dropped",
        "Opus packets to the agent dropped because its send queue was full",
        "agent_packets_dropped",
    ),
)


@dataclass(eq=False)  # a collector is registered, so hashed, by identity
class BridgeCollector:
    """Figures of one running bridge, read when Prometheus scrapes."""

    manager: CallManager
    providers: Providers
    ua: UserAgent | None
    loop_lag: LoopLag
    admission: InboundAdmission | None = None

    def collect(self) -> Iterator[Metric]:
        yield from self._calls()
        yield from self._media(self.manager.media_totals())
        yield from self._sip()
        yield from self._workers()
        yield from self._process()

    def _calls(self) -> Iterator[Metric]:
        manager = self.manager
        active = GaugeMetricFamily("sipbridge_calls_active", "Calls in progress", labels=["direction"])
        for direction in ("inbound", "outbound"):
            active.add_metric([direction], sum(c.direction == direction for c in manager.active.values()))
        yield active
        yield GaugeMetricFamily("sipbridge_calls_max", "The max_calls setting", value=manager.max_calls)
        yield GaugeMetricFamily(
            "sipbridge_draining",
            "1 while the bridge drains before shutting down",
            value=int(manager.draining),
        )
        yield GaugeMetricFamily(
            "sipbridge_rtp_ports_in_use", "RTP ports held by calls", value=manager.media.ports_in_use
        )
        yield GaugeMetricFamily(
            "sipbridge_rtp_ports_total", "RTP ports in the configured range", value=manager.media.ports_total
        )
        registered = GaugeMetricFamily(
            "sipbridge_provider_registered",
            "1 while a provider that registers holds a registration",
            labels=["provider"],
        )
        for provider in self.providers:
            if provider.config.register:
                registered.add_metric([provider.name], int(provider.registration_state == "registered"))
        yield registered

    def _media(self, totals: MediaCounters) -> Iterator[Metric]:
        for name, documentation, field in _MEDIA_COUNTERS:
            yield CounterMetricFamily(name, documentation, value=getattr(totals, field))
        jitters = [j for c in self.manager.active.values() if (j := c.media_stats().rtp_jitter_s) is not None]
        yield GaugeMetricFamily(
            "sipbridge_rtp_jitter_max_seconds",
            "Largest interarrival jitter (RFC 3550) of the phones' RTP among active calls",
            value=max(jitters, default=0.0),
        )
        yield GaugeMetricFamily(
            "sipbridge_rtp_jitter_mean_seconds",
            "Mean interarrival jitter (RFC 3550) of the phones' RTP over active calls",
            value=sum(jitters) / len(jitters) if jitters else 0.0,
        )

    def _sip(self) -> Iterator[Metric]:
        errors = self.ua.stats.get("parse_errors", 0) if self.ua is not None else 0
        yield CounterMetricFamily(
            "sipbridge_sip_parse_errors", "SIP messages that could not be parsed", value=errors
        )
        gate = self.ua.gate.counts if self.ua is not None and self.ua.gate is not None else GateCounts()
        yield _by_label(
            "sipbridge_sip_rate_limited",
            "SIP requests over their source's rate limit: rejected (503 Retry-After) or dropped (ignored)",
            "action",
            {"rejected": gate.rejected, "dropped": gate.dropped},
        )
        yield CounterMetricFamily(
            "sipbridge_sip_scanner_requests",
            "SIP requests whose User-Agent or From named a known scanner (dropped, or 403)",
            value=gate.scanners,
        )
        yield CounterMetricFamily(
            "sipbridge_sip_connections_refused",
            "TCP/TLS connections closed at once: too many open from the source, or in all",
            value=self.ua.transport.connections_refused if self.ua is not None else 0,
        )
        yield CounterMetricFamily(
            "sipbridge_sip_connections_timed_out",
            "TCP/TLS connections closed at a deadline: TLS handshake, first message, idle, a slow message",
            value=self.ua.transport.connections_timed_out if self.ua is not None else 0,
        )
        stats = self.ua.stats if self.ua is not None else {}
        yield _by_label(
            "sipbridge_sip_stray",
            "SIP messages refused or ignored for naming what they may not act on: requests for no dialog"
            " of ours or from outside the dialog they name (481/403, or nothing to strangers in drop mode),"
            " ACKs matching no dialog of ours (blind ACKs), Via maddr ignored",
            "kind",
            {
                "request": stats.get("stray_requests", 0),
                "ack": stats.get("stray_acks", 0),
                "maddr": stats.get("maddr_ignored", 0),
            },
        )
        yield from self._admission()

    def _admission(self) -> Iterator[Metric]:
        counts = self.admission.counts if self.admission is not None else AdmissionCounts()
        yield _by_label(
            "sipbridge_inbound_admitted",
            "INVITEs admitted as a provider's: by source address or by digest credentials",
            "by",
            {"address": counts.by_address, "digest": counts.by_digest},
        )
        yield _by_label(
            "sipbridge_inbound_refused",
            "INVITEs from sources no provider admits: challenged (401), refused (403) or dropped",
            "action",
            {"challenged": counts.challenged, "refused": counts.refused, "dropped": counts.dropped},
        )

    def _workers(self) -> Iterator[Metric]:
        """Each media worker process's figures, labelled by its slot (0, 1, ...): a replacement keeps
        the slot's label. None with the media in this process (no workers)."""
        label = ["worker"]
        up = GaugeMetricFamily(
            "sipbridge_worker_up",
            "1 while the media worker is up, 0 while being replaced",
            labels=label,
        )
        calls = GaugeMetricFamily(
            "sipbridge_worker_calls", "Calls whose media the worker holds or is opening", labels=label
        )
        lag = GaugeMetricFamily(
            "sipbridge_worker_loop_lag_seconds",
            "Largest lateness of the worker's event-loop timers in the last 10 s",
            labels=label,
        )
        cpu = CounterMetricFamily(
            "sipbridge_worker_cpu_seconds",
            "CPU seconds the worker process used, every thread (from 0 again when it is replaced)",
            labels=label,
        )
        restarts = CounterMetricFamily(
            "sipbridge_worker_slot_restarts",
            "Times the slot's worker died or stalled and was replaced (the restarts total by slot)",
            labels=label,
        )
        view: dict[str, Any]
        for view in self.manager.media.views():
            worker = [str(view["index"])]
            up.add_metric(worker, int(view["state"] == "up"))
            calls.add_metric(worker, view["calls"])
            restarts.add_metric(worker, view["restarts"])
            if view["loop_lag_ms"] is not None:  # None until its first heartbeat
                lag.add_metric(worker, view["loop_lag_ms"] / 1000)
            if view["cpu_s"] is not None:
                cpu.add_metric(worker, view["cpu_s"])
        yield from (up, calls, lag, cpu, restarts)

    def _process(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("sipbridge_process_threads", "OS threads of the process", value=_threads())
        yield GaugeMetricFamily(
            "sipbridge_asyncio_tasks", "Tasks alive in the event loop", value=len(asyncio.all_tasks())
        )
        yield GaugeMetricFamily(
            "sipbridge_event_loop_lag_seconds",
            "Largest lateness of the control process's event-loop timers (SIP, the API) in the last 10 s",
            value=self.loop_lag.recent_max,
        )


def _by_label(name: str, documentation: str, label: str, counts: dict[str, int]) -> CounterMetricFamily:
    """A counter with one series per value of ``label``."""
    family = CounterMetricFamily(name, documentation, labels=[label])
    for value, count in counts.items():
        family.add_metric([value], count)
    return family


def _threads() -> int:
    """All OS threads (the native libraries' too), from /proc; Python's own count elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return threading.active_count()
