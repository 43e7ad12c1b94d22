"""Housekeeping: this replica's heartbeat, recovery of rows stopped replicas left in flight, dedup purge.

Every HEARTBEAT_S seconds the instance row's heartbeat is renewed; rows of instances whose
heartbeat is older than `LEASE_STALE_MS` (and rows of this instance older than `max_flight_ms`)
are marked `outcome_unknown` with their reservations kept; and dedup entries whose window has
ended are deleted with their sealed replay answers. The same recovery runs once at start
(`register`), before any request is served.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import ClassVar

from prometheus_client import Counter

from keybrake.config import Settings
from keybrake.core.errors import EnforcementUnavailable
from keybrake.jobs.base import Job
from keybrake.logs import event
from keybrake.store.base import LEASE_STALE_MS, Store

HEARTBEAT_S = 5.0


def max_flight_ms(settings: Settings) -> int:
    """No request stays in flight past its longest hold for approval (KEYBRAKE_APPROVAL_MAX_WAIT)
    and its upstream timeout; a row older than this (plus a generous margin, 300 s) lost its
    settlement, and is recovered like a dead process's (ms)."""
    return int((settings.approval_max_wait_s + settings.upstream_timeout_s + 300) * 1000)


class Housekeeping(Job):
    """The replica's own upkeep; `recovered` counts recovered rows (keybrake_recovered_in_flight_rows_total)."""

    name = "housekeeping"
    log: ClassVar[logging.Logger] = logging.getLogger("keybrake")
    failure = "heartbeat failed"

    def __init__(self, store: Store, settings: Settings, instance_id: str, recovered: Counter) -> None:
        self.store, self.settings, self.instance_id, self.recovered = store, settings, instance_id, recovered

    def delay_s(self) -> float:
        return HEARTBEAT_S

    async def register(self) -> int:
        """At start: register this instance, then recover what stopped replicas left (rows recovered).

        A recovery that fails for want of the store (a transient error) does not stop the start:
        it is logged and the job's next pass, HEARTBEAT_S later, recovers instead. Registering is
        required (raises EnforcementUnavailable)."""
        await self.store.register_instance(self.instance_id, socket.gethostname(), os.getpid())
        try:
            return await self._recover(at_start=True)
        except EnforcementUnavailable as exc:
            event(self.log, "recovery at start failed; the housekeeping job tries again", logging.WARNING,
                  error=str(exc), retry_in_s=HEARTBEAT_S)  # fmt: skip
            return 0

    async def run_once(self) -> int:
        """Heartbeat, recover, purge ended dedup entries; returns the rows recovered."""
        await self.store.heartbeat(self.instance_id, socket.gethostname(), os.getpid())
        recovered = await self._recover(at_start=False)
        await self.store.dedup_purge()
        return recovered

    async def _recover(self, *, at_start: bool) -> int:
        """Mark rows another (stopped) replica left in flight `outcome_unknown`, reservations kept;
        count them (`recovered`) and log one WARNING line when there were any."""
        rows = await self.store.recover_in_flight(
            self.instance_id, socket.gethostname(), LEASE_STALE_MS, max_flight_ms(self.settings)
        )
        if rows:
            self.recovered.inc(rows)
            event(
                self.log,
                "recovered requests left in flight by a stopped replica: marked outcome_unknown, reservations kept",
                logging.WARNING,
                count=rows,
                by=self.instance_id,
                at_start=at_start,
            )
        return rows
