#!/usr/bin/env python3
"""Scale-out benchmark: 1, 2 and 3 `keybrake serve` replicas on one PostgreSQL vs direct, same run.

    .venv/bin/python bench/replicas.py                       # 1,2,3 replicas, 32 workers, 8 s each
    .venv/bin/python bench/replicas.py --replicas 1,3 --duration 15 --json out.json

For each replica count it starts the replicas on a fresh database, issues one vault key per
worker (many agent runs: each key has its own counter rows) and measures a closed loop of
`--concurrency` workers POSTing Stripe charges round-robin over the replicas; then the same with
**one hot key** shared by every worker on every replica (all reservations update the same
counter rows: the worst case of row contention). The direct path (the same fake Stripe, no
Keybrake) is measured with the same workers in the same run. Every proxied request is checked:
a 200 with the fake's charge shape; the fake counts what reached it, and that count must equal
the successes.

Reports proxied requests/s and the latency Keybrake adds (p50/p99 proxied minus direct).
Everything (replicas, PostgreSQL, the fake, this load generator) shares this machine's cores:
read the figures as what one small host does, not as a ceiling of the design.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent))
from children import HOST, Child, free_port, http_json, spawn, start_fake_upstream, upstream_stats, wait_healthy
from measure import percentile
from targets import BODY, CONTENT_TYPE, DIRECT_MARK

ADMIN_TOKEN = "bench-admin-token-" + secrets.token_hex(16)
POLICY = {"daily_usd_cap": 100_000_000, "max_requests_per_hour": 100_000_000}


@dataclass
class Row:
    scenario: str
    replicas: int
    keys: str
    requests: int
    errors: int
    rps: float
    p50_ms: float
    p99_ms: float
    added_p50_ms: float | None = None
    added_p99_ms: float | None = None


async def closed_loop(urls: list[str], tokens: list[str], concurrency: int, seconds: float, direct: bool) -> Row:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds
    conn = aiohttp.TCPConnector(limit=concurrency * 2, ttl_dns_cache=None)
    async with aiohttp.ClientSession(connector=conn, trust_env=False) as session:

        async def worker(i: int) -> None:
            nonlocal errors
            url = urls[i % len(urls)]
            headers = {"Authorization": f"Bearer {tokens[i % len(tokens)]}", "Content-Type": CONTENT_TYPE}
            if direct:
                headers[DIRECT_MARK[0]] = DIRECT_MARK[1]
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                try:
                    async with session.post(url, data=BODY, headers=headers) as resp:
                        body = await resp.read()
                        ok = resp.status == 200 and b'"object":"charge"' in body.replace(b" ", b"")
                except (aiohttp.ClientError, OSError):
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        wall = time.perf_counter() - started
    lat = sorted(latencies)
    return Row(
        "direct" if direct else "proxied",
        0,
        "",
        len(lat),
        errors,
        len(lat) / wall,
        percentile(lat, 50) * 1000 if lat else float("nan"),
        percentile(lat, 99) * 1000 if lat else float("nan"),
    )


def proxied_charges(upstream_base: str) -> int:
    stats = upstream_stats(upstream_base)
    proxied: int = stats["charges"] - stats["charges_direct"]
    return proxied


def issue_keys(base: str, n: int) -> list[str]:
    out = []
    for i in range(n):
        body = {"vendor": "stripe", "label": f"bench:replicas:run-{i}", "expires_in": "1h", "policy": POLICY}
        status, key = http_json("POST", f"{base}/v1/keys", token=ADMIN_TOKEN, body=body)
        if status != 201 or not isinstance(key, dict):
            raise SystemExit(f"POST /v1/keys -> {status}: {key!r}")
        out.append(str(key["key"]))
    return out


def start_replicas(n: int, db_url: str, master: str, workdir: Path, timeout: float) -> tuple[list[Child], list[str]]:
    children, bases = [], []
    exe = str(Path(sys.executable).parent / "keybrake")
    for i in range(n):
        port = free_port()
        env = {
            **os.environ,
            "KEYBRAKE_DATABASE_URL": db_url,
            "KEYBRAKE_MASTER_KEY": master,
            "KEYBRAKE_ADMIN_TOKEN": ADMIN_TOKEN,
            "KEYBRAKE_ALLOW_INSECURE_UPSTREAM": "1",
            "KEYBRAKE_UPSTREAM_HOSTS": HOST,
            "KEYBRAKE_LOG_LEVEL": "WARNING",
        }
        data = workdir / f"r{n}-{i}"
        data.mkdir()
        argv = [exe, "serve", "--host", HOST, "--port", str(port), "--data-dir", str(data)]
        child = spawn(f"replica {i}", argv, env, workdir / f"r{n}-{i}.log")
        base = f"http://{HOST}:{port}"
        wait_healthy(child, f"{base}/healthz", timeout)
        children.append(child)
        bases.append(base)
    return children, bases


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--replicas", default="1,2,3", help="replica counts to measure, comma-separated")
    p.add_argument("--concurrency", type=int, default=32, help="closed-loop workers")
    p.add_argument("--duration", type=float, default=8.0, help="seconds per measurement")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per replica count")
    p.add_argument("--pg-admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    args = p.parse_args(argv)
    counts = [int(x) for x in args.replicas.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="keybrake-bench-replicas-"))
    secret = "sk_test_bench" + secrets.token_hex(12)
    master = base64.b64encode(os.urandom(32)).decode()
    upstream, upstream_base = start_fake_upstream(secret, workdir, 30)
    admin = psycopg.connect(args.pg_admin_url, autocommit=True)
    rows: list[Row] = []
    try:
        direct_url = f"{upstream_base}/v1/charges"
        asyncio.run(closed_loop([direct_url], [secret], args.concurrency, args.warmup, True))
        for n in counts:
            db = f"kb_bench_{secrets.token_hex(4)}"
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
            db_url = args.pg_admin_url.rsplit("/", 1)[0] + "/" + db
            children, bases = start_replicas(n, db_url, master, workdir, 60)
            try:
                cred = {"vendor": "stripe", "name": "bench", "secret": secret, "base_url": upstream_base}
                status, out = http_json("POST", f"{bases[0]}/v1/credentials", token=ADMIN_TOKEN, body=cred)
                if status != 201:
                    raise SystemExit(f"POST /v1/credentials -> {status}: {out!r}")
                many = issue_keys(bases[0], args.concurrency)
                hot = issue_keys(bases[0], 1)
                urls = [f"{b}/stripe/v1/charges" for b in bases]
                asyncio.run(closed_loop(urls, many, args.concurrency, args.warmup, False))
                before = proxied_charges(upstream_base)
                d1 = asyncio.run(closed_loop([direct_url], [secret], args.concurrency, args.duration, True))
                m = asyncio.run(closed_loop(urls, many, args.concurrency, args.duration, False))
                h = asyncio.run(closed_loop(urls, hot, args.concurrency, args.duration, False))
                d2 = asyncio.run(closed_loop([direct_url], [secret], args.concurrency, args.duration, True))
                forwarded = proxied_charges(upstream_base) - before
                if forwarded != m.requests + h.requests:
                    raise SystemExit(
                        f"the fake saw {forwarded} proxied charges, the bench counted {m.requests + h.requests}"
                    )
                direct_p50 = (d1.p50_ms + d2.p50_ms) / 2
                direct_p99 = (d1.p99_ms + d2.p99_ms) / 2
                d = Row("direct", n, "-", d1.requests + d2.requests, d1.errors + d2.errors,
                        (d1.rps + d2.rps) / 2, direct_p50, direct_p99)  # fmt: skip
                for r, keys in ((m, f"{args.concurrency} keys"), (h, "1 hot key")):
                    r.replicas, r.keys = n, keys
                    r.added_p50_ms, r.added_p99_ms = r.p50_ms - direct_p50, r.p99_ms - direct_p99
                rows += [d, m, h]
                print(f"{n} replica(s): direct {d.rps:.0f}/s; {m.keys} {m.rps:.0f}/s (+{m.added_p50_ms:.1f} ms p50); "
                      f"{h.keys} {h.rps:.0f}/s (+{h.added_p50_ms:.1f} ms p50)", file=sys.stderr)  # fmt: skip
            finally:
                for c in children:
                    c.stop()
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))
    finally:
        upstream.stop()
        admin.close()
    print(render(rows, args))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2))
    return 0


def render(rows: list[Row], args: argparse.Namespace) -> str:
    lines = [
        f"closed loop, {args.concurrency} workers, {args.duration:g} s per row, {os.cpu_count()} CPUs shared by all",
        "",
        "| replicas | path | keys | req/s | p50 ms | p99 ms | added p50 ms | added p99 ms | errors |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        added = ("—", "—") if r.added_p50_ms is None else (f"{r.added_p50_ms:+.2f}", f"{r.added_p99_ms or 0:+.2f}")
        lines.append(
            f"| {r.replicas} | {r.scenario} | {r.keys} | {r.rps:.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | "
            f"{added[0]} | {added[1]} | {r.errors} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
