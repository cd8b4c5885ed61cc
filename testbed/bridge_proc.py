"""Run the real `sipbridge` processes (bridge and reference agent) for the tests and the benchmarks."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from testbed.procs import ManagedProcess, free_port_block, free_tcp_port, wait_until

SIPBRIDGE = [sys.executable, "-m", "sipbridge"]
# Media workers of the bridges the tests start, unless a test names its own (``--workers``): one by
# default (the same worker process mode as every count, see docs/testing.md); `make test` runs the
# call-flow, DTMF, agent-resume, drain and soak tests again with SIPBRIDGE_TEST_WORKERS=2.
TEST_WORKERS_ENV = "SIPBRIDGE_TEST_WORKERS"


def default_workers() -> str:
    """How many media workers a test bridge gets when the test does not say."""
    return os.environ.get(TEST_WORKERS_ENV, "1")


def http_json(
    method: str,
    url: str,
    timeout: float = 5.0,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    data: bytes | None = None,
) -> tuple[int, Any]:
    """A request with ``body`` as JSON (or raw ``data``): the status and the JSON answer."""
    if data is None and body is not None:
        data = json.dumps(body).encode()
    headers = {**({"Content-Type": "application/json"} if data is not None else {}), **(headers or {})}
    request = urllib.request.Request(url, method=method, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
            return response.status, json.loads(body) if body else None
    except urllib.error.HTTPError as exc:
        body = exc.read()
        return exc.code, json.loads(body) if body else None


def _answers(url: str) -> bool:
    try:
        return http_json("GET", url, timeout=1.0)[0] == 200
    except OSError:
        return False


def _wait_ready(proc: ManagedProcess, health_url: str, timeout: float) -> None:
    """Until ``health_url`` answers 200; stops the process and raises with its log otherwise."""
    if not wait_until(lambda: _answers(health_url) or not proc.running, timeout) or not proc.running:
        proc.stop()
        raise RuntimeError(f"{proc.name} did not start:\n{proc.tail()}")


@dataclass
class AgentProcess:
    proc: ManagedProcess
    port: int

    @property
    def whip_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/whip"

    def sessions(self) -> list[dict[str, Any]]:
        return http_json("GET", f"http://127.0.0.1:{self.port}/sessions")[1]

    def drop(self, session_id: str) -> None:
        """Cut the session's network path without a goodbye, as a crash would (its token stays valid)."""
        status, body = http_json("POST", f"http://127.0.0.1:{self.port}/sessions/{session_id}/drop")
        assert status == 200, body

    def kill(self) -> float:
        """SIGKILL the agent, as a crash or the OOM killer would: no DTLS close, no goodbye, nothing
        answers any more. Returns when it was sent (time.time())."""
        at = time.time()
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(5)
        return at

    def send_events(self, session_id: str, *events: dict[str, Any]) -> None:
        """Send events to the caller as the agent would, on the session's events channel."""
        url = f"http://127.0.0.1:{self.port}/sessions/{session_id}/events"
        status, body = http_json("POST", url, body=list(events))
        assert status == 200, body


@dataclass
class BridgeProcess:
    proc: ManagedProcess
    sip_port: int
    api_port: int
    rtp_low: int
    rtp_high: int

    @property
    def sip_target(self) -> str:
        return f"127.0.0.1:{self.sip_port}"

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def calls(self) -> list[dict[str, Any]]:
        return http_json("GET", f"{self.api}/calls")[1]["calls"]

    def call(self, call_id: str) -> tuple[int, Any]:
        return http_json("GET", f"{self.api}/calls/{call_id}")

    def request(self, method: str, path: str, body: Any = None, key: str | None = None) -> tuple[int, Any]:
        """An API request (with ``Authorization: Bearer key`` when given): the status and the JSON."""
        headers = {"Authorization": f"Bearer {key}"} if key is not None else None
        return http_json(method, f"{self.api}{path}", 10.0, body, headers=headers)

    def log(self) -> str:
        return self.proc.tail(80)


def watch_answered_call(bridge: BridgeProcess, views: list[dict[str, Any]], polls: int = 24) -> None:
    """Append ``GET /calls/{id}`` of the bridge's call to ``views`` every 0.25 s while it is answered
    (the last view taken after some audio); run in a thread beside a call a peer places."""
    if not wait_until(lambda: any(c["state"] == "answered" for c in bridge.calls()), 15):
        return
    for _ in range(polls):
        calls = bridge.calls()
        if not calls:
            return
        status, view = bridge.call(calls[0]["id"])
        if status == 200 and view["state"] == "answered":
            views.append(view)
        time.sleep(0.25)


def _unused_name(logdir: Path, name: str) -> str:
    """`name`, or `name-2`, `name-3`, ...: a restarted process keeps the log of the one before."""
    candidate, n = name, 1
    while (logdir / f"{candidate}.err").exists():
        n += 1
        candidate = f"{name}-{n}"
    return candidate


def start_agent(logdir: Path, mode: str = "echo", *extra: str, port: int | None = None) -> AgentProcess:
    """The reference agent in its own process, on `port` (a free one by default; give the port of an
    agent that died to restart it there)."""
    port = port or free_tcp_port()
    proc = ManagedProcess(
        [*SIPBRIDGE, "agent", "--listen", f"127.0.0.1:{port}", "--mode", mode, *extra],
        name=_unused_name(logdir, f"agent-{port}"),
        logdir=logdir,
    ).start()
    _wait_ready(proc, f"http://127.0.0.1:{port}/health", 15)
    return AgentProcess(proc, port)


def start_bridge(
    logdir: Path,
    agent_url: str | None,
    *extra: str,
    rtp_ports: int = 16,
    env: dict[str, str] | None = None,
) -> BridgeProcess:
    sip_port, api_port = free_port_block(1, tcp=True), free_tcp_port()  # SIP: UDP and TCP
    rtp_low = free_port_block(rtp_ports)
    rtp_high = rtp_low + rtp_ports - 1
    argv = [
        *SIPBRIDGE,
        "serve",
        "--sip-listen",
        f"127.0.0.1:{sip_port}",
        "--api-listen",
        f"127.0.0.1:{api_port}",
        "--rtp-ports",
        f"{rtp_low}-{rtp_high}",
        "--log-level",
        "debug",
        *(["--agent", agent_url] if agent_url else []),
        *([] if _names_workers(extra, env) else ["--workers", default_workers()]),
        *extra,
    ]
    proc_env = {**os.environ, **(env or {})}
    proc = ManagedProcess(argv, name=f"bridge-{sip_port}", logdir=logdir, env=proc_env).start()
    bridge = BridgeProcess(proc, sip_port, api_port, rtp_low, rtp_high)
    _wait_ready(proc, f"{bridge.api}/health", 20)
    return bridge


def _names_workers(extra: tuple[str, ...], env: dict[str, str] | None) -> bool:
    return "--workers" in extra or "SIPBRIDGE_WORKERS" in (env or {})


def trunk_config(folder: Path, source: str = "127.0.0.1", extra: str = "") -> Path:
    """A sipbridge.toml in ``folder`` naming ``source`` as a trunk's address (``inbound_cidrs``), as
    a carrier's edge would be: its calls are admitted as provider "trunk" and never rate-limited, and
    any other source is then refused. ``extra`` is appended (more TOML)."""
    path = folder / "sipbridge.toml"
    path.write_text(
        f'[providers.trunk]\ntype = "generic"\naddress = "127.0.0.1:5999"\ninbound_cidrs = ["{source}/32"]\n'
        + extra
    )
    return path


class SilentHttpServer:
    """A TCP listener that accepts connections and never answers: an agent that hangs."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/whip"

    def close(self) -> None:
        self.sock.close()


class LateWhipServer:
    """A WHIP endpoint that answers every offer `delay` seconds late (201 with an SDP body and a
    Location) and records the DELETEs it gets: an agent slower than the bridge's agent_timeout."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.answered: list[str] = []  # the session paths it created, in order
        self.deleted: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/whip"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        late = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                time.sleep(late.delay)
                path = f"/whip/late-{len(late.answered) + 1}"
                late.answered.append(path)
                body = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
                with contextlib.suppress(OSError):  # the bridge may have gone: answer anyway
                    self.send_response(201)
                    self.send_header("Content-Type", "application/sdp")
                    self.send_header("Location", path)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

            def do_DELETE(self) -> None:
                late.deleted.append(self.path)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        return Handler

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class CallWatcher:
    """Polls GET /calls in the background for one caller's calls (ended calls leave that list)."""

    def __init__(self, bridge: BridgeProcess, caller: str) -> None:
        self.bridge = bridge
        self.caller = caller
        self.ids: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for call in self.bridge.calls():
                if call["from"] == self.caller and call["id"] not in self.ids:
                    self.ids.append(call["id"])
            self._stop.wait(0.02)

    def __enter__(self) -> CallWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
