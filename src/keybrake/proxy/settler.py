"""Completing audit rows off the response path, in batches.

The reservation and the in-flight row are committed before a request is forwarded; settling
them afterwards does not change what the agent receives, so it need not delay the answer.
Jobs submitted during one event-loop turn are written in one transaction on the next. If the
process dies in between, the rows stay `in_flight` and recovery marks them `outcome_unknown`
with their reservations kept: conservative, never under-counted.
"""

from __future__ import annotations

import asyncio
import logging

from keybrake.errors import EnforcementUnavailable
from keybrake.logs import event
from keybrake.store.base import SettleJob, Store

log = logging.getLogger("keybrake.settle")
MAX_BATCH = 500


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
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            try:
                await self._store.settle_many(batch)
            except EnforcementUnavailable as exc:
                # The rows stay in_flight and are recovered as outcome_unknown, reservations kept.
                event(
                    log,
                    "settle failed; rows stay in_flight until recovery",
                    logging.ERROR,
                    rows=len(batch),
                    error=str(exc),
                )

    async def flush(self) -> None:
        """Wait until everything submitted so far is written (shutdown, read-your-writes)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)
