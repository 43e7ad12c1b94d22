"""Budgets in every SQL engine: create, change and seed, ordered against every reservation.

A budget's counters must equal what its keys spent in the current windows, whatever runs
concurrently (docs/security.md, budget books). Three rules make that hold:

- Ordering. Every reservation takes the budgets lock in shared mode as its first statement;
  creating, changing or deleting a budget takes it exclusively (`_lock_budgets`: a PostgreSQL
  transaction advisory lock; SQLite's single writer already orders everything). So a budget
  write waits for the reservations that might have missed it to commit, and the reservations
  after it read the new definition. Seeding runs inside the same transaction as the write.
- Seeding. Settled rows (`reservation IS NULL`) of covered keys in the window count as `used`
  (µUSD `cost_usd`, or one request each for the rows `counted_request_sql` counts, the rule
  settlement moves request counters by); rows still holding a reservation (in flight, outcome
  unknown, pending estimate) are locked and count as `reserved`, and their stored reservation is
  rewritten to name the new counter, so settling them moves it (settlement settles what the
  row's stored reservation names, `sql_settle.settle_many`).
- Window definitions. A change of time zone deletes the budget's day and month counter rows
  and seeds new ones in the same transaction: a counter row is never reused across a change of
  window definition (going back to a zone starts again from the audit rows, not from a stale row).
- Coverage. A key's label decides which `label_prefix` budgets cover it; changing it
  (`update_key`) takes the same exclusive lock and, in the same transaction, moves the key's
  current-window spend out of every budget that stops covering it and into every budget that
  starts covering it (`_move_key_spend`): settled rows as `used`, rows in flight as `reserved`
  with their stored reservations and ledger counts re-pointed as seeding does. Vendor and
  credential never change on a key, and a budget's scope never changes, so nothing else moves
  coverage.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from typing import Any

from keybrake.core.caps import ZONED_BUDGET_COUNTERS
from keybrake.core.windows import Window
from keybrake.store.ids import audit_id_floor
from keybrake.store.records import BudgetRecord, CapSpec
from keybrake.store.reservations import ReservedItem, counted_request_sql
from keybrake.store.sql_base import Cursor, Row, SQLBase, blocking
from keybrake.store.sql_rows import BUDGET_COLS, _budget, prefix_match

# Windows that depend on the budget's time zone (TOTAL does not: its row survives a zone change).
_ZONED = (Window.DAY, Window.MONTH)
# The engine's window starts at the transaction's clock, on its cursor (`SQLBase._window_starts`).
Starts = Callable[[Sequence[tuple[Window, str]]], list[int]]


class BudgetQueries(SQLBase):
    @blocking
    def insert_budget(self, rec: BudgetRecord) -> None:
        cols = ", ".join(BUDGET_COLS)
        with self._tx() as cur:
            self._lock_budgets(cur, exclusive=True)
            cur.execute(
                f"INSERT INTO budgets ({cols}) VALUES ({', '.join(':' + c for c in BUDGET_COLS)})", rec.__dict__
            )
            _seed(cur, rec, rec.caps(0), self._starts(cur), self.FOR_UPDATE, self.NO_INDEX_PREFIX)

    @blocking
    def get_budget(self, budget_id: str) -> BudgetRecord | None:
        rows = self._read("SELECT * FROM budgets WHERE id = ?", (budget_id,))
        return _budget(rows[0]) if rows else None

    @blocking
    def list_budgets(self) -> list[BudgetRecord]:
        return [_budget(r) for r in self._read("SELECT * FROM budgets ORDER BY created_at, id")]

    @blocking
    def update_budget(self, rec: BudgetRecord) -> bool:
        sets = ", ".join(
            f"{c} = :{c}" for c in BUDGET_COLS if c not in ("id", "scope_kind", "scope_value", "created_at")
        )
        with self._tx() as cur:
            self._lock_budgets(cur, exclusive=True)
            before = cur.execute("SELECT timezone FROM budgets WHERE id = ?", (rec.id,)).fetchone()
            if before is None:
                return False
            cur.execute(f"UPDATE budgets SET {sets} WHERE id = :id", rec.__dict__)
            if before[0] != rec.timezone:
                marks = ", ".join("?" for _ in ZONED_BUDGET_COUNTERS)
                cur.execute(
                    f"DELETE FROM counters WHERE scope = ? AND cap IN ({marks})",
                    (f"budget:{rec.id}", *ZONED_BUDGET_COUNTERS),
                )
                zoned = [c for c in rec.caps(0) if c.window in _ZONED]
                _seed(cur, rec, zoned, self._starts(cur), self.FOR_UPDATE, self.NO_INDEX_PREFIX)
            return True

    @blocking
    def delete_budget(self, budget_id: str) -> bool:
        with self._tx() as cur:
            self._lock_budgets(cur, exclusive=True)
            gone = cur.execute("DELETE FROM budgets WHERE id = ?", (budget_id,)).rowcount == 1
            cur.execute("DELETE FROM counters WHERE scope = ?", (f"budget:{budget_id}",))
            return gone

    @blocking
    def update_key(
        self,
        key_id: str,
        expected_version: int,
        *,
        label: str | None,
        metadata: dict[str, str],
        policy: dict[str, Any],
        expires_at: int,
    ) -> bool:
        """Change an active key's label, metadata, policy and expiry (ms) if its policy version is
        still `expected_version` (the version goes up by one). False when the key changed, was
        revoked or is gone meanwhile (nothing written).

        A label change moves the key's current-window spend between the `label_prefix` budgets it
        leaves and joins, in the same transaction, under the exclusive budgets lock (taken first,
        before any row lock), so no reservation or settlement sees a half-moved key.
        """
        with self._tx() as cur:
            # A plain read (no row lock) decides whether coverage may move; the version guard of
            # the UPDATE below makes sure the label it read is still the key's.
            before = cur.execute(
                "SELECT label, vendor, credential FROM vault_keys WHERE id = ? AND policy_version = ?",
                (key_id, expected_version),
            ).fetchone()
            if before is None:
                return False
            relabel = before["label"] != label
            if relabel:
                self._lock_budgets(cur, exclusive=True)
            n = cur.execute(
                "UPDATE vault_keys SET label = ?, metadata = ?, policy = ?, expires_at = ?,"
                " policy_version = policy_version + 1 WHERE id = ? AND policy_version = ? AND status = 'active'",
                (label, json.dumps(metadata), json.dumps(policy), expires_at, key_id, expected_version),
            ).rowcount
            if n != 1:
                return False
            if relabel:
                _move_key_spend(cur, key_id, before, label, self._starts(cur), self.FOR_UPDATE, self.NO_INDEX_PREFIX)
            return True

    def _seed_now(self, cur: Cursor) -> int:
        """The clock reservations use for windows (the database's, unless a test injected one)."""
        if self.NOW_SQL == "NULL":
            return self._txn_now(None)
        return self._txn_now(cur.execute(f"SELECT {self.NOW_SQL}").fetchone()[0])

    def _starts(self, cur: Cursor) -> Starts:
        """Window starts as reservations compute them (`_window_starts`: PostgreSQL's
        `keybrake_window_start` on this transaction's cursor), at the reservations' clock."""
        return functools.partial(self._window_starts, cur, self._seed_now(cur))


def _covered_sql(rec: BudgetRecord) -> tuple[str, list[Any]]:
    """SQL over `vault_keys k` true for the keys `rec` covers (the rule of `BudgetRecord.covers`).

    A credential budget covers the keys bound to the credential's current generation only (none
    when no credential has that name): keys of a deleted credential whose name was reused are
    not its keys (they were all revoked by the delete and can never spend again), so a budget
    created after a delete + re-add does not count their spend.
    """
    if rec.scope_kind == "label_prefix":
        return prefix_match("k.label", rec.scope_value or "")
    if rec.scope_kind == "vendor":
        return "k.vendor = ?", [rec.scope_value or ""]
    if rec.scope_kind == "credential":
        return (
            "k.credential = ? AND k.credential_gen = (SELECT c.generation FROM credentials c WHERE c.name = ?)",
            [rec.scope_value or "", rec.scope_value or ""],
        )
    return "1 = 1", []


def _usd_held(items: list[ReservedItem], reserved_usd: int | None) -> int:
    """What a row reserved against USD budgets (µUSD): its key's total_usd amount, as `reserve` uses."""
    own = (i.amount for i in items if i.counter_scope.startswith("key:") and i.counter == "total_usd")
    return next(own, int(reserved_usd or 0))


def seed_sum_sql(where: str, no_index: str) -> str:
    """(µUSD, requests) of the counted settled rows of the keys `where` covers, from an audit id.

    `no_index` is the engine's NO_INDEX_PREFIX: on SQLite `+a.id` keeps the primary key from
    driving the scan, so the covered keys drive it through ix_audit_key_counted (migration 0010),
    which holds only counted rows: refused rows of a flooding agent are never read.
    """
    return (
        "SELECT CAST(COALESCE(SUM(a.cost_usd), 0) AS BIGINT), COUNT(*)"
        " FROM audit a JOIN vault_keys k ON k.id = a.key_id"
        f" WHERE {where} AND {no_index}a.id >= ? AND a.reservation IS NULL AND {counted_request_sql('a')}"
    )


def _seed(
    cur: Cursor, rec: BudgetRecord, caps: list[CapSpec], starts: Starts, for_update: str, no_index: str = ""
) -> None:
    """Create `caps`' counters for the current windows (`starts`: the engine's, as reservations
    compute them), holding exactly what covered keys spent there.

    Must run in the transaction that wrote the budget, after `_lock_budgets(exclusive=True)`.
    Open rows are locked first (so none settles meanwhile), then settled rows are summed.
    """
    scope = f"budget:{rec.id}"
    open_rows = cur.execute(
        f"SELECT id, key_id, reservation, reserved_usd FROM audit WHERE reservation IS NOT NULL ORDER BY id{for_update}"
    ).fetchall()
    where, args = _covered_sql(rec)
    keys: dict[str, bool] = {}
    for r in open_rows:
        if r["key_id"] is not None and r["key_id"] not in keys:
            k = cur.execute(f"SELECT 1 FROM vault_keys k WHERE k.id = ? AND {where}", (r["key_id"], *args)).fetchone()
            keys[r["key_id"]] = k is not None
    settled = seed_sum_sql(where, no_index)
    rewritten: dict[str, list[ReservedItem]] = {}
    for cap, ws in zip(caps, starts([(c.window, c.timezone) for c in caps]), strict=True):
        floor = audit_id_floor(ws)
        usd, count = cur.execute(settled, (*args, floor)).fetchone()
        reserved = 0
        for r in open_rows:
            if r["id"] in rewritten:
                items = rewritten[r["id"]]
            else:
                items = [ReservedItem.from_json(v) for v in json.loads(r["reservation"])]
            items = [i for i in items if not (i.counter_scope == scope and i.counter == cap.counter)]
            if keys.get(r["key_id"]) and r["id"] >= floor:
                amount = _usd_held(items, r["reserved_usd"]) if cap.is_usd else 1
                items.append(ReservedItem(scope, cap.counter, ws, amount, cap.is_usd))
                reserved += amount
            rewritten[r["id"]] = items
        if cap.is_usd:
            _repoint_ledger_counts(cur, scope, cap.counter, ws, where, args, floor)
        cur.execute(
            "INSERT INTO counters (scope, cap, window_start, used, reserved, cap_limit) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (scope, cap, window_start) DO UPDATE SET used = excluded.used, reserved = excluded.reserved",
            (scope, cap.counter, ws, usd if cap.is_usd else count, reserved, cap.limit),
        )
    for r in open_rows:
        items = rewritten[r["id"]]
        before = [ReservedItem.from_json(v) for v in json.loads(r["reservation"])]
        if items != before:
            cur.execute(
                "UPDATE audit SET reservation = ? WHERE id = ?", (json.dumps([i.as_json() for i in items]), r["id"])
            )


def _repoint_ledger_counts(
    cur: Cursor, scope: str, counter: str, ws: int, where: str, args: list[Any], floor: str, add: bool = True
) -> None:
    """Make the object ledger's counted rows in the window name this budget counter too (or, with
    `add=False`, no longer name it).

    A later capture or cancel for less releases what a row counted from the counters its
    `ledger_counts.items` name (`sql_ledger.count_object`); a budget seeded with that row's cost
    must be released with it, or its counter would exceed the audit rows it covers; a budget the
    row's key left must not be, or its counter would fall below them.
    """
    rows = cur.execute(
        "SELECT c.credential, c.object_id, c.row_id, c.items FROM ledger_counts c"
        " JOIN audit a ON a.id = c.row_id JOIN vault_keys k ON k.id = a.key_id"
        f" WHERE {where} AND a.id >= ?",
        (*args, floor),
    ).fetchall()
    for r in rows:
        items = [i for i in json.loads(r["items"]) if not (i[0] == scope and i[1] == counter)]
        if add:
            items.append([scope, counter, ws])
        if items == json.loads(r["items"]):
            continue
        cur.execute(
            "UPDATE ledger_counts SET items = ? WHERE credential = ? AND object_id = ? AND row_id = ?",
            (json.dumps(items), r["credential"], r["object_id"], r["row_id"]),
        )


def _move_key_spend(
    cur: Cursor, key_id: str, before: Row, label: str | None, starts: Starts, for_update: str, no_index: str = ""
) -> None:
    """Move key `key_id`'s spend in the current windows (`starts`, as reservations compute them)
    from the budgets its old label (`before`: label, vendor, credential) was covered by to those
    its new `label` is covered by.

    For each budget whose coverage of the key changes, and each of its counters: the key's settled
    rows in the window (µUSD `cost_usd`, or one request each, as `_seed` counts them) leave or join
    `used`; its rows in flight in the window drop the budget's item from their stored reservation
    (releasing exactly what it held) and, when joining, gain one for the current window (their USD
    hold, or 1) as seeding adds it; its object-ledger counts are re-pointed the same way. Must run in
    the transaction that changed the label, after `_lock_budgets(exclusive=True)`.
    """
    vendor, credential = before["vendor"], before["credential"]
    moves: list[tuple[BudgetRecord, bool]] = []  # (budget, whether the key joins it)
    for b in (_budget(r) for r in cur.execute("SELECT * FROM budgets ORDER BY id").fetchall()):
        was, joins = b.covers(before["label"], vendor, credential), b.covers(label, vendor, credential)
        if was != joins:
            moves.append((b, joins))
    if not moves:
        return
    # Every open row locked first, as seeding does: no settlement runs until this commits, and
    # one that was running has committed (its row then reads as settled below).
    open_rows = cur.execute(
        f"SELECT id, key_id, reservation, reserved_usd FROM audit WHERE reservation IS NOT NULL ORDER BY id{for_update}"
    ).fetchall()
    mine = {r["id"]: r for r in open_rows if r["key_id"] == key_id}
    items = {rid: [ReservedItem.from_json(v) for v in json.loads(r["reservation"])] for rid, r in mine.items()}
    settled = seed_sum_sql("k.id = ?", no_index)
    for budget, joins in moves:
        scope = f"budget:{budget.id}"
        caps = budget.caps(0)
        for cap, ws in zip(caps, starts([(c.window, c.timezone) for c in caps]), strict=True):
            floor = audit_id_floor(ws)
            usd, count = cur.execute(settled, (key_id, floor)).fetchone()  # one key: k.id = ?
            spent = int(usd) if cap.is_usd else int(count)
            deltas: dict[int, list[int]] = {ws: [spent if joins else -spent, 0]}  # window → [used, reserved]
            for rid, r in mine.items():
                if rid < floor:
                    continue  # reserved in an earlier window: it settles there
                kept = []
                for i in items[rid]:
                    if i.counter_scope == scope and i.counter == cap.counter:
                        deltas.setdefault(i.window_start, [0, 0])[1] -= i.amount
                    else:
                        kept.append(i)
                if joins:
                    amount = _usd_held(kept, r["reserved_usd"]) if cap.is_usd else 1
                    kept.append(ReservedItem(scope, cap.counter, ws, amount, cap.is_usd))
                    deltas[ws][1] += amount
                items[rid] = kept
            if cap.is_usd:
                _repoint_ledger_counts(cur, scope, cap.counter, ws, "k.id = ?", [key_id], floor, add=joins)
            for start, (d_used, d_reserved) in deltas.items():
                _add_to_counter(cur, scope, cap.counter, start, d_used, d_reserved, cap.limit)
    for rid, r in mine.items():
        new = json.dumps([i.as_json() for i in items[rid]])
        if new != json.dumps(json.loads(r["reservation"])):
            cur.execute("UPDATE audit SET reservation = ? WHERE id = ?", (new, rid))


def _add_to_counter(
    cur: Cursor, scope: str, counter: str, ws: int, d_used: int, d_reserved: int, limit: int | None
) -> None:
    """Add `d_used` and `d_reserved` (µUSD or requests; either may be negative) to one counter row,
    creating it when something is added to a window that has none. Never below zero."""
    if d_used == 0 and d_reserved == 0:
        return
    n = cur.execute(
        "UPDATE counters SET used = CASE WHEN used + CAST(? AS BIGINT) > 0 THEN used + CAST(? AS BIGINT) ELSE 0 END,"
        " reserved = CASE WHEN reserved + CAST(? AS BIGINT) > 0 THEN reserved + CAST(? AS BIGINT) ELSE 0 END"
        " WHERE scope = ? AND cap = ? AND window_start = ?",
        (d_used, d_used, d_reserved, d_reserved, scope, counter, ws),
    ).rowcount
    if n == 0 and (d_used > 0 or d_reserved > 0):
        cur.execute(
            "INSERT INTO counters (scope, cap, window_start, used, reserved, cap_limit) VALUES (?, ?, ?, ?, ?, ?)",
            (scope, counter, ws, max(d_used, 0), max(d_reserved, 0), limit),
        )
