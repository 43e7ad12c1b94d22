#!/usr/bin/env python3
"""CPU per request of the proxy's metrics and its `Server-Timing` value (issue 14), in process.

    .venv/bin/python bench/metrics_cost.py [--n 200000]

Times what one allowed request touches — `ProxyMetrics.request` (requests counter, overhead and
upstream histograms), `reserved`, `settled_job` and `server_timing` — against the one
`labels(...).inc()` a request cost before, and `generate_latest` (one scrape's rendering).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, generate_latest

from keybrake.proxy.metrics import ProxyMetrics, server_timing
from keybrake.store.base import AuditRow, SettleJob, Settlement


def per_call_us(f: Callable[[], object], n: int) -> float:
    """Process CPU µs per call of `f`, the best of three runs of `n` calls."""
    best = float("inf")
    for _ in range(3):
        t = time.process_time()
        for _ in range(n):
            f()
        best = min(best, time.process_time() - t)
    return best / n * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--n", type=int, default=200_000)
    n = p.parse_args().n
    registry = CollectorRegistry()
    m = ProxyMetrics(registry)
    before = Counter("x_requests", "x", ["vendor", "verdict", "status_class"], registry=CollectorRegistry())
    row = AuditRow(id="kbr_1", ts=0, method="POST", path="/v1/charges", verdict="allowed", vendor="stripe")
    job = SettleJob(row, [], Settlement("allowed", 3_000_000, "response", "charge", False, True), None)

    def now() -> None:
        m.request("stripe", "allowed", 200, 0.512, 1.234)
        m.reserved("stripe", 3_000_000)
        m.settled_job(job)
        server_timing(0.512, 1.234)

    m.request(None, "denied_key_missing", 401, 0.3, None)
    old = per_call_us(lambda: before.labels("stripe", "allowed", "2xx").inc(), n)
    print(f"before (one counter, labels().inc()): {old:.2f} µs/request")
    print(f"now (every series + Server-Timing):    {per_call_us(now, n):.2f} µs/request")
    print(f"one scrape's rendering (generate_latest): {per_call_us(lambda: generate_latest(registry), 2000):.0f} µs")


if __name__ == "__main__":
    main()
