"""Fuzz target: the SIP INFO DTMF body parsers (``application/dtmf-relay``, ``application/dtmf``).

Own error: ``DtmfInfoError`` (a ``SipParseError``: 415 for another content type, 400 for a bad
body). A body that parses gives a DTMF digit, or None for a hook flash.
"""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st
from tests.fuzz.corpus import checked, fuzz_bytes, header_text

from sipbridge.sip.dtmf_info import DIGITS, DtmfInfoError, parse_dtmf_info

BODIES = [
    b"Signal=5\r\nDuration=160\r\n",
    b"signal = #\nduration= 250\n\n",
    b"Signal=16\r\n",
    b"Signal=11\r\nDuration=999999999\r\n",
    b"5",
    b"!\r\n",
]
CONTENT_TYPES = ["application/dtmf-relay", "application/dtmf", "Application/DTMF-Relay; charset=utf-8"]


@given(st.one_of(st.sampled_from(CONTENT_TYPES), header_text()), fuzz_bytes(BODIES) | st.text(max_size=40))
@example("application/dtmf", "\u0661\u0660")  # Arabic-Indic digits: isdigit() but not ASCII
@example("application/dtmf-relay", b"Signal=\xd9\xa1\xd9\xa0\r\n")
def test_parse_dtmf_info(content_type, body):
    info = checked(lambda: parse_dtmf_info(content_type, body), DtmfInfoError)
    if info is not None:
        assert info.digit in DIGITS and len(info.digit) == 1
        assert info.duration_ms is None or 0 <= info.duration_ms <= 999_999_999
