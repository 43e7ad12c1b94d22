"""SQLite WAL checkpoints off the writer thread.

The writer connection does not checkpoint on its own (`wal_autocheckpoint=0`): a COMMIT that
crossed SQLite's 1000-page threshold used to copy the WAL into the database inline (and fsync
it), which pushed reservation p99.9 to ≈ 5 ms. `Checkpointer` runs `wal_checkpoint(PASSIVE)` on
a connection of its own every `CHECKPOINT_EVERY_S` when something was committed since its last
pass; PASSIVE never takes the writer lock, so reservations go on beside it.

SQLite rewinds the WAL (writes it again from its start) at the first write after a complete
checkpoint, when no reader still uses it. Under constant load a background checkpoint is never
quite complete (the writer appends while it copies), so once the WAL holds more than
WAL_REWIND_BYTES the checkpointer asks the writer (`rewind`) to run one PASSIVE checkpoint
itself between two groups: it copies only what was written since the background pass (and
fsyncs), then the next write rewinds the WAL. That bounds the -wal file at about
WAL_REWIND_BYTES plus one period of writes, except while a report reads an old snapshot (at
most KEYBRAKE_REPORT_TIMEOUT_MS): no checkpoint can pass a reader.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable

log = logging.getLogger("keybrake.store")

# The background checkpoint's period (s) while something is being committed.
CHECKPOINT_EVERY_S = 0.2
# WAL content (bytes) past which the writer is asked to finish a checkpoint so the WAL rewinds.
WAL_REWIND_BYTES = 32 * 1024 * 1024


class Checkpointer:
    """A background thread copying the WAL into the database file, on a connection of its own.

    Every `every_s` seconds, if the writer committed since the last pass (`commits()` changed),
    it runs `PRAGMA wal_checkpoint(PASSIVE)`; past WAL_REWIND_BYTES of WAL it calls `rewind()`
    (the writer finishes the checkpoint between two groups). Errors are logged, never raised.
    `passes`/`frames`: checkpoints run and WAL frames copied (for tests and operators).
    """

    def __init__(
        self, path: str, commits: Callable[[], int], rewind: Callable[[], None], every_s: float | None = None
    ) -> None:
        self.path = path
        self.passes = 0
        self.frames = 0
        self._commits = commits
        self._rewind = rewind
        self._every_s = CHECKPOINT_EVERY_S if every_s is None else every_s
        self._page_size = 4096
        self._stop = threading.Event()
        self._db: sqlite3.Connection | None = None
        self._thread = threading.Thread(target=self._main, name="keybrake-sqlite-checkpoint", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the thread and join it (blocking: call off the event loop)."""
        self._stop.set()
        self._thread.join()
        if self._db is not None:
            self._db.close()
            self._db = None

    def _main(self) -> None:
        seen = -1
        while not self._stop.wait(self._every_s):
            now = self._commits()
            if now == seen:
                continue
            seen = now
            try:
                self.checkpoint()
            except Exception as exc:  # never fatal: the next pass tries again
                log.warning("sqlite: background WAL checkpoint failed (retried next pass): %s", exc)

    def checkpoint(self) -> tuple[int, int, int]:
        """One PASSIVE pass (on the calling thread), asking the writer to rewind a WAL past its
        bound. Returns (busy, WAL frames, frames checkpointed); raises sqlite3.Error."""
        if self._db is None:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._page_size = int(self._db.execute("PRAGMA page_size").fetchone()[0])
        busy, frames, done = self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self.passes += 1
        self.frames += max(0, done)
        if frames * self._page_size > WAL_REWIND_BYTES:
            self._rewind()
        return busy, frames, done
