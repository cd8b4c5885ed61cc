"""Every regular expression of sipbridge runs in time linear in its input.

Text from the network reaches them all (a SIP message, an SDP, a digest header, a log line with a
caller's user name), and Python's engine backtracks: one quadratic pattern let three datagrams stop
the event loop for seconds. Each module-level pattern is run over 64 KB of adversarial text built
from the pieces such patterns trip on. A quadratic pattern takes seconds on that (the log redaction
took 4.8 s on 60 KB of "sip:"); a linear one milliseconds: the bound below is far from both.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import time
from pathlib import Path

import pytest

import sipbridge
from sipbridge.sip.gate import DEFAULT_SCANNER_SIGNATURES, scanner_pattern

SIZE = 64 * 1024
BOUND_S = 1.0
PIECES = (
    "sip:", "sips:a", "tel:1", "a", "1", " ", "\t", ":", "=", '"', "'", "\\", '\\"', "<", ">", "@", "\r\n",
    "\r\n ", "a=", ";", ",", "%", "[", "a://b:", "'authorization': '", "authorization: ", "password=",
    "bearer ", "SIP/2.0/UDP ", "a.b", "-", "/", "0.", "+1", "token", "Digest a=", 'a="',
)  # fmt: skip


SOURCES = "\n".join(path.read_text() for path in Path(sipbridge.__file__).parent.rglob("*.py"))
SCANNING = {"search", "finditer", "findall", "sub", "subn", "split"}


def _scans(name: str) -> bool:
    """Whether the pattern called ``name`` is run from every position of a text (search, sub, ...), or
    only anchored (match, fullmatch: linear for these patterns, which consume as they go). Used
    through another name (a tuple of patterns), it counts as scanning."""
    methods = set(re.findall(rf"\b{re.escape(name)}\.(\w+)\(", SOURCES))
    return not methods or bool(methods & SCANNING)


def _patterns() -> list[tuple[str, re.Pattern]]:
    found: dict[int, tuple[str, re.Pattern]] = {}
    for info in pkgutil.walk_packages(sipbridge.__path__, "sipbridge."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            candidates = [value]
            if isinstance(value, tuple | list):
                candidates = [v for item in value for v in (item if isinstance(item, tuple) else (item,))]
            for candidate in candidates:
                if isinstance(candidate, re.Pattern) and candidate.__module__ != "sipbridge":
                    found.setdefault(id(candidate), (f"{info.name}.{name}", candidate))
    scanners = scanner_pattern(DEFAULT_SCANNER_SIGNATURES)
    assert scanners is not None
    found[id(scanners)] = ("sipbridge.sip.gate.scanner_pattern(DEFAULT_SCANNER_SIGNATURES)", scanners)
    return sorted(found.values(), key=lambda item: item[0])


PATTERNS = _patterns()


def test_the_patterns_are_found() -> None:
    names = {name for name, _ in PATTERNS}
    assert {"sipbridge.logs._SIP_USER", "sipbridge.sip.headers._VIA", "sipbridge.sip.framing._FOLD"} <= names


@pytest.mark.parametrize(("name", "pattern"), PATTERNS, ids=[name for name, _ in PATTERNS])
def test_pattern_runs_in_linear_time_on_adversarial_input(name: str, pattern: re.Pattern) -> None:
    worst, worst_piece = 0.0, ""
    scans = _scans(name.rsplit(".", 1)[-1])
    for piece in PIECES:
        text = piece * (SIZE // len(piece))
        subject = text.encode() if isinstance(pattern.pattern, bytes) else text
        started = time.perf_counter()
        if scans:
            for _ in pattern.finditer(subject):
                pass
        pattern.match(subject)
        pattern.fullmatch(subject)
        elapsed = time.perf_counter() - started
        if elapsed > worst:
            worst, worst_piece = elapsed, piece
    assert worst < BOUND_S, f"{name} took {worst:.2f} s on {worst_piece!r} repeated to {SIZE} bytes"
