"""The data directory as the command line sees it: the serve lock, a new store said out loud, a
missing directory refused by name (docs/operations.md, data directory).

One `keybrake serve` per embedded SQLite store: `serve` holds an exclusive `flock` on
`<data-dir>/serve.lock` (or `<database file>.serve.lock` for a sqlite:/// URL naming another file)
for as long as it runs. The kernel drops the lock when the process ends, however it ends (kill -9
included), so it is never stale. `serve --shared-data-dir` takes a shared lock instead: several
processes that all say so may share the store (docs/operations.md, running on both cores), but
never with one that did not.
"""

from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path

import click

from keybrake.config import Settings
from keybrake.store.pg import POSTGRES_SCHEMES

LOCK_NAME = "serve.lock"
DB_NAME = "keybrake.db"


def sqlite_file(settings: Settings) -> Path | None:
    """The embedded SQLite database file `settings` name, or None on PostgreSQL."""
    url = settings.database_url
    if url and url.startswith(POSTGRES_SCHEMES):
        return None
    if url and url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///") :])
    return settings.data_dir / DB_NAME


def lock_path(settings: Settings) -> Path | None:
    """Where `serve` takes its lock (None on PostgreSQL, where replicas share the database by design).

    A function of the database file itself, symbolic links resolved: however the store is named
    (--data-dir, a sqlite:/// URL, relative or absolute, through a link) one file gets one lock,
    `serve.lock` beside a `keybrake.db`, else `<database file>.serve.lock`."""
    db = sqlite_file(settings)
    if db is None:
        return None
    real = db.resolve()
    return real.parent / LOCK_NAME if real.name == DB_NAME else real.with_name(real.name + ".serve.lock")


class ServeLock:
    """The open lock file of a running `keybrake serve`; the lock lasts as long as the process
    (or until `release`)."""

    def __init__(self, fd: int, path: Path) -> None:
        self.fd, self.path = fd, path

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing the only descriptor drops the flock
            self.fd = -1


def take_serve_lock(settings: Settings, *, shared: bool) -> ServeLock | None:
    """Lock the embedded store for this `serve` (None on PostgreSQL). The lock file's directory is
    created if needed (mode 0700 for the data directory).

    Raises click.ClickException naming the directory when another `serve` holds the store: an
    exclusive lock against any other, a shared one (`--shared-data-dir`) against one that is not;
    and naming the lock file when it cannot be created or opened (not writable, a directory).
    """
    path = lock_path(settings)
    if path is None:
        return None
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise click.ClickException(
            f"cannot open the serve lock {path}: {exc.strerror or exc} (serve needs to create and write it "
            "in the data directory)"
        ) from None
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        where = settings.data_dir if settings.database_url is None else sqlite_file(settings)
        how = (
            "a keybrake serve without --shared-data-dir is using it"
            if shared
            else "another keybrake serve is using it (stop it first; two processes on one SQLite store "
            "must both be started with --shared-data-dir)"
        )
        raise click.ClickException(f"{where} is in use: {how} [lock: {path}]") from None
    return ServeLock(fd, path)


def announce_new_store(settings: Settings) -> None:
    """Say on standard error, before anything is created, that `serve` is about to create a new
    data directory or a new store (a mistyped --data-dir would otherwise start an empty one
    silently). Nothing is said for an existing store or for PostgreSQL."""
    db = sqlite_file(settings)
    if db is None or db.exists():
        return
    if not settings.data_dir.exists():
        what = f"a new data directory {settings.data_dir.absolute()}"
    else:
        what = f"a new store {db.absolute()}"
    sys.stderr.write(
        f"keybrake: creating {what} (nothing was there; if you meant an existing one, stop and give its "
        "path with --data-dir or KEYBRAKE_DATA_DIR)\n"
    )
    sys.stderr.flush()


def require_data_dir(settings: Settings) -> None:
    """Refuse (click.ClickException naming it) a data directory or database file that does not
    exist, for commands that only read an existing store."""
    db = sqlite_file(settings)
    if settings.database_url is None and not settings.data_dir.is_dir():
        raise click.ClickException(
            f"data directory {settings.data_dir} does not exist (--data-dir or KEYBRAKE_DATA_DIR; default "
            "./keybrake-data, relative to the working directory); 'keybrake serve' creates one"
        )
    if db is not None and not db.exists():
        raise click.ClickException(f"no Keybrake database at {db}; start 'keybrake serve' once first")
