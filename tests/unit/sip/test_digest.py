"""Digest authentication: RFC test vectors, challenge parsing torture, nonce reuse and rejection."""

import hashlib

import pytest

from sipbridge.sip.digest import (
    AuthenticationRejected,
    DigestChallenge,
    DigestCredentials,
    DigestError,
    DigestSession,
    NonceUse,
    authorization_value,
    challenges_from,
    choose_challenge,
    choose_per_realm,
    digest_response,
    is_rejection,
    parse_challenge,
)
from sipbridge.sip.headers import parse_params
from sipbridge.sip.message import Headers, SipResponse, parse_message

MUFASA = DigestCredentials("Mufasa", "Circle Of Life")
RFC2617_CHALLENGE = (
    'Digest realm="testrealm@host.com", qop="auth,auth-int", '
    'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
)
RFC7616_CHALLENGE = (
    'Digest\n realm="http-auth@example.org",\n qop="auth, auth-int",\n algorithm={alg},\n'
    ' nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",\n'
    ' opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
)
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"


def _md5(text: str | bytes) -> str:
    return hashlib.md5(text.encode() if isinstance(text, str) else text).hexdigest()


def _params(value: str) -> dict[str, str | None]:
    """The parameters of an Authorization value, quotes removed (test values hold no commas)."""
    scheme, _, rest = value.partition(" ")
    assert scheme == "Digest"
    params = parse_params(rest.replace(", ", ";"))
    return {k: v.strip('"') if v else v for k, v in params.items()}


def _challenge_response(*values: str, status: int = 401) -> SipResponse:
    name = "Proxy-Authenticate" if status == 407 else "WWW-Authenticate"
    return SipResponse(status, "Unauthorized", Headers([(name, value) for value in values]))


# --- RFC test vectors ---------------------------------------------------------------------------


def test_rfc2617_section_3_5_example():
    challenge = parse_challenge(RFC2617_CHALLENGE)
    value = authorization_value(challenge, MUFASA, "GET", "/dir/index.html", cnonce="0a4f113b", nc=1)
    params = _params(value)
    assert params["response"] == "6629fae49393a05397450978507c4ef1"
    assert params == {
        "username": "Mufasa",
        "realm": "testrealm@host.com",
        "nonce": "dcd98b7102dd2f0e8b11d0f600bfb0c093",
        "uri": "/dir/index.html",
        "response": "6629fae49393a05397450978507c4ef1",
        "cnonce": "0a4f113b",
        "qop": "auth",
        "nc": "00000001",
        "opaque": "5ccc069c403ebaf9f0171e9517f40e41",
    }
    assert "qop=auth," in value and "nc=00000001" in value  # unquoted tokens (RFC 3261 §25.1)
    assert "algorithm" not in value  # not echoed when the server sent none


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
    ],
)
def test_rfc7616_section_3_9_1_examples(algorithm, expected):
    challenge = parse_challenge(RFC7616_CHALLENGE.format(alg=algorithm))
    credentials = DigestCredentials("Mufasa", "Circle of Life")
    value = authorization_value(challenge, credentials, "GET", "/dir/index.html", cnonce=RFC7616_CNONCE, nc=1)
    assert _params(value)["response"] == expected
    assert f"algorithm={algorithm}" in value


# --- computations beyond the vectors ------------------------------------------------------------


def test_rfc2069_server_without_qop_gets_no_cnonce_nor_nc():
    challenge = parse_challenge('Digest realm="r", nonce="n1"')
    value = authorization_value(challenge, MUFASA, "REGISTER", "sip:example.com", cnonce="c", nc=3)
    ha1, ha2 = _md5("Mufasa:r:Circle Of Life"), _md5("REGISTER:sip:example.com")
    assert _params(value)["response"] == _md5(f"{ha1}:n1:{ha2}")
    assert "cnonce" not in value and "nc=" not in value and "qop" not in value


def test_auth_int_when_only_it_is_offered_hashes_the_body():
    challenge = parse_challenge('Digest realm="r", nonce="n1", qop="auth-int"')
    body = b"v=0\r\n"
    value = authorization_value(challenge, MUFASA, "INVITE", "sip:b@h", cnonce="c", nc=1, body=body)
    ha1, ha2 = _md5("Mufasa:r:Circle Of Life"), _md5(f"INVITE:sip:b@h:{_md5(body)}")
    assert _params(value)["qop"] == "auth-int"
    assert _params(value)["response"] == _md5(f"{ha1}:n1:00000001:c:auth-int:{ha2}")


def test_auth_is_preferred_to_auth_int():
    assert parse_challenge('Digest realm="r", nonce="n", qop="auth-int,auth"').chosen_qop == "auth"


def test_md5_sess_uses_nonce_and_cnonce_in_ha1():
    challenge = parse_challenge('Digest realm="r", nonce="n1", qop=auth, algorithm=MD5-sess')
    ha1 = _md5(f"{_md5('Mufasa:r:Circle Of Life')}:n1:c")
    ha2 = _md5("REGISTER:sip:h")
    assert digest_response(challenge, MUFASA, "REGISTER", "sip:h", cnonce="c", nc=2) == _md5(
        f"{ha1}:n1:00000002:c:auth:{ha2}"
    )


def test_sha256_sess_uses_sha256_throughout():
    challenge = parse_challenge('Digest realm="r", nonce="n", qop="auth", algorithm=SHA-256-sess')
    assert len(digest_response(challenge, MUFASA, "REGISTER", "sip:h", cnonce="c", nc=1)) == 64


def test_quotes_and_backslashes_are_escaped_in_the_answer():
    challenge = parse_challenge(r'Digest realm="a \"b\" \\ c", nonce="n"')
    credentials = DigestCredentials('o"brian', "pw")
    value = authorization_value(challenge, credentials, "REGISTER", "sip:h", cnonce="c", nc=1)
    assert r'username="o\"brian"' in value and r'realm="a \"b\" \\ c"' in value


# --- parsing torture ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('digest REALM="r", NONCE="n", Algorithm=sha-256', {"realm": "r", "algorithm": "SHA-256"}),
        ('Digest realm = "r" ,nonce= "n" , qop = auth', {"nonce": "n", "qop": ("auth",)}),
        ('Digest\trealm="r",\tnonce="n",,, ,stale=TRUE', {"stale": True}),
        ('Digest realm="r", nonce="n", stale="true"', {"stale": True}),
        ('Digest realm="r", nonce="n", stale=false', {"stale": False}),
        ('Digest realm="with, comma", nonce="n"', {"realm": "with, comma"}),
        (r'Digest realm="esc \"q\" \\", nonce="n"', {"realm": 'esc "q" \\'}),
        ('Digest realm="r", nonce="n", algorithm="MD5-sess", qop="auth"', {"algorithm": "MD5-sess"}),
        ('Digest realm="r", nonce="n", qop=" Auth-Int , auth "', {"qop": ("auth", "auth-int")}),
        ('Digest realm="r", nonce="n", qop="auth,auth-conf"', {"qop": ("auth",)}),
        ('Digest realm="", nonce="n", domain="sip:a sip:b", charset=UTF-8', {"realm": ""}),
        ('Digest realm="r", nonce=unquoted/+=', {"nonce": "unquoted/+="}),
        ('  Digest   realm="r", nonce="n",  ', {"opaque": None, "algorithm_text": None}),
        ('Digest realm="r", nonce="n", opaque=""', {"opaque": ""}),
    ],
)
def test_parse_challenge_torture(value, expected):
    challenge = parse_challenge(value)
    for name, wanted in expected.items():
        assert getattr(challenge, name) == wanted, name


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "malformed"),
        ('Basic realm="r"', "unsupported authentication scheme Basic"),
        ('Digest realm="r", nonce="n", algorithm=AKAv1-MD5', "unsupported Digest algorithm AKAv1-MD5"),
        ('Digest realm="r", nonce="n", algorithm=SHA-1', "unsupported Digest algorithm"),
        ('Digest realm="r"', "without nonce"),
        ('Digest realm="r", nonce=""', "without nonce"),
        ('Digest nonce="n"', "without realm"),
        ('Digest realm="r", nonce="n", qop="auth-conf"', "no supported qop"),
        ('Digest realm="r", nonce="n", algorithm=MD5-sess', "without qop"),
        ('Digest realm="r, nonce="n"', "malformed"),
        ('Digest realm="r" nonce="n"', "malformed"),
        ('Digest realm="r", nonce="n", nonce="m"', "duplicate"),
        ("Digest realm", "malformed"),
    ],
)
def test_unusable_challenges_say_why(value, message):
    with pytest.raises(DigestError, match=message):
        parse_challenge(value)


def test_fuzz_realm_not_utf8_is_hashed_as_received():
    """Found by fuzzing: b'Digest realm="\\x80tlanta.example.com", nonce=...' in a 401 (decoded with
    surrogateescape) made authorization_value raise UnicodeEncodeError; the realm's bytes are hashed."""
    response = parse_message(
        b"SIP/2.0 401 Unauthorized\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\n"
        b"To: <sip:a@h>;tag=2\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\n"
        b'WWW-Authenticate: Digest realm="\x80tlanta.example.com", nonce="n"\r\n\r\n'
    )
    challenge = challenges_from(response)[0]
    value = authorization_value(challenge, MUFASA, "REGISTER", "sip:h", cnonce="c", nc=1)
    ha1 = _md5(b"Mufasa:\x80tlanta.example.com:Circle Of Life")
    ha2 = _md5("REGISTER:sip:h")
    assert f'response="{_md5(f"{ha1}:n:{ha2}")}"' in value


def test_fuzz_algorithm_with_crlf_is_not_echoed_into_the_header():
    """Found by fuzzing: 'Digest realm="r", nonce="n", algorithm="MD5\\r\\n"' put a CRLF in our answer."""
    challenge = parse_challenge('Digest realm="r", nonce="n", algorithm="MD5\r\n"')
    value = authorization_value(challenge, MUFASA, "REGISTER", "sip:h", cnonce="c", nc=1)
    assert challenge.algorithm_text == "MD5" and value.endswith("algorithm=MD5")


def test_digest_error_is_a_value_error():
    assert issubclass(DigestError, ValueError) and issubclass(AuthenticationRejected, DigestError)


# --- choosing among challenges ------------------------------------------------------------------


@pytest.mark.parametrize("order", [("MD5", "SHA-256"), ("SHA-256", "MD5")])
def test_sha256_is_preferred_over_md5_whatever_the_order(order):
    response = _challenge_response(*(f'Digest realm="r", nonce="{a}", algorithm={a}' for a in order))
    assert choose_challenge(challenges_from(response)).algorithm == "SHA-256"


def test_first_offered_wins_among_equal_algorithms():
    challenges = [parse_challenge(f'Digest realm="r", nonce="{n}"') for n in ("first", "second")]
    assert choose_challenge(challenges).nonce == "first"


def test_unusable_challenges_are_skipped_when_another_works():
    response = _challenge_response(
        'Digest realm="r", nonce="a", algorithm=AKAv1-MD5', 'Basic realm="r"', 'Digest realm="r", nonce="b"'
    )
    assert [c.nonce for c in challenges_from(response)] == ["b"]


def test_no_usable_challenge_lists_the_reasons():
    response = _challenge_response('Digest realm="r", nonce="a", algorithm=AKAv1-MD5')
    with pytest.raises(DigestError, match="no usable Digest challenge: unsupported Digest algorithm"):
        challenges_from(response)
    with pytest.raises(DigestError, match="no usable Digest challenge"):
        challenges_from(SipResponse(401, "Unauthorized"))


def test_one_challenge_per_realm_and_header():
    challenges = [
        parse_challenge('Digest realm="a", nonce="1"'),
        parse_challenge('Digest realm="b", nonce="2"'),
        parse_challenge('Digest realm="a", nonce="3", algorithm=SHA-256'),
        parse_challenge('Digest realm="a", nonce="4"', proxy=True),
    ]
    assert [(c.realm, c.nonce) for c in choose_per_realm(challenges)] == [("a", "3"), ("b", "2"), ("a", "4")]


def test_proxy_challenges_are_answered_in_proxy_authorization():
    assert parse_challenge('Digest realm="r", nonce="n"', proxy=True).header_name == "Proxy-Authorization"
    assert parse_challenge('Digest realm="r", nonce="n"').header_name == "Authorization"


# --- sessions: nonce reuse, stale, rejection ----------------------------------------------------


def _session(**kwargs) -> DigestSession:
    counter = iter(range(1, 100))
    return DigestSession(DigestCredentials("alice", "s3cret", **kwargs), cnonce=lambda: f"cn{next(counter)}")


def _answer(session: DigestSession, method: str = "REGISTER") -> dict[str, str | None]:
    [(name, value)] = session.authorization_headers(method, "sip:example.com")
    assert name == "Authorization"
    return _params(value)


def test_no_credentials_sent_before_any_challenge():
    assert _session().authorization_headers("REGISTER", "sip:example.com") == []


def test_nonce_is_reused_with_nc_counting_up_and_the_same_cnonce():
    session = _session()
    session.on_challenge(_challenge_response('Digest realm="r", nonce="A", qop="auth"'))
    answers = [_answer(session) for _ in range(3)]
    assert [a["nc"] for a in answers] == ["00000001", "00000002", "00000003"]
    assert {a["cnonce"] for a in answers} == {"cn1"}
    assert len({a["response"] for a in answers}) == 3


def test_a_new_nonce_resets_nc_and_cnonce():
    session = _session()
    session.on_challenge(_challenge_response('Digest realm="r", nonce="A", qop="auth"'))
    _answer(session)
    _answer(session)
    session.on_challenge(_challenge_response('Digest realm="r", nonce="B", qop="auth", stale=true'))
    answer = _answer(session)
    assert (answer["nonce"], answer["nc"], answer["cnonce"]) == ("B", "00000001", "cn2")


def test_stale_nonce_is_retried_even_right_after_a_fresh_answer():
    session = _session()
    session.on_challenge(_challenge_response('Digest realm="r", nonce="A", qop="auth"'))
    _answer(session)
    session.on_challenge(_challenge_response('Digest realm="r", nonce="B", qop="auth", stale=TRUE'))
    assert _answer(session)["nonce"] == "B"


def test_same_nonce_challenged_again_means_wrong_password():
    session = _session()
    session.on_challenge(_challenge_response('Digest realm="r", nonce="A", qop="auth"'))
    _answer(session)
    with pytest.raises(AuthenticationRejected, match="credentials rejected for realm 'r'") as info:
        session.on_challenge(_challenge_response('Digest realm="r", nonce="A", qop="auth"'))
    assert info.value.realm == "r"
    assert "s3cret" not in str(info.value)


def test_a_challenge_before_we_answered_is_no_rejection():
    session = _session()
    session.on_challenge(_challenge_response('Digest realm="r", nonce="A"'))
    session.on_challenge(_challenge_response('Digest realm="r", nonce="A"'))  # not answered yet
    assert _answer(session)["nonce"] == "A"


def test_new_nonce_right_after_a_fresh_answer_means_wrong_password():
    # Servers that hand out a new nonce with every 401 would otherwise be asked forever.
    session = _session()
    session.on_challenge(_challenge_response('Digest realm="r", nonce="A"'))
    _answer(session)
    with pytest.raises(AuthenticationRejected):
        session.on_challenge(_challenge_response('Digest realm="r", nonce="B"'))


def test_new_nonce_after_a_preemptive_reuse_is_retried():
    session = _session()
    session.on_challenge(_challenge_response('Digest realm="r", nonce="A", qop=auth'))
    _answer(session)  # nc 1: accepted by the server
    _answer(session)  # nc 2, pre-emptive: the server forgot the nonce
    session.on_challenge(_challenge_response('Digest realm="r", nonce="B", qop=auth'))
    assert _answer(session)["nc"] == "00000001"


@pytest.mark.parametrize(
    ("previous_nonce", "nc", "nonce", "stale", "rejected"),
    [
        (None, 0, "A", False, False),
        ("A", 0, "A", False, False),
        ("A", 1, "A", False, True),
        ("A", 3, "A", False, True),
        ("A", 1, "A", True, False),
        ("A", 1, "B", False, True),
        ("A", 2, "B", False, False),
        ("A", 2, "B", True, False),
    ],
)
def test_is_rejection(previous_nonce, nc, nonce, stale, rejected):
    previous = None if previous_nonce is None else NonceUse(DigestChallenge("r", previous_nonce), "c", nc)
    assert is_rejection(DigestChallenge("r", nonce, stale=stale), previous) is rejected


def test_proxy_and_registrar_challenges_are_both_answered():
    session = _session()
    session.on_challenge(_challenge_response('Digest realm="proxy", nonce="P"', status=407))
    session.on_challenge(_challenge_response('Digest realm="registrar", nonce="R"'))
    headers = session.authorization_headers("REGISTER", "sip:example.com")
    assert [(name, _params(value)["realm"]) for name, value in headers] == [
        ("Proxy-Authorization", "proxy"),
        ("Authorization", "registrar"),
    ]


def test_credentials_restricted_to_a_realm():
    session = _session(realm="mine")
    response = _challenge_response('Digest realm="other", nonce="X"', 'Digest realm="mine", nonce="M"')
    session.on_challenge(response)
    assert _answer(session)["realm"] == "mine"
    with pytest.raises(DigestError, match="no challenge for realm 'mine'"):
        _session(realm="mine").on_challenge(_challenge_response('Digest realm="other", nonce="X"'))


def test_forget_drops_the_nonces():
    session = _session()
    session.on_challenge(_challenge_response('Digest realm="r", nonce="A"'))
    session.forget()
    assert session.authorization_headers("REGISTER", "sip:h") == []


def test_no_secret_in_repr():
    session = _session()
    session.on_challenge(_challenge_response('Digest realm="r", nonce="A", qop=auth'))
    value = session.authorization_headers("REGISTER", "sip:h")[0][1]
    ha1 = _md5("alice:r:s3cret")
    for text in (repr(session.credentials), str(session.credentials), repr(session), value):
        assert "s3cret" not in text and ha1 not in text
    assert "alice" in repr(session.credentials)
