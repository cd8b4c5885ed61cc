"""The documentation as a reader meets it: a short README, links that lead somewhere, and the row
of the measurements page that ``python -m bench.latency`` rewrites where the benchmark looks for it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
MEASUREMENTS = DOCS / "measurements.md"
PAGES = sorted([README, ROOT / "CHANGELOG.md", ROOT / "bench" / "README.md", *DOCS.glob("*.md")])

README_MAX_BYTES = 12 * 1024
LATENCY_MARKER = "<!-- latency-row: bench/latency/budget.py rewrites the next table row -->"
LATENCY_HEADER = "| what | figure | command |"
LATENCY_ROW_START = "| One-way delay the bridge adds"

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def _prose(text: str) -> str:
    """The text without fenced code blocks and code spans: a link or heading there is not one."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = text.replace("`", "").lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for heading in HEADING.findall(FENCE.sub("", page.read_text())):
        slug = _slug(heading)
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        found.add(slug if n == 0 else f"{slug}-{n}")
    return found


def relative_links(page: Path) -> list[str]:
    targets = LINK.findall(_prose(page.read_text()))
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]  # http:, mailto:, ...


def test_readme_is_at_most_12_kb() -> None:
    size = len(README.read_bytes())
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes: move detail into docs/"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no file {file}")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no heading with anchor #{anchor} in {file.name}")
    assert broken == []


def test_links_are_checked() -> None:
    """The link check sees links at all (a pattern that matched nothing would pass every page)."""
    assert "docs/measurements.md" in relative_links(README)
    assert "measurements.md#hostile-traffic" in relative_links(DOCS / "security.md")


def test_the_latency_row_is_where_the_benchmark_rewrites_it() -> None:
    """bench/latency/budget.py replaces the row that starts like the latency row, or inserts one under the
    first ``| what | figure | command |`` header: both must be the table under the marker."""
    lines = MEASUREMENTS.read_text().splitlines()
    at = lines.index(LATENCY_MARKER)
    assert lines[at + 1] == LATENCY_HEADER
    assert lines.index(LATENCY_HEADER) == at + 1
    assert lines[at + 2].startswith("|---")
    assert lines[at + 3].startswith(LATENCY_ROW_START)
    assert [line for line in lines if line.startswith(LATENCY_ROW_START)] == [lines[at + 3]]


def test_readme_holds_no_measured_figures() -> None:
    """The figures live in docs/measurements.md; the benchmark writes there, never into README."""
    assert LATENCY_ROW_START not in README.read_text()
    assert LATENCY_MARKER not in README.read_text()
