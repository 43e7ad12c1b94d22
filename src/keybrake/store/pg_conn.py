"""PostgreSQL connections for the store (`pg.py`): URLs, session settings, pools, the cursor
the shared SQL runs through, and how database errors become `EnforcementUnavailable`.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import psycopg
import psycopg_pool
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool.base import AttemptWithBackoff

from keybrake.core.errors import EnforcementUnavailable
from keybrake.logs import event

_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")

POSTGRES_SCHEMES = ("postgresql://", "postgres://", "postgresql+psycopg://")
log = logging.getLogger("keybrake.store")

# Reconnection after an outage: first attempt after ~0.25 s, doubling, never more than this apart.
RECONNECT_FIRST_DELAY_S = 0.25
RECONNECT_MAX_DELAY_S = 1.0
# A call still running this long past statement_timeout has lost its server: its socket is shut.
WATCHDOG_GRACE_S = 1.0
# A lost connection's server session is terminated and waited for at most this long (s).
SESSION_END_WAIT_S = 5.0
# TCP keepalives (both ends), unless the URL sets its own: idle s, probe interval s, probes.
KEEPALIVES = (5, 2, 3)


@dataclass(frozen=True)
class PGOptions:
    """Connection settings. `max_waiters`: calls queued for a connection beyond `pool_size`;
    `idle_tx_timeout_ms`: the server rolls back a transaction idle this long (a silent client)."""

    pool_size: int = 16
    pool_timeout_s: float = 2.0
    statement_timeout_ms: int = 5000
    connect_timeout_s: int = 3
    report_pool_size: int = 2  # connections for operator reports, apart from `pool_size`
    report_timeout_ms: int = 30_000  # statement_timeout of a report's statements
    max_waiters: int = 128
    idle_tx_timeout_ms: int = 1000


class _CappedBackoff(AttemptWithBackoff):
    """psycopg_pool's reconnect backoff doubles without end (16 s apart after a 45 s outage):
    capped, service resumes within about a second of the database coming back."""

    INITIAL_DELAY = RECONNECT_FIRST_DELAY_S

    def update_delay(self, now: float) -> None:
        super().update_delay(now)
        self.delay = min(self.delay, RECONNECT_MAX_DELAY_S)


class _Pool(psycopg_pool.ConnectionPool):
    def _add_connection(self, attempt: AttemptWithBackoff | None, growing: bool = False) -> None:
        super()._add_connection(attempt or _CappedBackoff(timeout=self.reconnect_timeout), growing)


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
        busy = getattr(self._local, "busy", None)
        if busy is not None:
            busy[1] = time.monotonic()  # the watchdog times each statement, not the transaction
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


def _conninfo(
    url: str, opts: PGOptions, *, statement_timeout_ms: int, read_only: bool = False, application_suffix: str = ""
) -> str:
    """libpq conninfo for one of the store's pools: the URL plus Keybrake's session settings.

    Both ends keep TCP alive (KEEPALIVES, unless the URL sets its own) and a statement with
    unacknowledged data fails after `statement_timeout_ms` + WATCHDOG_GRACE_S (`tcp_user_timeout`),
    so a silent cut is noticed in seconds; the server rolls back a transaction idle longer than
    `opts.idle_tx_timeout_ms`, so a cut replica never holds a counter row. `read_only` sessions
    (operator reports) cannot write.
    """
    params = conninfo_to_dict(libpq_url(url))
    server_opts = [
        str(params.get("options") or ""),
        f"-c statement_timeout={int(statement_timeout_ms)}",
        # A transaction whose client went silent (a cut link) cannot hold counter locks for long.
        f"-c idle_in_transaction_session_timeout={int(opts.idle_tx_timeout_ms)}",
        # The server's end notices a vanished client too.
        f"-c tcp_keepalives_idle={KEEPALIVES[0]}",
        f"-c tcp_keepalives_interval={KEEPALIVES[1]}",
        f"-c tcp_keepalives_count={KEEPALIVES[2]}",
        "-c synchronous_commit=on",
    ]
    if read_only:
        server_opts.append("-c default_transaction_read_only=on")
    keepalives = {
        "keepalives": "1",
        "keepalives_idle": str(KEEPALIVES[0]),
        "keepalives_interval": str(KEEPALIVES[1]),
        "keepalives_count": str(KEEPALIVES[2]),
        # Unacknowledged data (a dead peer mid-statement): the connection fails after this.
        "tcp_user_timeout": str(int(statement_timeout_ms + WATCHDOG_GRACE_S * 1000)),
    }
    return make_conninfo(
        libpq_url(url),
        options=" ".join(server_opts).strip(),
        connect_timeout=str(opts.connect_timeout_s),
        application_name=str(params.get("application_name") or "keybrake") + application_suffix,
        **{k: str(params.get(k) or v) for k, v in keepalives.items()},
    )


def _open_pool(conninfo: str, min_size: int, max_size: int, timeout_s: float, name: str) -> _Pool:
    """A started connection pool (autocommit, PGRow rows) that opens in the background.

    It keeps trying to reconnect for as long as the process runs (capped backoff, `_Pool`): the
    database coming back is enough for service to resume, with no restart.
    """
    pool = _Pool(
        conninfo,
        min_size=min_size,
        max_size=max_size,
        timeout=timeout_s,
        kwargs={"autocommit": True, "row_factory": _row_factory},
        reconnect_timeout=365 * 24 * 3600.0,
        open=False,
        name=name,
    )
    pool.open(wait=False)
    return pool


@contextmanager
def live_connection(pool: psycopg_pool.ConnectionPool[Any], timeout_s: float) -> Iterator[psycopg.Connection[Any]]:
    """A pooled connection that answered just now (one empty round trip): a stale one (its server
    session ended, as after pg_terminate_backend of every session) is dropped, another taken.

    For the retry of an idempotent call only (`PostgresStore._call`), never the hot path.
    Raises psycopg_pool.PoolTimeout: no live connection within `timeout_s`.
    """
    end = time.monotonic() + timeout_s
    while True:
        with pool.connection(timeout=max(0.0, end - time.monotonic())) as conn:
            try:
                psycopg_pool.ConnectionPool.check_connection(conn)
            except psycopg.OperationalError:
                continue  # broken now: the pool discards it on return
            yield conn
            return


def end_session(conninfo: str, where: str, pid: int | None) -> None:
    """Make sure the server session `pid` of a lost connection is gone, so whatever its
    transaction did is final before anyone reads it (a late release must see a late COMMIT).

    Terminates it from a fresh connection (`pg_terminate_backend`, same application_name, so a
    reused pid of another program is never hit) and waits until it has left `pg_stat_activity`.
    A refused connection ends the wait at once (the server is not running: a shutdown or crash
    ends every session and aborts every uncommitted transaction). Otherwise retried until
    SESSION_END_WAIT_S, then logged as not confirmed.
    """
    if pid is None:
        return
    give_up = time.monotonic() + SESSION_END_WAIT_S
    while True:
        try:
            with psycopg.connect(conninfo, autocommit=True, connect_timeout=2) as db:
                while True:
                    db.execute(
                        "SELECT pg_terminate_backend(pid, 1000) FROM pg_stat_activity"
                        " WHERE pid = %s AND application_name = current_setting('application_name')",
                        (pid,),
                    )
                    row = db.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
                    if row is not None and row[0] == 0:
                        event(log, "lost database session ended", logging.WARNING, where=where, pid=pid)
                        return
                    if time.monotonic() > give_up:
                        break
                    time.sleep(0.05)
        except psycopg.OperationalError as exc:
            if "refused" in str(exc) or "shutting down" in str(exc) or "starting up" in str(exc):
                return  # no server running, or one that has just started: the old session is gone
        except psycopg.Error:
            pass
        if time.monotonic() > give_up:
            event(log, "lost database session not confirmed ended", logging.ERROR, where=where, pid=pid)
            return
        time.sleep(0.25)


def shut_socket(conn: psycopg.Connection[Any]) -> None:
    """Shut a connection's socket from another thread: libpq, blocked on it, fails at once."""
    try:
        fd = conn.pgconn.socket
        with socket.socket(fileno=os.dup(fd)) as s:
            s.shutdown(socket.SHUT_RDWR)
    except (OSError, psycopg.Error):
        pass


def _rollback(conn: psycopg.Connection[Any]) -> None:
    try:
        conn.execute("ROLLBACK")
    except psycopg.Error:
        pass


def _unavailable(exc: psycopg.Error, *, commit_unknown: bool = False) -> EnforcementUnavailable:
    if isinstance(exc, pg_errors.QueryCanceled):
        return EnforcementUnavailable(
            "postgresql: a statement ran past KEYBRAKE_PG_STATEMENT_TIMEOUT_MS", transient=True
        )
    # psycopg messages name the server and the failure, never the password.
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    transient = isinstance(exc, (psycopg.OperationalError, pg_errors.LockNotAvailable, pg_errors.AdminShutdown))
    return EnforcementUnavailable(f"postgresql: {first}", commit_unknown=commit_unknown, transient=transient)
