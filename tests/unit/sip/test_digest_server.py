"""Digest from the server's side: our own client's answers verify; wrong, stale and odd ones do not."""

from __future__ import annotations

import pytest

from sipbridge.sip.digest import DigestCredentials, authorization_value, parse_challenge
from sipbridge.sip.digest_server import Challenge, DigestVerifier, Forbidden, Verified
from sipbridge.sip.message import SipRequest, parse_message

URI = "sip:agent@127.0.0.1:5060"
PASSWORDS = {"pbx": "s3cret!"}


def invite(*authorization: str) -> SipRequest:
    headers = "".join(f"Authorization: {value}\r\n" for value in authorization)
    message = parse_message(
        (
            f"INVITE {URI} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKa\r\n"
            "From: <sip:1001@127.0.0.1>;tag=1\r\nTo: <sip:agent@127.0.0.1>\r\nCall-ID: c1\r\n"
            f"CSeq: 2 INVITE\r\n{headers}Content-Length: 0\r\n\r\n"
        ).encode()
    )
    assert isinstance(message, SipRequest)
    return message


@pytest.fixture
def verifier() -> DigestVerifier:
    return DigestVerifier(
        "sipbridge", PASSWORDS.get, nonce_lifetime=60, secret=b"k" * 32, algorithms=("SHA-256", "MD5")
    )


def answer(
    verifier: DigestVerifier, now: float, user: str = "pbx", password: str = "s3cret!", index: int = 0
) -> str:
    challenge = parse_challenge(verifier.challenges(now)[index][1])
    return authorization_value(
        challenge, DigestCredentials(user, password), "INVITE", URI, cnonce="c0ffee", nc=1
    )


def test_challenges_offer_sha256_then_md5_with_one_nonce(verifier):
    offered = [parse_challenge(value) for name, value in verifier.challenges(1000.0)]
    assert [c.algorithm for c in offered] == ["SHA-256", "MD5"]
    assert len({c.nonce for c in offered}) == 1 and offered[0].qop == ("auth",)
    assert all(c.realm == "sipbridge" and not c.stale for c in offered)


@pytest.mark.parametrize("index", [0, 1], ids=["SHA-256", "MD5"])
def test_a_right_answer_is_verified(verifier, index):
    assert verifier.check(invite(answer(verifier, 1000.0, index=index)), 1010.0) == Verified("pbx")


def test_no_credentials_are_challenged(verifier):
    assert isinstance(verifier.check(invite(), 1000.0), Challenge)


def test_credentials_for_another_realm_are_challenged(verifier):
    other = answer(verifier, 1000.0).replace('realm="sipbridge"', 'realm="elsewhere"')
    assert isinstance(verifier.check(invite(other), 1000.0), Challenge)


def test_a_wrong_password_or_user_is_forbidden(verifier):
    assert verifier.check(invite(answer(verifier, 1000.0, password="guess")), 1000.0) == Forbidden(
        "wrong password for 'pbx'"
    )
    assert isinstance(verifier.check(invite(answer(verifier, 1000.0, user="root")), 1000.0), Forbidden)


def test_an_old_nonce_is_challenged_again_as_stale(verifier):
    outcome = verifier.check(invite(answer(verifier, 1000.0)), 1061.0)
    assert outcome == Challenge("nonce expired or not ours", stale=True)
    assert "stale=true" in verifier.challenges(1061.0, stale=True)[0][1]


def test_a_nonce_from_another_process_is_stale_not_forbidden(verifier):
    restarted = DigestVerifier("sipbridge", PASSWORDS.get, secret=b"z" * 32, algorithms=("SHA-256",))
    outcome = restarted.check(invite(answer(verifier, 1000.0)), 1000.0)
    assert isinstance(outcome, Challenge) and outcome.stale


def test_a_forged_nonce_with_the_right_password_is_not_accepted(verifier):
    nonce = parse_challenge(verifier.challenges(1000.0)[0][1]).nonce
    challenge = parse_challenge(verifier.challenges(1000.0)[0][1].replace(nonce, "3e8.deadbeef"))
    forged = authorization_value(
        challenge, DigestCredentials("pbx", "s3cret!"), "INVITE", URI, cnonce="c", nc=1
    )
    outcome = verifier.check(invite(forged), 1000.0)
    assert isinstance(outcome, Challenge) and outcome.stale


@pytest.mark.parametrize(
    "value",
    [
        'Digest username="pbx", realm="sipbridge"',  # no nonce, uri, response
        'Digest username="pbx", realm="sipbridge", nonce="x", uri="sip:a", response="\u00e9\u00e9", nc=zz',
        'Digest username="pbx", realm="sipbridge", nonce="x", uri="sip:a", response="00", algorithm=MD5-sess',
        'Digest username="pbx", realm="sipbridge", nonce="x", uri="sip:a", response="00", qop=auth-int',
        'Digest username="pbx", realm="sipbridge", nonce="x", uri="sip:a", response="\u00e9"',
    ],
)
def test_malformed_or_unoffered_credentials_are_forbidden_not_a_crash(verifier, value):
    assert isinstance(verifier.check(invite(value), 1000.0), Forbidden)


def test_other_schemes_are_ignored_and_the_digest_found(verifier):
    assert verifier.check(invite("Basic cGJ4OnM=", answer(verifier, 1000.0)), 1000.0) == Verified("pbx")


def test_md5_alone_by_default():
    offered = DigestVerifier("r", PASSWORDS.get).challenges(0.0)
    assert len(offered) == 1 and "algorithm=MD5" in offered[0][1]


def test_an_algorithm_not_offered_is_forbidden():
    md5_only = DigestVerifier("sipbridge", PASSWORDS.get, secret=b"k" * 32)
    both = DigestVerifier("sipbridge", PASSWORDS.get, secret=b"k" * 32, algorithms=("SHA-256", "MD5"))
    assert isinstance(md5_only.check(invite(answer(both, 1000.0, index=0)), 1000.0), Forbidden)


def test_repr_shows_no_secret(verifier):
    assert "s3cret" not in repr(verifier) and "kkkk" not in repr(verifier)
