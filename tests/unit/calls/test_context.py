"""What the agent is told about its call, and which SIP headers may cross (calls/context.py)."""

import pytest

from sipbridge.calls.context import (
    DEFAULT_FORWARD,
    MAX_HEADERS,
    HeaderError,
    call_event,
    forwarded_headers,
    hangup_reason,
    outgoing_headers,
)

INVITE = [
    ("Via", "SIP/2.0/UDP 10.0.0.1"),
    ("X-Customer-Id", "C-1"),
    ("x-crm-ref", "r\x00ef"),
    ("User-to-User", "3132;encoding=hex"),
    ("Authorization", 'Digest username="pbx"'),
    ("Proxy-Authorization", "Digest x"),
    ("X-Auth-Token", "t"),
    ("X-Api-Secret", "s"),
    ("X-", "empty name after the prefix"),
    ("X-Customer-Id", "C-2"),
]


def test_the_default_rules_forward_x_headers_and_uui_never_credentials():
    assert forwarded_headers(INVITE, DEFAULT_FORWARD) == {
        "X-Customer-Id": "C-1, C-2",
        "x-crm-ref": "ref",
        "User-to-User": "3132;encoding=hex",
    }


def test_rules_name_headers_or_prefixes_case_insensitively():
    assert forwarded_headers(INVITE, ("user-to-user",)) == {"User-to-User": "3132;encoding=hex"}
    assert forwarded_headers(INVITE, ("X-CRM-",)) == {"x-crm-ref": "ref"}
    assert forwarded_headers(INVITE, ("Authorization", "Via")) == {"Via": "SIP/2.0/UDP 10.0.0.1"}
    assert forwarded_headers(INVITE, ()) == {}


def test_values_and_counts_are_capped():
    many = [(f"X-H{i}", "v" * 1000) for i in range(MAX_HEADERS + 5)] + [("User-to-User", "u" * 2000)]
    out = forwarded_headers(many, DEFAULT_FORWARD)
    assert len(out) == MAX_HEADERS and all(len(v) == 256 for v in out.values())
    assert len(forwarded_headers([("User-to-User", "u" * 2000)], DEFAULT_FORWARD)["User-to-User"]) == 1024


@pytest.mark.parametrize(
    ("headers", "problem"),
    [
        ({"Route": "<sip:x>"}, "only X- headers"),
        ({"X-Ok": "a\r\nVia: evil"}, "without CR, LF"),
        ({"X Bad": "v"}, "not a SIP header name"),
        ({"X-Session-Token": "v"}, "credentials"),
        ({"X-Long": "v" * 300}, "up to 256"),
        ({"X-A": 5}, "must be text"),
        ({f"X-{i}": "v" for i in range(17)}, "at most 16"),
    ],
)
def test_post_calls_headers_are_refused_with_the_reason(headers, problem):
    with pytest.raises(HeaderError, match=problem):
        outgoing_headers(headers)


def test_post_calls_headers_that_pass():
    assert outgoing_headers({"X-Campaign": " spring ", "User-to-User": "31;encoding=hex"}) == [
        ("X-Campaign", "spring"),
        ("User-to-User", "31;encoding=hex"),
    ]


def test_the_context_event_and_the_hangup_reason():
    event = call_event("c1", "inbound", "+1555", "100", "trunk", {"X-A": "1"}, {"k": "v"})
    assert event == {
        "type": "call",
        "id": "c1",
        "direction": "inbound",
        "from": "+1555",
        "to": "100",
        "provider": "trunk",
        "headers": {"X-A": "1"},
        "metadata": {"k": "v"},
    }
    assert hangup_reason({"type": "hangup", "reason": "done\r\nVia: x"}) == "agent hung up: done  Via: x"
    assert hangup_reason({"type": "hangup"}) == "agent hung up"
    assert hangup_reason({"type": "hangup", "reason": 7}) == "agent hung up"
    assert len(hangup_reason({"type": "hangup", "reason": "r" * 999})) == len("agent hung up: ") + 200
