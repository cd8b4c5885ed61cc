"""What a hostile host sends, by hand: a call placed request by request (so that any request can be
sent again from another address, or with a branch copied, or without our tag), RTP sprayed over a
port range, and a probe that keeps asking OPTIONS to see whether the bridge still answers in time.

Every socket binds a loopback address: 127.0.0.2, 127.0.0.3, ... stand for other hosts.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

from testbed.rawsip import RawSipSocket, Reply

Address = tuple[str, int]
PCMU_SILENCE = b"\xff" * 160


def sdp(host: str, port: int, codecs: str = "0", rtpmap: str = "a=rtpmap:0 PCMU/8000\r\n") -> str:
    return (
        f"v=0\r\no=- 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP {codecs}\r\n{rtpmap}"
    )


@dataclass
class Dialog:
    """The identifiers of one call as its caller knows them."""

    target: Address
    user: str = "100"
    call_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    from_tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    to_tag: str = ""
    invite_branch: str = field(default_factory=lambda: f"z9hG4bK{uuid.uuid4().hex[:16]}")
    cseq: int = 1

    def request(
        self,
        method: str,
        source: Address,
        *,
        branch: str | None = None,
        cseq: int | None = None,
        to_tag: str | None = None,
        body: str = "",
        extra: tuple[str, ...] = (),
        via_params: str = ";rport",
        contact_host: str | None = None,
        uri: str | None = None,
    ) -> bytes:
        host, port = self.target
        tag = self.to_tag if to_tag is None else to_tag
        lines = [
            f"{method} {uri or f'sip:{self.user}@{host}:{port}'} SIP/2.0",
            f"Via: SIP/2.0/UDP {source[0]}:{source[1]};branch={branch or self.invite_branch}{via_params}",
            f"From: <sip:caller@{source[0]}>;tag={self.from_tag}",
            f"To: <sip:{self.user}@{host}>" + (f";tag={tag}" if tag else ""),
            f"Call-ID: {self.call_id}",
            f"CSeq: {cseq if cseq is not None else self.cseq} {method}",
            f"Contact: <sip:caller@{contact_host or source[0]}:{source[1]}>",
            "Max-Forwards: 70",
            *extra,
            *(["Content-Type: application/sdp"] if body else []),
            f"Content-Length: {len(body)}",
            "",
            body,
        ]
        return "\r\n".join(lines).encode()

    def next_branch(self) -> str:
        return f"z9hG4bK{uuid.uuid4().hex[:16]}"


def final(sock: RawSipSocket, timeout: float = 10.0, after: int = 0) -> Reply | None:
    """The first final response among the replies after index ``after``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for reply in sock.replies[after:]:
            if reply.status >= 200:
                return reply
        time.sleep(0.01)
    return None


def place_call(sock: RawSipSocket, dialog: Dialog, media: Address, timeout: float = 15.0) -> Reply:
    """INVITE from ``sock`` with its media at ``media``, then the ACK for the 200 (with its tag)."""
    before = len(sock.replies)
    sock.send(dialog.request("INVITE", sock.address, body=sdp(*media)), dialog.target)
    answer = final(sock, timeout, before)
    assert answer is not None and answer.status == 200, f"no 200 to the INVITE: {answer}"
    dialog.to_tag = answer.to_tag
    sock.send(dialog.request("ACK", sock.address, branch=dialog.next_branch()), dialog.target)
    return answer


def answer_port(reply: Reply) -> int:
    """The bridge's RTP port from the SDP of its 200."""
    for line in reply.body.decode().splitlines():
        if line.startswith("m=audio "):
            return int(line.split()[1])
    raise AssertionError(f"no m=audio line in {reply.body!r}")


def rtp_packet(sequence: int, timestamp: int, ssrc: int, payload: bytes = PCMU_SILENCE) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, sequence & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc) + payload


class RtpPhone:
    """A phone's RTP: 20 ms packets to ``target`` from its own socket, and a count of what came back."""

    def __init__(self, host: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.05)
        self.address: Address = self.sock.getsockname()
        self.received = 0
        self.sources: Counter[Address] = Counter()
        self.target: Address | None = None
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=fn, daemon=True) for fn in (self._send, self._receive)]

    def start(self, target: Address) -> RtpPhone:
        self.target = target
        for thread in self._threads:
            thread.start()
        return self

    def _send(self) -> None:
        sequence, ssrc, started = 1, 0x1234, time.monotonic()
        while not self._stop.is_set():
            assert self.target is not None
            self.sock.sendto(rtp_packet(sequence, sequence * 160, ssrc), self.target)
            sequence += 1
            self._stop.wait(max(0.0, started + sequence * 0.02 - time.monotonic()))

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                _, source = self.sock.recvfrom(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            self.received += 1
            self.sources[source] += 1

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(2)
        self.sock.close()


class RtpSprayer:
    """In-sequence RTP to every even port of a range, round and round, from one socket; and a count
    of whatever the bridge sends back to it (a call's audio, if the spray took the call over)."""

    def __init__(self, host: str, target_host: str, low: int, high: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.setblocking(False)
        self.ports = [port for port in range(low, high + 1) if port % 2 == 0]
        self.target_host = target_host
        self.sent = 0
        self.received = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> RtpSprayer:
        self._thread.start()
        return self

    def _run(self) -> None:
        sequence = 1
        while not self._stop.is_set():
            for port in self.ports:
                try:
                    self.sock.sendto(rtp_packet(sequence, sequence * 160, 0xBAD), (self.target_host, port))
                    self.sent += 1
                except OSError:
                    pass
            sequence += 1
            self._drain()
            self._stop.wait(0.005)

    def _drain(self) -> None:
        while True:
            try:
                self.sock.recvfrom(2048)
            except (BlockingIOError, OSError):
                return
            self.received += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._drain()
        self.sock.close()


class OptionsProbe:
    """OPTIONS every ``interval`` from its own address; each answer's round trip, by CSeq."""

    def __init__(self, target: Address, source_ip: str, interval: float = 0.05) -> None:
        self.target = target
        self.sock = RawSipSocket(source_ip)
        self.interval = interval
        self.sent_at: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> OptionsProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)
        time.sleep(0.3)  # the last answers
        self.sock.close()

    def _run(self) -> None:
        cseq = 0
        while not self._stop.is_set():
            cseq += 1
            dialog = Dialog(self.target, cseq=cseq)
            self.sent_at[cseq] = time.monotonic()
            self.sock.send(dialog.request("OPTIONS", self.sock.address), self.target)
            self._stop.wait(self.interval)

    def round_trips(self) -> list[float]:
        trips = []
        for reply in list(self.sock.replies):
            cseq = int(reply.headers.get("cseq", "0 x").split()[0])
            if cseq in self.sent_at:
                trips.append(reply.at - self.sent_at[cseq])
        return trips

    @property
    def sent(self) -> int:
        return len(self.sent_at)
