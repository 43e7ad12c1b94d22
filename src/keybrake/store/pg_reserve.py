"""PostgreSQL's reservation in one statement: `SELECT keybrake_reserve(args)` (migration 0011).

The shared reservation (`sql_reserve.ReserveQueries._reserve`) is a BEGIN…COMMIT block of five
to eight statements: as many network round trips. `keybrake_reserve` runs the same steps, in the
same order and under the same locks, inside PostgreSQL: one statement on an autocommit
connection, so one round trip and one commit (its implicit transaction) before forwarding.
The caps are sent as built here; window starts, budgets and the key's state are read and
computed in the statement, from the database's clock (or the test clock given as `now`).

Failure behaviour is the shared path's: any database error → EnforcementUnavailable (503); a
connection lost while the statement ran → `commit_unknown` (its implicit transaction may have
committed: the caller releases it, `proxy.reservation`), never retried blindly on another
connection. A refused cap rolls back everything the statement did (a PL/pgSQL exception
block), as `_CapRefused` rolls back the shared transaction.
"""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.types.json import Jsonb

from keybrake.core.caps import BUDGET_CAPS, SEND_COUNTERS
from keybrake.core.errors import CapHit, EnforcementUnavailable
from keybrake.core.windows import Window, resets_at, window_start
from keybrake.store.pg_conn import _unavailable
from keybrake.store.records import AuditRow, CapSpec, CredentialRecord
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
from keybrake.store.sql_base import Cursor, SQLBase, blocking
from keybrake.store.sql_rows import _key, _row_params

# The transaction advisory lock ordering budget writes against reservations ("kbbudget").
BUDGETS_LOCK = 0x6B62627564676574
# What a budget reserves against (core.caps.BUDGET_CAPS), as the statement reads it.
_BUDGET_CAPS = [
    {"field": c.field, "counter": c.counter, "window": c.window.value, "is_usd": c.is_usd} for c in BUDGET_CAPS
]


def jsonb(value: Any) -> Jsonb:
    """`value` as a jsonb parameter. A Decimal (what PostgreSQL's SUM of bigints reads back as,
    e.g. a ledger fact's `amount_counted`) is sent as the exact number it holds."""
    return Jsonb(value, dumps=functools.partial(json.dumps, default=_exact_number))


def _exact_number(o: Any) -> Any:
    if isinstance(o, Decimal):
        return int(o) if o == o.to_integral_value() else float(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


# Errors PostgreSQL raises while a statement runs, before its commit: it rolled back whole.
_ROLLED_BACK = (pg_errors.QueryCanceled, pg_errors.LockNotAvailable, pg_errors.TransactionRollback)
# SQLSTATEs raised by keybrake_reserve (migration 0011).
_DEDUP_CHANGING = "KB002"


def reserve_args(
    key_id: str,
    policy_version: int,
    caps: list[CapSpec],
    row: AuditRow,
    owner: str,
    retry: RetryCheck | None,
    dedup: DedupCheck | None,
    guard: ObjectGuard | None,
    now: int | None,
) -> dict[str, Any]:
    """The one jsonb argument of `keybrake_reserve` (`now`: a test clock's Unix ms, else None)."""
    return {
        "key_id": key_id,
        "policy_version": policy_version,
        "now": now,
        "budgets_lock": BUDGETS_LOCK,
        "caps": [
            {
                "scope": c.scope,
                "scope_id": c.scope_id,
                "name": c.name,
                "counter": c.counter,
                "window": c.window.value,
                "limit": c.limit,
                "amount": c.amount,
                "is_usd": c.is_usd,
                "tz": c.timezone,
                "zero_on_retry": c.is_usd or c.counter in SEND_COUNTERS,
            }
            for c in caps
        ],
        "budget_caps": _BUDGET_CAPS,
        "row": _row_params(row, owner, [], retry.fingerprint if retry else None, guard.object_ref if guard else None),
        "retry": None
        if retry is None
        else {
            "idempotency_key": retry.idempotency_key,
            "fingerprint": retry.fingerprint,
            "window_ms": retry.window_ms,
            "cached": sorted(retry.cached_statuses) or [-1],
        },
        "dedup": None if dedup is None else {"fingerprint": dedup.fingerprint, "window_ms": dedup.window_ms},
        "guard": None
        if guard is None
        else {
            "object_ref": guard.object_ref,
            "priced": guard.priced_from_fact,
            "fact": asdict(guard.fact) if guard.fact is not None else None,
        },
    }


def reserve_result(res: dict[str, Any], row: AuditRow) -> ReserveResult:
    """`keybrake_reserve`'s answer as the shared path's `ReserveResult`.

    A retry of a request that already counted its money reserves nothing in USD: `row` then
    records nothing reserved, as the shared path sets it.
    """
    state = KeyState(res["state"])
    if state is KeyState.MISSING:
        return ReserveResult(state)
    if state is not KeyState.OK:
        return ReserveResult(state, key=_key(res["key"]))
    earlier = res.get("retry_of")
    retry_of = EarlierRequest(earlier["id"], earlier["verdict"]) if earlier else None
    if res.get("zeroed") or (retry_of is not None and retry_of.verdict != "in_flight"):
        row.reserved_usd, row.cost_source, row.cost_kind = 0, "none", "none"
    if res.get("object_busy") is not None:
        return ReserveResult(state, object_busy=res["object_busy"])
    if res.get("dedup_of") is not None:
        d = res["dedup_of"]
        answer = bytes.fromhex(d["answer_hex"]) if d["answer_hex"] is not None else None
        return ReserveResult(state, dedup_of=DedupHit(d["row_id"], d["state"], answer))
    if res.get("cap_hit") is not None:
        return ReserveResult(state, cap_hit=_cap_hit(res["cap_hit"]))
    if retry_of is not None and retry_of.verdict == "in_flight":
        return ReserveResult(state, retry_of=retry_of)
    items = [ReservedItem(s, c, int(w), int(a), bool(u)) for s, c, w, a, u in res["items"]]
    cred = res.get("credential")
    credential = None
    if cred is not None:
        secret = bytes.fromhex(cred["secret_hex"])
        credential = CredentialRecord(
            cred["name"], cred["vendor"], secret, "", cred["base_url"], None, 0, None, cred["generation"]
        )
    return ReserveResult(state, items=items, remaining_usd=res["remaining"], credential=credential, retry_of=retry_of)


# From a window's start, a step that lands inside the next window (days: 23–25 h; months: 28–31 days).
_NEXT_STEP_MS = {Window.DAY: 36 * 3_600_000, Window.MONTH: 32 * 86_400_000}


def _plain_bounds(now: int, windows: Sequence[tuple[Window, str]]) -> list[tuple[int, int | None]]:
    """Python's (start, next start) of each window (exact for hour, total and UTC day windows)."""
    out: list[tuple[int, int | None]] = []
    for w, tz in windows:
        ws = window_start(w, now, tz)
        out.append((ws, resets_at(w, ws, tz)))
    return out


def _plain_start(window: Window, now: int, tz: str) -> int | None:
    """A window start both engines compute alike without tzdata (hour, total, UTC day); None otherwise."""
    if window is Window.HOUR or window is Window.TOTAL or (window is Window.DAY and tz == "UTC"):
        return window_start(window, now, tz)
    return None


def _cap_hit(c: dict[str, Any]) -> CapHit:
    ws = int(c["ws"])
    return CapHit(
        c["scope"],
        c["scope_id"],
        c["name"],
        int(c["limit"]),
        int(c["used"]),
        int(c["amount"]),
        resets_at(Window(c["window"]), ws, c["tz"]),
        bool(c["is_usd"]),
    )


class PGReserveQueries(SQLBase):
    """`reserve` as one statement (PostgreSQL only; `PostgresStore` puts it before the shared one),
    and the one source of window starts every other budget-counter path uses on PostgreSQL
    (`_window_starts`, `window_bounds`, `zone_refusal`): the database's `keybrake_window_start`."""

    _local: threading.local  # PostgresStore's: the call's connection and statement count
    _conninfo: str

    def _conn(self) -> psycopg.Connection[Any]:
        raise NotImplementedError

    def _end_session(self, pid: int | None) -> None:
        raise NotImplementedError

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
        now = self.now_ms() if self._clock is not None else None
        args = reserve_args(key_id, policy_version, caps, row, owner, retry, dedup, guard, now)
        try:
            res = self._one_statement("SELECT keybrake_reserve(%s)", (jsonb(args),))
        except EnforcementUnavailable as exc:
            if exc.commit_unknown and self._landed_nowhere(row.id):
                # Nothing ran (a pooled connection the server dropped, a restart): as a BEGIN
                # failing on it, `PostgresStore._call` runs the call once more on a fresh one.
                self._local.done = 0
                raise EnforcementUnavailable(str(exc), transient=True) from exc.__cause__
            raise
        return reserve_result(res, row)

    def _window_starts(self, cur: Cursor | None, now: int, windows: Sequence[tuple[Window, str]]) -> list[int]:
        """The database's `keybrake_window_start` for every zoned window (one SELECT, on `cur` or,
        with None, the call's connection); hour, total and UTC day windows are plain arithmetic,
        the same in both (the function's own shortcuts), and cost no query."""
        out = [_plain_start(w, now, tz) for w, tz in windows]
        ask = [(i, w, tz) for i, (w, tz) in enumerate(windows) if out[i] is None]
        if ask:
            cols = ", ".join("keybrake_window_start(?, CAST(? AS BIGINT), ?)" for _ in ask)
            params = [p for _, w, tz in ask for p in (w.value, now, tz)]
            got = (
                cur.execute(f"SELECT {cols}", params).fetchone()
                if cur is not None
                else self._read(f"SELECT {cols}", params)[0]
            )
            for n, (i, _, _) in enumerate(ask):
                out[i] = int(got[n])
        return [int(v) for v in out if v is not None]

    async def window_bounds(self, now_ms: int, windows: Sequence[tuple[Window, str]]) -> list[tuple[int, int | None]]:
        if all(_plain_start(w, now_ms, tz) is not None for w, tz in windows):
            return _plain_bounds(now_ms, windows)
        return await self._run(functools.partial(self._window_bounds, now_ms, list(windows)))

    def _window_bounds(self, now: int, windows: list[tuple[Window, str]]) -> list[tuple[int, int | None]]:
        """(start, next start) of each zoned window from `keybrake_window_start`, in one SELECT: the
        next start is the function's at start + a step that always lands in the next window (a
        day is 23–25 h, a month 28–31 days)."""
        out = _plain_bounds(now, windows)
        ask = [(i, w, tz) for i, (w, tz) in enumerate(windows) if _plain_start(w, now, tz) is None]
        one = "keybrake_window_start(?, CAST(? AS BIGINT), ?)"
        nxt = "keybrake_window_start(?, keybrake_window_start(?, CAST(? AS BIGINT), ?) + CAST(? AS BIGINT), ?)"
        cols = ", ".join(f"{one}, {nxt}" for _ in ask)
        params: list[Any] = []
        for _, w, tz in ask:
            params += [w.value, now, tz, w.value, w.value, now, tz, _NEXT_STEP_MS[w], tz]
        got = self._read(f"SELECT {cols}", params)[0]
        for n, (i, _, _) in enumerate(ask):
            out[i] = (int(got[2 * n]), int(got[2 * n + 1]))
        return out

    async def zone_refusal(self, tz: str) -> str | None:
        return await self._run(functools.partial(self._zone_refusal, tz))

    def _zone_refusal(self, tz: str) -> str | None:
        """PostgreSQL's reason for refusing `tz` in `keybrake_window_start` (its tzdata lacks it,
        or it uses leap seconds), or None. Other errors raise EnforcementUnavailable."""
        try:
            self._conn().execute("SELECT keybrake_window_start('month', 0, %s)", (tz,), prepare=False).fetchone()
        except pg_errors.InvalidParameterValue as exc:
            return exc.diag.message_primary or str(exc)
        except psycopg.Error as exc:
            raise _unavailable(exc) from exc
        return None

    def _landed_nowhere(self, row_id: str) -> bool:
        """After a reservation's connection was lost: True only when its session is gone and its
        in-flight row is not in the database (so nothing it did can ever commit). Any doubt
        (the database unreachable, the session not confirmed ended) answers False."""
        self._end_session(self._local.pid)
        try:
            with psycopg.connect(self._conninfo, autocommit=True, connect_timeout=2) as db:
                alive = db.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (self._local.pid,))
                if alive.fetchone() != (0,):
                    return False
                return db.execute("SELECT 1 FROM audit WHERE id = %s", (row_id,)).fetchone() is None
        except psycopg.Error:
            return False

    def _one_statement(self, sql: str, params: Any) -> Any:
        """Run one writing statement (psycopg's `%s` placeholders) on the call's autocommit
        connection; its first column.

        Raises EnforcementUnavailable: `commit_unknown` when the connection was lost or its
        session ended while the statement ran (its implicit transaction may have committed just
        before); the call then counts as having run a statement, so `PostgresStore._call` ends
        the server session and never runs it again. Errors raised while the statement ran
        (a timeout, a deadlock, a refused value) roll it back: not `commit_unknown`.
        """
        local = self._local
        busy = getattr(local, "busy", None)
        if busy is not None:
            busy[1] = time.monotonic()  # the watchdog times the statement
        try:
            # Not prepared: psycopg would spend a round trip of its own preparing it (a Parse
            # and a Sync on the 5th call of each connection), for a plan PostgreSQL caches anyway.
            got = self._conn().execute(sql, params, prepare=False).fetchone()
            local.done += 1
        except psycopg.Error as exc:
            if isinstance(exc, psycopg.OperationalError) and not isinstance(exc, _ROLLED_BACK):
                local.done += 1
                raise _unavailable(exc, commit_unknown=True) from exc
            if exc.sqlstate == _DEDUP_CHANGING:
                raise EnforcementUnavailable("the dedup entry kept changing under this request") from exc
            raise _unavailable(exc) from exc
        assert got is not None
        return got[0]
