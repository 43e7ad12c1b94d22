"""Embedded SQLite engine (stdlib sqlite3, WAL).

Every method runs synchronously on the caller's thread and never awaits between BEGIN and
COMMIT, so transactions from concurrent tasks cannot interleave (aiosqlite's thread hop would
cost ~10× per operation and interleave on a shared connection). Reservations use
`BEGIN IMMEDIATE`, which takes SQLite's write lock up front: together with guarded UPSERTs this
makes the cap check exact across tasks and across processes sharing the file.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from keybrake import deadline
from keybrake.errors import EnforcementUnavailable
from keybrake.store.sql_base import Cursor
from keybrake.store.sql_store import SQLStore

R = TypeVar("R")


class SQLiteStore(SQLStore):
    """One connection in WAL mode."""

    NO_INDEX_PREFIX = "+"

    def __init__(
        self,
        path: str,
        *,
        synchronous: str = "NORMAL",
        clock: Callable[[], int] | None = None,
        busy_timeout_ms: int = 2000,
    ) -> None:
        super().__init__(clock)
        self.path = path
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
        return self._clock() if self._clock is not None else int(time.time() * 1000)

    async def _run(self, fn: Callable[[], R]) -> R:
        """Inline: no await between BEGIN and COMMIT, so tasks cannot interleave. A request past
        its deadline is refused without touching the file; the wait for a lock held by another
        process is bounded by the busy timeout (the pipeline re-checks the deadline after)."""
        limit = deadline.bound()
        if limit is not None and time.monotonic() >= limit:
            raise EnforcementUnavailable("sqlite: the request's deadline passed before the store was reached")
        return fn()

    @contextmanager
    def _tx(self) -> Iterator[Cursor]:
        """One IMMEDIATE transaction (SQLite's write lock up front)."""
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
                raise EnforcementUnavailable(f"sqlite: {exc}", commit_unknown=True) from exc

    @staticmethod
    def _rollback(cur: sqlite3.Cursor) -> None:
        try:
            cur.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def _read(self, sql: str, params: Any = ()) -> list[Any]:
        try:
            return self._db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise EnforcementUnavailable(f"sqlite: {exc}") from exc

    def _json_text(self, column: str, field: str) -> tuple[str, Any]:
        return f"json_extract({column}, ?)", f'$."{field}"'

    async def close(self) -> None:
        self._db.close()
