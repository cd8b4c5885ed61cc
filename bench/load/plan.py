"""What one level of a load benchmark is: its calls, codec and SRTP, worker count, and an adversary."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from testbed.bridge_proc import BridgeProcess

from .wire import PCMU, WireCodec


@dataclass(frozen=True)
class FloodPlan:
    """A hostile host flooding the bridge with INVITEs during the steady window (testbed/flood)."""

    rate: float
    seconds: float
    source: str = "127.0.0.2"
    config_extra: str = ""  # more TOML for the bridge's configuration

    def command(self, bridge: BridgeProcess, out: Path) -> list[str]:
        return [
            sys.executable, "-m", "testbed.flood", bridge.sip_target, "--source", self.source,
            "--rate", f"{self.rate:g}", "--seconds", f"{self.seconds:g}", "--out", str(out),
        ]  # fmt: skip


@dataclass(frozen=True)
class AttackPlan:
    """The whole attack set of issue 13 during the steady window (testbed/attacks): the bridge
    gets the providers it aims at and a TLS listener (``tls_env``: certificate, key and port)."""

    seconds: float
    tls_port: int
    tls_env: tuple[tuple[str, str], ...]
    pbx_password: str = "pbx-Secret-42"
    without: tuple[str, ...] = ()  # parts of the set left out (testbed/attacks.PARTS)

    @property
    def config_extra(self) -> str:
        return (
            '[providers.edge]\ntype = "generic"\naddress = "127.0.0.2:5999"\n'
            'inbound_cidrs = ["127.0.0.2/32"]\n'
            '[providers.pbx]\ntype = "asterisk"\naddress = "127.0.0.5:5998"\ninbound_username = "asterisk"\n'
            '[providers.tw]\ntype = "twilio"\naddress = "127.0.0.1:9"\n'
        )

    def command(self, bridge: BridgeProcess, out: Path) -> list[str]:
        # nice 19: on this machine the attacker shares the bridge's two cores, which an attacker on
        # the internet would not; it still sends all it can whenever a core is idle.
        return [
            "nice", "-n", "19",
            sys.executable, "-m", "testbed.attacks", bridge.sip_target, "--api", bridge.api,
            "--rtp", f"{bridge.rtp_low}-{bridge.rtp_high}", "--tls-port", str(self.tls_port),
            "--pbx-password", self.pbx_password, "--seconds", f"{self.seconds:g}", "--out", str(out),
            "--bridge-pid", str(bridge.proc.pid), *(f"--without={part}" for part in self.without),
        ]  # fmt: skip


@dataclass(frozen=True)
class LevelPlan:
    calls: int
    hold_s: float
    rate: float
    folder: Path
    agent_mode: str = "relay"
    flood: FloodPlan | AttackPlan | None = None  # the steady window is then its duration
    bridge_env: tuple[tuple[str, str], ...] = ()
    workers: int | None = None  # the bridge's --workers; None: its own default (auto)
    codec: WireCodec = PCMU  # what the calls offer and the probe sends (bench.load.wire)
    srtp: bool = False  # RTP/SAVP with SDES keys

    @property
    def ramp_s(self) -> float:
        return self.calls / self.rate


def level_name(calls: int, workers: int | None, codec: str = "PCMU", srtp: bool = False) -> str:
    """A level's folder: level-20, level-20-w2 when the bridge's worker count is given, with
    -g722 / -opus for another codec than PCMU and -srtp with SRTP."""
    name = f"level-{calls}" + ("" if workers is None else f"-w{workers}")
    return name + ("" if codec == "PCMU" else f"-{codec.lower()}") + ("-srtp" if srtp else "")
