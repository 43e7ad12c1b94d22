"""The reservation, written once for every SQL engine: one transaction per proxied request.

The key's state and every budget are read in it, the caps are checked and reserved by one
guarded multi-row UPSERT (no read-modify-write in Python), and the in-flight audit row is
written; counters are always locked in one order (`lock_order`), so concurrent transactions
cannot deadlock on them. `_reserve` reads as its steps, in the order they run in the
transaction; each step is a function below, and none awaits between BEGIN and COMMIT.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import Any

from keybrake.core.caps import SEND_COUNTERS
from keybrake.core.errors import CapHit, EnforcementUnavailable
from keybrake.core.windows import resets_at, window_start
from keybrake.store.ids import audit_id_floor
from keybrake.store.records import AuditRow, BudgetRecord, CapSpec, CredentialRecord
from keybrake.store.reservations import (
    DedupCheck,
    DedupHit,
    EarlierRequest,
    KeyState,
    ObjectGuard,
    ReservedItem,
    ReserveResult,
    RetryCheck,
)
from keybrake.store.sql_base import Cursor, Row, SQLBase, blocking, lock_order
from keybrake.store.sql_ledger import read_fact
from keybrake.store.sql_rows import _INSERT_AUDIT, _budget, _key, _row_params
from keybrake.store.sql_settle import _counter_key

_RESERVE = """
INSERT INTO counters (scope, cap, window_start, used, reserved, cap_limit)
VALUES {values}
ON CONFLICT (scope, cap, window_start) DO UPDATE
SET reserved = counters.reserved + excluded.reserved, cap_limit = excluded.cap_limit
WHERE excluded.cap_limit IS NULL OR counters.used + counters.reserved + excluded.reserved <= excluded.cap_limit
RETURNING scope, cap, used, reserved
"""
_KEY_STATE = """
SELECT k.status, k.expires_at, k.policy_version, k.label, k.vendor, k.credential, k.credential_gen,
       c.vendor AS c_vendor, c.secret_enc, c.base_url, {now} AS db_now
FROM vault_keys k LEFT JOIN credentials c ON c.name = k.credential AND c.generation = k.credential_gen
WHERE k.id = ?
"""


class ReserveQueries(SQLBase):
    """`reserve`: the proxy's one write before forwarding (see `roles.ReservationStore`)."""

    @functools.cached_property
    def _key_state_sql(self) -> str:
        return _KEY_STATE.format(now=self.NOW_SQL)

    @blocking
    def reserve(
        self,
        key_id: str,
        policy_version: int,
        caps: list[CapSpec],
        row: AuditRow,
        owner: str,
        retry: RetryCheck | None = None,
        dedup: DedupCheck | None = None,
        guard: ObjectGuard | None = None,
    ) -> ReserveResult:
        try:
            return self._reserve(key_id, policy_version, caps, row, owner, retry, dedup, guard)
        except _CapRefused as refused:
            cap = refused.cap
            assert cap.limit is not None
            used = self._read(
                "SELECT used + reserved FROM counters WHERE scope = ? AND cap = ? AND window_start = ?",
                (refused.scope, cap.counter, refused.ws),
            )
            hit = CapHit(
                cap.scope,
                cap.scope_id,
                cap.name,
                cap.limit,
                used[0][0] if used else 0,
                cap.amount,
                resets_at(cap.window, refused.ws, cap.timezone),
                cap.is_usd,
            )
            return ReserveResult(KeyState.OK, cap_hit=hit)

    def _reserve(
        self,
        key_id: str,
        policy_version: int,
        caps: list[CapSpec],
        row: AuditRow,
        owner: str,
        retry: RetryCheck | None,
        dedup: DedupCheck | None,
        guard: ObjectGuard | None = None,
    ) -> ReserveResult:
        with self._tx() as cur:
            # First: a budget being created or changed waits for this reservation, or this one
            # waits for it and then reads its new definition (sql_budgets.py). Taken before any
            # other lock, so no cycle can form with settlements.
            self._lock_budgets(cur, exclusive=False)
            k = cur.execute(self._key_state_sql, (key_id,)).fetchone()
            if k is None:
                return ReserveResult(KeyState.MISSING)
            now = self._txn_now(k["db_now"])  # windows and expiry from the store's clock
            state = _key_state(k, now, policy_version)
            if state is not KeyState.OK:
                full = cur.execute("SELECT * FROM vault_keys WHERE id = ?", (key_id,)).fetchone()
                return ReserveResult(state, key=_key(full))
            if guard is not None:
                busy = self._object_busy(cur, k["credential"], guard)
                if busy is not None:
                    return ReserveResult(KeyState.OK, object_busy=busy)
            earlier = None
            if retry is not None:
                self._lock_idempotency(cur, key_id, retry.idempotency_key)
                earlier = _earlier(cur, key_id, retry, now)
            if earlier is not None:
                if earlier.verdict == "in_flight":
                    return ReserveResult(KeyState.OK, retry_of=earlier)
                # The first request already counted the money and the sends; this one counts as a request.
                caps = [replace(c, amount=0) if c.is_usd or c.counter in SEND_COUNTERS else c for c in caps]
                row.reserved_usd, row.cost_source, row.cost_kind = 0, "none", "none"
            elif dedup is not None:
                hit = _dedup_claim(cur, key_id, dedup, row.id, now)
                if hit is not None:
                    return ReserveResult(KeyState.OK, dedup_of=hit)
            caps = _with_budgets(cur, k, caps)
            items = _items(caps, now)
            remaining = _reserve_counters(cur, caps, items)
            fingerprint, object_ref = retry.fingerprint if retry else None, guard.object_ref if guard else None
            cur.execute(_INSERT_AUDIT, _row_params(row, owner, items, fingerprint, object_ref))
            return ReserveResult(
                KeyState.OK, items=items, remaining_usd=remaining, credential=_bound_credential(k), retry_of=earlier
            )

    def _object_busy(self, cur: Cursor, credential: str, guard: ObjectGuard) -> str | None:
        """Why a write on `guard`'s object may not go now, or None.

        One write per object in flight: serialised across replicas by the lock, then checked
        against committed in-flight rows and the facts the request was priced from.
        """
        self._lock_idempotency(cur, f"object:{credential}", guard.object_ref)
        busy = cur.execute(
            "SELECT id FROM audit WHERE credential = ? AND object_ref = ? AND verdict = 'in_flight' LIMIT 1",
            (credential, guard.object_ref),
        ).fetchone()
        if busy is not None:
            return f"{busy[0]} is still in flight"
        if guard.priced_from_fact and read_fact(cur, credential, guard.object_ref) != guard.fact:
            return "its facts changed since this request was priced"
        return None


def _key_state(k: Row, now: int, policy_version: int) -> KeyState:
    """The key's state at `now` (the store's clock), as read in the reservation."""
    if k["status"] == "revoked":
        return KeyState.REVOKED
    if k["expires_at"] <= now:
        return KeyState.EXPIRED
    if k["policy_version"] != policy_version:
        return KeyState.CHANGED
    return KeyState.OK


def _earlier(cur: Cursor, key_id: str, retry: RetryCheck, now: int) -> EarlierRequest | None:
    # Only an earlier request that may have moved money makes this one a retry: still in
    # flight, outcome unknown, or answered with what the vendor stores under the key.
    cached = sorted(retry.cached_statuses) or [-1]
    marks = ", ".join("?" for _ in cached)
    r = cur.execute(
        "SELECT id, verdict FROM audit WHERE key_id = ? AND idempotency_key = ? AND fingerprint = ?"
        " AND id >= ? AND (verdict IN ('in_flight', 'outcome_unknown') OR (verdict = 'allowed' AND"
        f" ((upstream_status >= 200 AND upstream_status < 300) OR upstream_status IN ({marks}))))"
        " ORDER BY id LIMIT 1",
        (key_id, retry.idempotency_key, retry.fingerprint, audit_id_floor(now - retry.window_ms), *cached),
    ).fetchone()
    return EarlierRequest(r["id"], r["verdict"]) if r else None


def _with_budgets(cur: Cursor, k: Row, caps: list[CapSpec]) -> list[CapSpec]:
    """`caps` plus the counters of every budget covering the key, read in this transaction: a
    budget created or changed before this request applies to it."""
    usd = next((c.amount for c in caps if c.scope == "key" and c.counter == "total_usd"), 0)
    for budget in _budgets(cur):
        if budget.covers(k["label"], k["vendor"], k["credential"]):
            caps = [*caps, *budget.caps(usd)]
    return caps


def _items(caps: list[CapSpec], now: int) -> list[ReservedItem]:
    """The counter each cap reserves in, in its current window; raises `_CapRefused` for an
    amount above its cap's limit whatever the counter holds."""
    items: list[ReservedItem] = []
    for cap in caps:
        ws = window_start(cap.window, now, cap.timezone)
        scope = f"{cap.scope}:{cap.scope_id}"
        if cap.limit is not None and cap.amount > cap.limit:
            raise _CapRefused(cap, scope, ws)
        items.append(ReservedItem(scope, cap.counter, ws, cap.amount, cap.is_usd))
    return items


def _reserve_counters(cur: Cursor, caps: list[CapSpec], items: list[ReservedItem]) -> int | None:
    """Reserve every item with one guarded UPSERT, rows in lock order: the key's, then budgets by id.

    Returns the smallest µUSD left under a USD cap (None: no USD cap); raises `_CapRefused` for
    the first counter the guard refused (the whole transaction then rolls back).
    """
    params: dict[str, Any] = {}
    values: list[str] = []
    order = sorted(range(len(items)), key=lambda j: lock_order(*_counter_key(items[j])))
    for i in order:
        cap, item = caps[i], items[i]
        values.append(f"(:s{i}, :c{i}, :w{i}, 0, :a{i}, :l{i})")
        params.update(
            {
                f"s{i}": item.counter_scope,
                f"c{i}": cap.counter,
                f"w{i}": item.window_start,
                f"a{i}": cap.amount,
                f"l{i}": cap.limit,
            }
        )
    rows = cur.execute(_RESERVE.format(values=", ".join(values)), params).fetchall()
    got = {(r["scope"], r["cap"]): r for r in rows}
    remaining: int | None = None
    for cap, item in zip(caps, items, strict=True):
        r = got.get((item.counter_scope, cap.counter))
        if r is None:  # the guard refused this counter: the whole transaction rolls back
            raise _CapRefused(cap, item.counter_scope, item.window_start)
        if cap.is_usd and cap.limit is not None:
            left = cap.limit - r["used"] - r["reserved"]
            remaining = left if remaining is None else min(remaining, left)
    return remaining


def _bound_credential(k: Row) -> CredentialRecord | None:
    """The credential the key is bound to (name and generation), read in the same transaction."""
    if k["c_vendor"] is None:
        return None
    return CredentialRecord(
        k["credential"],
        k["c_vendor"],
        bytes(k["secret_enc"]),
        "",
        k["base_url"],
        None,
        0,
        None,
        k["credential_gen"],
    )


def _budgets(cur: Cursor) -> list[BudgetRecord]:
    return [_budget(r) for r in cur.execute("SELECT * FROM budgets ORDER BY id").fetchall()]


def _dedup_claim(cur: Cursor, key_id: str, dedup: DedupCheck, row_id: str, now: int) -> DedupHit | None:
    """Claim the dedup entry for this request, or return the live entry of the request it repeats.

    The claim is a guarded UPSERT: a concurrent duplicate waits on the entry's row lock and then
    finds it live, so two duplicates can never both be sent (on any engine, any replica).
    """
    for _ in range(3):
        claimed = cur.execute(
            "INSERT INTO dedup (key_id, fingerprint, row_id, expires_at, state, answer_enc)"
            " VALUES (?, ?, ?, ?, 'in_flight', NULL) ON CONFLICT (key_id, fingerprint) DO UPDATE SET"
            " row_id = excluded.row_id, expires_at = excluded.expires_at, state = 'in_flight', answer_enc = NULL"
            " WHERE dedup.expires_at <= ? RETURNING row_id",
            (key_id, dedup.fingerprint, row_id, now + dedup.window_ms, now),
        ).fetchone()
        if claimed is not None:
            return None
        r = cur.execute(
            "SELECT row_id, state, answer_enc FROM dedup WHERE key_id = ? AND fingerprint = ? AND expires_at > ?",
            (key_id, dedup.fingerprint, now),
        ).fetchone()
        if r is not None:
            return _dedup_hit(r)
        # the live entry was released (nothing sent) between the two statements: claim again
    raise EnforcementUnavailable("the dedup entry kept changing under this request")


def _dedup_hit(r: Row) -> DedupHit:
    enc = r["answer_enc"]
    return DedupHit(r["row_id"], r["state"], bytes(enc) if enc is not None else None)


class _CapRefused(Exception):
    """Raised inside the reservation transaction so that it rolls back as a whole."""

    def __init__(self, cap: CapSpec, scope: str, ws: int) -> None:
        self.cap, self.scope, self.ws = cap, scope, ws
