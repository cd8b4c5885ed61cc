"""Fuzz target: the RFC 4733 telephone-event parser (``parse_events``, ``parse_event``) and the receiver.

Own error: ``DtmfError`` for the parse functions. ``DtmfReceiver.receive`` never raises on any
payload: a malformed one is counted in ``invalid``; every digit it reports is a DTMF digit.
"""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st
from tests.fuzz.corpus import checked, fuzz_bytes, no_hang

from sipbridge.rtp.dtmf import DIGITS, DtmfError, DtmfReceiver, TelephoneEvent, parse_event, parse_events

DTMF_SAMPLES = [
    TelephoneEvent(5, False, 10, 160).to_bytes(),
    TelephoneEvent(11, True, 10, 1280).to_bytes(),
    TelephoneEvent(16, True, 63, 65535).to_bytes(),
    TelephoneEvent(1, True, 10, 800).to_bytes() + TelephoneEvent(2, False, 10, 160).to_bytes(),
]


@given(fuzz_bytes(DTMF_SAMPLES, max_random=40))
@example(b"")
@example(b"\x05\x8a\x03")
def test_parse_events(data):
    events = checked(lambda: parse_events(data), DtmfError)
    first = checked(lambda: parse_event(data), DtmfError)
    if events is None:
        assert first is None
        return
    assert events[0] == first
    # The R bit (0x40 of the second octet) is reserved: ignored on receipt, sent as 0.
    unreserved = bytes(octet & ~0x40 if index % 4 == 1 else octet for index, octet in enumerate(data))
    assert b"".join(event.to_bytes() for event in events) == unreserved


PACKET = st.tuples(
    st.integers(0, 2**32 - 1),  # timestamp
    st.booleans(),  # marker
    st.integers(0, 2**16 - 1),  # sequence
    fuzz_bytes(DTMF_SAMPLES, max_random=16),
    st.one_of(st.none(), st.floats(0, 1e6, allow_nan=False)),  # now
    st.one_of(st.none(), st.integers(0, 3)),  # ssrc
)


@given(st.lists(PACKET, max_size=30))
def test_receiver_never_raises(packets):
    receiver = DtmfReceiver()
    with no_hang():
        for timestamp, marker, sequence, payload, now, ssrc in packets:
            for digit in receiver.receive(timestamp, marker, sequence, payload, now, ssrc=ssrc):
                assert digit.digit in DIGITS and digit.duration_ms >= 0
            if now is not None:
                receiver.poll(now + 1)
