"""SQLite connection and transaction plumbing shared by the engine's hot path and admin queries."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from keybrake.errors import EnforcementUnavailable


class SQLiteBase:
    """One connection in WAL mode. `clock` returns Unix ms; tests inject one to cross windows."""

    def __init__(
        self,
        path: str,
        *,
        synchronous: str = "NORMAL",
        clock: Callable[[], int] | None = None,
        busy_timeout_ms: int = 2000,
    ) -> None:
        self.path = path
        self._clock = clock or (lambda: int(time.time() * 1000))
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_ms / 1000)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        # A lock held by another process (a CLI command, a backup) is waited for this long, then
        # the request fails closed. The wait blocks the event loop, so keep it short.
        self._db.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        self._db.execute("PRAGMA cache_size=-65536")  # 64 MiB page cache
        self._db.execute("PRAGMA mmap_size=268435456")
        self._db.execute("PRAGMA temp_store=MEMORY")

    def now_ms(self) -> int:
        return self._clock()

    # -- plumbing -------------------------------------------------------------------------

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Cursor]:
        """One IMMEDIATE transaction; any database error means enforcement is unavailable."""
        cur = self._db.cursor()
        try:
            cur.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise EnforcementUnavailable(f"sqlite: {exc}") from exc
        try:
            yield cur
        except sqlite3.Error as exc:
            self._rollback(cur)
            raise EnforcementUnavailable(f"sqlite: {exc}") from exc
        except BaseException:
            self._rollback(cur)
            raise
        else:
            try:
                cur.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback(cur)
                raise EnforcementUnavailable(f"sqlite: {exc}") from exc

    @staticmethod
    def _rollback(cur: sqlite3.Cursor) -> None:
        try:
            cur.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def _read(self, sql: str, params: Any = ()) -> list[sqlite3.Row]:
        try:
            return self._db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise EnforcementUnavailable(f"sqlite: {exc}") from exc

    def _write(self, sql: str, params: Any = ()) -> int:
        with self._tx() as cur:
            return cur.execute(sql, params).rowcount

    async def close(self) -> None:
        self._db.close()

    async def ping(self) -> None:
        self._read("SELECT 1")
