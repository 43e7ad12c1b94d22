"""The hot path's decisions stay pure: no coroutine, no clock, no I/O module imported directly.

(import-linter's "Pure logic does no I/O" contract covers core/ and vendors/; these modules live
in proxy/ beside the shell, so their own imports are checked here.)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import keybrake.proxy

PURE = ("decide.py", "outcome.py", "decisions.py")
IO = {"aiohttp", "asyncio", "httpx", "psycopg", "socket", "sqlalchemy", "sqlite3", "time", "datetime", "random"}
SHELL = {"keybrake.deadline", "keybrake.crypto", "keybrake.store.sql_base", "keybrake.store.open"}
SHELL_PROXY = {"pipeline", "forward", "reservation", "keys", "facts", "record", "settler", "snapshots"}

pytestmark = pytest.mark.store_free


@pytest.mark.parametrize("name", PURE)
def test_decisions_are_pure(name: str) -> None:
    tree = ast.parse((Path(keybrake.proxy.__file__).parent / name).read_text())
    for node in ast.walk(tree):
        assert not isinstance(node, ast.AsyncFunctionDef | ast.Await), f"{name}:{node.lineno}: a coroutine"
        if isinstance(node, ast.Import | ast.ImportFrom):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for mod in mods:
                assert mod.split(".")[0] not in IO and mod not in SHELL, f"{name}:{node.lineno} imports {mod}"
                assert not (mod.startswith("keybrake.proxy.") and mod.split(".")[2] in SHELL_PROXY), (
                    f"{name}:{node.lineno} imports the shell ({mod})"
                )
