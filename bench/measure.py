"""What a measured block yields: latency percentiles, CPU per request, one Result per target."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pg_wire import WireCounts


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (nan when empty)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int | None) -> float | None:
    """user+system CPU seconds of a process (all its threads), from /proc; None if unknown."""
    if pid is None:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def postgres_cpu_seconds() -> float | None:
    """user+system CPU seconds of every PostgreSQL server process on this machine (the postmaster,
    its backends, WAL writer, checkpointer…, named `postgres` in /proc), live ones only: a backend
    that exits during a block takes its CPU with it, so this under-counts connection churn.
    None when no such process is visible (the server runs elsewhere)."""
    total, seen = 0, False
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if stat.partition("(")[2].rpartition(")")[0] != "postgres":
            continue
        fields = stat.rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])
        seen = True
    return total / _CLK_TCK if seen else None


# -- results -------------------------------------------------------------------------------------


@dataclass
class Result:
    scenario: str  # "steady" | "sustain" | "max"
    target: str  # "direct" | "keybrake"
    generator: str  # "open-loop 200/s" | "wrk c=32 t=2"
    ok: int
    errors: dict[str, int]
    duration_s: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    keybrake_cpu_ms_per_req: float | None = None
    upstream_cpu_ms_per_req: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    vendor: str = "stripe"
    # --pg-wire: PostgreSQL traffic of the measured blocks (every Keybrake connection, background
    # jobs included) divided by the requests; see bench/pg_wire.py for the definitions.
    pg_round_trips_per_req: float | None = None
    pg_commits_per_req: float | None = None
    pg_statements_per_req: float | None = None
    # --pg-url on this machine: CPU of the PostgreSQL server's processes per request (ms).
    postgres_cpu_ms_per_req: float | None = None

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


class CpuMeter:
    """CPU seconds the children spend during a block of work, and (with `wire`, a function giving
    the PostgreSQL relay's running totals) the PostgreSQL traffic of those blocks."""

    def __init__(
        self,
        kb_pid: int | None,
        up_pid: int | None,
        wire: Callable[[], WireCounts] | None = None,
        *,
        local_pg: bool = False,
    ) -> None:
        """`local_pg`: the PostgreSQL server runs on this machine; its CPU is measured too."""
        self.pids = {"keybrake": kb_pid, "upstream": up_pid}
        self.totals: dict[str, float] = {"keybrake": 0.0, "upstream": 0.0, "postgres": 0.0}
        self.wire = wire
        self.wire_totals = WireCounts()
        self.local_pg = local_pg

    def fresh(self) -> CpuMeter:
        """A meter of the same processes (and relay) with nothing counted yet."""
        return CpuMeter(self.pids["keybrake"], self.pids["upstream"], self.wire, local_pg=self.local_pg)

    @contextlib.contextmanager
    def measure(self) -> Iterator[None]:
        before = {k: cpu_seconds(p) for k, p in self.pids.items()}
        pg_before = postgres_cpu_seconds() if self.local_pg else None
        wire_before = self.wire() if self.wire else None
        try:
            yield
        finally:
            for k, p in self.pids.items():
                b, a = before[k], cpu_seconds(p)
                if b is not None and a is not None:
                    self.totals[k] += a - b
            pg_after = postgres_cpu_seconds() if pg_before is not None else None
            if pg_before is not None and pg_after is not None:
                self.totals["postgres"] += pg_after - pg_before
            if self.wire is not None and wire_before is not None:
                self.wire_totals = self.wire_totals + (self.wire() - wire_before)

    def with_pg(self, result: Result, requests: int) -> Result:
        """`result` with its pg_*_per_req fields set from the relay's counts (unchanged without a
        relay, without requests, or for a direct target, which does not touch PostgreSQL), and
        `postgres_cpu_ms_per_req` when the server is local."""
        if requests <= 0 or result.target == "direct":
            return result
        if self.local_pg:
            result.postgres_cpu_ms_per_req = self.totals["postgres"] * 1000.0 / requests
        if self.wire is None:
            return result
        w = self.wire_totals
        result.pg_round_trips_per_req = w.round_trips / requests
        result.pg_commits_per_req = w.commits / requests
        result.pg_statements_per_req = w.statements / requests
        return result

    def per_req_ms(self, who: str, requests: int) -> float | None:
        if self.pids.get(who) is None or requests <= 0:
            return None
        return self.totals[who] * 1000.0 / requests
