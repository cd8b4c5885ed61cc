"""Fuzz target: the SIP stream framer (``StreamFramer``, TCP/TLS, RFC 3261 §18.3).

Own error: ``FramingError`` (then the connection is closed, and every later ``feed`` raises it
again). Valid messages fed in any chunking come out whole and in order, with the keep-alive pings
between them; mutated streams frame or raise ``FramingError``, nothing else, and never lose bytes:
what was framed plus what is buffered is what was fed, less the CR/LF skipped between messages.
"""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st
from tests.fuzz.corpus import SIP_SAMPLES, fuzz_bytes, no_hang, sip_corpus

from sipbridge.sip.framing import FramingError, KeepAlive, StreamFramer

CORPUS = sip_corpus()
STREAM_SEEDS = [b"\r\n\r\n".join(SIP_SAMPLES), SIP_SAMPLES[1] + b"\r\n\r\n\r\n" + SIP_SAMPLES[0], *CORPUS]


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def feed_all(framer: StreamFramer, chunks: list[bytes]) -> list[bytes | KeepAlive]:
    framed: list[bytes | KeepAlive] = []
    with no_hang():
        for chunk in chunks:
            try:
                framed += framer.feed(chunk)
            except FramingError as error:
                assert 400 <= error.status < 600 and error.reason
                framed += error.framed
                try:
                    framer.feed(b"")
                except FramingError:
                    return framed
                raise AssertionError("a framer that failed must keep failing") from None
    return framed


@given(fuzz_bytes(STREAM_SEEDS, max_random=1024), st.lists(st.integers(0, 1 << 16), max_size=8))
@example(b"INVITE sip:a@b SIP/2.0\r\nl: 00000000000000000000000000001\r\n\r\nX", [])
def test_stream_framer(data, cuts):
    framer = StreamFramer(max_head=4096, max_body=4096)
    framed = feed_all(framer, split(data, cuts))
    messages = b"".join(item for item in framed if isinstance(item, bytes))
    assert len(messages) + framer.buffered <= len(data)
    assert messages.replace(b"\r", b"").replace(b"\n", b"") in data.replace(b"\r", b"").replace(b"\n", b"")


@given(st.lists(st.sampled_from(SIP_SAMPLES + [b"\r\n\r\n"]), max_size=6), st.lists(st.integers(0, 1 << 16)))
def test_valid_stream_any_chunking(items, cuts):
    framer = StreamFramer()
    framed = feed_all(framer, split(b"".join(items), cuts))
    expected = [KeepAlive.PING if item == b"\r\n\r\n" else item for item in items]
    assert framed == expected and framer.buffered == 0
