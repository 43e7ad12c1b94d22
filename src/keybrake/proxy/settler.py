"""Completing audit rows off the response path, in batches.

The reservation and the in-flight row are committed before a request is forwarded; settling
them afterwards does not change what the agent receives, so it need not delay the answer.
Jobs submitted during one event-loop turn are written in one transaction on the next. If the
store is unavailable (a PostgreSQL restart), the batch is kept and written again with backoff
until it lands: settling is idempotent (a row already settled is left alone), so a COMMIT whose
answer was lost cannot count twice. If the process dies before, the rows stay `in_flight` and
recovery marks them `outcome_unknown` with their reservations kept: conservative, never
under-counted.
"""

from __future__ import annotations

import asyncio
import logging

from keybrake.errors import EnforcementUnavailable
from keybrake.logs import event
from keybrake.store.base import SettleJob, Store

log = logging.getLogger("keybrake.settle")
MAX_BATCH = 500
RETRY_BASE_S = 0.2
RETRY_MAX_S = 5.0


class SettleWriter:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._pending: list[SettleJob] = []
        self._task: asyncio.Task[None] | None = None

    def submit(self, job: SettleJob) -> None:
        self._pending.append(job)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain(), name="keybrake-settle")

    async def _drain(self) -> None:
        await asyncio.sleep(0)  # let the rest of this loop turn submit its jobs too
        failures = 0
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            try:
                await self._store.settle_many(batch)
                if failures:
                    event(log, "settle recovered", rows=len(batch), failed_attempts=failures)
                failures = 0
            except EnforcementUnavailable as exc:
                self._pending = batch + self._pending  # kept, in order, and tried again
                failures += 1
                if failures == 1 or failures % 20 == 0:
                    event(
                        log,
                        "settle failed; the rows stay in_flight and are written again when the store is back",
                        logging.ERROR,
                        rows=len(self._pending),
                        attempts=failures,
                        error=str(exc),
                    )
                await asyncio.sleep(min(RETRY_BASE_S * 2 ** (failures - 1), RETRY_MAX_S))

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
