"""Background jobs, one shape (`base.Job`), listed in one place (`build_jobs`).

Every replica runs them all: housekeeping (heartbeat, recovery, dedup purge), reconciliation,
the alert scans, alert delivery and retention. docs/architecture.md describes each.
"""

from __future__ import annotations

from keybrake.config import Settings
from keybrake.core.upstream import Upstream
from keybrake.crypto import Sealer
from keybrake.jobs.alert_scans import AlertScans
from keybrake.jobs.alerts import Alerts
from keybrake.jobs.base import Job, JobRunner
from keybrake.jobs.housekeeping import Housekeeping
from keybrake.jobs.reconcile import ReconcileJob, Reconciler
from keybrake.jobs.retention import RetentionJob
from keybrake.proxy.metrics import ProxyMetrics
from keybrake.store.base import Store
from keybrake.vendors.base import Vendor

__all__ = ["Job", "JobRunner", "build_jobs"]


def build_jobs(
    *,
    store: Store,
    settings: Settings,
    vendors: dict[str, Vendor],
    sealer: Sealer,
    upstream: Upstream,
    alerts: Alerts,
    housekeeping: Housekeeping,
    metrics: ProxyMetrics | None = None,
) -> list[Job]:
    """The jobs the app runs, in the order they start and stop (`JobRunner`).

    `upstream` is the client reconciliation reads vendor objects with (the proxy's); alert
    deliveries use `alerts`' own. Intervals: housekeeping every 5 s, reconciliation per vendor
    (KEYBRAKE_RECONCILE_INTERVAL, KEYBRAKE_TWILIO_RECONCILE_INTERVAL), alert scans every
    KEYBRAKE_ALERT_INTERVAL s (held events every second), delivery every second, retention hourly.
    """
    return [
        housekeeping,
        ReconcileJob(Reconciler(store, vendors, upstream, sealer, settings, metrics)),
        AlertScans(alerts),
        alerts.deliverer,
        RetentionJob(store, settings.audit_retention_days, settings.audit_purge_export_dir),
    ]
