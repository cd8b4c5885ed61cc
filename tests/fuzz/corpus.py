"""Seed corpora and mutation strategies shared by the fuzz targets.

A mutated input is a seed (a real message: the RFC 4475 / RFC 5118 torture messages of
``../shared/conformance/``, or a valid SDP, RTP or DTMF sample) with a few edits applied: bit flips,
byte changes, truncation, deletions, splices of another seed, and insertions of the characters that
break parsers (CR, LF, NUL, quotes, separators, huge numbers, non-ASCII and invalid UTF-8). The edits
are drawn by Hypothesis, so a failure shrinks to the fewest, smallest edits that still fail. This is
the one corpus of the fuzz harness (tests/fuzz): every target draws its input from here.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from hypothesis import strategies as st

CONFORMANCE = Path(__file__).resolve().parents[3] / "shared" / "conformance"
HANG_SECONDS = 5.0

T = TypeVar("T")


class Hang(AssertionError):
    """A parser ran for ``HANG_SECONDS`` on one input."""


@contextmanager
def no_hang(seconds: float = HANG_SECONDS) -> Iterator[None]:
    """Fail with ``Hang`` if the block runs longer than ``seconds`` (the deadline only sees returns)."""

    def expire(signum: int, frame: object) -> None:
        raise Hang(f"no result after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def checked(parse: Callable[[], T], *allowed: type[BaseException]) -> T | None:
    """``parse()``'s result, or None when it raised one of ``allowed``; any other exception fails."""
    with no_hang():
        try:
            return parse()
        except allowed:
            return None


def conformance_messages() -> list[bytes]:
    files = sorted((CONFORMANCE / "rfc4475").glob("*.dat")) + sorted(
        path for path in (CONFORMANCE / "rfc5118").iterdir() if path.is_file()
    )
    if not files:
        raise RuntimeError(f"no conformance corpus in {CONFORMANCE}")
    return [path.read_bytes() for path in files]


SDP_OFFER = (
    b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/AVP 0 8 101\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
)
SDP_SAMPLES = [
    SDP_OFFER,
    b"v=0\r\no=alice 2890844526 2890844526 IN IP6 2001:db8::1\r\ns= \r\nt=0 0\r\n"
    b"m=audio 49170 RTP/AVP 18 0\r\nc=IN IP6 2001:db8::1\r\na=ptime:20.5\r\na=sendonly\r\n"
    b"m=video 51372 RTP/AVP 31\r\na=rtpmap:31 H261/90000\r\n",
    b"v=0\no=- 0 0 IN IP4 0.0.0.0\ns=-\nc=IN IP4 0.0.0.0/127\nt=0 0\na=inactive\n"
    b"m=audio 9 RTP/AVPF 111 8/2\r\na=rtpmap:111 opus/48000/2\na=fmtp:111 minptime=10;useinbandfec=1\n",
]

SIP_SAMPLES = [
    b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.example.com;branch=z9hG4bK776;rport\r\n"
    b"Max-Forwards: 70\r\nTo: Bob <sip:bob@biloxi.example.com>\r\n"
    b'From: "Alice" <sip:alice@atlanta.example.com>;tag=1928301774\r\nCall-ID: a84b4c76e66710\r\n'
    b"CSeq: 314159 INVITE\r\nContact: <sip:alice@[2001:db8::1]:5062;transport=udp>\r\n"
    b"Content-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s" % (len(SDP_OFFER), SDP_OFFER),
    b"SIP/2.0 401 Unauthorized\r\n"
    b"v: SIP/2.0/UDP a.example.com;branch=z9hG4bK1;received=10.0.0.1;rport=5070\r\n"
    b"t: <sip:b@x>;tag=9\r\nf: sip:a@y;tag=8\r\ni: c1\r\nCSeq: 1 REGISTER\r\nm: *\r\n"
    b'WWW-Authenticate: Digest realm="x", nonce="abc", qop="auth,auth-int", algorithm=SHA-256\r\n'
    b"Retry-After: 5 (soon)\r\nl: 0\r\n\r\n",
    b"SIP/2.0 200 OK\r\nv: SIP/2.0/UDP a.example.com;branch=z9hG4bK1;received=10.0.0.1;rport=5070\r\n"
    b"t: <sip:b@x>;tag=9\r\nf: sip:a@y;tag=8\r\ni: c1\r\nCSeq: 1 INVITE\r\nm: *\r\nl: 0\r\n\r\n",
]


def sip_corpus() -> list[bytes]:
    return SIP_SAMPLES + conformance_messages()


SPECIALS: list[bytes] = [
    b"\r",
    b"\n",
    b"\r\n",
    b"\r\n\r\n",
    b"\r\n ",
    b"\x00",
    b" ",
    b"\t",
    b":",
    b";",
    b",",
    b"=",
    b'"',
    b"\\",
    b"<",
    b">",
    b"[",
    b"]",
    b"@",
    b"%",
    b"?",
    b"&",
    b"/",
    b"*",
    b"-1",
    b"0",
    b"65536",
    b"4294967296",
    b"9" * 25,
    b"9" * 5000,
    b'\\"',
    b"\xff",
    b"\xc3",
    b"\xed\xa0\x80",  # an encoded surrogate: invalid UTF-8
    "é".encode(),
    "\u2028".encode(),
    "\U0001f4de".encode(),
    b"SIP/2.0",
    b"sip:",
    b"tel:",
    b"v=0",
    b"m=audio ",
    b"a=",
    b"Content-Length: ",
]


@st.composite
def mutated(draw: st.DrawFn, seeds: Sequence[bytes], max_edits: int = 6) -> bytes:
    """A seed with up to ``max_edits`` edits."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, max_edits))):
        op = draw(st.sampled_from(_OPS))
        pos = draw(st.integers(0, 1 << 16)) % (len(data) + 1)
        data = bytearray(op(draw, seeds, bytes(data), pos))
    return bytes(data)


def _flip(draw: st.DrawFn, seeds: Sequence[bytes], data: bytes, pos: int) -> bytes:
    if pos >= len(data):
        return data
    bit = draw(st.integers(0, 7))
    return data[:pos] + bytes([data[pos] ^ (1 << bit)]) + data[pos + 1 :]


def _set_byte(draw: st.DrawFn, seeds: Sequence[bytes], data: bytes, pos: int) -> bytes:
    return data[:pos] + bytes([draw(st.integers(0, 255))]) + data[pos + 1 :]


def _truncate(draw: st.DrawFn, seeds: Sequence[bytes], data: bytes, pos: int) -> bytes:
    return data[:pos]


def _delete(draw: st.DrawFn, seeds: Sequence[bytes], data: bytes, pos: int) -> bytes:
    return data[:pos] + data[pos + draw(st.integers(1, 64)) :]


def _insert_special(draw: st.DrawFn, seeds: Sequence[bytes], data: bytes, pos: int) -> bytes:
    return data[:pos] + draw(st.sampled_from(SPECIALS)) + data[pos:]


def _insert_bytes(draw: st.DrawFn, seeds: Sequence[bytes], data: bytes, pos: int) -> bytes:
    return data[:pos] + draw(st.binary(min_size=1, max_size=16)) + data[pos:]


def _splice(draw: st.DrawFn, seeds: Sequence[bytes], data: bytes, pos: int) -> bytes:
    other = draw(st.sampled_from(seeds))
    start = draw(st.integers(0, 1 << 16)) % (len(other) + 1)
    size = draw(st.integers(1, 256))
    return data[:pos] + other[start : start + size] + data[pos:]


def _repeat_line(draw: st.DrawFn, seeds: Sequence[bytes], data: bytes, pos: int) -> bytes:
    lines = data.split(b"\n")
    line = lines[draw(st.integers(0, 1 << 16)) % len(lines)]
    lines.insert(draw(st.integers(0, 1 << 16)) % (len(lines) + 1), line)
    return b"\n".join(lines)


def _shuffle_lines(draw: st.DrawFn, seeds: Sequence[bytes], data: bytes, pos: int) -> bytes:
    """The lines after the start line in another order (headers out of their usual order)."""
    first, *rest = data.split(b"\r\n")
    if len(rest) > 64:  # a line repeated thousands of times: nothing to learn from its order
        return data
    return b"\r\n".join([first, *draw(st.permutations(rest))])


def _repeat(draw: st.DrawFn, seeds: Sequence[bytes], data: bytes, pos: int) -> bytes:
    """A short run of the input (or a special) repeated up to the size of a datagram: finds the
    parsers that are quadratic in their input (a regex that backtracks, a rescan per character)."""
    unit = data[pos : pos + draw(st.integers(1, 4))] or draw(st.sampled_from(SPECIALS))
    count = draw(st.integers(2, 60_000 // len(unit)))
    return data[:pos] + unit * count + data[pos:]


_OPS = (
    _flip,
    _set_byte,
    _truncate,
    _delete,
    _insert_special,
    _insert_bytes,
    _splice,
    _repeat_line,
    _shuffle_lines,
    _repeat,
)


def fuzz_bytes(seeds: Sequence[bytes], max_random: int = 512) -> st.SearchStrategy[bytes]:
    """Mutated seeds, mostly, and plain random bytes."""
    return st.one_of(mutated(seeds), st.binary(max_size=max_random))


# Structured text: the tokens SIP header values are built from, recombined.
HEADER_PIECES = [
    "sip:",
    "sips:",
    "tel:",
    "mailto:",
    "urn:x",
    "alice",
    "bob",
    "@",
    "example.com",
    "192.0.2.1",
    "[2001:db8::1]",
    "[::ffff:192.0.2.1]",
    "[",
    "]",
    ":",
    ":5060",
    ":65536",
    ":99999999999",
    ";",
    ";tag=abc",
    ";branch=z9hG4bK1",
    ";transport=tcp",
    ";lr",
    ";received=",
    ";rport",
    ";maddr=",
    "=",
    "?",
    "&",
    "h=v",
    "<",
    ">",
    '"',
    '"Alice"',
    "\\",
    '\\"',
    ",",
    " ",
    "\t",
    "\r\n ",
    "%",
    "%00",
    "%4",
    "SIP/2.0/UDP ",
    "SIP/2.0/TCP",
    "/",
    "*",
    "1",
    "0",
    "4294967296",
    "9" * 30,
    "INVITE",
    "REGISTER",
    "é",
    "\x00",
    "\udcff",  # an undecodable byte, as surrogateescape decoding gives it
    "\u2028",
]


def header_text(pieces: Sequence[str] = HEADER_PIECES, max_pieces: int = 16) -> st.SearchStrategy[str]:
    """Text made of header tokens, with some arbitrary characters among them."""
    piece = st.one_of(st.sampled_from(pieces), st.text(max_size=4))
    repeated = st.tuples(piece, st.integers(2, 20_000)).map(lambda pair: pair[0] * pair[1])
    return st.lists(piece | repeated, max_size=max_pieces).map("".join)
