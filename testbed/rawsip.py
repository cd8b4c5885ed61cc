"""Hand-made SIP requests from any loopback address, and what came back: a hostile peer's view.

For tests of what the bridge answers to strangers (scanners, floods, unknown sources), where a
real UA's own behaviour (retransmissions, transactions) would only blur what is measured.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from testbed.procs import LOOPBACK

SDP = (
    "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n"
    "m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


def request(
    method: str,
    target: tuple[str, int],
    source: tuple[str, int],
    *,
    user: str = "100",
    user_agent: str = "rawsip",
    cseq: int = 1,
    call_id: str | None = None,
    extra: tuple[str, ...] = (),
) -> bytes:
    """One out-of-dialog request (an INVITE carries an SDP offer), new branch and Call-ID."""
    host, port = target
    body = SDP.format(ip=source[0]) if method == "INVITE" else ""
    lines = [
        f"{method} sip:{user}@{host}:{port} SIP/2.0",
        f"Via: SIP/2.0/UDP {source[0]}:{source[1]};branch=z9hG4bK{uuid.uuid4().hex[:16]};rport",
        f"From: <sip:{user}@{source[0]}>;tag={uuid.uuid4().hex[:8]}",
        f"To: <sip:{user}@{host}>",
        f"Call-ID: {call_id or uuid.uuid4().hex}",
        f"CSeq: {cseq} {method}",
        f"Contact: <sip:{user}@{source[0]}:{source[1]}>",
        "Max-Forwards: 70",
        f"User-Agent: {user_agent}",
        *extra,
        *(["Content-Type: application/sdp"] if body else []),
        f"Content-Length: {len(body)}",
        "",
        body,
    ]
    return "\r\n".join(lines).encode()


@dataclass
class Reply:
    status: int
    headers: dict[str, str]  # the first of each name, lower-cased
    at: float
    body: bytes = b""

    @property
    def to_tag(self) -> str:
        return self.headers.get("to", "").partition(";tag=")[2].split(";")[0]


def parse_reply(data: bytes, at: float) -> Reply | None:
    raw_head, _, body = data.partition(b"\r\n\r\n")
    head = raw_head.decode(errors="replace").split("\r\n")
    parts = head[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("SIP/2.0") or not parts[1].isdigit():
        return None
    headers = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), value.strip())
    return Reply(int(parts[1]), headers, at, body)


@dataclass
class RawSipSocket:
    """A UDP socket on ``source_ip`` whose replies are collected by a background reader."""

    source_ip: str = LOOPBACK
    replies: list[Reply] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        self.sock.bind((self.source_ip, 0))
        self.sock.settimeout(0.2)
        self.address: tuple[str, int] = self.sock.getsockname()
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            reply = parse_reply(data, time.monotonic())
            if reply is not None:
                self.replies.append(reply)

    def send(self, data: bytes, target: tuple[str, int]) -> None:
        self.sock.sendto(data, target)

    def statuses(self) -> list[int]:
        return [reply.status for reply in self.replies]

    def wait_for(self, count: int, timeout: float = 3.0) -> list[Reply]:
        """Until ``count`` replies have come (or the timeout): the replies so far."""
        deadline = time.monotonic() + timeout
        while len(self.replies) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return list(self.replies)

    def quiet_for(self, seconds: float) -> list[Reply]:
        """Everything that came by the end of ``seconds`` of waiting (to show that nothing does)."""
        time.sleep(seconds)
        return list(self.replies)

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        self._reader.join(2)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
