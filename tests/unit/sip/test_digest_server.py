"""Digest from the server's side: our own client's answers verify; wrong, stale, replayed, odd ones do not."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from sipbridge.sip.digest import DigestChallenge, DigestCredentials, authorization_value, parse_challenge
from sipbridge.sip.digest_server import Challenge, DigestVerifier, Forbidden, Verified
from sipbridge.sip.message import SipRequest, parse_message

URI = "sip:agent@127.0.0.1:5060"
PASSWORDS = {"pbx": "s3cret!"}
PBX = "192.0.2.10"
ELSEWHERE = "198.51.100.66"


def invite(*authorization: str, call_id: str = "c1", uri: str = URI) -> SipRequest:
    headers = "".join(f"Authorization: {value}\r\n" for value in authorization)
    message = parse_message(
        (
            f"INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK{call_id}\r\n"
            f"From: <sip:1001@127.0.0.1>;tag=1\r\nTo: <sip:agent@127.0.0.1>\r\nCall-ID: {call_id}\r\n"
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


def offered(verifier: DigestVerifier, now: float, source: str = PBX, index: int = 0) -> DigestChallenge:
    return parse_challenge(verifier.challenges(source, now)[index][1])


def authorize(
    challenge: DigestChallenge,
    nc: int = 1,
    uri: str = URI,
    user: str = "pbx",
    password: str = "s3cret!",
) -> str:
    credentials = DigestCredentials(user, password)
    return authorization_value(challenge, credentials, "INVITE", uri, cnonce="c0ffee", nc=nc)


def answer(verifier: DigestVerifier, now: float, index: int = 0, **fields: Any) -> str:
    return authorize(offered(verifier, now, index=index), **fields)


def test_challenges_offer_sha256_then_md5_with_one_nonce(verifier):
    offers = [parse_challenge(value) for name, value in verifier.challenges(PBX, 1000.0)]
    assert [c.algorithm for c in offers] == ["SHA-256", "MD5"]
    assert len({c.nonce for c in offers}) == 1 and offers[0].qop == ("auth",)
    assert all(c.realm == "sipbridge" and not c.stale for c in offers)


def test_each_challenge_has_a_nonce_of_its_own_even_within_one_millisecond(verifier):
    assert offered(verifier, 1000.0).nonce != offered(verifier, 1000.0).nonce


@pytest.mark.parametrize("index", [0, 1], ids=["SHA-256", "MD5"])
def test_a_right_answer_is_verified(verifier, index):
    assert verifier.check(invite(answer(verifier, 1000.0, index=index)), PBX, 1010.0) == Verified("pbx")


def test_no_credentials_are_challenged(verifier):
    assert isinstance(verifier.check(invite(), PBX, 1000.0), Challenge)


def test_credentials_for_another_realm_are_challenged(verifier):
    other = answer(verifier, 1000.0).replace('realm="sipbridge"', 'realm="elsewhere"')
    assert isinstance(verifier.check(invite(other), PBX, 1000.0), Challenge)


def test_a_wrong_password_or_user_is_forbidden(verifier):
    assert verifier.check(invite(answer(verifier, 1000.0, password="guess")), PBX, 1000.0) == Forbidden(
        "wrong password for 'pbx'"
    )
    assert isinstance(verifier.check(invite(answer(verifier, 1000.0, user="root")), PBX, 1000.0), Forbidden)


def test_an_old_nonce_is_challenged_again_as_stale(verifier):
    outcome = verifier.check(invite(answer(verifier, 1000.0)), PBX, 1061.0)
    assert outcome == Challenge("nonce expired or not ours", stale=True)
    assert "stale=true" in verifier.challenges(PBX, 1061.0, stale=True)[0][1]


def test_nonces_live_30_seconds_by_default():
    short = DigestVerifier("sipbridge", PASSWORDS.get)
    challenge = offered(short, 1000.0)
    assert short.check(invite(authorize(challenge)), PBX, 1029.9) == Verified("pbx")
    late = short.check(invite(authorize(offered(short, 1000.0))), PBX, 1030.1)
    assert isinstance(late, Challenge) and late.stale


def test_a_nonce_from_another_process_is_stale_not_forbidden(verifier):
    restarted = DigestVerifier("sipbridge", PASSWORDS.get, secret=b"z" * 32, algorithms=("SHA-256",))
    outcome = restarted.check(invite(answer(verifier, 1000.0)), PBX, 1000.0)
    assert isinstance(outcome, Challenge) and outcome.stale


def test_a_forged_nonce_with_the_right_password_is_not_accepted(verifier):
    forged = dataclasses.replace(offered(verifier, 1000.0), nonce="3e8.deadbeef")
    outcome = verifier.check(invite(authorize(forged)), PBX, 1000.0)
    assert isinstance(outcome, Challenge) and outcome.stale


# --- an answer is bound to one request and one sender -------------------------------------------


def test_the_same_header_replayed_with_another_call_id_is_refused(verifier):
    header = answer(verifier, 1000.0)
    assert verifier.check(invite(header, call_id="c1"), PBX, 1001.0) == Verified("pbx")
    replayed = verifier.check(invite(header, call_id="c2"), PBX, 1002.0)
    assert replayed == Challenge("nonce count not above the last one (a replay?)", stale=True)


def test_a_header_replayed_from_another_address_is_refused(verifier):
    header = answer(verifier, 1000.0)
    assert verifier.check(invite(header), PBX, 1001.0) == Verified("pbx")
    for nc_was_used in (True, False):
        fresh = header if nc_was_used else answer(verifier, 1000.0)
        outcome = verifier.check(invite(fresh, call_id="c2"), ELSEWHERE, 1002.0)
        assert outcome == Challenge("nonce expired or not ours", stale=True)


def test_a_header_replayed_to_another_request_uri_is_forbidden(verifier):
    header = answer(verifier, 1000.0)
    outcome = verifier.check(invite(header, call_id="c2", uri="sip:+447700900123@127.0.0.1"), PBX, 1001.0)
    assert outcome == Forbidden("uri is not the Request-URI")


def test_a_uri_other_than_the_request_uri_is_forbidden_even_with_the_right_password(verifier):
    header = answer(verifier, 1000.0, uri="sip:agent@127.0.0.1")  # no port: another URI (§19.1.4)
    assert verifier.check(invite(header), PBX, 1000.0) == Forbidden("uri is not the Request-URI")


def test_a_uri_equal_to_the_request_uri_by_rfc3261_rules_is_accepted(verifier):
    header = answer(verifier, 1000.0, uri="sip:agent@PBX.Example.com;transport=udp")
    request = invite(header, uri="sip:agent@pbx.example.com;Transport=UDP")
    assert verifier.check(request, PBX, 1000.0) == Verified("pbx")


@pytest.mark.parametrize("second", [1, 2], ids=["repeated", "lower"])
def test_a_repeated_or_lower_nonce_count_is_refused(verifier, second):
    challenge = offered(verifier, 1000.0)
    assert verifier.check(invite(authorize(challenge, nc=2), call_id="a"), PBX, 1001.0) == Verified("pbx")
    outcome = verifier.check(invite(authorize(challenge, nc=second), call_id="b"), PBX, 1002.0)
    assert isinstance(outcome, Challenge) and outcome.stale


def test_the_pbx_reusing_its_nonce_with_the_next_count_is_admitted(verifier):
    challenge = offered(verifier, 1000.0)
    for nc in (1, 2, 5):  # counts may skip (requests to elsewhere), never go back
        request = invite(authorize(challenge, nc=nc), call_id=f"call-{nc}")
        assert verifier.check(request, PBX, 1000.0 + nc) == Verified("pbx")


def test_a_refused_replay_does_not_disturb_the_pbx_count(verifier):
    challenge = offered(verifier, 1000.0)
    verifier.check(invite(authorize(challenge, nc=1)), PBX, 1001.0)
    verifier.check(invite(authorize(challenge, nc=1), call_id="x"), ELSEWHERE, 1002.0)
    verifier.check(invite(authorize(challenge, nc=7, password="guess"), call_id="y"), PBX, 1002.0)
    assert verifier.check(invite(authorize(challenge, nc=2), call_id="z"), PBX, 1003.0) == Verified("pbx")


def test_after_a_stale_challenge_the_pbx_gets_in_with_the_new_nonce(verifier):
    header = answer(verifier, 1000.0)
    verifier.check(invite(header), PBX, 1001.0)
    assert isinstance(verifier.check(invite(header, call_id="c2"), PBX, 1002.0), Challenge)
    again = authorize(parse_challenge(verifier.challenges(PBX, 1002.0, stale=True)[0][1]))
    assert verifier.check(invite(again, call_id="c2"), PBX, 1002.1) == Verified("pbx")


def test_an_answer_without_qop_is_forbidden(verifier):
    rfc2069 = dataclasses.replace(offered(verifier, 1000.0), qop=())
    outcome = verifier.check(invite(authorize(rfc2069)), PBX, 1000.0)
    assert outcome == Forbidden("qop=auth required")


@pytest.mark.parametrize(
    ("before", "after"),
    [("nc=00000001", "nc=1"), ("nc=00000001", "nc=00000000"), ('cnonce="c0ffee", ', "")],
    ids=["short nc", "zero nc", "no cnonce"],
)
def test_a_malformed_count_or_missing_cnonce_is_forbidden(verifier, before, after):
    header = answer(verifier, 1000.0)
    assert before in header
    outcome = verifier.check(invite(header.replace(before, after)), PBX, 1000.0)
    assert isinstance(outcome, Forbidden) and outcome.reason.startswith("malformed credentials")


# --- what is remembered ------------------------------------------------------------------------


def test_challenges_and_wrong_answers_leave_nothing_behind(verifier):
    for i in range(500):
        source = f"10.0.{i // 256}.{i % 256}"
        verifier.check(invite(), source, 1000.0)
        wrong = authorize(offered(verifier, 1000.0, source=source), password="guess")
        verifier.check(invite(wrong), source, 1000.0)
    assert verifier.remembered == 0


def test_the_table_is_bounded_and_a_nonce_forgotten_early_is_stale_never_admitted():
    small = DigestVerifier("sipbridge", PASSWORDS.get, max_nonces=2, secret=b"k" * 32)
    first, second, third = (offered(small, 1000.0 + i) for i in range(3))
    for i, challenge in enumerate((first, second, third)):
        assert small.check(invite(authorize(challenge), call_id=f"c{i}"), PBX, 1003.0) == Verified("pbx")
    assert small.remembered == 2
    for nc in (1, 2):  # the replay of its first use as much as its next count
        outcome = small.check(invite(authorize(first, nc=nc), call_id="again"), PBX, 1004.0)
        assert outcome == Challenge("nonce forgotten early (too many in use)", stale=True)
    assert small.check(invite(authorize(third, nc=2), call_id="next"), PBX, 1004.0) == Verified("pbx")
    assert small.check(invite(authorize(offered(small, 1004.0))), PBX, 1004.0) == Verified("pbx")


def test_expired_nonces_are_forgotten_and_stay_refused(verifier):
    old = offered(verifier, 1000.0)
    assert verifier.check(invite(authorize(old)), PBX, 1000.0) == Verified("pbx")
    assert verifier.check(invite(authorize(offered(verifier, 1100.0))), PBX, 1100.0) == Verified("pbx")
    assert verifier.remembered == 1
    outcome = verifier.check(invite(authorize(old, nc=2), call_id="late"), PBX, 1100.0)
    assert outcome == Challenge("nonce expired or not ours", stale=True)


def test_a_nonce_for_another_address_is_not_ours_even_unused(verifier):
    header = authorize(offered(verifier, 1000.0, source=ELSEWHERE))
    outcome = verifier.check(invite(header), PBX, 1000.0)
    assert isinstance(outcome, Challenge) and outcome.stale


# --- odd input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        'Digest username="pbx", realm="sipbridge"',  # no nonce, uri, response
        'Digest username="pbx", realm="sipbridge", nonce="x", uri="sip:a", response="\u00e9\u00e9", nc=zz',
        'Digest username="pbx", realm="sipbridge", nonce="x", uri="sip:a", response="00", algorithm=MD5-sess',
        'Digest username="pbx", realm="sipbridge", nonce="x", uri="sip:a", response="00", qop=auth-int',
        'Digest username="pbx", realm="sipbridge", nonce="x", uri="sip:a", response="\u00e9"',
        'Digest username="pbx", realm="sipbridge", nonce="x", uri="sip:\u00e9", response="0", qop=auth, '
        'nc=00000001, cnonce="c"',
    ],
)
def test_malformed_or_unoffered_credentials_are_forbidden_not_a_crash(verifier, value):
    assert isinstance(verifier.check(invite(value), PBX, 1000.0), Forbidden)


def test_a_long_user_name_is_cut_short_in_the_reason(verifier):
    outcome = verifier.check(invite(answer(verifier, 1000.0, user="x" * 5000)), PBX, 1000.0)
    assert isinstance(outcome, Forbidden) and len(outcome.reason) < 100


def test_other_schemes_are_ignored_and_the_digest_found(verifier):
    assert verifier.check(invite("Basic cGJ4OnM=", answer(verifier, 1000.0)), PBX, 1000.0) == Verified("pbx")


def test_md5_alone_by_default():
    offers = DigestVerifier("r", PASSWORDS.get).challenges(PBX, 0.0)
    assert len(offers) == 1 and "algorithm=MD5" in offers[0][1]


def test_an_algorithm_not_offered_is_forbidden():
    md5_only = DigestVerifier("sipbridge", PASSWORDS.get, secret=b"k" * 32)
    both = DigestVerifier("sipbridge", PASSWORDS.get, secret=b"k" * 32, algorithms=("SHA-256", "MD5"))
    assert isinstance(md5_only.check(invite(answer(both, 1000.0, index=0)), PBX, 1000.0), Forbidden)


def test_repr_shows_no_secret(verifier):
    assert "s3cret" not in repr(verifier) and "kkkk" not in repr(verifier)
