"""--pg-wire's closed loops: PostgreSQL round trips and commits per proxied request with 1
(sequential) and 16 concurrent clients, as issue 14 states its targets."""

from __future__ import annotations

import asyncio
import math

from measure import CpuMeter, Result
from replicas import closed_loop
from targets import Target

CONCURRENCIES = (1, 16)


def pg_closed_loops(target: Target, seconds: float, cpu: CpuMeter) -> list[Result]:
    """One Result per concurrency in CONCURRENCIES (scenario "pg-c1", "pg-c16"): `seconds` of a
    closed loop of that many aiohttp workers POSTing Stripe charges to `target` (Keybrake), with
    the relay's counts over that window divided by the successful requests."""
    out: list[Result] = []
    for n in CONCURRENCIES:
        meter = cpu.fresh()
        with meter.measure():
            row = asyncio.run(closed_loop([target.url], [target.bearer], n, seconds, direct=False))
        result = Result(
            scenario=f"pg-c{n}",
            target=target.name,
            generator=f"closed loop c={n}",
            ok=row.requests,
            errors={"failed": row.errors} if row.errors else {},
            duration_s=seconds,
            rps=row.rps,
            p50_ms=row.p50_ms,
            p90_ms=math.nan,
            p99_ms=row.p99_ms,
            max_ms=math.nan,
            keybrake_cpu_ms_per_req=meter.per_req_ms("keybrake", row.requests),
            upstream_cpu_ms_per_req=meter.per_req_ms("upstream", row.requests),
        )
        out.append(meter.with_pg(result, row.requests))
    return out
