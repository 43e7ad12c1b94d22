#!/usr/bin/env python3
"""Bytes each table grows by per million proxied requests (docs/operations.md, "Retention").

    .venv/bin/python bench/table_sizes.py [--requests 2000] [--per-key 100]

Runs a real `keybrake serve` (in a thread, embedded SQLite) in front of the fake Stripe and
sends --requests proxied calls through it: charges with an Idempotency-Key, one refund in ten,
a new key every --per-key calls (one key per agent run), a webhook alert destination with 50 %
and 80 % thresholds. Then reads SQLite's `dbstat` (pages of each table and its indexes) and
prints rows and bytes per table, bytes per row, rows per request and MB per million requests.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fakes.stripe_server import FakeStripeThread
from tests.harness import REAL_SECRET, KeybrakeThread

TABLES = ("audit", "counters", "ledger", "ledger_counts", "alert_outbox", "alert_fired", "dedup", "issuances",
          "vault_keys", "instances")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--per-key", type=int, default=100)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, FakeStripeThread(secret=REAL_SECRET) as stripe:
        data = Path(tmp) / "d"
        with KeybrakeThread(data, alert_interval_s=0.2, allow_insecure_upstream=True) as kb:
            kb.add_credential(stripe.base_url)
            with kb.admin() as c:
                r = c.post(
                    "/v1/alerts",
                    json={
                        "type": "webhook",
                        "url": "http://127.0.0.1:9/hook",
                        "events": ["cap.threshold"],
                        "thresholds": [50],
                    },
                )
                assert r.status_code == 201, r.text
            with httpx.Client(timeout=30) as agent:
                key: dict[str, str] = {}
                last_charge = ""
                for i in range(args.requests):
                    if i % args.per_key == 0:
                        key = kb.issue({"daily_usd_cap": args.per_key * 1.5}, label=f"tenant-{i % 7}:agent:run-{i}")
                    auth = {
                        "Authorization": f"Bearer {key['key']}",
                        "Content-Type": "application/x-www-form-urlencoded",
                    }
                    if i % 10 == 9 and last_charge:
                        body = f"charge={last_charge}&amount=50"
                        agent.post(f"{kb.url}/stripe/v1/refunds", content=body, headers=auth)
                        continue
                    r = agent.post(
                        f"{kb.url}/stripe/v1/charges",
                        content=b"amount=100&currency=usd&source=tok_visa",
                        headers={**auth, "Idempotency-Key": f"run-{i}-charge"},
                    )
                    if r.status_code == 200:
                        last_charge = r.json()["id"]
            time.sleep(1.0)  # the threshold scan enqueues its alerts
        db = sqlite3.connect(data / "keybrake.db")
        owner = dict(db.execute("SELECT name, tbl_name FROM sqlite_schema WHERE type IN ('table', 'index')"))
        sizes: dict[str, int] = {}
        for name, size in db.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"):
            table = owner.get(name, name)
            sizes[table] = sizes.get(table, 0) + int(size)
        print(f"{args.requests} requests, a key every {args.per_key}")
        print(f"{'table':<14}{'rows':>8}{'bytes':>12}{'B/row':>8}{'rows/req':>10}{'MB per 1M req':>15}")
        for t in TABLES:
            rows = db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # noqa: S608
            size = sizes.get(t, 0)
            if not rows:
                print(f"{t:<14}{0:>8}{'-':>12}{'-':>8}{0:>10.3f}{'-':>15}")
                continue
            per_m = size / args.requests  # bytes per request = MB per million requests
            print(f"{t:<14}{rows:>8}{size:>12}{size / rows:>8.0f}{rows / args.requests:>10.3f}{per_m:>15.1f}")
        db.close()


if __name__ == "__main__":
    main()
