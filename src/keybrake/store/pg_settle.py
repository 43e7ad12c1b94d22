"""PostgreSQL's settlement batch in one statement: `SELECT keybrake_settle(args)` (migration 0011).

The shared `sql_settle.SettleQueries.settle_many` costs BEGIN, a row lock, one UPDATE per
counter, one per row, and COMMIT: five round trips or more per batch. `keybrake_settle` does
the same in one statement (one round trip, one implicit transaction) for the batches the proxy
makes: each job settles its own row, the earlier `outcome_unknown` request a retry's answer
settles (`keybrake_settle_kept`), counts what it taught about objects (the ledger, the row's
object count, and what earlier rows counted beyond an object's final total, released latest
first: `keybrake_count_object`) and records the dedup entry's outcome.

Errors are the shared path's (EnforcementUnavailable); the statement is idempotent like the
shared transaction (only rows still holding a reservation are settled), so a batch whose
answer was lost may be run again.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict
from typing import Any

from keybrake.core.caps import POINT_COUNTERS, SEND_COUNTERS
from keybrake.store.pg_reserve import PGReserveQueries, jsonb
from keybrake.store.reservations import ReservedItem, SettleJob
from keybrake.store.sql_base import blocking
from keybrake.store.sql_rows import _row_params
from keybrake.store.sql_settle import _SETTLE_COLS

_SEND_COUNTERS = sorted(SEND_COUNTERS)
_POINT_COUNTERS = sorted(POINT_COUNTERS)


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
                "points": s.points,
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
                "earlier": None
                if job.settles_earlier is None
                else {
                    "id": job.settles_earlier.id,
                    "cost_usd": job.settles_earlier.cost_usd,
                    "cost_source": job.settles_earlier.cost_source,
                    "cost_kind": job.settles_earlier.cost_kind,
                    "count": None if job.settles_earlier.count is None else asdict(job.settles_earlier.count),
                },
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
    return {"jobs": out, "send_counters": _SEND_COUNTERS, "point_counters": _POINT_COUNTERS}


def apply_settled(jobs: list[SettleJob], res: list[dict[str, Any]]) -> None:
    """Leave each job as the shared path leaves it: an open row's stored reservation as its
    items, its row completed (verdict, cost, `cap_usage_after_usd`), and `earlier_settled`
    (whether this job's statement moved the earlier `outcome_unknown` row it settles)."""
    for job, r in zip(jobs, res, strict=True):
        job.earlier_settled = bool(r["earlier_settled"])
        if not r["open"]:
            continue
        job.items = [ReservedItem.from_json(v) for v in json.loads(r["reservation"])]
        job.settlement.apply_to(job.row)
        if r["has_daily"]:
            job.row.cap_usage_after_usd = r["cap_usage"]


class PGSettleQueries(PGReserveQueries):
    """`settle_many` as one statement per batch (PostgreSQL only; `PostgresStore` puts it before
    the shared `SettleQueries`)."""

    @blocking
    def settle_many(self, jobs: list[SettleJob]) -> None:
        """Settle a batch in one statement (see the module). Raises EnforcementUnavailable as the
        shared path does (`commit_unknown`: the connection was lost while it ran)."""
        if not jobs:
            return
        res = self._one_statement("SELECT keybrake_settle(%s)", (jsonb(settle_args(jobs)),))
        apply_settled(jobs, res)
