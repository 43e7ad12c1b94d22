"""The one shape of background jobs (keybrake.jobs.base) and the one list the app runs (build_jobs)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, ClassVar, cast

import pytest
from prometheus_client import CollectorRegistry, Counter

from keybrake.config import Settings
from keybrake.core.errors import EnforcementUnavailable
from keybrake.core.upstream import Upstream
from keybrake.crypto import Sealer
from keybrake.jobs import Job, JobRunner, build_jobs
from keybrake.jobs.alert_delivery import Deliverer
from keybrake.jobs.alert_scans import AlertScans
from keybrake.jobs.alerts import Alerts
from keybrake.jobs.housekeeping import HEARTBEAT_S, Housekeeping
from keybrake.jobs.reconcile import ReconcileJob
from keybrake.jobs.retention import INTERVAL_S, RetentionJob
from keybrake.store.base import Store
from keybrake.vendors import build_vendors

pytestmark = pytest.mark.store_free

_log = logging.getLogger("keybrake.test_jobs")


class Scripted(Job):
    """A job whose passes raise what `script` says, in order, and record what happened."""

    name = "scripted"
    log: ClassVar[logging.Logger] = _log
    failure = "scripted pass failed"

    def __init__(self, script: list[BaseException | None], journal: list[str], tag: str = "a") -> None:
        self.script, self.journal, self.tag = script, journal, tag
        self.passes = 0

    def delay_s(self) -> float:
        return 0.001

    async def run_once(self) -> int:
        self.passes += 1
        step = self.script.pop(0) if self.script else None
        if step is not None:
            raise step
        return 1

    def failure_fields(self) -> dict[str, Any]:
        return {"tag": self.tag}

    async def on_stop(self) -> None:
        self.journal.append(f"stop {self.tag}")


async def test_a_failed_pass_is_logged_once_and_the_next_pass_comes(caplog: pytest.LogCaptureFixture) -> None:
    journal: list[str] = []
    job = Scripted([EnforcementUnavailable("store down"), None, None], journal)
    runner = JobRunner([job])
    with caplog.at_level(logging.ERROR, logger=_log.name):
        runner.start()
        for _ in range(200):
            if job.passes >= 3:
                break
            await asyncio.sleep(0.005)
        await runner.stop()
    assert job.passes >= 3
    failed = [r for r in caplog.records if r.getMessage() == "scripted pass failed"]
    assert len(failed) == 1
    assert failed[0].fields == {"tag": "a", "error": "store down"}  # type: ignore[attr-defined]
    assert journal == ["stop a"]


async def test_a_bug_ends_the_job_and_is_raised_again_at_stop() -> None:
    journal: list[str] = []
    job = Scripted([ValueError("a bug")], journal)
    runner = JobRunner([job])
    runner.start()
    await asyncio.sleep(0.05)
    assert job.passes == 1  # not retried: only the outage exceptions are survived
    with pytest.raises(ValueError, match="a bug"):
        await runner.stop()


async def test_the_first_pass_waits_a_delay_unless_first_pass_now() -> None:
    class Slow(Scripted):
        def delay_s(self) -> float:
            return 60.0

    class Eager(Slow):
        first_pass_now = True

    slow, eager = Slow([], []), Eager([], [])
    runner = JobRunner([slow, eager])
    runner.start()
    await asyncio.sleep(0.05)
    assert (slow.passes, eager.passes) == (0, 1)
    await runner.stop()


async def test_jobs_are_cancelled_together_and_a_stop_late_job_once_the_ones_before_it_ended() -> None:
    journal: list[str] = []
    seen_by_a: list[bool] = []

    class Slow(Scripted):
        async def on_stop(self) -> None:
            await asyncio.sleep(0.05)  # like the alert scans letting queued events land
            seen_by_a.append(late_task_alive())
            await super().on_stop()

    class Late(Scripted):
        stop_late = True

    class Never(Scripted):
        def delay_s(self) -> float:
            return 60.0

    a, late, c = Slow([], journal, "a"), Late([], journal, "late"), Never([], journal, "c")
    runner = JobRunner([a, late, c])
    runner.start()
    tasks = {t.get_name(): t for t in asyncio.all_tasks()}
    assert {"keybrake-scripted"} <= tasks.keys()

    def late_task_alive() -> bool:
        return any(j is late and not t.done() for j, t in runner._tasks)

    await asyncio.sleep(0.02)
    await runner.stop()
    # c was cancelled with a and stopped at once; late only once a (before it) had ended.
    assert journal == ["stop c", "stop a", "stop late"]
    assert seen_by_a == [True]  # the stop_late job still ran while the one before it was stopping


def _settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        reconcile_interval_s=7.0,
        vendor_settings={"twilio": {"reconcile_interval_s": 3.0}},
        alert_interval_s=0.5,
        audit_retention_days=30,
        audit_purge_export_dir=tmp_path / "purged",
    )


async def test_build_jobs_is_the_one_list_with_each_jobs_settings(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    store, upstream = cast(Store, object()), cast(Upstream, object())
    sealer = Sealer(bytes(32))
    alerts = Alerts(store, sealer, upstream, settings, instance_id="ins_test")
    recovered = Counter("recovered", "", registry=CollectorRegistry())
    housekeeping = Housekeeping(store, settings, "ins_test", recovered)
    jobs = build_jobs(
        store=store, settings=settings, vendors=build_vendors(settings), sealer=sealer, upstream=upstream,
        alerts=alerts, housekeeping=housekeeping,
    )  # fmt: skip
    assert [j.name for j in jobs] == ["housekeeping", "reconcile", "alerts", "alert-delivery", "retention"]
    assert [type(j) for j in jobs] == [Housekeeping, ReconcileJob, AlertScans, Deliverer, RetentionJob]
    assert jobs[0] is housekeeping and jobs[3] is alerts.deliverer
    assert [j.stop_late for j in jobs] == [False, False, False, True, False]
    assert [j.first_pass_now for j in jobs] == [False, False, True, True, True]
    assert jobs[0].delay_s() == HEARTBEAT_S == 5.0
    assert jobs[1].delay_s() == pytest.approx(3.0, abs=0.05)  # Twilio's interval comes first
    assert jobs[2].delay_s() == jobs[3].delay_s() == 0.5  # min(1 s, KEYBRAKE_ALERT_INTERVAL)
    assert jobs[4].delay_s() == INTERVAL_S == 3600.0
    retention = cast(RetentionJob, jobs[4])
    assert (retention.days, retention.export_dir) == (30, tmp_path / "purged")
    assert retention.handled == (EnforcementUnavailable, OSError)


async def test_reconcile_runs_each_vendor_on_its_own_interval(caplog: pytest.LogCaptureFixture) -> None:
    runs: list[str] = []

    class FakeReconciler:
        vendors = {"stripe": None, "twilio": None}

        def interval_s(self, vendor: str) -> float:
            return {"stripe": 0.09, "twilio": 0.04}[vendor]

        async def run_once(self, vendor: str | None = None) -> int:
            runs.append(vendor or "")
            if vendor == "stripe":
                raise EnforcementUnavailable("down")
            return 0

    job = ReconcileJob(cast(Any, FakeReconciler()))
    with caplog.at_level(logging.ERROR, logger="keybrake.reconcile"):
        task = asyncio.create_task(job.run_forever())
        for _ in range(500):
            if runs.count("stripe") >= 2:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert runs[0] == "twilio"  # its interval ends first
    assert runs.count("stripe") >= 2 and runs.count("twilio") >= runs.count("stripe")
    failed = [r.fields for r in caplog.records if r.getMessage() == "reconciliation pass failed"]  # type: ignore[attr-defined]
    assert failed and all(f == {"vendor": "stripe", "error": "down"} for f in failed)


class _RecoveryDown:
    """A store that registers instances but whose recovery fails for want of the database."""

    def __init__(self) -> None:
        self.registered: list[str] = []

    async def register_instance(self, instance_id: str, hostname: str, pid: int) -> None:
        self.registered.append(instance_id)

    async def recover_in_flight(self, *args: Any) -> int:
        raise EnforcementUnavailable("postgresql: terminating connection due to idle-in-transaction timeout")


async def test_a_recovery_that_fails_at_start_does_not_stop_the_start(caplog: pytest.LogCaptureFixture) -> None:
    store = _RecoveryDown()
    recovered = Counter("t_recovered", "t", registry=CollectorRegistry())
    job = Housekeeping(cast(Store, store), Settings(), "ins_start", recovered)
    with caplog.at_level(logging.WARNING):
        assert await job.register() == 0
    assert store.registered == ["ins_start"]
    (line,) = [r for r in caplog.records if "recovery at start failed" in r.getMessage()]
    assert "idle-in-transaction" in str(line.__dict__)  # the error is in the line's fields
