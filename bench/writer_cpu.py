"""The SQLite writer's CPU and statements per proxied request, without HTTP: the store calls a
Stripe charge makes (a reservation; a settlement with its object facts and count), issued by
concurrent tasks through the real writer thread and its group commit, on a temp-dir database.

    .venv/bin/python bench/writer_cpu.py [--requests N] [--concurrency C] [--rounds R] [--statements]

Prints, per round, the writer thread's CPU per request (from /proc/self/task/<tid>/stat, Linux)
and the process's, then the best of each. `--statements` also counts the SQL statements the
writer ran per request (a trace callback on its connection; it costs CPU, so the CPU figures
of that run are not comparable). Run it with the old and the new venv back to back: the store
code is the only thing measured, so a change to it shows here first.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import re
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TICK = os.sysconf("SC_CLK_TCK")


def _thread_cpu(tid: int | None) -> float:
    """CPU seconds (user + system) of this process's thread `tid` (a native id; 0.0 if gone)."""
    try:
        fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def _charge_calls(store: Any, n: int) -> Any:
    """One request's store calls, as the proxy makes them for a $1 Stripe charge."""
    from keybrake.core.ledger import LedgerEntry, ObjectCount
    from keybrake.core.windows import Window
    from keybrake.store.base import AuditRow, SettleJob, Settlement
    from keybrake.store.ids import new_audit_id
    from keybrake.store.records import CapSpec

    caps = [
        CapSpec("key", "vk_bench", "daily_usd_cap", "daily_usd", Window.DAY, 10**15, 1_000_000, True),
        CapSpec("key", "vk_bench", "total_usd_cap", "total_usd", Window.TOTAL, None, 1_000_000, True),
        CapSpec("key", "vk_bench", "max_requests_per_hour", "hourly_requests", Window.HOUR, 10**9, 1, False),
    ]

    async def call(settle: Any) -> None:
        now = store.now_ms()
        row = AuditRow(id=new_audit_id(now), ts=now, method="POST", path="/v1/charges", verdict="in_flight")
        row.key_id, row.vendor, row.credential, row.reserved_usd = "vk_bench", "stripe", "bench", 1_000_000
        row.request_summary = {"amount": 100, "currency": "usd", "customer": "cus_bench"}
        res = await store.reserve("vk_bench", 1, caps, row, "bench")
        assert res.items, res
        oid = f"ch_{n:08d}{next(_ids):08d}"
        fact = LedgerEntry(oid, "charge", "cus_bench", None, "usd", 100, 0, None, True)
        settled = Settlement("allowed", 1_000_000, "response", "charge", False, forwarded=True)
        job = SettleJob(
            row, res.items, settled, "daily_usd", ledger=("bench", [fact]), count=ObjectCount(oid, 100, 100)
        )
        await settle(job)

    return call


_ids = iter(range(10**9))


def _shape(sql: str) -> str:
    """A statement's text without its literals (one line per kind of statement)."""
    s = re.sub(r"\s+", " ", sql.strip())
    s = re.sub(r"IN \([^)]*\)", "IN (…)", s)
    return re.sub(r"'[^']*'|\b\d+\b", "?", s)[:90]


async def _main(n: int, c: int, rounds: int, statements: bool) -> None:
    from keybrake.proxy.settler import SettleWriter
    from keybrake.store.open import open_store
    from keybrake.store.records import KeyRecord

    counts: collections.Counter[str] = collections.Counter()
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(None, Path(tmp), migrate=False)
        now = store.now_ms()
        expires = now + 86_400_000
        key = KeyRecord("vk_bench", "stripe", "bench", "bench", {}, {}, 1, "active", now, expires, None, None, None)
        await store.insert_key(key, "h_bench")
        settler = SettleWriter(store)
        call = _charge_calls(store, 0)

        async def settle(job: Any) -> None:
            await settler.submit(job)

        tid = store._group._thread.native_id  # type: ignore[attr-defined]  # the writer thread
        if statements:
            db = store._db  # type: ignore[attr-defined]
            db.set_trace_callback(lambda sql: counts.update([_shape(sql)]))
        best, best_writer = 1e9, 1e9
        for r in range(rounds):
            left = n

            async def worker() -> None:
                nonlocal left
                while left > 0:
                    left -= 1
                    await call(settle)

            counts.clear()
            ru0, w0, t0 = resource.getrusage(resource.RUSAGE_SELF), _thread_cpu(tid), time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(c)))
            await settler.flush(10)
            ru1, w1, t1 = resource.getrusage(resource.RUSAGE_SELF), _thread_cpu(tid), time.perf_counter()
            cpu = (ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime) / n * 1e6
            writer = (w1 - w0) / n * 1e6
            best, best_writer = min(best, cpu), min(best_writer, writer)
            rate = n / (t1 - t0)
            print(f"round {r + 1}: {cpu:.0f} µs CPU/request, writer thread {writer:.0f} µs, {rate:.0f} requests/s")
        print(f"{sys.prefix}: best {best:.0f} µs CPU/request, writer thread {best_writer:.0f} µs")
        if statements:
            print(f"statements per request (last round): {sum(counts.values()) / n:.2f}")
            for sql, k in counts.most_common(20):
                print(f"  {k / n:6.2f}  {sql}")
        await store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--statements", action="store_true", help="also count SQL statements per request")
    args = ap.parse_args()
    if args.requests < 1 or args.concurrency < 1 or args.rounds < 1:
        ap.error("--requests, --concurrency and --rounds must be at least 1")
    import uvloop

    uvloop.run(_main(args.requests, args.concurrency, args.rounds, args.statements))


if __name__ == "__main__":
    main()
