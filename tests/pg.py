"""PostgreSQL for tests: the server on this machine (started if it is down), a fresh database per test.

`KEYBRAKE_TEST_PG_URL` names the server's maintenance database (default: the local server,
trust auth). Each test gets its own database, copied from a template migrated once per session,
and dropped afterwards; a test never sees another test's rows.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from psycopg import sql

ADMIN_URL = os.environ.get("KEYBRAKE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
# How this machine starts its PostgreSQL (the tool library's env entry for python-svc).
START_COMMAND = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"


def _connect() -> psycopg.Connection:
    return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=3)


def ensure_server() -> None:
    """Reach the server; start it once if it is down; fail with a clear message otherwise."""
    try:
        _connect().close()
        return
    except psycopg.OperationalError as first:
        error = first
    subprocess.run(["bash", "-c", START_COMMAND], capture_output=True, timeout=60, check=False)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            _connect().close()
            return
        except psycopg.OperationalError as exc:
            error = exc
            time.sleep(0.5)
    raise RuntimeError(
        f"PostgreSQL is needed at {ADMIN_URL} and could not be reached or started ({START_COMMAND!r}): {error}"
    )


def url_of(dbname: str) -> str:
    return ADMIN_URL.rsplit("/", 1)[0] + "/" + dbname


EMPTY_BY_DELETE = 10_000  # rows; a larger table is truncated (see Databases.emptied)


class Databases:
    """Creates test databases from one migrated template; drops what it created."""

    def __init__(self) -> None:
        ensure_server()
        self.prefix = f"kbt_{uuid.uuid4().hex[:8]}"
        self.template = f"{self.prefix}_template"
        self._n = itertools.count()
        self._made: list[str] = []
        from keybrake.store.migrate import upgrade_to_head
        from keybrake.store.pg import sqlalchemy_pg_url

        with _connect() as c:
            c.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(self.template)))
        upgrade_to_head(sqlalchemy_pg_url(url_of(self.template)))

    def create(self, *, migrated: bool = True) -> str:
        name = f"{self.prefix}_{next(self._n)}"
        template = self.template if migrated else "template0"
        with _connect() as c:
            c.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template)))
        self._made.append(name)
        return url_of(name)

    def emptied(self, url: str) -> str:
        """The database at `url`, every Keybrake table emptied (the schema stays): ~5 ms, where
        creating a database from the template takes ~100–300 ms. Tables of a few rows (most
        tests') are emptied by one DELETE each: TRUNCATE gives every table new files and syncs
        them (~100–250 ms for all of them, each test, on the PostgreSQL pass). Tables past
        EMPTY_BY_DELETE rows are truncated, which costs the same whatever their size. (The
        schema has no foreign keys, triggers nor sequences: both leave the same empty tables.)"""
        with psycopg.connect(url, autocommit=True, connect_timeout=3) as c:
            tables = [
                r[0]
                for r in c.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
                    " AND tablename != 'alembic_version'"
                ).fetchall()
            ]
            counts = sql.SQL(" UNION ALL ").join(
                sql.SQL("SELECT {}, count(*) FROM (SELECT 1 FROM {} LIMIT {}) AS r").format(
                    sql.Literal(t), sql.Identifier(t), sql.Literal(EMPTY_BY_DELETE + 1)
                )
                for t in tables
            )
            large = [t for t, n in c.execute(counts).fetchall() if n > EMPTY_BY_DELETE]
            with c.transaction():
                for t in tables:
                    if t not in large:
                        c.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(t)))
            if large:
                c.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(sql.Identifier(t) for t in large)))
        return url

    def drop(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        with _connect() as c:
            c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if name in self._made:
            self._made.remove(name)

    def close(self) -> None:
        for name in [*self._made, self.template]:
            try:
                with _connect() as c:
                    c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            except psycopg.Error:
                pass


class PrivateCluster:
    """A PostgreSQL server of the test's own (initdb in a temporary directory, its own port), so
    that a test can stop and start it without touching the machine's shared server."""

    BIN = "/usr/lib/postgresql"

    def __init__(self, port: int) -> None:
        versions = sorted(Path(self.BIN).glob("*/bin/pg_ctl"))
        if not versions:
            raise RuntimeError(f"PostgreSQL server binaries are needed under {self.BIN}/<version>/bin")
        self.bin = versions[-1].parent
        # Not under pytest's tmp_path: the server runs as `postgres`, which cannot enter root's 0700 dirs.
        root = Path(tempfile.mkdtemp(prefix="keybrake-pg-"))
        self.root = root
        self.data = root / "data"
        self.port = port
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        self._as_owner: list[str] = []
        if os.geteuid() == 0:  # the server refuses to run as root
            shutil.chown(root, "postgres")
            self._as_owner = ["runuser", "-u", "postgres", "--"]

    def _pg(self, *args: str) -> None:
        out = subprocess.run([*self._as_owner, *args], capture_output=True, text=True, timeout=60, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {out.stdout}{out.stderr}")

    def init(self) -> None:
        self._pg(
            str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
            "--no-sync", "-E", "UTF8", "--locale=C.UTF-8",
        )  # fmt: skip

    def start(self, max_connections: int = 100) -> None:
        opts = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
            f" -c max_connections={max_connections}"
        )
        log = str(self.root / "log")
        self._pg(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l", log, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._pg(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def close(self) -> None:
        try:
            self.stop("immediate")
        except RuntimeError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)
