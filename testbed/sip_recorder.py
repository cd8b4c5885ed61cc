"""A SIP user agent's sends recorded instead of put on a socket, and crafted requests to feed it:
what the unit tests of the SIP stack drive the real UserAgent with."""

from __future__ import annotations

from typing import Any

from sipbridge.sip.invite_client import OutgoingInvite
from sipbridge.sip.message import SipRequest, SipResponse, parse_message

PEER = ("127.0.0.1", 5062)
FAR = ("127.0.0.1", 5070)  # the far end our outgoing INVITEs go to
SDP = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


class RecordingTransport:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []
        self.local_address = ("127.0.0.1", 5060)

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))

    def close(self) -> None:
        pass

    def responses(self) -> list[SipResponse]:
        return [m for m in (parse_message(d) for d, _ in self.sent) if isinstance(m, SipResponse)]

    def statuses(self) -> list[int]:
        return [r.status for r in self.responses()]

    def messages(self) -> list[tuple[SipRequest | SipResponse, tuple[str, int]]]:
        """Everything sent, parsed, with where it went."""
        return [(parse_message(data), addr) for data, addr in self.sent]

    def to(self, addr: tuple[str, int]) -> list[bytes]:
        return [data for data, where in self.sent if where == addr]


def request(
    method: str,
    *,
    branch: str = "z9hG4bKb1",
    to_tag: str = "",
    extra: str = "",
    body: str = "",
    cseq: int = 1,
    via_host: str = "127.0.0.1:5062",
    via_params: str = ";rport",
    contact: str = "<sip:caller@127.0.0.1:5062>",
) -> bytes:
    to = "<sip:bridge@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
    return (
        f"{method} sip:bridge@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {via_host};branch={branch}{via_params}\r\n"
        "Max-Forwards: 70\r\n"
        f"To: {to}\r\n"
        "From: <sip:+15550001@127.0.0.1>;tag=caller1\r\n"
        "Call-ID: call-1@127.0.0.1\r\n"
        f"CSeq: {cseq} {method}\r\n"
        f"Contact: {contact}\r\n"
        f"{extra}"
        + (f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n{body}" if body else "\r\n")
    ).encode()


def dial(agent: Any, **kwargs: Any) -> OutgoingInvite:
    """Our outgoing INVITE with our SDP, from ``agent`` (a UserAgent) to the far end at ``FAR``."""
    return OutgoingInvite(
        agent,
        request_uri="sip:1001@127.0.0.1:5070",
        from_uri="sip:sipbridge@127.0.0.1",
        to_uri="sip:1001@127.0.0.1",
        destination=FAR,
        sdp=SDP.encode(),
        **kwargs,
    )
