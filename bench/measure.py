"""What a measured block yields: latency percentiles, CPU per request, one Result per target."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


class CpuMeter:
    """CPU seconds the children spend during a block of work."""

    def __init__(self, kb_pid: int | None, up_pid: int | None) -> None:
        self.pids = {"keybrake": kb_pid, "upstream": up_pid}
        self.totals: dict[str, float] = {"keybrake": 0.0, "upstream": 0.0}

    @contextlib.contextmanager
    def measure(self) -> Iterator[None]:
        before = {k: cpu_seconds(p) for k, p in self.pids.items()}
        try:
            yield
        finally:
            for k, p in self.pids.items():
                b, a = before[k], cpu_seconds(p)
                if b is not None and a is not None:
                    self.totals[k] += a - b

    def per_req_ms(self, who: str, requests: int) -> float | None:
        if self.pids[who] is None or requests <= 0:
            return None
        return self.totals[who] * 1000.0 / requests
