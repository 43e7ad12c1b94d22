#!/usr/bin/env python3
"""The web console's pages on a large audit table: time each against N rows.

    .venv/bin/python bench/console_pages.py [--rows 1000000] [--days 30] [--repeat 15]

Starts `keybrake serve --admin-port` on a throwaway data directory (the real schema, through
its migrations), issues --keys vault keys through the admin API, stops it, bulk-inserts N audit
rows straight into its SQLite store (spread over --days days, the keys, 20,000 agent runs and
one long run of ~1 % of the rows, three vendors, ~2 % cap hits and ~3 % endpoint denials),
starts it again, signs in to the console with the admin token and times each console page over
HTTP: every page of `pages()` that exists in this build (a 404 is skipped and reported).
Prints the median and p95 of --repeat loads per page (after one warm-up load) and a JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from children import HOST, SetupError, free_port, log, spawn, wait_healthy
from keybrake.core.timefmt import DAY_MS
from keybrake.store.ids import new_audit_id

RUNS = 20_000
BUSY_RUN = "run-busy"
VENDORS = (("stripe", "POST", "/v1/charges", "POST /v1/charges"),
           ("twilio", "POST", "/2010-04-01/Accounts/AC1/Messages.json", "POST /2010-04-01/Accounts/*/Messages.json"),
           ("resend", "POST", "/emails", "POST /emails"))  # fmt: skip
COLUMNS = (
    "id", "ts", "key_id", "label", "agent_run_id", "vendor", "credential", "method", "path", "endpoint", "verdict",
    "error_code", "reason", "status", "upstream_status", "cost_usd", "reserved_usd", "cost_source", "cost_kind",
    "vendor_request_id", "request_summary", "latency_ms",
)  # fmt: skip
INSERT = f"INSERT INTO audit ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})"  # noqa: S608


def rows(n: int, days: int, keys: list[tuple[str, str]], now: int) -> Iterator[tuple[Any, ...]]:
    """`n` audit rows, oldest first, evenly over `days` days up to `now` (Unix ms)."""
    rnd = random.Random(7)
    start = now - days * DAY_MS
    step = (now - start) / n
    for i in range(n):
        ts = int(start + i * step)
        run = rnd.randrange(RUNS)
        key_id, label = keys[run % len(keys)]
        vendor, method, path, endpoint = VENDORS[run % 3 if rnd.random() < 0.5 else 0]
        roll = rnd.random()
        if roll < 0.02:
            verdict, code, reason, status, cost = "cap_exceeded", "cap_exceeded", "daily_usd_cap reached", 429, 0
        elif roll < 0.05:
            verdict, code, reason, status, cost = (
                "denied_endpoint_not_allowed", "endpoint_not_allowed", f"{endpoint} is not in this key's "
                "allowed_endpoints", 403, 0)  # fmt: skip
        else:
            verdict, code, reason, status, cost = "allowed", None, None, 200, rnd.randrange(100, 50_000_000)
        run_id = BUSY_RUN if rnd.random() < 0.01 else f"run-{run}"  # one long run: ~1 % of all calls
        yield (
            new_audit_id(ts), ts, key_id, label, run_id, vendor, "default", method, path, endpoint, verdict,
            code, reason, status, status if status == 200 else None, cost, cost, "response" if cost else "none",
            "charge" if cost else "none", f"req_{i:012d}" if status == 200 else None,
            '{"amount": "1000", "currency": "usd"}', 2.5,
        )  # fmt: skip


def seed(db: Path, n: int, days: int, keys: list[tuple[str, str]]) -> tuple[int, float, str]:
    """Insert `n` rows into the audit table of the SQLite file `db`: (now in ms, seconds taken, the
    agent run id of the latest row)."""
    now = int(time.time() * 1000)
    t = time.perf_counter()
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA synchronous = OFF")
        conn.executemany(INSERT, rows(n, days, keys, now))
        took = time.perf_counter() - t
        run = conn.execute("SELECT agent_run_id FROM audit ORDER BY id DESC LIMIT 1").fetchone()[0]
    return now, took, str(run)


class Keybrake:
    """`keybrake serve` with an admin listener on `data_dir`, started and stopped as a child."""

    def __init__(self, exe: str, workdir: Path, token: str) -> None:
        self.exe, self.workdir, self.token = exe, workdir, token
        self.port, self.admin_port = free_port(), free_port()
        self.admin = f"http://{HOST}:{self.admin_port}"
        self.child: Any = None

    def start(self) -> None:
        env = {**os.environ, "KEYBRAKE_ADMIN_TOKEN": self.token, "KEYBRAKE_ALLOW_INSECURE_UPSTREAM": "1",
               "KEYBRAKE_UPSTREAM_HOSTS": HOST}  # fmt: skip
        argv = [self.exe, "serve", "--host", HOST, "--port", str(self.port), "--admin-port", str(self.admin_port),
                "--data-dir", str(self.workdir / "data")]  # fmt: skip
        self.child = spawn("keybrake", argv, env, self.workdir / "keybrake.log")
        wait_healthy(self.child, f"http://{HOST}:{self.port}/healthz", 60)

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop()


def issue_keys(kb: Keybrake, count: int) -> list[tuple[str, str]]:
    """`count` Stripe keys through the admin API: [(id, label)]."""
    headers = {"Authorization": f"Bearer {kb.token}"}
    with httpx.Client(base_url=kb.admin, headers=headers, timeout=30) as c:
        r = c.post("/v1/credentials", json={"vendor": "stripe", "name": "default", "secret": "sk_test_" + "x" * 24,
                                            "base_url": f"http://{HOST}:9"})  # fmt: skip
        if r.status_code != 201:
            raise SetupError(f"credential: HTTP {r.status_code}: {r.text}")
        out = []
        for i in range(count):
            label = f"tenant-{i % 20}:agent:{i}"
            r = c.post("/v1/keys", json={"vendor": "stripe", "label": label, "expires_in": "29d",
                                         "policy": {"daily_usd_cap": 1000}})  # fmt: skip
            if r.status_code != 201:
                raise SetupError(f"key: HTTP {r.status_code}: {r.text}")
            out.append((r.json()["id"], label))
    return out


def pages(keys: list[tuple[str, str]], now: int, run: str) -> list[tuple[str, str]]:
    """(name, path) of each page timed."""
    key_id = keys[42 % len(keys)][0]
    day_ago = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime((now - DAY_MS) / 1000))
    return [
        ("overview", "/console"),
        ("keys", "/console/keys"),
        ("key detail", f"/console/keys/{key_id}"),
        ("audit (no filter)", "/console/audit"),
        ("audit key_id", f"/console/audit?key_id={key_id}"),
        ("audit vendor+verdict=denied", "/console/audit?vendor=twilio&verdict=denied"),
        ("audit cap_exceeded, 24 h", f"/console/audit?verdict=cap_exceeded&since={day_ago}"),
        ("audit vendor=nobody (no match)", "/console/audit?vendor=nobody"),
        ("runs", "/console/runs"),
        ("run timeline", f"/console/runs/{run}"),
        ("run export (CSV)", f"/console/runs/{run}/export?format=csv"),
        ("long run timeline (page 1 of ~20)", f"/console/runs/{BUSY_RUN}"),
        ("spend", "/console/spend"),
        ("budgets", "/console/budgets"),
        ("alerts", "/console/alerts"),
        ("credentials", "/console/credentials"),
        ("approvals", "/console/approvals"),
    ]


def older_link(html: str) -> str | None:
    m = re.search(r'href="([^"]+)" rel="next"', html)
    return m.group(1).replace("&amp;", "&") if m else None


def time_pages(kb: Keybrake, todo: list[tuple[str, str]], repeat: int) -> tuple[dict[str, Any], list[str]]:
    """Sign in, then load each page 1 + `repeat` times: {name: {median_ms, p95_ms, status}}, skipped names."""
    results: dict[str, Any] = {}
    skipped: list[str] = []
    with httpx.Client(base_url=kb.admin, timeout=60) as c:
        r = c.post("/console/sign-in", data={"token": kb.token, "next": "/console"})
        if r.status_code != 303:
            raise SetupError(f"sign-in: HTTP {r.status_code}")
        first = c.get("/console/audit")
        if (nxt := older_link(first.text)) is not None:
            todo = [*todo[:4], ("audit page 2 (Older rows)", nxt), *todo[4:]]
        busy = c.get(f"/console/runs/{BUSY_RUN}")
        if busy.status_code == 200 and (later := older_link(busy.text)) is not None:
            todo.append(("long run page 2 (Later calls)", later))
        for name, path in todo:
            warm = c.get(path)
            if warm.status_code == 404:
                skipped.append(name)
                continue
            times = []
            for _ in range(repeat):
                t = time.perf_counter()
                got = c.get(path)
                times.append((time.perf_counter() - t) * 1000)
            times.sort()
            p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
            results[name] = {"median_ms": round(statistics.median(times), 1), "p95_ms": round(p95, 1),
                             "status": got.status_code, "bytes": len(got.content)}  # fmt: skip
            median = results[name]["median_ms"]
            print(f"{name:<34} median {median:7.1f} ms   p95 {p95:7.1f} ms   HTTP {got.status_code}")
    return results, skipped


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--keys", type=int, default=200)
    p.add_argument("--repeat", type=int, default=15)
    p.add_argument("--keybrake", default=str(Path(sys.executable).with_name("keybrake")))
    p.add_argument("--keep-tmp", action="store_true")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="keybrake-console-bench-"))
    kb = Keybrake(args.keybrake, tmp, "kb_admin_" + secrets.token_urlsafe(24))
    try:
        kb.start()
        keys = issue_keys(kb, args.keys)
        kb.stop()
        now, took, run = seed(tmp / "data" / "keybrake.db", args.rows, args.days, keys)
        log(f"inserted {args.rows:,} audit rows over {args.days} days in {took:.1f} s; timeline of {run}")
        kb.start()
        results, skipped = time_pages(kb, pages(keys, now, run), args.repeat)
        if skipped:
            print(f"skipped (404, no such page in this build): {', '.join(skipped)}")
        print(json.dumps({"rows": args.rows, "days": args.days, "repeat": args.repeat, "results": results,
                          "skipped": skipped}))  # fmt: skip
        return 0
    except SetupError as exc:
        log(f"setup failed: {exc}")
        return 2
    finally:
        kb.stop()
        if not args.keep_tmp:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
