"""The open-loop generator (aiohttp): requests on a fixed schedule, whatever the answers' latency."""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from measure import CpuMeter, Result, percentile
from targets import Target

# -- open-loop generator (aiohttp) ---------------------------------------------------------------


@dataclass
class Samples:
    latencies: list[float] = field(default_factory=list)  # seconds, send -> full response
    lags: list[float] = field(default_factory=list)  # seconds, scheduled -> actually sent
    errors: Counter[str] = field(default_factory=Counter)
    dropped: int = 0  # not sent because max_inflight requests were already outstanding
    wall: float = 0.0
    cpu: CpuMeter | None = None

    def result(self, scenario: str, target: str, generator: str, vendor: str = "stripe") -> Result:
        lat = sorted(self.latencies)
        lags = sorted(self.lags)
        errors = dict(self.errors)
        if self.dropped:
            errors["dropped"] = self.dropped
        ms = 1000.0
        n = len(lat)
        result = Result(
            scenario=scenario,
            target=target,
            generator=generator,
            ok=n,
            errors=errors,
            duration_s=round(self.wall, 3),
            rps=n / self.wall if self.wall > 0 else 0.0,
            p50_ms=percentile(lat, 50) * ms,
            p90_ms=percentile(lat, 90) * ms,
            p99_ms=percentile(lat, 99) * ms,
            max_ms=(lat[-1] if lat else math.nan) * ms,
            keybrake_cpu_ms_per_req=self.cpu.per_req_ms("keybrake", n) if self.cpu else None,
            upstream_cpu_ms_per_req=self.cpu.per_req_ms("upstream", n) if self.cpu else None,
            extra={
                "mean_ms": sum(lat) / n * ms if n else math.nan,
                "send_lag_p50_ms": percentile(lags, 50) * ms,
                "send_lag_p99_ms": percentile(lags, 99) * ms,
            },
            vendor=vendor,
        )
        return self.cpu.with_pg(result, n) if self.cpu else result


async def open_loop_block(
    session: Any,  # aiohttp.ClientSession
    target: Target,
    rate: float,
    seconds: float,
    max_inflight: int,
    request_timeout: float,
    samples: Samples,
) -> None:
    """Fire rate*seconds requests on a fixed schedule, whatever the answers' latency."""
    import aiohttp

    headers = target.headers()
    count = max(1, round(rate * seconds))
    pending: set[asyncio.Task[None]] = set()

    async def one(due: float) -> None:
        start = time.perf_counter()
        try:
            async with session.post(target.url, data=target.body, headers=headers) as resp:
                await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            samples.errors[type(exc).__name__] += 1
            return
        end = time.perf_counter()
        if status != target.ok_status:
            samples.errors[f"http_{status}"] += 1
            return
        samples.latencies.append(end - start)
        samples.lags.append(start - due)

    t0 = time.perf_counter() + 0.005
    try:
        for i in range(count):
            due = t0 + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(pending) >= max_inflight:
                samples.dropped += 1
                continue
            task = asyncio.create_task(one(due))
            pending.add(task)
            task.add_done_callback(pending.discard)
        if pending:
            _, unfinished = await asyncio.wait(set(pending), timeout=request_timeout + 5.0)
            if unfinished:
                samples.errors["unfinished"] += len(unfinished)
    finally:  # also on Ctrl-C / SIGTERM: nothing may outlive its session
        for task in list(pending):
            task.cancel()
    samples.wall += time.perf_counter() - t0


async def open_loop_phase(
    targets: list[Target],
    rate: float,
    seconds: float,
    rounds: int,
    warmup: float,
    max_inflight: int,
    request_timeout: float,
    cpu: CpuMeter,
) -> dict[str, Samples]:
    """Warm up each target, then alternate blocks of seconds/rounds per target (ABBA order)."""
    import aiohttp

    out = {t.name: Samples(cpu=cpu.fresh()) for t in targets}
    timeout = aiohttp.ClientTimeout(total=request_timeout)
    sessions = {
        t.name: aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max_inflight, ttl_dns_cache=None),
            timeout=timeout,
            trust_env=False,
        )
        for t in targets
    }
    try:
        if warmup > 0:
            for t in targets:
                await open_loop_block(sessions[t.name], t, rate, warmup, max_inflight, request_timeout, Samples())
        block = seconds / rounds
        for r in range(rounds):
            order = targets if r % 2 == 0 else list(reversed(targets))
            for t in order:
                samples = out[t.name]
                assert samples.cpu is not None
                with samples.cpu.measure():
                    await open_loop_block(sessions[t.name], t, rate, block, max_inflight, request_timeout, samples)
    finally:
        for s in sessions.values():
            await s.close()
    return out


def steady_phase(targets: list[Target], args: argparse.Namespace, cpu: CpuMeter) -> dict[str, Samples]:
    """The steady scenario's open loop (direct and proxied blocks alternating) for `targets`."""
    return run_open_loop(
        targets=targets,
        rate=args.rate,
        seconds=args.duration,
        rounds=args.rounds,
        warmup=args.warmup,
        max_inflight=args.max_inflight,
        request_timeout=args.request_timeout,
        cpu=cpu,
    )


def run_open_loop(**kwargs: Any) -> dict[str, Samples]:
    try:
        import uvloop
    except ImportError:  # plain asyncio works, just with more generator overhead
        return asyncio.run(open_loop_phase(**kwargs))
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(open_loop_phase(**kwargs))
