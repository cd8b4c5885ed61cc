"""What the benchmarks share, whatever they measure: where things are, how a results section is
rewritten, the kernel's receive time of a packet, and the media pipelines as the bridge builds them."""

from __future__ import annotations

import re
import socket
import struct
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sipbridge.config import Config, load_config
from sipbridge.media.phone_codec import phone_codec
from sipbridge.media.pipeline import AgentToPhone, PhoneToAgent
from sipbridge.settings.values import ConfigError

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS_MD = BENCH / "RESULTS.md"
SCENARIOS = BENCH / "scenarios"
DEFAULT_OUT = BENCH / "out"


def replace_section(path: Path, heading: str, section: str) -> None:
    """Replace the ``heading`` section of a results file, or add it before the first other section."""
    text = path.read_text() if path.exists() else "# Benchmark results\n\n"
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.M | re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1)
    else:
        first = re.search(r"^## ", text, re.M)
        at = first.start() if first else len(text)
        text = text[:at] + section + "\n" + text[at:]
    path.write_text(text)


# -- the kernel's receive time of a datagram (SO_TIMESTAMPNS, CLOCK_REALTIME) ---------------------

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; Python does not export it
_TIMESPEC = struct.Struct("@qq")
TIMESTAMP_ANCILLARY = socket.CMSG_SPACE(_TIMESPEC.size)  # recvmsg's ancbufsize for the stamp


def kernel_time(ancillary: list[tuple[int, int, bytes]]) -> int:
    """The receive stamp (ns) among recvmsg's ancillary data, else now."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
            seconds, nanoseconds = _TIMESPEC.unpack(data[: _TIMESPEC.size])
            return seconds * 1_000_000_000 + nanoseconds
    return time.time_ns()


# -- the media pipelines of one call ------------------------------------------------------------


def bridge_config() -> Config:
    """The configuration the bridge will run with (defaults and SIPBRIDGE_* from the environment)."""
    try:
        return load_config()
    except ConfigError:
        return load_config(env={})


class Pipelines:
    """One call's two transcoders as the bridge builds them for the phone `codec`, and how its
    downlink takes PCM: the agent's Opus decoded at the Opus PCM rate, or at the phone codec's when
    wider (G.722: 16 kHz), as media_session/agent_playout.py does."""

    def __init__(self, config: Config, codec: str = "PCMU") -> None:
        self.opus = config.opus
        self.codec = codec
        self.up = PhoneToAgent(codec, self.opus)
        self.pcm_rate = max(self.opus.pcm_rate, phone_codec(codec).pcm_rate)
        self.down = AgentToPhone(codec, self.pcm_rate)
        self.push_pcm = self.down.push_pcm

    def describe(self) -> dict[str, Any]:
        return {"codec": self.codec, "opus": asdict(self.opus), "downlink_pcm_rate": self.pcm_rate}
