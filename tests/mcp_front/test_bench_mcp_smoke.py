"""bench/mcp_calls.py works end to end (a few calls per path, in both protocol eras): every MCP
tool call and every proxied call was allowed (the script asserts each answer). No figure is
checked here; bench/README.md records the measured ones."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.sqlite_only  # its own Keybrake in process on SQLite; once, in the first pass
@pytest.mark.parametrize("protocol", ["2026-07-28", "2025-06-18"])
def test_the_mcp_bench_runs(protocol: str) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "mcp_calls.py"), "--requests", "20", "--rounds", "1",
         "--concurrency", "2", "--protocol", protocol],
        capture_output=True, text=True, timeout=180, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "best: proxied" in proc.stdout and "MCP tool call" in proc.stdout
