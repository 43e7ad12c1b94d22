"""PostgreSQL's settlement batch in one statement: `SELECT keybrake_settle(args)` (migration 0011).

The shared `sql_settle.SettleQueries.settle_many` costs BEGIN, a row lock, one UPDATE per
counter, one per row, and COMMIT: five round trips or more per batch. `keybrake_settle` does
the same in one statement (one round trip, one implicit transaction) for the batches the proxy
makes: jobs that settle their own row, count what it taught about objects (the ledger, the
row's object count, and what earlier rows counted beyond an object's final total, released
latest first: `keybrake_count_object`) and record the dedup entry's outcome. A batch with a job
that also settles an earlier `outcome_unknown` request (a retry's answer) is rare and runs
through the shared path unchanged.

Errors are the shared path's (EnforcementUnavailable); the statement is idempotent like the
shared transaction (only rows still holding a reservation are settled), so a batch whose
answer was lost may be run again.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict
from typing import Any, cast

from keybrake.core.caps import SEND_COUNTERS
from keybrake.store.pg_reserve import PGReserveQueries, jsonb
from keybrake.store.reservations import ReservedItem, SettleJob
from keybrake.store.sql_base import blocking
from keybrake.store.sql_rows import _row_params
from keybrake.store.sql_settle import _SETTLE_COLS, SettleQueries

_SEND_COUNTERS = sorted(SEND_COUNTERS)


def one_statement_batch(jobs: list[SettleJob]) -> bool:
    """Whether `keybrake_settle` settles this batch (else the shared path does)."""
    return all(j.settles_earlier is None for j in jobs)


def settle_args(jobs: list[SettleJob]) -> dict[str, Any]:
    """The one jsonb argument of `keybrake_settle`: each job's row completed as the shared path
    would complete it if it is still open (the statement decides that, and fills in
    `cap_usage_after_usd` and `reservation`)."""
    out = []
    for job in jobs:
        row, s = copy.copy(job.row), job.settlement
        s.apply_to(row)
        params = _row_params(row, None, None)
        ledger = job.ledger
        out.append(
            {
                "row_id": row.id,
                "ts": row.ts,
                "keep": s.keep_reservation,
                "cost_usd": s.cost_usd,
                "billed": s.billed,
                "forwarded": s.forwarded,
                "daily_counter": job.daily_counter,
                "params": {c: params[c] for c in _SETTLE_COLS if c not in ("cap_usage_after_usd", "reservation")}
                | {"cap_usage_after_usd": job.row.cap_usage_after_usd},
                "credential": row.credential,
                "held": row.reserved_usd if s.keep_reservation else row.cost_usd,
                "ledger_credential": ledger[0] if ledger is not None else None,
                "ledger": None
                if ledger is None
                else [{k: v for k, v in e.__dict__.items() if k != "amount_counted"} for e in ledger[1]],
                "count": None if job.count is None else asdict(job.count),
                "dedup": None
                if job.dedup is None
                else {
                    "key_id": job.dedup.key_id,
                    "fingerprint": job.dedup.fingerprint,
                    "state": job.dedup.state,
                    "answer_hex": job.dedup.answer_enc.hex() if job.dedup.answer_enc is not None else None,
                },
            }
        )
    return {"jobs": out, "send_counters": _SEND_COUNTERS}


def apply_settled(jobs: list[SettleJob], res: list[dict[str, Any]]) -> None:
    """Leave each job as the shared path leaves it: an open row's stored reservation as its
    items, its row completed (verdict, cost, `cap_usage_after_usd`)."""
    for job, r in zip(jobs, res, strict=True):
        if not r["open"]:
            continue
        job.items = [ReservedItem.from_json(v) for v in json.loads(r["reservation"])]
        job.settlement.apply_to(job.row)
        if r["has_daily"]:
            job.row.cap_usage_after_usd = r["cap_usage"]


class PGSettleQueries(PGReserveQueries):
    """`settle_many` as one statement per batch (PostgreSQL only; `PostgresStore` puts it before
    the shared `SettleQueries`, which it is)."""

    async def settle_many(self, jobs: list[SettleJob]) -> None:
        """Settle a batch (see the module): one statement, or the shared transaction.

        Raises EnforcementUnavailable as the shared path does."""
        if not one_statement_batch(jobs):
            await SettleQueries.settle_many(cast(SettleQueries, self), jobs)
        elif jobs:
            await self._settle_batch(jobs)

    @blocking
    def _settle_batch(self, jobs: list[SettleJob]) -> None:
        res = self._one_statement("SELECT keybrake_settle(%s)", (jsonb(settle_args(jobs)),))
        apply_settled(jobs, res)
