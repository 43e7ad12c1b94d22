#!/usr/bin/env python3
"""Keybrake benchmark: direct-to-upstream vs through Keybrake, in the same run.

    .venv/bin/python bench/run_bench.py [--duration 15] [--rate 200] [--connections 32]

Starts a fast fake Stripe + Twilio upstream (bench/fake_upstream.py) and `keybrake serve` on free
loopback ports with a throwaway data dir, issues a vault key per vendor with (huge) caps, then
measures, for the scenarios picked with --scenarios (default: stripe,twilio):

1. stripe, steady rate (open loop): a Python/aiohttp generator fires POST /v1/charges on a fixed
   schedule (--rate per second), alternating direct and proxied blocks, and reports p50/p99
   latency and the latency Keybrake adds (proxied minus direct);
2. twilio, steady rate (open loop): the same for an SMS send,
   POST /2010-04-01/Accounts/{sid}/Messages.json (direct: Basic with the real Account SID and
   auth token; proxied: Basic vk_id:vault_key to /twilio/2010-04-01/Accounts/{vk_id}/...);
3. stripe, max throughput (closed loop): wrk with --connections connections against each target.

Every proxied request goes through full enforcement (key auth, cap reservation, audit row in
SQLite). At the end the audit rows for each bench key are counted through the admin API and
compared with the number of requests of that vendor the upstream saw from Keybrake.

The pieces: children.py (processes, loopback HTTP), targets.py (keys, targets, audit),
open_loop.py and closed_loop.py (the generators), measure.py and report.py.

Prints a table, writes JSON to bench/results/, and exits 0 (1 with --check if a target is
missed, 2 if the setup fails: keybrake or the fake upstream does not start, wrk is missing, ...).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from types import FrameType
from typing import Any

from children import BENCH_DIR, SetupError, log
from closed_loop import WRK_INSTALL_HINT, run_wrk, wrk_version
from goals import TARGET_STEADY_RATE, Check, add_target_options
from measure import CpuMeter, Result, postgres_cpu_seconds
from open_loop import run_open_loop, steady_phase
from pg_loops import pg_closed_loops
from report import evaluate, git_commit, machine_note, render_table, write_json
from session import Run, audit_rows, start_direct, start_postgres, start_proxied, stop_postgres
from targets import SCENARIOS

EXIT_OK, EXIT_CHECK_FAILED, EXIT_SETUP_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 130

# Each numeric option's accepted range (inclusive).
_BOUNDS: dict[str, tuple[float, float]] = {
    "duration": (1, 600),
    "rate": (1, 5000),
    "connections": (1, 1024),
    "threads": (1, 64),
    "rounds": (1, 100),
    "warmup": (0, 60),
    "sustain_rate": (0, 20000),
    "max_inflight": (1, 10000),
    "request_timeout": (0.1, 120),
    "startup_timeout": (1, 300),
}


def _add_pg_options(p: argparse.ArgumentParser) -> None:
    """--pg-url (Keybrake's store on PostgreSQL) and --pg-wire (count its traffic on the wire)."""
    p.add_argument(
        "--pg-url",
        default=None,
        help="store Keybrake's data in PostgreSQL: a fresh database created (and dropped at the end) on "
        "the server of this maintenance-database URL, e.g. postgresql://postgres@127.0.0.1:5432/postgres "
        "(default: embedded SQLite)",
    )
    p.add_argument(
        "--pg-wire",
        action="store_true",
        help="with --pg-url: put a counting relay (bench/pg_wire.py) between Keybrake and PostgreSQL and "
        "report PostgreSQL round trips, commits and statements per proxied request",
    )


class _Defaults(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a flag's default unless it has none (None) or its help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def _add_smoke_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--smoke",
        action="store_true",
        help="prove the bench works (CI): 1 s per scenario, 1 round, no warm-up, 100 req/s steady; "
        "every scenario still runs, but its figures are too short to compare with the targets "
        "(not allowed with --check)",
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Benchmark Keybrake against a fake Stripe upstream (direct vs proxied).",
        formatter_class=_Defaults,
    )
    p.add_argument(
        "--duration",
        type=int,
        default=15,
        help="seconds measured per target in each scenario (1-600)",
    )
    p.add_argument("--rate", type=float, default=TARGET_STEADY_RATE, help="open-loop steady rate, requests/s (1-5000)")
    p.add_argument("--connections", type=int, default=32, help="wrk connections (1-1024)")
    p.add_argument("--threads", type=int, default=2, help="wrk threads (1-64)")
    p.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="steady scenario: alternate direct/proxied blocks this many times",
    )
    p.add_argument(
        "--warmup",
        type=float,
        default=2.0,
        help="seconds of discarded warm-up traffic per target (0-60)",
    )
    p.add_argument(
        "--sustain-rate",
        type=float,
        default=0.0,
        help="also run a proxied open-loop scenario at this rate (0 = skip)",
    )
    p.add_argument(
        "--max-inflight",
        type=int,
        default=512,
        help="open loop: requests outstanding at most; beyond, sends are dropped",
    )
    p.add_argument("--request-timeout", type=float, default=10.0, help="open loop, seconds")
    p.add_argument("--startup-timeout", type=float, default=30.0, help="seconds")
    p.add_argument(
        "--keybrake",
        default=None,
        help="keybrake executable (default: next to this Python, then PATH)",
    )
    p.add_argument("--wrk", default=None, help="wrk executable (default: from PATH)")
    p.add_argument("--no-wrk", action="store_true", help="skip the max-throughput scenarios")
    p.add_argument(
        "--direct-only",
        action="store_true",
        help="do not start keybrake; measure only the direct path",
    )
    add_target_options(p)
    p.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON output (default: bench/results/bench-<UTC time>.json)",
    )
    p.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (data, logs)")
    p.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help="comma-separated vendors to measure: stripe (steady POST /v1/charges, plus wrk max and "
        "--sustain-rate) and/or twilio (steady SMS send, POST .../Messages.json)",
    )
    _add_pg_options(p)
    _add_smoke_option(p)
    p.add_argument(
        "--twilio",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="--no-twilio is short for dropping twilio from --scenarios",
    )
    return p


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line, checked: --scenarios as a list of vendors, numbers within their bounds."""
    p = _parser()
    args = p.parse_args(argv)
    picked = [s.strip().lower() for s in args.scenarios.split(",") if s.strip()]
    unknown = sorted(set(picked) - set(SCENARIOS))
    if unknown or not picked:
        p.error(f"--scenarios takes a comma-separated subset of {','.join(SCENARIOS)} (got {args.scenarios!r})")
    args.scenarios = [s for s in SCENARIOS if s in picked and (s != "twilio" or args.twilio)]
    if not args.scenarios:
        p.error("no scenario left to run (--no-twilio with --scenarios twilio)")
    for name, (lo, hi) in _BOUNDS.items():
        value = getattr(args, name)
        if not lo <= value <= hi:
            p.error(f"--{name.replace('_', '-')} must be between {lo} and {hi}")
    if args.smoke:
        if args.check:
            p.error("--smoke runs are too short to check the targets; drop --check")
        args.duration, args.rounds, args.warmup, args.rate = 1, 1, 0.0, min(args.rate, 100.0)
    if args.pg_wire and not args.pg_url:
        p.error("--pg-wire needs --pg-url (the PostgreSQL server Keybrake stores its data in)")
    if args.threads > args.connections:
        p.error("--threads must not exceed --connections")
    return args


def find_keybrake(explicit: str | None) -> str | None:
    if explicit:
        return explicit if shutil.which(explicit) else None
    beside = Path(sys.executable).parent / "keybrake"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("keybrake")


def _find_tools(args: argparse.Namespace) -> tuple[str | None, str | None] | None:
    """(wrk, keybrake executable), each None when not needed; None (after saying why) when missing."""
    wrk: str | None = None
    if not args.no_wrk:
        wrk = shutil.which(args.wrk or "wrk")
        if wrk is None:
            print(f"error: wrk not found.\n{WRK_INSTALL_HINT}", file=sys.stderr)
            return None
    keybrake_exe: str | None = None
    if not args.direct_only:
        keybrake_exe = find_keybrake(args.keybrake)
        if keybrake_exe is None:
            print(
                "error: keybrake executable not found. Install the project into this venv "
                "(.venv/bin/pip install -e .), pass --keybrake PATH, or use --direct-only.",
                file=sys.stderr,
            )
            return None
    return wrk, keybrake_exe


def _measure(run: Run, args: argparse.Namespace, wrk: str | None, cpu: CpuMeter) -> list[Result]:
    """The scenarios, in order: steady (per vendor), sustain (optional), pg-c1 and pg-c16 (--pg-wire), max (wrk)."""
    results: list[Result] = []
    # 1. steady rate, open loop, direct and proxied blocks alternating, one vendor after the
    #    other. Stripe keeps the scenario name "steady" (comparable with earlier results);
    #    Twilio's is "twilio": an SMS send, direct with the real SID and token, proxied with
    #    the vault key (Basic vk_…:vault_key_…, SID swap, destination check, send cap).
    for vendor, targets in run.steady_targets.items():
        scenario = "steady" if vendor == "stripe" else vendor
        what = "POST /v1/charges" if vendor == "stripe" else "SMS send, POST .../Messages.json"
        log(
            f"{scenario}: {vendor} {what}, {args.rate:g} req/s open loop, {args.duration}s per target in "
            f"{args.rounds} alternating rounds (+{args.warmup:g}s warm-up each)"
        )
        samples = steady_phase(targets, args, cpu)
        for t in targets:
            results.append(samples[t.name].result(scenario, t.name, f"open-loop {args.rate:g}/s", vendor))

    stripe_targets = run.steady_targets.get("stripe", [])
    # 2. optional sustained proxied rate, open loop (Stripe)
    if len(stripe_targets) == 2 and args.sustain_rate > 0:
        log(f"sustain: {args.sustain_rate:g} req/s open loop through keybrake")
        sus = run_open_loop(
            targets=[stripe_targets[1]],
            rate=args.sustain_rate,
            seconds=args.duration,
            rounds=1,
            warmup=0,
            max_inflight=args.max_inflight,
            request_timeout=args.request_timeout,
            cpu=cpu,
        )
        gen = f"open-loop {args.sustain_rate:g}/s"
        results.append(sus["keybrake"].result("sustain", "keybrake", gen))

    # 3. --pg-wire: closed loops of 1 and 16 clients (Stripe), PostgreSQL traffic per request
    if len(stripe_targets) == 2 and cpu.wire is not None:
        log(f"pg-c1, pg-c16: closed loops of 1 and 16 clients through keybrake, {args.duration}s each")
        results += pg_closed_loops(stripe_targets[1], args.duration, cpu)

    # 4. max throughput, closed loop (wrk, Stripe)
    if wrk is not None:
        for t in stripe_targets:
            log(f"max: wrk -t{args.threads} -c{args.connections} -d{args.duration}s against {t.name}")
            results.append(run_wrk(wrk, t, args.threads, args.connections, args.duration, run.workdir, cpu))
    return results


def _print_report(
    results: list[Result], checks: list[Check], load_before: tuple[float, float, float] | None, smoke: bool
) -> None:
    print()
    print(render_table(results))
    print()
    print(
        "+p50/+p99 = keybrake minus direct in the same scenario. 'steady' (Stripe POST /v1/charges)\n"
        "and 'twilio' (Twilio SMS send, POST .../Messages.json) are open-loop fixed-rate schedules\n"
        "(latency from send to full response); 'max' is wrk closed-loop at saturation (Stripe),\n"
        "where latency is mostly queueing. kb cpu = keybrake process CPU per request; pg cpu = a local\n"
        "PostgreSQL server's processes' CPU per request (--pg-url)."
    )
    print(f"machine: {machine_note(load_before)}")
    for r in results:
        if r.extra.get("send_lag_p99_ms", 0) > 5:
            print(
                f"warning: {r.scenario}/{r.target}: generator send lag p99 "
                f"{r.extra['send_lag_p99_ms']:.1f} ms; the load generator is CPU-starved"
            )
    if checks:
        print()
        if smoke:
            print("smoke run (--smoke): 1-second scenarios prove the bench works; their figures mean nothing")
        for c in checks:
            # a 1-second smoke figure neither meets nor misses a target; the audit checks still count
            verdict = "n/a " if smoke and c.target else ("PASS" if c.passed else "FAIL")
            print(f"[{verdict}] {c.name}: {c.value}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)

    # SIGTERM is handled as Ctrl-C, which asyncio.Runner turns into a clean cancellation.
    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        signal.raise_signal(signal.SIGINT)

    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    signal.signal(signal.SIGTERM, on_sigterm)

    tools = _find_tools(args)
    if tools is None:
        return EXIT_SETUP_FAILED
    wrk, keybrake_exe = tools
    run = Run(Path(tempfile.mkdtemp(prefix="keybrake-bench-")))
    started = dt.datetime.now(dt.UTC)
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    results: list[Result] = []
    audit: dict[str, Any] = {}
    try:
        log(f"temp dir {run.workdir}")
        start_direct(run, args)
        if keybrake_exe is not None:
            if args.pg_url:
                start_postgres(run, args)
            start_proxied(run, args, keybrake_exe)
        log(f"sanity requests: {json.dumps(run.sanity)}")
        assert run.upstream is not None
        totals, local_pg = run.wire_totals if run.relay_control else None, bool(args.pg_url and postgres_cpu_seconds())
        cpu = CpuMeter(run.kb.pid if run.kb else None, run.upstream.pid, totals, local_pg=local_pg)
        results = _measure(run, args, wrk, cpu)
        if run.kb is not None:
            audit = audit_rows(run)
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_SETUP_FAILED
    except KeyboardInterrupt:
        print("interrupted; stopping the child processes", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        wire = run.wire_json()
        for child in reversed(run.children):
            child.stop()
        stop_postgres(run)
        if args.keep_tmp:
            log(f"kept {run.workdir}")
        else:
            shutil.rmtree(run.workdir, ignore_errors=True)

    checks = evaluate(results, audit, args)
    _print_report(results, checks, load_before, args.smoke)
    out = args.out or BENCH_DIR / "results" / f"bench-{started:%Y%m%dT%H%M%SZ}.json"
    payload = {
        "started_at": started.isoformat(),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "wrk": wrk_version(wrk) if wrk else None,
            "note": machine_note(load_before),
        },
        "git_commit": git_commit(),
        "keybrake": keybrake_exe,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "results": [asdict(r) for r in results],
        "audit": audit,
        "pg_wire": wire,
        "checks": [asdict(c) for c in checks],
    }
    write_json(out, payload)
    print(f"\nJSON results: {out}")
    if args.check and not all(c.passed for c in checks):
        return EXIT_CHECK_FAILED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
