#!/usr/bin/env python3
"""The operator's audit questions on a large table (issue 4): time each against N rows.

    .venv/bin/python bench/audit_queries.py [--rows 1000000] [--days 30] [--repeat 7]

Builds a throwaway SQLite store with the real schema (migrations), fills it with N audit rows
spread over --days days (500 keys, 20,000 agent runs, ~2 % cap hits), then times, through the
store interface the admin API uses: one run's calls (`GET /v1/audit?agent_run_id=`), one key's
latest 100 calls, cap hits in the last 24 h, and top spenders today (`GET /v1/spend?group_by=key`
from today's UTC midnight). Prints the median and worst of --repeat runs per query.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from keybrake.core.timefmt import DAY_MS, utc_day_start
from keybrake.store import open_store
from keybrake.store.base import AuditQuery, AuditRow
from keybrake.store.ids import new_audit_id
from keybrake.store.sql_rows import _INSERT_AUDIT, _row_params


def build(path: Path, rows: int, days: int) -> int:
    now = int(time.time() * 1000)
    start = now - days * DAY_MS
    rnd = random.Random(7)
    step = (now - start) / rows

    def gen() -> Iterator[dict[str, Any]]:
        for i in range(rows):
            ts = int(start + i * step)
            run = rnd.randrange(20_000)
            capped = rnd.random() < 0.02
            row = AuditRow(
                id=new_audit_id(ts),
                ts=ts,
                method="POST",
                path="/v1/charges",
                verdict="cap_exceeded" if capped else "allowed",
                key_id=f"vk_{run % 500:05d}",
                label=f"tenant-{run % 20}:agent:{run}",
                agent_run_id=f"run-{run}",
                vendor="stripe",
                credential="default",
                status=429 if capped else 200,
                cost_usd=0 if capped else rnd.randrange(100, 100_000_000),
                cost_source="none" if capped else "response",
                cost_kind="none" if capped else "charge",
                request_summary={"amount": "1000", "currency": "usd"},
                latency_ms=2.5,
            )
            yield _row_params(row, None, None)

    with sqlite3.connect(path) as conn:
        conn.executemany(_INSERT_AUDIT, gen())
    return now


def timed(fn, repeat: int) -> tuple[float, float, int]:  # type: ignore[no-untyped-def]
    times, n = [], 0
    for _ in range(repeat):
        t = time.perf_counter()
        n = fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), max(times), n


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--repeat", type=int, default=7)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="keybrake-audit-bench-") as tmp:
        store = open_store(None, Path(tmp), migrate=False)
        t = time.perf_counter()
        now = build(Path(tmp) / "keybrake.db", args.rows, args.days)
        print(f"inserted {args.rows:,} rows over {args.days} days in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        run = asyncio.run
        today = utc_day_start(now)
        queries = {
            "one run's calls (agent_run_id)": lambda: len(
                run(store.query_audit(AuditQuery(agent_run_id="run-4242", limit=1000)))
            ),
            "one key's latest 100 calls": lambda: len(run(store.query_audit(AuditQuery(key_id="vk_00042", limit=100)))),
            "cap hits in the last 24 h": lambda: len(
                run(store.query_audit(AuditQuery(verdict="cap_exceeded", since=now - DAY_MS, limit=1000)))
            ),
            "top spenders today (spend by key)": lambda: len(run(store.spend("key", today, None, None, None))),
        }
        results = {}
        for name, fn in queries.items():
            median, worst, n = timed(fn, args.repeat)
            results[name] = {"median_ms": round(median, 2), "max_ms": round(worst, 2), "rows": n}
            print(f"{name:<36} median {median:7.2f} ms   max {worst:7.2f} ms   ({n} rows)")
        print(json.dumps({"rows": args.rows, "days": args.days, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
