"""The bridge the attack tests aim at: a real process with what a production bridge on the internet
has (a trunk by address, a PBX by digest, a Twilio trunk to dial out through, API keys, a TLS
listener), run with asyncio's debug mode so that every callback over 100 ms is logged: the attack
tests fail on any such line, since one stalled callback stalls every call's audio.

Loopback addresses stand for hosts: 127.0.0.2 is the trunk, 127.0.0.5 the PBX, 127.0.0.3 and up
strangers and third parties.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testbed import tls_certs
from testbed.bridge_proc import BridgeProcess, http_json, start_bridge
from testbed.procs import free_tcp_port

TRUNK = "127.0.0.2"
STRANGER = "127.0.0.3"
PROBE = "127.0.0.4"
PBX = "127.0.0.5"
THIRD_PARTY = "127.0.0.9"
API_KEY = "k3y-For-The-Attack-Tests-0123456789"
PBX_USER, PBX_PASSWORD = "asterisk", "pbx-Secret-42"
MAX_OUTBOUND = 5
MAX_CALL_DURATION = 600
SLOW_CALLBACK = re.compile(r"Executing .{0,400}? took (\d+\.\d+) seconds")

CONFIG = f"""
max_call_duration = {MAX_CALL_DURATION}

[api]
keys = ["{API_KEY}"]

[providers.trunk]
type = "generic"
address = "{TRUNK}:5999"
inbound_cidrs = ["{TRUNK}/32"]

[providers.pbx]
type = "asterisk"
address = "{PBX}:5998"
inbound_username = "{PBX_USER}"

[providers.tw]
type = "twilio"
address = "localhost:{{dial_port}}"
max_outbound_calls = {MAX_OUTBOUND}
"""


@dataclass
class HostileBridge:
    bridge: BridgeProcess
    tls_port: int
    dial_port: int  # where the Twilio trunk's calls go: nothing answers there

    @property
    def sip(self) -> tuple[str, int]:
        return ("127.0.0.1", self.bridge.sip_port)

    def api(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        key: str | None = API_KEY,
        data: bytes | None = None,
        timeout: float = 10.0,
    ) -> tuple[int, Any]:
        """A REST call with the API key (or another, or none); the status and the JSON answer."""
        headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
        return http_json(method, self.bridge.api + path, timeout, body, headers=headers, data=data)

    def calls(self) -> list[dict[str, Any]]:
        return self.api("GET", "/calls")[1]["calls"]

    def call(self, call_id: str) -> dict[str, Any]:
        return self.api("GET", f"/calls/{call_id}")[1]

    def call_for(self, sip_call_id: str) -> dict[str, Any] | None:
        """The active call whose SIP Call-ID is ``sip_call_id``."""
        return next((c for c in self.calls() if c["sip_call_id"] == sip_call_id), None)

    def log_size(self) -> int:
        return len(self.bridge.proc.stderr())

    def slow_callbacks(self, since: int) -> list[str]:
        """Lines asyncio's debug mode logged since ``since`` for callbacks over 100 ms."""
        return [m.group(0) for m in SLOW_CALLBACK.finditer(self.bridge.proc.stderr()[since:])]


def start_hostile_bridge(logdir: Path, agent_url: str, folder: Path, **env: str) -> HostileBridge:
    certs = tls_certs.make_certs(folder / "tls")
    tls_port, dial_port = free_tcp_port(), free_tcp_port()
    path = folder / "sipbridge.toml"
    path.write_text(CONFIG.format(dial_port=dial_port))
    path.chmod(0o600)
    environment = {
        "PYTHONASYNCIODEBUG": "1",  # logs every callback that holds the loop 100 ms or more
        "SIPBRIDGE_PROVIDER_PBX_INBOUND_PASSWORD": PBX_PASSWORD,
        "SIPBRIDGE_TLS_CERT_FILE": str(certs.chain),
        "SIPBRIDGE_TLS_KEY_FILE": str(certs.key),
        "SIPBRIDGE_SIP_TLS_PORT": str(tls_port),
        **env,
    }
    bridge = start_bridge(logdir, agent_url, "--config", str(path), env=environment)
    return HostileBridge(bridge, tls_port, dial_port)
