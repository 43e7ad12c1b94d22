"""The benchmark scripts work end to end (issue 14: CI runs them once in a short smoke mode).

`bench/run_bench.py --smoke` is run as a user runs it — a real `keybrake serve`, the fake
upstream, the open-loop generator and wrk — on SQLite and on the PostgreSQL server with the
wire counter. Nothing here looks at a time or a rate: the figures of a 1-second run prove
nothing; these tests prove that every scenario ran, that every proxied request was allowed and
left exactly one audit row, that every target was evaluated, and (PostgreSQL) that the wire
counts were taken. The targets themselves are checked by full bench runs (bench/README.md).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.pg import ADMIN_URL

ROOT = Path(__file__).resolve().parents[1]
KEYBRAKE = Path(sys.executable).parent / "keybrake"

# scripts/test installs wrk; on CI (CI=true) a missing wrk fails the run (bench's own message) instead.
pytestmark = pytest.mark.skipif(
    shutil.which("wrk") is None and not os.environ.get("CI"),
    reason="wrk is not installed (scripts/test installs it: apt-get install wrk)",
)


def _smoke(tmp_path: Path, *extra: str) -> dict[str, Any]:
    out = tmp_path / "bench.json"
    bench = [sys.executable, str(ROOT / "bench" / "run_bench.py")]
    proc = subprocess.run(
        [*bench, "--smoke", "--keybrake", str(KEYBRAKE), "--out", str(out), *extra],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc: dict[str, Any] = json.loads(out.read_text())
    return doc


def _rows(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["scenario"], r["target"]): r for r in doc["results"]}


def _proxied_rows_ok(doc: dict[str, Any], scenarios: list[str]) -> None:
    rows = _rows(doc)
    for scenario in scenarios:
        for target in ("direct", "keybrake"):
            r = rows[(scenario, target)]
            assert r["ok"] > 0 and r["errors"] == {}, (scenario, target, r)
        assert rows[(scenario, "keybrake")]["keybrake_cpu_ms_per_req"] > 0


@pytest.mark.sqlite_only  # its own keybrake serve on SQLite; once, in the first pass
def test_smoke_on_sqlite_runs_every_scenario_and_audits_every_request(tmp_path: Path) -> None:
    doc = _smoke(tmp_path)
    _proxied_rows_ok(doc, ["steady", "twilio", "max"])
    for vendor, outcome in (("stripe", "allowed 200/200"), ("twilio", "allowed 201/201")):
        a = doc["audit"][vendor]
        # every forwarded request has its row, every row is an allowed 2xx with the vendor's request id
        assert a["audit_rows"] == a["forwarded"] > 0, a
        assert a["summary"]["outcomes"] == {outcome: a["audit_rows"]}, a
    names = [c["name"] for c in doc["checks"]]
    assert any("added latency" in n for n in names) and any("CPU per request" in n for n in names), names
    assert any("SQLite: proxied throughput" in n for n in names), names
    assert all(c["passed"] for c in doc["checks"] if "audit row" in c["name"])


@pytest.mark.pg_cluster  # creates and drops its own database; runs once, in the first pass
def test_smoke_on_postgres_counts_the_wire(tmp_path: Path) -> None:
    doc = _smoke(tmp_path, "--pg-url", ADMIN_URL, "--pg-wire", "--scenarios", "stripe")
    _proxied_rows_ok(doc, ["steady", "max"])
    rows = _rows(doc)
    for scenario in ("pg-c1", "pg-c16"):
        r = rows[(scenario, "keybrake")]
        assert r["ok"] > 0 and r["errors"] == {}, r
        assert r["pg_round_trips_per_req"] > 0 and r["pg_commits_per_req"] > 0, r
    a = doc["audit"]["stripe"]
    assert a["audit_rows"] == a["forwarded"] > 0, a
    names = [c["name"] for c in doc["checks"]]
    assert any("PostgreSQL: proxied throughput" in n for n in names), names
    assert sum("PostgreSQL round trips" in n for n in names) == 2, names
