"""Fuzz target: Digest challenge parsing (WWW-Authenticate / Proxy-Authenticate, RFC 7616, RFC 8760).

Own error: ``DigestError`` for ``parse_challenge`` and ``challenges_from``. A challenge that parses
can be answered: ``authorization_value`` gives a header value that a SIP message carries intact.
"""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st
from tests.fuzz.corpus import checked, fuzz_bytes, header_text, no_hang

from sipbridge.sip.digest import (
    DigestCredentials,
    DigestError,
    authorization_value,
    challenges_from,
    choose_per_realm,
    parse_challenge,
)
from sipbridge.sip.errors import SipParseError
from sipbridge.sip.message import parse_message

CHALLENGES = [
    'Digest realm="atlanta.example.com", nonce="84a4cc6f3082121f32b42a2187831a9e", qop="auth"',
    'Digest realm="x",nonce="abc",algorithm=SHA-256-sess,qop="auth-int,auth",opaque="o",stale=TRUE',
    'Digest realm="a\\"b", nonce=n, algorithm=MD5',
    "Basic realm=x",
]
PIECES = [
    "Digest ",
    "realm=",
    "nonce=",
    "qop=",
    "algorithm=",
    "opaque=",
    "stale=true",
    '"',
    '\\"',
    ",",
    "=",
    " ",
    "auth",
    "auth-int",
    "MD5",
    "SHA-256",
    "SHA-512-256-sess",
    "x",
    "\r\n",
    "\x00",
    "é",
    "\udcff",
]
CREDENTIALS = DigestCredentials("alice", "secret")
RESPONSE_HEAD = b"SIP/2.0 401 Unauthorized\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\n"
RESPONSE_HEAD += b"To: <sip:a@h>;tag=2\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\n"


def answer(challenge_text: str) -> None:
    challenge = checked(lambda: parse_challenge(challenge_text), DigestError)
    if challenge is None:
        return
    with no_hang():
        value = authorization_value(challenge, CREDENTIALS, "REGISTER", "sip:h", cnonce="c", nc=1)
    assert "\r" not in value and "\n" not in value


@given(st.one_of(st.sampled_from(CHALLENGES), header_text(PIECES, max_pieces=24), st.text(max_size=80)))
@example('Digest realm="\udcff", nonce="n"')
@example('Digest realm="r", nonce="n", algorithm="MD5\r\n"')
def test_parse_challenge(text):
    answer(text)


@given(fuzz_bytes([text.encode() for text in CHALLENGES]))
def test_parse_challenge_mutated(data):
    answer(data.decode("utf-8", "surrogateescape"))


@given(
    fuzz_bytes([RESPONSE_HEAD + b"WWW-Authenticate: " + text.encode() + b"\r\n\r\n" for text in CHALLENGES])
)
def test_challenges_from_response(data):
    response = checked(lambda: parse_message(data), SipParseError)
    if response is None or not hasattr(response, "status"):
        return
    challenges = checked(lambda: challenges_from(response), DigestError)
    if challenges:
        for challenge in choose_per_realm(challenges):
            authorization_value(challenge, CREDENTIALS, "INVITE", "sip:h", cnonce="c", nc=2)
