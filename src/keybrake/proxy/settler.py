"""Completing audit rows off the response path, in batches.

The reservation and the in-flight row are committed before a request is forwarded; settling
them afterwards does not change what the agent receives, so it need not delay the answer.
Jobs submitted during one event-loop turn are written in one transaction on the next. If the
store is unavailable (a PostgreSQL restart), the batch is kept and written again with backoff
until it lands: settling is idempotent (a row already settled is left alone), so a COMMIT whose
answer was lost cannot count twice. If the process dies before, the rows stay `in_flight` and
recovery marks them `outcome_unknown` with their reservations kept: conservative, never
under-counted.

One bad job cannot strand the others: a batch that fails is written again job by job; a job
that still fails while its neighbours succeed is written in its degraded form — the row marked
`outcome_unknown` with its whole reservation kept (never under-counted), without what its
answer taught — and if even that fails, it is logged and left for recovery.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

from keybrake.core.errors import EnforcementUnavailable
from keybrake.logs import event, redact
from keybrake.proxy.metrics import ProxyMetrics
from keybrake.store.base import SettleJob, Settlement, SettleStore

log = logging.getLogger("keybrake.settle")
MAX_BATCH = 500
RETRY_BASE_S = 0.2
RETRY_MAX_S = 5.0


class SettleWriter:
    """`metrics`: each job is counted (`keybrake_settled_usd_total`) once, after its commit."""

    def __init__(self, store: SettleStore, metrics: ProxyMetrics | None = None) -> None:
        self._store = store
        self._metrics = metrics
        self._pending: list[tuple[SettleJob, asyncio.Future[bool]]] = []
        self._task: asyncio.Task[None] | None = None

    def submit(self, job: SettleJob) -> asyncio.Future[bool]:
        """Queue a settlement. The future completes True once it is committed as given, False when
        its answer must go back without that (the store down: it is kept and written later; or
        refused and written degraded, its reservation kept)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[bool] = loop.create_future()
        self._pending.append((job, done))
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._drain(), name="keybrake-settle")
        return done

    async def _drain(self) -> None:
        await asyncio.sleep(0)  # let the rest of this loop turn submit its jobs too
        failures = 0
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            try:
                await self._store.settle_many([job for job, _ in batch])
            except Exception as exc:  # an outage, or one bad job: tell them apart job by job
                left = await self._one_by_one(batch)
                if not left:
                    failures = 0
                    continue
                # The store is down: the answers waiting on these rows go back now (a forwarded
                # answer always reaches the agent). Their rows stay in_flight until written, so
                # another write on the same object is refused meanwhile (one write per object).
                _resolve(left, written=False)
                self._pending = left + self._pending  # kept, in order, and tried again
                failures += 1
                if failures == 1 or failures % 20 == 0:
                    event(
                        log,
                        "settle failed; the rows stay in_flight and are written again when the store is back",
                        logging.ERROR,
                        rows=len(self._pending),
                        attempts=failures,
                        error=redact(str(exc)),
                    )
                await asyncio.sleep(min(RETRY_BASE_S * 2 ** (failures - 1), RETRY_MAX_S))
                continue
            self._committed(batch)
            if failures:
                event(log, "settle recovered", rows=len(batch), failed_attempts=failures)
            failures = 0

    async def _one_by_one(
        self, batch: list[tuple[SettleJob, asyncio.Future[bool]]]
    ) -> list[tuple[SettleJob, asyncio.Future[bool]]]:
        """Write each job alone. Returns the jobs to try again (all of them while the store is down)."""
        failed: list[tuple[tuple[SettleJob, asyncio.Future[bool]], Exception]] = []
        written = 0
        for item in batch:
            try:
                await self._store.settle_many([item[0]])
            except Exception as exc:
                failed.append((item, exc))
            else:
                written += 1
                self._committed([item])
        if not failed or (written == 0 and all(isinstance(e, EnforcementUnavailable) for _, e in failed)):
            return [item for item, _ in failed]  # nothing failed, or the store is down: try again later
        # A job the store was too busy for (no connection in time, a timeout) is not refused:
        # it is tried again, never degraded (found by the fail-closed drill).
        busy = [item for item, e in failed if isinstance(e, EnforcementUnavailable) and e.transient]
        for (job, done), error in failed:
            if isinstance(error, EnforcementUnavailable) and error.transient:
                continue
            await self._degrade(job, error)  # books nothing: its reservation is kept
            _resolve([(job, done)], written=False)
        return busy

    def _committed(self, batch: list[tuple[SettleJob, asyncio.Future[bool]]]) -> None:
        if self._metrics is not None:
            for job, _ in batch:
                self._metrics.settled_job(job)
        _resolve(batch, written=True)

    async def _degrade(self, job: SettleJob, exc: Exception) -> None:
        """A job the store refuses while others succeed: keep its whole reservation, drop the rest."""
        row = job.row
        event(
            log,
            "settlement refused by the store; the row is kept outcome_unknown with its reservation",
            logging.ERROR,
            request_id=row.id,
            key_id=row.key_id,
            error=f"{type(exc).__name__}: {redact(str(exc))[:300]}",
        )
        kept = Settlement("outcome_unknown", row.reserved_usd, "estimate", row.cost_kind, True, forwarded=True)
        safe_row = replace(
            row,
            cost_usd=row.reserved_usd,
            reason="Keybrake could not record this answer's cost; the reservation is kept until reconciled.",
            vendor_object_id=None,
        )
        degraded = SettleJob(safe_row, job.items, kept, job.daily_counter)
        try:
            await self._store.settle_many([degraded])
        except Exception as again:
            event(
                log,
                "degraded settlement failed too; the row stays in_flight and is recovered as outcome_unknown",
                logging.ERROR,
                request_id=row.id,
                error=type(again).__name__,
            )

    async def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far is written (shutdown, read-your-writes).

        False if the store did not take it within `timeout`: the rows stay in flight (and are
        recovered as `outcome_unknown` if this process stops).
        """
        task = self._task
        if task is None or task.done():
            return True
        done, _ = await asyncio.wait({task}, timeout=timeout)
        return bool(done)


def _resolve(batch: list[tuple[SettleJob, asyncio.Future[bool]]], *, written: bool) -> None:
    for _, done in batch:
        if not done.done():
            done.set_result(written)
