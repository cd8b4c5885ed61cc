"""The test tree itself: what every test module must (not) do."""

from __future__ import annotations

import ast
import re
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def _skips_on_missing_import(tree: ast.AST) -> bool:
    """A ``pytest.skip`` in an ``except ImportError`` (or ``ModuleNotFoundError``) handler."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.ExceptHandler) or node.type is None:
            continue
        names = {n.id for n in ast.walk(node.type) if isinstance(n, ast.Name)}
        if names & {"ImportError", "ModuleNotFoundError"} and "pytest.skip" in ast.unparse(node):
            return True
    return False


def test_no_test_skips_when_our_own_code_is_missing() -> None:
    """A module of ours that a test needs and cannot import is a failure, not a skip."""
    offenders = []
    for path in sorted(TESTS.rglob("*.py")):
        text = path.read_text()
        tree = ast.parse(text)
        if _skips_on_missing_import(tree) or re.search(r"importorskip\(\s*[\"']sipbridge", text):
            offenders.append(str(path.relative_to(TESTS)))
    assert offenders == []
