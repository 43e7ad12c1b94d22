"""PostgreSQL engine (psycopg 3 + psycopg_pool): several `keybrake serve` replicas on one database.

The store logic is the SQL engines' shared code (`sql_store.py`); this module runs it on worker
threads, each holding a pooled connection for the length of one store call, so the event loop
never waits on the network and no two calls share a connection.

- Exactness across replicas: a reservation is one transaction whose guarded multi-row UPSERT is
  re-evaluated by PostgreSQL on the latest committed counter (READ COMMITTED re-checks the
  `WHERE` after waiting on a row lock), so concurrent requests on any replica cannot overshoot;
  counters are locked in one order, and a deadlock or serialization failure (never expected)
  rolls back and is retried whole.
- Revokes and PATCHes: the key's status, expiry and policy version are read in the reservation
  transaction; nothing about a key is cached across requests (docs/scale-out.md).
- Clock: windows and expiry use the database's clock, read in the reservation's first statement;
  `now_ms()` (audit timestamps, admin answers) is the host clock corrected by the offset to the
  database's, measured at start and at every heartbeat.
- Durability: every transaction commits with `synchronous_commit=on`, settlements too: an
  asynchronous commit lost in a database crash would leave a live replica's row `in_flight`
  with nothing left to settle it. Settlements are batched, so the flush is shared.
- Reports (`@report`: audit pages, exports, spend) run on a pool of their own
  (`report_pool_size` connections, read-only, `statement_timeout = report_timeout_ms`) and
  worker threads of their own: a slow or all-day report never takes a connection or a thread
  a reservation needs (docs/operations.md, "Reports").
- Failure: no connection within `pool_timeout_s`, a statement past `statement_timeout_ms`, or
  any database error → `EnforcementUnavailable` (503, fail closed). Broken connections are
  dropped and replaced by the pool; once PostgreSQL is back, requests succeed again without a
  restart.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar

import psycopg
import psycopg_pool
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from keybrake.errors import EnforcementUnavailable
from keybrake.store.sql_base import Cursor
from keybrake.store.sql_store import SQLStore

R = TypeVar("R")

# Errors after which the whole transaction is rolled back and may safely run again.
_RETRYABLE = (pg_errors.DeadlockDetected, pg_errors.SerializationFailure)
_RETRIES = 3
# The transaction advisory lock ordering budget writes against reservations ("kbbudget").
_BUDGETS_LOCK = 0x6B62627564676574
_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


POSTGRES_SCHEMES = ("postgresql://", "postgres://", "postgresql+psycopg://")


@dataclass(frozen=True)
class PGOptions:
    pool_size: int = 16
    pool_timeout_s: float = 2.0
    statement_timeout_ms: int = 5000
    connect_timeout_s: int = 3
    report_pool_size: int = 2  # connections for operator reports, apart from `pool_size`
    report_timeout_ms: int = 30_000  # statement_timeout of a report's statements


def is_postgres_url(url: str | None) -> bool:
    return bool(url) and str(url).startswith(POSTGRES_SCHEMES)


def libpq_url(url: str) -> str:
    """The URL as libpq reads it (`postgresql://`)."""
    for prefix in ("postgresql+psycopg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


def sqlalchemy_pg_url(url: str) -> str:
    """The URL as SQLAlchemy (and so Alembic) reads it, with the psycopg 3 driver."""
    return "postgresql+psycopg://" + libpq_url(url)[len("postgresql://") :]


def redact_url(url: str) -> str:
    """host:port/db of a URL, without user or password, for messages."""
    try:
        d = conninfo_to_dict(libpq_url(url))
    except psycopg.ProgrammingError:
        return "postgresql://…"
    return f"postgresql://{d.get('host', 'localhost')}:{d.get('port', 5432)}/{d.get('dbname', '')}"


@lru_cache(maxsize=2048)
def _translate(sql: str) -> str:
    """`?` and `:name` placeholders (the shared SQL) → psycopg's `%s` and `%(name)s`."""
    return _NAMED.sub(r"%(\1)s", sql.replace("%", "%%").replace("?", "%s"))


class PGRow(tuple[Any, ...]):
    """A row readable by position and by column name, like sqlite3.Row."""

    _index: dict[str, int]

    def __new__(cls, values: Sequence[Any], index: dict[str, int]) -> PGRow:
        row = super().__new__(cls, values)
        row._index = index
        return row

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._index)


def _row_factory(cursor: Any) -> Callable[[Sequence[Any]], PGRow]:
    desc = cursor.description or []
    index = {c.name: i for i, c in enumerate(desc)}
    return lambda values: PGRow(values, index)


class _Cursor:
    """A psycopg cursor that takes the shared SQL's placeholders and counts completed statements."""

    def __init__(self, cur: psycopg.Cursor[Any], local: threading.local) -> None:
        self._cur = cur
        self._local = local
        self.rowcount = 0

    def execute(self, sql: str, params: Any = (), /) -> _Cursor:
        if params:
            self._cur.execute(_translate(sql), params)
        else:
            self._cur.execute(sql)
        self._local.done += 1
        self.rowcount = self._cur.rowcount
        return self

    def fetchone(self) -> Any:
        return self._cur.fetchone()

    def fetchall(self) -> list[Any]:
        return self._cur.fetchall()


class PostgresStore(SQLStore):
    NOW_SQL = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"
    FOR_UPDATE = " FOR UPDATE"
    FOR_SHARE = " FOR SHARE"

    def __init__(self, url: str, options: PGOptions | None = None, *, clock: Callable[[], int] | None = None) -> None:
        super().__init__(clock)
        opts = options or PGOptions()
        self.options = opts
        self.where = redact_url(url)
        params = conninfo_to_dict(libpq_url(url))
        server_opts = " ".join(
            [
                str(params.get("options") or ""),
                f"-c statement_timeout={int(opts.statement_timeout_ms)}",
                # A transaction left open by a stuck worker cannot hold counter locks for long.
                f"-c idle_in_transaction_session_timeout={max(int(opts.statement_timeout_ms) * 2, 10_000)}",
                "-c synchronous_commit=on",
            ]
        ).strip()
        conninfo = make_conninfo(
            libpq_url(url),
            options=server_opts,
            connect_timeout=str(opts.connect_timeout_s),
            application_name=str(params.get("application_name") or "keybrake"),
        )
        self._pool = psycopg_pool.ConnectionPool(
            conninfo,
            min_size=min(2, opts.pool_size),
            max_size=opts.pool_size,
            timeout=opts.pool_timeout_s,
            kwargs={"autocommit": True, "row_factory": _row_factory},
            # Keep trying to reconnect for as long as the process runs: the database coming back
            # must be enough for service to resume, with no restart.
            reconnect_timeout=365 * 24 * 3600.0,
            open=False,
            name="keybrake",
        )
        self._pool.open(wait=False)
        self._executor = ThreadPoolExecutor(max_workers=opts.pool_size, thread_name_prefix="keybrake-pg")
        self._local = threading.local()
        self._open_reports(url, opts)
        self._offset_ms = 0
        self._closed = False
        try:
            self._call(self._sync_clock)
        except BaseException:
            self._close_sync()
            raise

    # -- where the shared code runs ---------------------------------------------------------

    def now_ms(self) -> int:
        if self._clock is not None:
            return self._clock()
        return int(time.time() * 1000) + self._offset_ms

    async def _run(self, fn: Callable[[], R]) -> R:
        if self._closed:
            raise EnforcementUnavailable("postgresql: the store is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._call, fn)

    def _call(self, fn: Callable[[], R]) -> R:
        """Run `fn` with a pooled connection; retry it whole only when that cannot repeat an effect."""
        for attempt in range(_RETRIES + 1):
            try:
                with self._pool.connection() as conn:
                    self._local.conn, self._local.done = conn, 0
                    try:
                        return fn()
                    finally:
                        self._local.conn = None
            except psycopg_pool.PoolTimeout as exc:
                raise EnforcementUnavailable(
                    f"postgresql: no database connection within {self.options.pool_timeout_s:g} s ({self.where})"
                ) from exc
            except EnforcementUnavailable as exc:
                cause = exc.__cause__
                if attempt < _RETRIES and isinstance(cause, _RETRYABLE):
                    continue  # rolled back whole: nothing of it happened
                if attempt == 0 and isinstance(cause, psycopg.OperationalError) and self._local.done == 0:
                    # A pooled connection the server dropped (a restart): nothing ran on it.
                    # Drop every such connection and run once more on a fresh one.
                    self._pool.check()
                    continue
                raise
        raise AssertionError("unreachable")

    # -- reports: a pool and threads of their own -------------------------------------------

    def _open_reports(self, url: str, opts: PGOptions) -> None:
        params = conninfo_to_dict(libpq_url(url))
        server_opts = " ".join(
            [
                str(params.get("options") or ""),
                f"-c statement_timeout={int(opts.report_timeout_ms)}",
                "-c default_transaction_read_only=on",
            ]
        ).strip()
        conninfo = make_conninfo(
            libpq_url(url),
            options=server_opts,
            connect_timeout=str(opts.connect_timeout_s),
            application_name=str(params.get("application_name") or "keybrake") + "-reports",
        )
        self._report_pool = psycopg_pool.ConnectionPool(
            conninfo,
            min_size=0,
            max_size=opts.report_pool_size,
            timeout=opts.pool_timeout_s,
            kwargs={"autocommit": True, "row_factory": _row_factory},
            reconnect_timeout=365 * 24 * 3600.0,
            open=False,
            name="keybrake-reports",
        )
        self._report_pool.open(wait=False)
        self._report_executor = ThreadPoolExecutor(
            max_workers=opts.report_pool_size, thread_name_prefix="keybrake-pg-report"
        )

    async def _run_report(self, fn: Callable[[], R]) -> R:
        if self._closed:
            raise EnforcementUnavailable("postgresql: the store is closed")
        return await asyncio.get_running_loop().run_in_executor(self._report_executor, self._call_report, fn)

    def _call_report(self, fn: Callable[[], R]) -> R:
        """Run a report with a connection of the report pool (never the reservations' pool)."""
        try:
            with self._report_pool.connection() as conn:
                self._local.conn, self._local.done = conn, 0
                try:
                    return fn()
                except EnforcementUnavailable as exc:
                    if isinstance(exc.__cause__, pg_errors.QueryCanceled):
                        raise EnforcementUnavailable(
                            f"postgresql: the report ran past {self.options.report_timeout_ms} ms"
                            " (KEYBRAKE_REPORT_TIMEOUT_MS); narrow since/until or add filters"
                        ) from exc
                    raise
                finally:
                    self._local.conn = None
        except psycopg_pool.PoolTimeout as exc:
            raise EnforcementUnavailable(
                f"postgresql: no report connection within {self.options.pool_timeout_s:g} s"
                f" (KEYBRAKE_REPORT_POOL_SIZE={self.options.report_pool_size} busy)"
            ) from exc

    def _conn(self) -> psycopg.Connection[Any]:
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is None:
            raise RuntimeError("store code ran outside PostgresStore._run")
        return conn

    @contextmanager
    def _tx(self) -> Iterator[Cursor]:
        conn = self._conn()
        cur = _Cursor(conn.cursor(), self._local)
        try:
            cur.execute("BEGIN")
        except psycopg.Error as exc:
            raise _unavailable(exc) from exc
        try:
            yield cur
        except psycopg.Error as exc:
            _rollback(conn)
            raise _unavailable(exc) from exc
        except BaseException:
            _rollback(conn)
            raise
        else:
            try:
                conn.execute("COMMIT")
            except psycopg.Error as exc:
                _rollback(conn)
                raise _unavailable(exc, commit_unknown=True) from exc

    def _read(self, sql: str, params: Any = ()) -> list[Any]:
        try:
            return _Cursor(self._conn().cursor(), self._local).execute(sql, params).fetchall()
        except psycopg.Error as exc:
            raise _unavailable(exc) from exc

    # -- dialect ------------------------------------------------------------------------------

    def _json_text(self, column: str, field: str) -> tuple[str, Any]:
        return f"(CAST({column} AS json) ->> ?)", field

    def _lock_idempotency(self, cur: Cursor, key_id: str, idempotency_key: str) -> None:
        # A second request with the same Idempotency-Key waits here until the first one's
        # reservation commits, then finds it in flight (as SQLite's single writer guarantees).
        cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", (f"{key_id}|{idempotency_key}",))

    def _lock_budgets(self, cur: Cursor, *, exclusive: bool) -> None:
        fn = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
        cur.execute(f"SELECT {fn}(?)", (_BUDGETS_LOCK,))

    def _heartbeat(self, instance_id: str, hostname: str, pid: int) -> None:
        self._sync_clock()
        super()._heartbeat(instance_id, hostname, pid)

    def _sync_clock(self) -> None:
        """Measure this host's clock against the database's (round-trip midpoint)."""
        t0 = time.time()
        db_ms = self._read(f"SELECT {self.NOW_SQL}")[0][0]
        t1 = time.time()
        self._offset_ms = int(db_ms - (t0 + t1) / 2 * 1000)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await asyncio.get_running_loop().run_in_executor(None, self._close_sync)

    def _close_sync(self) -> None:
        self._executor.shutdown(wait=True)
        self._pool.close()
        if hasattr(self, "_report_pool"):
            self._report_executor.shutdown(wait=True)
            self._report_pool.close()


def _rollback(conn: psycopg.Connection[Any]) -> None:
    try:
        conn.execute("ROLLBACK")
    except psycopg.Error:
        pass


def _unavailable(exc: psycopg.Error, *, commit_unknown: bool = False) -> EnforcementUnavailable:
    if isinstance(exc, pg_errors.QueryCanceled):
        return EnforcementUnavailable("postgresql: a statement ran past KEYBRAKE_PG_STATEMENT_TIMEOUT_MS")
    # psycopg messages name the server and the failure, never the password.
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return EnforcementUnavailable(f"postgresql: {first}", commit_unknown=commit_unknown)
