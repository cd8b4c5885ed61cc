"""Replay the RFC 4475 / RFC 5118 torture messages against the real bridge; run INSIDE `unshare -n`.

Usage: unshare -n -- python testbed/conformance_replay.py OUT.json
The namespace has nothing but loopback, so whatever the messages' Via, Contact or SDP name
(192.0.2.x, example.com, 2001:db8::) is unreachable: no reply or RTP can leave the machine.
Each message goes out as one datagram from a socket bound to 127.0.0.1 at its own top-Via port: the
bridge answers to the source (rport) or to `received` = 127.0.0.1 at the Via port, i.e. to us.
The first lines of every response within the wait are recorded, then the bridge must still answer
an OPTIONS. The bridge runs with T1 = 10 ms: several torture messages reuse a branch and sent-by, and
with the default T1 the bridge would rightly treat them as retransmissions of one transaction
(Timer J = 32 s); at 10 ms every transaction is over before the next message is sent.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from sipbridge.sip.errors import SipParseError  # noqa: E402
from sipbridge.sip.message import extract_for_error_response, parse_message  # noqa: E402

CONFORMANCE = ROOT.parent / "shared" / "conformance"
BRIDGE_SIP_PORT = 5999
BRIDGE_API_PORT = 5998
WAIT_S = {"INVITE": 8.0}
DEFAULT_WAIT_S = 1.5
SOAK_S = 1.0  # after each message: > 64·T1, so its retransmissions and timers are over


def lenient_parse(data: bytes) -> object | None:
    try:
        return parse_message(data)
    except SipParseError:
        return extract_for_error_response(data)


def via_port(message: object | None) -> int:
    try:
        port = message.via[0].port or 5060  # type: ignore[union-attr]
    except (AttributeError, SipParseError, IndexError, ValueError):
        return 5060
    return 5060 if port == BRIDGE_SIP_PORT else port


def call_id(data: bytes) -> str | None:
    try:
        return lenient_parse(data).call_id  # type: ignore[union-attr]
    except (AttributeError, SipParseError, ValueError):
        return None


def method_of(data: bytes) -> str:
    return data.split(b" ", 1)[0].decode("latin-1").strip()


def replay(path: Path) -> dict:
    data = path.read_bytes()
    port = via_port(lenient_parse(data))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.sendto(data, ("127.0.0.1", BRIDGE_SIP_PORT))
        wait = WAIT_S.get(method_of(data), DEFAULT_WAIT_S)
        responses = collect(sock, wait, call_id(data))
        collect(sock, SOAK_S, "-")  # drain what still comes for this message
        return {"via_port": port, "responses": responses}


def collect(sock: socket.socket, wait: float, our_call_id: str | None = None) -> list[str]:
    """First lines of what arrives, until a final response; others' late retransmissions skipped."""
    lines: list[str] = []
    deadline = time.monotonic() + wait
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            packet = sock.recv(65535)
        except TimeoutError:
            break
        if our_call_id is not None and call_id(packet) not in (our_call_id, None):
            continue
        first = packet.split(b"\r\n", 1)[0].decode("utf-8", "replace")
        lines.append(first)
        status = first.split(" ", 2)
        if first.startswith("SIP/2.0") and len(status) > 1 and status[1].isdigit() and int(status[1]) >= 200:
            break
    return lines


def options_answered() -> bool:
    options = (
        f"OPTIONS sip:bridge@127.0.0.1:{BRIDGE_SIP_PORT} SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKafterall;rport\r\n"
        "Max-Forwards: 70\r\nTo: <sip:bridge@127.0.0.1>\r\nFrom: <sip:check@127.0.0.1>;tag=x\r\n"
        "Call-ID: after-all@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 5070))
        sock.sendto(options, ("127.0.0.1", BRIDGE_SIP_PORT))
        return any(line.startswith("SIP/2.0 200") for line in collect(sock, 3.0))


def start_bridge(logfile: Path) -> subprocess.Popen:
    argv = [
        sys.executable, "-m", "sipbridge", "serve",
        "--sip-listen", f"127.0.0.1:{BRIDGE_SIP_PORT}", "--api-listen", f"127.0.0.1:{BRIDGE_API_PORT}",
        "--rtp-ports", "40000-40100", "--log-level", "info",
        "--workers", os.environ.get("SIPBRIDGE_TEST_WORKERS", "1"),  # as testbed.bridge_proc does
    ]  # fmt: skip
    env = {**os.environ, "SIPBRIDGE_SIP_T1_MS": "10"}
    with open(logfile, "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=log, cwd=ROOT, env=env)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{BRIDGE_API_PORT}/health", timeout=1)
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"bridge did not start in the namespace: {logfile.read_text()[-2000:]}")


def main(out: Path) -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    proc = start_bridge(out.with_suffix(".bridge.log"))
    results: dict = {}
    try:
        for folder in ("rfc4475", "rfc5118"):
            for path in sorted((CONFORMANCE / folder).iterdir()):
                if path.name != "MANIFEST.tsv":
                    results[f"{folder}/{path.name}"] = replay(path)
        results["options_after_all"] = options_answered()
        results["bridge_alive"] = proc.poll() is None
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
