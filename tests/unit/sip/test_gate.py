"""The request gate: per-source token buckets and scanner signatures, fed bytes and time."""

from __future__ import annotations

import pytest

from sipbridge.sip.gate import (
    DEFAULT_SCANNER_SIGNATURES,
    RequestGate,
    SourceLimiter,
    Verdict,
    scanner_pattern,
)

OPTIONS = (
    b"OPTIONS sip:bridge@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKx\r\n"
    b"From: <sip:100@10.0.0.9>;tag=1\r\nTo: <sip:100@127.0.0.1>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def verdicts(limiter: SourceLimiter, source: str, times: list[float]) -> list[Verdict]:
    return [limiter.check(source, t) for t in times]


def test_a_burst_is_allowed_then_one_503_then_silence() -> None:
    limiter = SourceLimiter(rate=1, burst=3, retry_after=5)
    got = verdicts(limiter, "10.0.0.9", [0.0] * 6)
    assert got == [Verdict.HANDLE] * 3 + [Verdict.REJECT] + [Verdict.DROP] * 2


def test_tokens_come_back_at_the_rate_and_no_more_than_the_burst() -> None:
    limiter = SourceLimiter(rate=2, burst=2)
    assert verdicts(limiter, "a", [0.0, 0.0, 0.0]) == [Verdict.HANDLE, Verdict.HANDLE, Verdict.REJECT]
    assert limiter.check("a", 0.5) is Verdict.HANDLE  # one token back after 0.5 s at 2/s
    assert limiter.check("a", 0.5) is Verdict.DROP
    assert verdicts(limiter, "a", [100.0] * 3) == [Verdict.HANDLE, Verdict.HANDLE, Verdict.REJECT]


def test_a_source_over_its_limit_is_told_again_after_retry_after() -> None:
    limiter = SourceLimiter(rate=0.001, burst=1, retry_after=5)
    got = verdicts(limiter, "a", [0, 1, 2, 4.9, 5.0, 6])
    assert got == [Verdict.HANDLE, Verdict.REJECT] + [Verdict.DROP] * 3 + [Verdict.REJECT]


def test_sources_are_limited_apart() -> None:
    limiter = SourceLimiter(rate=1, burst=1)
    assert limiter.check("a", 0) is Verdict.HANDLE
    assert limiter.check("a", 0) is Verdict.REJECT
    assert limiter.check("b", 0) is Verdict.HANDLE


def test_the_table_of_sources_is_bounded_and_forgets_the_least_recent() -> None:
    limiter = SourceLimiter(rate=1, burst=1, max_sources=100)
    for i in range(10_000):  # a flood from ever new (spoofed) addresses
        limiter.check(f"10.{i // 256}.{i % 256}.1", 0)
    assert len(limiter) == 100
    limiter.check("192.0.2.1", 0)
    assert limiter.check("192.0.2.1", 0) is Verdict.REJECT  # a recent source is still remembered


def test_limiter_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        SourceLimiter(rate=0, burst=1)
    with pytest.raises(ValueError):
        SourceLimiter(rate=1, burst=0)


@pytest.mark.parametrize(
    "header",
    [
        b"User-Agent: friendly-scanner",
        b"user-agent:   SIPVicious 0.3",
        b"User-Agent: sipcli/v1.8",
        b'From: "sipvicious" <sip:100@1.1.1.1>;tag=1',
        b"f: sipvicious<sip:100@1.1.1.1>;tag=1",
        b"User-Agent: VaxSIPUserAgent/3.1",
    ],
)
def test_scanner_signatures_are_found_in_user_agent_or_from(header: bytes) -> None:
    pattern = scanner_pattern(DEFAULT_SCANNER_SIGNATURES)
    assert pattern is not None
    assert pattern.search(OPTIONS.replace(b"Content-Length", header + b"\r\nContent-Length")) is not None


def test_signatures_elsewhere_in_the_message_do_not_count() -> None:
    pattern = scanner_pattern(DEFAULT_SCANNER_SIGNATURES)
    assert pattern is not None
    message = OPTIONS.replace(b"Call-ID: c1", b"Call-ID: friendly-scanner-smap") + b"v=0 sipvicious"
    assert pattern.search(message) is None
    assert (
        pattern.search(OPTIONS.replace(b"Content-Length", b"User-Agent: Linphone\r\nContent-Length")) is None
    )


def test_no_signatures_no_pattern() -> None:
    assert scanner_pattern(["", "  "]) is None


def test_gate_limits_everything_a_source_sends_responses_acks_and_garbage_too() -> None:
    """An ACK or a response from a stranger costs a parse like a request: a flood of them counts."""
    for first in (OPTIONS, b"SIP/2.0 200 OK\r\n\r\n", b"ACK sip:x SIP/2.0\r\n\r\n", b"\x16\x03garbage"):
        gate = RequestGate(SourceLimiter(rate=1, burst=1), None)
        assert gate.check(first, "a", 0) is Verdict.HANDLE
        assert gate.check(first, "a", 0) is Verdict.REJECT
        assert gate.check(OPTIONS, "a", 0) is Verdict.DROP
        assert (gate.counts.rejected, gate.counts.dropped) == (1, 1)


def test_a_folded_user_agent_is_still_a_scanner() -> None:
    """RFC 3261 §7.3.1: a header value may continue on the next line after whitespace."""
    gate = RequestGate(None, scanner_pattern(DEFAULT_SCANNER_SIGNATURES))
    for fold in (b"\r\n ", b"\r\n\t", b"\n  "):
        folded = OPTIONS.replace(
            b"Content-Length", b"User-Agent:" + fold + b"friendly-scanner\r\nContent-Length"
        )
        assert gate.check(folded, "a", 0) is Verdict.DROP
    body_only = OPTIONS.rstrip(b"\r\n") + b"\r\n\r\nUser-Agent: friendly-scanner"
    assert gate.check(body_only, "a", 0) is Verdict.HANDLE  # a body is not a header


def test_trusted_sources_are_never_limited_and_asked_about_once_in_a_while() -> None:
    asked: list[str] = []

    def trusted(ip: str) -> bool:
        asked.append(ip)
        return ip == "trunk"

    gate = RequestGate(SourceLimiter(rate=1, burst=1), None, trusted)
    assert [gate.check(OPTIONS, "trunk", 0) for _ in range(100)] == [Verdict.HANDLE] * 100
    assert asked == ["trunk"]  # only once over its limit, and then remembered
    gate.check(OPTIONS, "trunk", 10.0)
    gate.check(OPTIONS, "trunk", 10.0)  # over its limit again, and what was remembered is old
    assert asked == ["trunk", "trunk"]  # remembered for a few seconds only (a trunk may be removed)
    assert [gate.check(OPTIONS, "other", 0) for _ in range(3)] == [
        Verdict.HANDLE,
        Verdict.REJECT,
        Verdict.DROP,
    ]


def test_scanners_get_the_configured_verdict_and_are_counted() -> None:
    scanner = OPTIONS.replace(b"Content-Length", b"User-Agent: friendly-scanner\r\nContent-Length")
    dropping = RequestGate(None, scanner_pattern(["friendly-scanner"]))
    assert dropping.check(scanner, "a", 0) is Verdict.DROP
    assert dropping.check(OPTIONS, "a", 0) is Verdict.HANDLE
    forbidding = RequestGate(None, scanner_pattern(["friendly-scanner"]), scanner_verdict=Verdict.FORBID)
    assert forbidding.check(scanner, "a", 0) is Verdict.FORBID
    assert dropping.counts.scanners == forbidding.counts.scanners == 1
