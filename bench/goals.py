"""The targets a bench run is checked against (issue 14, "half the CPU per request"), one row each.

Every target names the scenario row it reads (see bench/README.md, "Targets"), what it compares
and its default bound; each has a command-line flag so a run on other hardware can set its own.
A target whose scenario did not run (e.g. `--no-wrk`, SQLite without `--pg-url`) is not checked.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

from measure import Result

# The figures on the reference machine (2 cores, wrk + fake upstream on the same box).
TARGET_ADDED_P50_MS = 0.6  # steady open loop, proxied p50 minus direct p50
TARGET_ADDED_P99_MS = 3.0  # steady open loop, proxied p99 minus direct p99
TARGET_STEADY_RATE = 400.0  # the steady scenario's default rate, req/s
TARGET_PROXIED_RPS = 2500.0  # wrk max, SQLite
TARGET_CPU_US = 400.0  # Keybrake CPU per proxied request at saturation (wrk max), µs
TARGET_PG_RPS = 700.0  # wrk max with --pg-url, one replica
TARGET_PG_ROUND_TRIPS = 2.0  # --pg-wire, per proxied request, pg-c1 and pg-c16
TARGET_PG_COMMITS = 1.2  # --pg-wire, per proxied request, pg-c1 and pg-c16


@dataclass
class Check:
    """One target's outcome: what was checked, the measured value (text), and whether it passed."""

    name: str
    value: str
    passed: bool
    target: bool = True  # a performance target (False: a correctness check, e.g. the audit rows)


def add_target_options(p: argparse.ArgumentParser) -> None:
    """The --target-* flags (defaults: the issue's figures)."""
    p.add_argument("--target-p50-ms", type=float, default=TARGET_ADDED_P50_MS, help="steady: added p50, ms")
    p.add_argument("--target-p99-ms", type=float, default=TARGET_ADDED_P99_MS, help="steady: added p99, ms")
    p.add_argument("--target-rps", type=float, default=TARGET_PROXIED_RPS, help="wrk max on SQLite: req/s")
    p.add_argument("--target-cpu-us", type=float, default=TARGET_CPU_US, help="wrk max: Keybrake CPU per request, µs")
    p.add_argument("--target-pg-rps", type=float, default=TARGET_PG_RPS, help="wrk max with --pg-url: req/s")
    p.add_argument(
        "--target-pg-round-trips",
        type=float,
        default=TARGET_PG_ROUND_TRIPS,
        help="--pg-wire: PostgreSQL round trips per request",
    )
    p.add_argument("--target-pg-commits", type=float, default=TARGET_PG_COMMITS, help="--pg-wire: commits per request")


def _latency_checks(by: dict[tuple[str, str], Result], args: argparse.Namespace) -> list[Check]:
    checks: list[Check] = []
    for scenario, what in (("steady", "Stripe charge"), ("twilio", "Twilio SMS send")):
        d, k = by.get((scenario, "direct")), by.get((scenario, "keybrake"))
        if d is None or k is None:
            continue
        add50, add99 = k.p50_ms - d.p50_ms, k.p99_ms - d.p99_ms
        checks.append(
            Check(
                f"{what}: added latency at {args.rate:g} req/s p50 <= {args.target_p50_ms:g} ms, "
                f"p99 <= {args.target_p99_ms:g} ms, 0 errors",
                f"{add50:+.2f} ms / {add99:+.2f} ms, {k.error_count} errors",
                add50 <= args.target_p50_ms and add99 <= args.target_p99_ms and k.error_count == 0,
            )
        )
    return checks


def _max_checks(by: dict[tuple[str, str], Result], args: argparse.Namespace) -> list[Check]:
    m = by.get(("max", "keybrake"))
    if m is None:
        return []
    engine, rps_target = ("PostgreSQL", args.target_pg_rps) if args.pg_url else ("SQLite", args.target_rps)
    checks = [
        Check(
            f"{engine}: proxied throughput >= {rps_target:g} req/s (wrk), 0 errors",
            f"{m.rps:.0f} req/s, {m.error_count} errors",
            m.rps >= rps_target and m.error_count == 0,
        )
    ]
    cpu_us = None if m.keybrake_cpu_ms_per_req is None else m.keybrake_cpu_ms_per_req * 1000
    if not args.pg_url:  # the CPU target is the SQLite one (PostgreSQL's client CPU is its own figure)
        checks.append(
            Check(
                f"SQLite: Keybrake CPU per request at saturation <= {args.target_cpu_us:g} µs",
                "not measured" if cpu_us is None else f"{cpu_us:.0f} µs",
                cpu_us is not None and cpu_us <= args.target_cpu_us,
            )
        )
    return checks


def _pg_checks(by: dict[tuple[str, str], Result], args: argparse.Namespace) -> list[Check]:
    checks: list[Check] = []
    for scenario in ("pg-c1", "pg-c16"):
        r = by.get((scenario, "keybrake"))
        if r is None or r.pg_round_trips_per_req is None or r.pg_commits_per_req is None:
            continue
        checks.append(
            Check(
                f"{scenario}: PostgreSQL round trips per request <= {args.target_pg_round_trips:g}, "
                f"commits <= {args.target_pg_commits:g}",
                f"{r.pg_round_trips_per_req:.2f} round trips, {r.pg_commits_per_req:.2f} commits",
                r.pg_round_trips_per_req <= args.target_pg_round_trips
                and r.pg_commits_per_req <= args.target_pg_commits,
            )
        )
    return checks


CHECKS: tuple[Callable[[dict[tuple[str, str], Result], argparse.Namespace], list[Check]], ...] = (
    _latency_checks,
    _max_checks,
    _pg_checks,
)


def target_checks(results: list[Result], args: argparse.Namespace) -> list[Check]:
    """Every target whose scenario ran, in the order of CHECKS."""
    by = {(r.scenario, r.target): r for r in results}
    return [c for fn in CHECKS for c in fn(by, args)]
