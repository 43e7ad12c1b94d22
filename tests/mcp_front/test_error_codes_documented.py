"""Every code a tool error can carry is documented in docs/errors.md (docs/mcp.md says it lists
them all; a newcomer found four missing, 2026-12-02). The codes are read from the source: every
`tool_error(…, "<code>")` call in keybrake.mcp, so a new one cannot be left out."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from keybrake.core.errors import STATUS

pytestmark = pytest.mark.store_free

ROOT = Path(__file__).resolve().parents[2]


def _tool_error_codes() -> set[str]:
    codes: set[str] = set()
    for source in (ROOT / "src/keybrake/mcp").glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "tool_error":
                code = node.args[1] if len(node.args) > 1 else None
                assert isinstance(code, ast.Constant), (
                    f"{source.name}:{node.lineno}: a tool_error code must be a literal"
                )
                codes.add(str(code.value))
    return codes


def test_every_tool_error_code_is_documented() -> None:
    codes = _tool_error_codes()
    assert {"arguments_invalid", "tool_unknown", "keybrake_unreachable", "connection_lost"} <= codes  # found at all
    text = (ROOT / "docs/errors.md").read_text()
    table = text[text.index("## Answers of the MCP front") :]
    for code in codes:
        assert f"## {code}\n" in text or f"| `{code}` |" in table, f"{code} is not in docs/errors.md"
        assert code in STATUS or f"| `{code}` |" in table
