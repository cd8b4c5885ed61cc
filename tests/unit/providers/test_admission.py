"""Inbound admission: trunks by address, PBXs by digest, refusals that say no more than they must."""

from __future__ import annotations

from dataclasses import dataclass

from sipbridge.providers.admission import InboundAdmission
from sipbridge.providers.provider import Providers
from sipbridge.settings.provider import ProviderConfig
from sipbridge.settings.values import HostPort
from sipbridge.sip.digest import DigestCredentials, authorization_value, parse_challenge
from sipbridge.sip.message import SipRequest, parse_message


@dataclass
class Peer:
    remote: tuple[str, int]
    transport: str = "UDP"
    reliable: bool = False
    closed: bool = False

    def send(self, data: bytes) -> None:
        raise AssertionError("admission sends nothing")


URI = "sip:agent@127.0.0.1"


def request(method: str = "INVITE", authorization: str | None = None, call_id: str = "c") -> SipRequest:
    auth = f"Authorization: {authorization}\r\n" if authorization else ""
    message = parse_message(
        (
            f"{method} {URI} SIP/2.0\r\nVia: SIP/2.0/UDP 10.1.1.1;branch=z9hG4bK{call_id}\r\n"
            f"From: <sip:1001@pbx>;tag=1\r\nTo: <sip:agent@127.0.0.1>\r\nCall-ID: {call_id}\r\n"
            f"CSeq: 1 {method}\r\n{auth}Content-Length: 0\r\n\r\n"
        ).encode()
    )
    assert isinstance(message, SipRequest)
    return message


def provider(name: str, **fields: object) -> ProviderConfig:
    return ProviderConfig(name=name, type="generic", address=HostPort("127.0.0.1", 5070), **fields)  # type: ignore[arg-type]


def admission(*configs: ProviderConfig, unknown: str = "reject") -> InboundAdmission:
    return InboundAdmission(Providers(configs), "sipbridge", unknown)


TRUNK = provider("trunk", inbound_cidrs=("10.0.0.0/8",))
PBX = provider("pbx", inbound_username="asterisk", inbound_password="pw-123")


def test_no_restriction_admits_everyone():
    gate = admission(provider("plain"))
    assert gate.screen(request(), Peer(("203.0.113.9", 5060))).admitted_as is None
    assert not gate.screen(request(), Peer(("203.0.113.9", 5060))).drop


def test_a_trunk_address_is_admitted_as_that_trunk_and_trusted():
    gate = admission(TRUNK)
    assert gate.screen(request(), Peer(("10.2.3.4", 5060))).admitted_as == "trunk"
    assert gate.trusted("10.2.3.4") and not gate.trusted("192.0.2.1")


def test_an_unknown_source_gets_403_or_nothing():
    refused = admission(TRUNK).screen(request(), Peer(("192.0.2.1", 5060)))
    assert refused.status == 403 and "matches no trunk" in (refused.warning or "")
    dropping = admission(TRUNK, unknown="drop")
    assert dropping.screen(request(), Peer(("192.0.2.1", 5060))).drop
    assert dropping.screen(request("OPTIONS"), Peer(("192.0.2.1", 5060))).drop
    assert not admission(TRUNK).screen(request("OPTIONS"), Peer(("192.0.2.1", 5060))).drop


def test_a_pbx_is_challenged_then_admitted_by_its_credentials():
    gate = admission(TRUNK, PBX)
    challenge = gate.screen(request(), Peer(("192.0.2.7", 5060)))
    assert challenge.status == 401 and [name for name, _ in challenge.headers] == ["WWW-Authenticate"]
    offered = parse_challenge(challenge.headers[0][1])
    credentials = DigestCredentials("asterisk", "pw-123")
    value = authorization_value(offered, credentials, "INVITE", URI, cnonce="a", nc=1)
    admitted = gate.screen(request(authorization=value), Peer(("192.0.2.7", 5060)))
    assert admitted.admitted_as == "pbx" and admitted.status is None
    assert (gate.counts.challenged, gate.counts.by_digest) == (1, 1)


def test_wrong_credentials_get_a_403_that_does_not_say_which_part_was_wrong():
    gate = admission(PBX)
    offered = parse_challenge(gate.screen(request(), Peer(("192.0.2.7", 5060))).headers[0][1])
    for user, password in (("asterisk", "nope"), ("nobody", "pw-123")):
        value = authorization_value(
            offered, DigestCredentials(user, password), "INVITE", URI, cnonce="a", nc=1
        )
        refused = gate.screen(request(authorization=value), Peer(("192.0.2.7", 5060)))
        assert refused.status == 403 and refused.warning == "authentication failed"


def test_a_trunk_address_needs_no_credentials_even_when_digest_is_on():
    gate = admission(TRUNK, PBX)
    assert gate.screen(request(), Peer(("10.9.9.9", 5060))).admitted_as == "trunk"


def test_a_pbx_answer_replayed_from_another_address_or_call_is_not_admitted():
    gate = admission(PBX)
    offered = parse_challenge(gate.screen(request(), Peer(("192.0.2.7", 5060))).headers[0][1])
    credentials = DigestCredentials("asterisk", "pw-123")
    value = authorization_value(offered, credentials, "INVITE", URI, cnonce="a", nc=1)
    assert gate.screen(request(authorization=value), Peer(("192.0.2.7", 5060))).admitted_as == "pbx"
    for source, call_id in (("203.0.113.66", "c"), ("203.0.113.66", "other"), ("192.0.2.7", "other")):
        replayed = gate.screen(request(authorization=value, call_id=call_id), Peer((source, 5060)))
        assert replayed.admitted_as is None and replayed.status == 401
        assert "stale=true" in replayed.headers[0][1]
    assert gate.counts.by_digest == 1
    following = authorization_value(offered, credentials, "INVITE", URI, cnonce="a", nc=2)
    next_call = gate.screen(request(authorization=following, call_id="next"), Peer(("192.0.2.7", 5062)))
    assert next_call.admitted_as == "pbx"


def test_a_challenge_names_a_nonce_only_its_source_can_use():
    gate = admission(PBX)
    offered = parse_challenge(gate.screen(request(), Peer(("203.0.113.66", 5060))).headers[0][1])
    credentials = DigestCredentials("asterisk", "pw-123")
    value = authorization_value(offered, credentials, "INVITE", URI, cnonce="a", nc=1)
    elsewhere = gate.screen(request(authorization=value), Peer(("192.0.2.7", 5060)))
    assert elsewhere.status == 401 and elsewhere.admitted_as is None
