"""Fuzz target: the structured SIP header parsers (URI, name-addr, Via, CSeq, parameters, lists).

Own error: ``SipParseError`` for every one of them (``parse_uri`` answers 416 for an unsupported
scheme, 400 otherwise). A value that parses serialises (``str``) to text that parses again.
"""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st
from tests.fuzz.corpus import checked, header_text

from sipbridge.sip.errors import SipParseError
from sipbridge.sip.headers import (
    parse_cseq,
    parse_name_addr,
    parse_params,
    parse_uint,
    parse_via,
    split_header_values,
)
from sipbridge.sip.uri import parse_uri

TEXT = st.one_of(header_text(), st.text(max_size=64))


@given(TEXT, st.booleans())
@example("sip:[::1", False)
@example("sip:a@b:99999999999999999999999", False)
def test_parse_uri(text, any_scheme):
    uri = checked(lambda: parse_uri(text, any_scheme=any_scheme), SipParseError)
    if uri is not None:
        assert parse_uri(str(uri), any_scheme=any_scheme) == uri
        assert uri.host_port[0] is not None


@given(TEXT)
@example('"unterminated <sip:a@b>')
def test_parse_name_addr(text):
    name_addr = checked(lambda: parse_name_addr(text), SipParseError)
    if name_addr is not None:
        assert parse_name_addr(str(name_addr)).uri == name_addr.uri
        assert name_addr.tag is None or isinstance(name_addr.tag, str)


@given(st.one_of(header_text(["SIP/2.0/UDP ", "SIP/2.0/TLS "] * 8 + ["x"]), TEXT))
def test_parse_via(text):
    via = checked(lambda: parse_via(text), SipParseError)
    if via is not None:
        assert parse_via(str(via)) == via


@given(TEXT)
@example("a;" + '\\"' * 20_000)  # quadratic once: every later '"' rescanned an unterminated quote
def test_parse_params(text):
    checked(lambda: parse_params(text), SipParseError)


@given(TEXT, st.sampled_from([255, 2**31 - 1, 2**32 - 1]))
def test_parse_cseq_and_uint(text, limit):
    checked(lambda: parse_cseq(text), SipParseError)
    value = checked(lambda: parse_uint(text, limit, "x"), SipParseError)
    assert value is None or 0 <= value <= limit


@given(TEXT)
@example('\\"' * 20_000)  # 1.5 s once (a quoted string left open, rescanned from every '"')
def test_split_header_values(text):
    items = checked(lambda: split_header_values(text))
    assert items is not None and all(item and item == item.strip() for item in items)
