"""The bench's report: the table, the checks against the targets, the JSON results, the machine."""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from children import BENCH_DIR
from goals import Check, target_checks
from measure import Result
from targets import SCENARIOS

# -- report --------------------------------------------------------------------------------------


def _fmt(value: float | None, spec: str = ".2f", signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, ("+" if signed else "") + spec)


def render_table(results: list[Result]) -> str:
    direct = {r.scenario: r for r in results if r.target == "direct"}
    header = (
        f"{'scenario':<10} {'target':<9} {'generator':<19} {'req/s':>9} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'+p50 ms':>8} {'+p99 ms':>8} {'errors':>7} {'kb cpu ms/req':>13}"
    )
    pg = any(r.pg_round_trips_per_req is not None for r in results)
    if pg:
        header += f" {'pg round trips/req':>18} {'pg commits/req':>14}"
    server = any(r.postgres_cpu_ms_per_req is not None for r in results)
    if server:
        header += f" {'pg cpu ms/req':>13}"
    lines = [header, "-" * len(header)]
    for r in results:
        base = direct.get(r.scenario) if r.target != "direct" else None
        add50 = r.p50_ms - base.p50_ms if base else None
        add99 = r.p99_ms - base.p99_ms if base else None
        lines.append(
            f"{r.scenario:<10} {r.target:<9} {r.generator:<19} {r.rps:>9.1f} "
            f"{_fmt(r.p50_ms):>8} {_fmt(r.p99_ms):>8} {_fmt(add50, signed=True):>8} "
            f"{_fmt(add99, signed=True):>8} {r.error_count:>7} "
            f"{_fmt(None if r.target == 'direct' else r.keybrake_cpu_ms_per_req, '.3f'):>13}"
            + (f" {_fmt(r.pg_round_trips_per_req):>18} {_fmt(r.pg_commits_per_req):>14}" if pg else "")
            + (f" {_fmt(r.postgres_cpu_ms_per_req, '.3f'):>13}" if server else "")
        )
    return "\n".join(lines)


def evaluate(results: list[Result], audit: dict[str, Any], args: argparse.Namespace) -> list[Check]:
    """The targets (bench/goals.py) plus, per vendor, the audit check: rows >= requests forwarded."""
    checks = target_checks(results, args)
    s = next((r for r in results if (r.scenario, r.target) == ("sustain", "keybrake")), None)
    if s:
        checks.append(
            Check(
                f"proxied open loop holds {args.sustain_rate:g} req/s (>= 98%), 0 errors",
                f"{s.rps:.0f} req/s, p99 {s.p99_ms:.1f} ms, {s.error_count} errors",
                s.rps >= 0.98 * args.sustain_rate and s.error_count == 0,
            )
        )
    for vendor in SCENARIOS:
        a = audit.get(vendor)
        if a:
            checks.append(
                Check(
                    f"{vendor}: one audit row per request Keybrake forwarded",
                    f"{a['audit_rows']} rows / {a['forwarded']} forwarded; {outcome_summary(a)}",
                    a["audit_rows"] >= a["forwarded"] > 0,
                    target=False,
                )
            )
    return checks


def outcome_summary(a: dict[str, Any]) -> str:
    """The audit rows' outcomes, e.g. 'allow 201/201: 1601'."""
    outcomes = a.get("summary", {}).get("outcomes", {})
    return ", ".join(f"{k}: {v}" for k, v in outcomes.items()) or "no rows"


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)

    def clean(v: Any) -> Any:
        if isinstance(v, float):
            return None if math.isnan(v) else round(v, 4)
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v

    path.write_text(json.dumps(clean(payload), indent=2) + "\n")


def git_commit() -> str | None:
    try:
        proc = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=BENCH_DIR,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    return proc.stdout.strip() or None


def machine_note(load_before: tuple[float, float, float] | None) -> str:
    """CPUs, Python and the 1-minute load average before and after the run (other busy processes
    on the machine compete with the generator, the upstream and Keybrake)."""
    note = f"{os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}"
    if load_before is not None and hasattr(os, "getloadavg"):
        note += f", load average (1 min) {load_before[0]:.2f} at start, {os.getloadavg()[0]:.2f} at end"
    return note
