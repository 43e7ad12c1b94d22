"""The Prometheus metrics of the proxy (docs/operations.md, metrics), and the hot path's
`Server-Timing` value (docs/sdk-stripe.md, response headers).

Every label is bounded: `vendor` is a configured vendor's name (or `unknown` before the key is
known), `verdict` one of a fixed set, `status_class` `1xx`…`9xx`, `scope` `key` or `budget`,
`cap` a cap's name. Never a key id, a path, a budget id or anything an agent chooses.

The hot path pays one dict lookup per series it touches: children are looked up by label once
and kept (`labels()` takes a lock and builds a tuple on every call).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from keybrake.store.base import SettleJob

# Keybrake's own time per request: typically 0.3–3 ms, seconds only when the store stalls.
OVERHEAD_BUCKETS_S = (
    0.0001,
    0.00025,
    0.0005,
    0.00075,
    0.001,
    0.0015,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
    2.5,
)
# The vendor's answer time as Keybrake sees it: a few ms (a local fake) to the upstream timeout.
UPSTREAM_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_MICRO = 1_000_000


def server_timing(overhead_ms: float | None, upstream_ms: float | None) -> str:
    """The `Server-Timing` value (W3C Server Timing): `keybrake;dur=0.412` — Keybrake's own time,
    the audit row's `overhead_ms` to the µs (3 decimals, ms) — then `, upstream;dur=12.300`, the
    vendor's time (`upstream_latency_ms`) when the request was sent (`upstream_ms` not None)."""
    own = f"keybrake;dur={overhead_ms or 0.0:.3f}"
    return own if upstream_ms is None else f"{own}, upstream;dur={upstream_ms:.3f}"


class ProxyMetrics:
    """The proxy's series in `registry`. Money arrives in µUSD and is counted in USD (floats)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.requests = Counter(
            "keybrake_proxy_requests", "Proxied requests by outcome", ["vendor", "verdict", "status_class"], registry=r
        )
        self.overhead = Histogram(
            "keybrake_proxy_overhead_seconds",
            "Keybrake's own time per proxied request (the answer's time minus the vendor's), seconds",
            ["vendor"],
            buckets=OVERHEAD_BUCKETS_S,
            registry=r,
        )
        self.upstream = Histogram(
            "keybrake_upstream_latency_seconds",
            "The vendor's answer time per forwarded request, as Keybrake measured it, seconds",
            ["vendor"],
            buckets=UPSTREAM_BUCKETS_S,
            registry=r,
        )
        self.cap_hits = Counter(
            "keybrake_cap_hits",
            "Requests refused by a cap, by the cap's scope and name",
            ["vendor", "scope", "cap"],
            registry=r,
        )
        self.reserved_usd = Counter(
            "keybrake_reserved_usd", "USD reserved before forwarding (committed reservations)", ["vendor"], registry=r
        )
        self.settled_usd = Counter(
            "keybrake_settled_usd", "USD booked as the real cost by settlements (committed)", ["vendor"], registry=r
        )
        self.recovered = Counter(
            "keybrake_recovered_in_flight_rows",
            "Audit rows left in flight by a stopped replica and recovered (outcome_unknown, reservation kept)",
            registry=r,
        )
        self.shed = Counter(
            "keybrake_audit_rows_shed",
            "Denial audit rows not written: the store's denial queue was full or a row waited past "
            "its bound (a flood of denials)",
            registry=r,
        )
        self.approvals_held = Gauge(
            "keybrake_approvals_held", "Calls held for a person's approval on this replica now", registry=r
        )
        self.approvals = Counter(
            "keybrake_approvals",
            "Calls held for approval (or let go by a run's grant), by how they ended: approved, granted, denied, "
            "expired, cancelled, queue_full",
            ["outcome"],
            registry=r,
        )
        self._children: dict[Any, Any] = {}

    def _child(self, metric: Counter | Histogram, *labels: str) -> Any:
        k = (id(metric), *labels)
        child = self._children.get(k)
        if child is None:
            child = self._children[k] = metric.labels(*labels)
        return child

    def request(
        self, vendor: str | None, verdict: str, status: int, overhead_ms: float | None, upstream_ms: float | None
    ) -> None:
        """One answered proxied request: its outcome, Keybrake's time and the vendor's (ms; None: not
        measured, or not sent). `verdict` is the audit verdict; every `denied_*` counts as `denied`."""
        v = vendor or "unknown"
        k = (v, verdict, status)
        child = self._children.get(k)
        if child is None:
            coarse = "denied" if verdict.startswith("denied_") else verdict
            child = self._children[k] = self.requests.labels(v, coarse, f"{status // 100}xx")
        child.inc()
        if overhead_ms is not None:
            self._child(self.overhead, v).observe(max(overhead_ms, 0.0) / 1000)
        if upstream_ms is not None:
            self._child(self.upstream, v).observe(upstream_ms / 1000)

    def cap_hit(self, vendor: str | None, scope: str, cap: str) -> None:
        """A request refused by a cap: `scope` `key` or `budget`, `cap` its name (`daily_usd_cap`)."""
        self._child(self.cap_hits, vendor or "unknown", scope, cap).inc()

    def reserved(self, vendor: str | None, usd: int) -> None:
        """A committed reservation of `usd` µUSD (counted once per request, when it is settled)."""
        if usd > 0:
            self._child(self.reserved_usd, vendor or "unknown").inc(usd / _MICRO)

    def settled(self, vendor: str | None, usd: int) -> None:
        """`usd` µUSD booked as the real cost by a committed settlement."""
        if usd > 0:
            self._child(self.settled_usd, vendor or "unknown").inc(usd / _MICRO)

    def settled_job(self, job: SettleJob) -> None:
        """A settlement job the store committed (counted once: only after its commit succeeded)."""
        self.settled(job.row.vendor, booked_usd(job))


def booked_usd(job: SettleJob) -> int:
    """µUSD a committed settlement books as the real cost: the row's cost unless its reservation is
    kept (outcome unknown, an estimate awaiting reconciliation: booked when that settles), plus the
    earlier `outcome_unknown` request a retry's answer settles — only if the store says this job's
    settlement moved it (`earlier_settled`): several retries of one request each carry it, the
    store settles it once (as the reconciler counts only when `settle_pending` is True)."""
    own = 0 if job.settlement.keep_reservation else job.settlement.cost_usd
    earlier = job.settles_earlier
    return own + (earlier.cost_usd if earlier is not None and job.earlier_settled else 0)
