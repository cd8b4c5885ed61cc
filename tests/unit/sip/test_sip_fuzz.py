"""Random and mutated input: only SipParseError / SdpError may ever escape the parsers."""

import random
from pathlib import Path

import pytest

from sipbridge.sip.errors import SipParseError
from sipbridge.sip.message import SipRequest, SipResponse, extract_for_error_response, parse_message
from sipbridge.sip.responses import make_response
from sipbridge.sip.sdp import SdpError, negotiate_audio, parse_sdp

CONFORMANCE = Path(__file__).resolve().parents[4] / "shared" / "conformance"

OFFER = (
    b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/AVP 0 8 101\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\na=ptime:20.5\r\n"
)
BUILTIN = [
    b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.example.com;branch=z9hG4bK776;rport\r\n"
    b"Max-Forwards: 70\r\nTo: Bob <sip:bob@biloxi.example.com>\r\n"
    b'From: "Alice" <sip:alice@atlanta.example.com>;tag=1928301774\r\nCall-ID: a84b4c76e66710\r\n'
    b"CSeq: 314159 INVITE\r\nContact: <sip:alice@[2001:db8::1]:5062;transport=udp>\r\n"
    b"Content-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s" % (len(OFFER), OFFER),
    b"SIP/2.0 200 OK\r\nv: SIP/2.0/UDP a.example.com;branch=z9hG4bK1;received=10.0.0.1;rport=5070\r\n"
    b"t: <sip:b@x>;tag=9\r\nf: sip:a@y;tag=8\r\ni: c1\r\nCSeq: 1 INVITE\r\nm: *\r\nl: 0\r\n\r\n",
]
SPECIALS = [
    b":",
    b";",
    b",",
    b"=",
    b" ",
    b"\t",
    b"\r\n",
    b"\r\n ",
    b'"',
    b"\\",
    b"<",
    b">",
    b"%",
    b"@",
    b"[",
    b"]",
]
SPECIALS += [
    b"?",
    b"&",
    b"/",
    b"\x00",
    b"\xff",
    b"\xc3",
    b"9" * 12,
    b"SIP/2.0",
    b"sip:",
    b"tel:",
    b"\r\n\r\n",
]


def corpus() -> list[bytes]:
    files = sorted((CONFORMANCE / "rfc4475").glob("*.dat")) + sorted((CONFORMANCE / "rfc5118").glob("*"))
    return BUILTIN + [path.read_bytes() for path in files]


def mutate(rng: random.Random, data: bytes) -> bytes:
    for _ in range(rng.randint(1, 4)):
        pos = rng.randrange(len(data) + 1)
        op = rng.randrange(6)
        if op == 0:
            data = data[:pos] + rng.choice(SPECIALS) + data[pos:]
        elif op == 1:
            data = data[:pos] + data[pos + rng.randint(1, 8) :]
        elif op == 2 and pos < len(data):
            data = data[:pos] + bytes([rng.randrange(256)]) + data[pos + 1 :]
        elif op == 3:
            lines = data.split(b"\r\n")
            line = rng.choice(lines)
            lines.insert(rng.randrange(len(lines) + 1), line)
            data = b"\r\n".join(lines)
        elif op == 4:
            first, *lines = data.split(b"\r\n")
            rng.shuffle(lines)
            data = b"\r\n".join([first, *lines])
        else:
            data = data[:pos]
    return data


def exercise(data: bytes) -> None:
    """Parse, and if that works use every accessor and check the serialised form parses the same."""
    try:
        message = parse_message(data)
    except SipParseError as exc:
        assert isinstance(exc.status, int) and 400 <= exc.status < 600 and exc.reason
        assert "\r" not in exc.reason and "\n" not in exc.reason
        broken = extract_for_error_response(data)
        if broken is not None:
            make_response(broken, exc.status, to_tag="x").to_bytes()
        return
    fields = (message.call_id, message.cseq, message.via, message.from_, message.to, message.max_forwards)
    assert fields[0] and fields[2]
    if isinstance(message, SipRequest):
        assert message.request_uri.scheme
        make_response(message, 200, to_tag="x").to_bytes()
    again = parse_message(message.to_bytes())
    assert again.to_bytes() == message.to_bytes()
    assert without_length(again) == without_length(message)
    if message.body.startswith(b"v=0"):
        exercise_sdp(message.body)


def without_length(message: SipRequest | SipResponse) -> list[tuple[str, str]]:
    return [item for item in message.headers.items() if item[0] != "Content-Length"]


def exercise_sdp(data: bytes) -> None:
    try:
        sdp = parse_sdp(data)
    except SdpError:
        return
    for media in sdp.media:
        media.rtpmap(), media.fmtp(), media.direction, media.ptime
    normalised = parse_sdp(sdp.to_bytes())
    assert parse_sdp(normalised.to_bytes()) == normalised
    try:
        negotiate_audio(sdp)
    except SdpError:
        pass


def test_random_bytes():
    rng = random.Random(4475)
    for _ in range(1500):
        data = rng.randbytes(rng.randrange(200))
        exercise(data)
        exercise_sdp(data)


def test_mutated_messages():
    rng = random.Random(3261)
    messages = corpus()
    for _ in range(4000):
        exercise(mutate(rng, rng.choice(messages)))


def test_mutated_sdp():
    rng = random.Random(4566)
    bodies = [
        OFFER,
        b"v=0\r\no=- 1 1 IN IP6 ::1\r\ns=-\r\nt=0 0\r\nm=audio 0 RTP/AVP 18\r\nc=IN IP6 ::1\r\n"
        b"a=ptime:20.5\r\n",
    ]
    for _ in range(3000):
        exercise_sdp(mutate(rng, rng.choice(bodies)))


@pytest.mark.parametrize("index", range(len(BUILTIN)))
def test_every_truncation_point(index):
    data = BUILTIN[index]
    for cut in range(len(data) + 1):
        exercise(data[:cut])
