"""What the SQL engines share: synchronous DB-API code behind async methods, and dialect hooks.

Every store method is written once, as plain synchronous DB-API code that never awaits between
BEGIN and COMMIT (`sql_store.py` and the modules it lists). `@blocking` turns it into the
async method the proxy calls; each engine decides where the code runs (`_run`):

- SQLite (`sqlite.py`) runs it on one writer thread holding the one connection: transactions
  from concurrent tasks cannot interleave; the calls queued together share one COMMIT (group
  commit, `sqlite_batch.py`), each call's `_tx` being a savepoint of it.
- PostgreSQL (`pg.py`) runs it on a worker thread holding a pooled connection, so the event loop
  never waits on the network; transactions from concurrent tasks run on separate connections.

Operator reports (`@report`: audit queries, exports, spend) run elsewhere again: never on the
event loop and never on the connections reservations take: SQLite reads them on read-only
connections in worker threads (WAL lets readers run beside the writer), PostgreSQL on a small
pool of its own with a statement timeout for reports (docs/operations.md, "Reports").

SQL is written with `?` and `:name` placeholders and portable functions; the few places the
dialects differ go through the hooks below.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine, Sequence
from contextlib import AbstractContextManager
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from keybrake.core.windows import Window, resets_at, window_start

P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S", bound="SQLBase")


class Row(Protocol):
    """A result row readable by position and by column name (sqlite3.Row and pg.PGRow)."""

    def __getitem__(self, key: int | str) -> Any: ...
    def keys(self) -> list[str]: ...


class Cursor(Protocol):
    """The part of a DB-API cursor the engines use."""

    @property
    def rowcount(self) -> int: ...

    def execute(self, sql: str, params: Any = ..., /) -> Cursor: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


def blocking(fn: Callable[Concatenate[S, P], R]) -> Callable[Concatenate[S, P], Coroutine[Any, Any, R]]:
    """Expose a synchronous store method as an async one; the engine's `_run` decides where it runs."""

    async def run(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return await self._run(functools.partial(fn, self, *args, **kwargs))

    run.__name__, run.__doc__, run.__qualname__ = fn.__name__, fn.__doc__, fn.__qualname__
    return run


class IdempotentCall(functools.partial[R]):
    """A store call whose second run does what its first did (an explicit opt-in: `idempotent`).

    PostgreSQL runs it once more on a live connection when its own is lost mid-call, within the
    call's bound (`PostgresStore._call`); SQLite's writer has no connection to lose.
    """


def idempotent(fn: Callable[Concatenate[S, P], R]) -> Callable[Concatenate[S, P], Coroutine[Any, Any, R]]:
    """Like `blocking`, for a method that may run twice with the effect of once (an `IdempotentCall`)."""

    async def run(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return await self._run(IdempotentCall(fn, self, *args, **kwargs))

    run.__name__, run.__doc__, run.__qualname__ = fn.__name__, fn.__doc__, fn.__qualname__
    return run


def report(fn: Callable[Concatenate[S, P], R]) -> Callable[Concatenate[S, P], Coroutine[Any, Any, R]]:
    """Like `blocking`, for an operator's read (audit, export, spend): the engine's `_run_report`
    runs it off the event loop, on connections reservations never need, with the report timeout.
    The function must only read (`_read`)."""

    async def run(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return await self._run_report(functools.partial(fn, self, *args, **kwargs))

    run.__name__, run.__doc__, run.__qualname__ = fn.__name__, fn.__doc__, fn.__qualname__
    return run


class SQLBase:
    """The plumbing every engine provides. `clock` returns Unix ms; tests inject one to cross windows."""

    # Dialect: `+col` keeps SQLite's planner off an index; PostgreSQL has no such hint.
    NO_INDEX_PREFIX = ""

    def __init__(self, clock: Callable[[], int] | None) -> None:
        self._clock = clock

    def now_ms(self) -> int:
        raise NotImplementedError

    async def db_now_ms(self) -> int:
        """The database's clock, read now (Unix ms). SQLite's is this host's: `now_ms()`."""
        return self.now_ms()

    async def _run(self, fn: Callable[[], R]) -> R:
        raise NotImplementedError

    async def _run_report(self, fn: Callable[[], R]) -> R:
        """Where a report runs (see `report`); raises EnforcementUnavailable past the report timeout."""
        raise NotImplementedError

    def _tx(self) -> AbstractContextManager[Cursor]:
        """One transaction; any database error means enforcement is unavailable."""
        raise NotImplementedError

    def _read(self, sql: str, params: Any = ()) -> list[Any]:
        raise NotImplementedError

    def _write(self, sql: str, params: Any = ()) -> int:
        with self._tx() as cur:
            return cur.execute(sql, params).rowcount

    # -- dialect hooks ----------------------------------------------------------------------

    def _json_text(self, column: str, field: str) -> tuple[str, Any]:
        """SQL (one placeholder) reading the text of `field` from a JSON object column, and its parameter."""
        raise NotImplementedError

    def _metadata_filter(self, metadata: dict[str, str], where: list[str], params: list[Any]) -> None:
        """Exact matches on fields of the JSON `metadata` column (keys and audit rows)."""
        for k, v in metadata.items():
            field, arg = self._json_text("metadata", k)
            where.append(f"{field} = ?")
            params += [arg, v]

    def _txn_now(self, db_now: int | None) -> int:
        """The clock a reservation uses: the database's (read in the transaction) unless a test injected one."""
        if self._clock is not None or db_now is None:
            return self.now_ms()
        return db_now

    def _lock_idempotency(self, cur: Cursor, key_id: str, idempotency_key: str) -> None:
        """Serialise requests with the same key and Idempotency-Key until this transaction ends."""

    def _lock_budgets(self, cur: Cursor, *, exclusive: bool) -> None:
        """Order budget writes against reservations until this transaction ends (`sql_budgets.py`).

        Reservations take it shared (they never wait on each other); creating, changing or
        deleting a budget takes it exclusively. SQLite's single writer already orders them.
        """

    def _window_starts(self, cur: Cursor | None, now: int, windows: Sequence[tuple[Window, str]]) -> list[int]:
        """The start (Unix ms) of each (window, IANA zone) at `now` (ms), as this engine's
        reservations compute it: the one source of truth for which counter row is current.

        SQLite: Python's `core.windows.window_start` (the reservation's own). PostgreSQL
        overrides it with the database's `keybrake_window_start` (the server's tzdata), read
        on `cur` (inside the caller's transaction) or, with `cur` None, on the call's connection.
        """
        return [window_start(w, now, tz) for w, tz in windows]

    async def window_bounds(self, now_ms: int, windows: Sequence[tuple[Window, str]]) -> list[tuple[int, int | None]]:
        """(start, next window's start; None for total) of each window at `now_ms`, as
        `_window_starts` computes them, for callers outside a transaction (admin usage, alert
        scans): one query for all `windows` on PostgreSQL, none on SQLite. Raises EnforcementUnavailable."""
        out: list[tuple[int, int | None]] = []
        for (w, tz), ws in zip(windows, self._window_starts(None, now_ms, windows), strict=True):
            out.append((ws, resets_at(w, ws, tz)))
        return out

    async def zone_refusal(self, tz: str) -> str | None:
        """None when reservations can compute windows in `tz` (SQLite: always; Python's zoneinfo is
        the admin validator's). PostgreSQL overrides it with the database's answer."""
        return None

    NOW_SQL = "NULL"  # the database clock in Unix ms, read inside a statement
    FOR_SHARE = ""  # a shared row lock that a FOR UPDATE elsewhere waits for (SQLite: the writer lock)
    FOR_UPDATE = ""  # row locks for a read that decides a write (SQLite's writer lock covers it)

    async def close(self) -> None:
        raise NotImplementedError

    @blocking
    def ping(self) -> None:
        self._read("SELECT 1")


def lock_order(scope: str, cap: str, window_start: int) -> tuple[int, str, str, int]:
    """The one order every transaction locks counters in: the key's, then budgets' by id (no deadlocks)."""
    return (0 if scope.startswith("key:") else 1, scope, cap, window_start)
