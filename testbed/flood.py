"""An INVITE flood from one loopback address, as a hostile host would send it; run as a process.

    python -m testbed.flood 127.0.0.1:5060 --source 127.0.0.2 --rate 5000 --seconds 10 --out f.json

Every INVITE is new (its own Call-ID, branch and From tag) and carries an SDP offer, so nothing but
the bridge's own defences stops it from becoming a call. The sender keeps to the rate on a
monotonic schedule (batches every 2 ms; a late sender falls behind rather than bursting), a reader thread
counts the answers by status, and the totals are written as JSON at the end. The target must be a
loopback address.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
import time
from collections import Counter
from pathlib import Path

from testbed.rawsip import RawSipSocket

TICK_S = 0.002

TEMPLATE = (
    "INVITE sip:{user}@{host}:{port} SIP/2.0\r\n"
    "Via: SIP/2.0/UDP {src}:{sport};branch=z9hG4bKfl{n:x}x{run}\r\n"
    "From: <sip:{user}@{src}>;tag=fl{n:x}\r\n"
    "To: <sip:{user}@{host}>\r\n"
    "Call-ID: fl{n:x}x{run}@{src}\r\n"
    "CSeq: 1 INVITE\r\n"
    "Contact: <sip:{user}@{src}:{sport}>\r\n"
    "Max-Forwards: 70\r\n"
    "User-Agent: flood\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: {length}\r\n\r\n{sdp}"
)
SDP = (
    "v=0\r\no=- 1 1 IN IP4 {src}\r\ns=-\r\nc=IN IP4 {src}\r\nt=0 0\r\n"
    "m=audio 4000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\n"
)


def invite(n: int, run: str, target: tuple[str, int], source: tuple[str, int]) -> bytes:
    sdp = SDP.format(src=source[0])
    return TEMPLATE.format(
        user=1000 + n % 9000,
        host=target[0],
        port=target[1],
        src=source[0],
        sport=source[1],
        n=n,
        run=run,
        length=len(sdp),
        sdp=sdp,
    ).encode()


def flood(target: tuple[str, int], source_ip: str, rate: float, seconds: float) -> dict[str, object]:
    if not ipaddress.ip_address(target[0]).is_loopback:
        raise SystemExit(f"flood: {target[0]} is not a loopback address")
    raw = RawSipSocket(source_ip)  # its reader thread collects the answers
    source = raw.address
    run = f"{time.time_ns() & 0xFFFFFF:x}"
    batch = int(rate * TICK_S * 4) + 1  # a late wake-up sends at most this many at once
    sent = errors = 0
    start = time.monotonic()
    while (elapsed := time.monotonic() - start) < seconds:
        due = min(int(elapsed * rate) + 1, sent + batch)
        while sent < due:
            try:
                raw.send(invite(sent, run, target, source), target)
            except OSError:
                errors += 1
            sent += 1
        time.sleep(TICK_S)
    took = time.monotonic() - start
    replies = Counter(reply.status for reply in raw.quiet_for(1.0))  # answers still on their way
    raw.close()
    return {
        "source": source_ip,
        "rate_asked": rate,
        "seconds": round(took, 3),
        "sent": sent,
        "send_errors": errors,
        "rate_sent": round(sent / took, 1),
        "replies": {str(status): count for status, count in sorted(replies.items())},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.flood", description=__doc__.split("\n")[0])
    parser.add_argument("target", help="HOST:PORT of the bridge (loopback only)")
    parser.add_argument("--source", default="127.0.0.2", help="loopback address to send from")
    parser.add_argument("--rate", type=float, default=5000.0, help="INVITEs per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--out", type=Path, help="write the totals here as JSON (default: stdout)")
    args = parser.parse_args(argv)
    host, _, port = args.target.rpartition(":")
    write_result(flood((host, int(port)), args.source, args.rate, args.seconds), args.out)
    return 0


def write_result(result: dict[str, object], out: Path | None) -> None:
    """A hostile peer's totals as JSON: to ``out``, or to stdout."""
    text = json.dumps(result, indent=2)
    if out:
        out.write_text(text)
    else:
        print(text)


if __name__ == "__main__":
    sys.exit(main())
