"""Running real Keybrake servers for tests: in a thread (fast, injectable clock) or as a process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import psycopg
import uvicorn

from keybrake.app import KeybrakeApp
from keybrake.config import Settings
from keybrake.listener import KeybrakeServer, Listeners, bind_listeners, server_config
from keybrake.logs import JsonFormatter
from keybrake.runtime import ensure_admin_token, open_runtime
from keybrake.store.pg_conn import PGOptions

ADMIN_TOKEN = "test-admin-token-0123456789-abcdefghij"


def examples(n: int) -> int:
    """Generated examples for a test that runs in both passes: all of them on the first (SQLite),
    a third on the PostgreSQL pass, which re-checks the same logic on the other engine."""
    return n if os.environ.get("KEYBRAKE_TEST_STORE", "sqlite") == "sqlite" else max(5, n // 3)


# Set per test on the PostgreSQL pass (tests/conftest.py): servers started by a test use it.
DATABASE_URL: str | None = None
# On that pass, a second install (another data dir) in the same test gets a database of its own.
NEW_DATABASE: Callable[[], str] | None = None
_INSTALLS: dict[Path, str] = {}


def database_for(data_dir: Path) -> str | None:
    """The PostgreSQL database of the install at `data_dir` on the PostgreSQL pass (else None)."""
    if DATABASE_URL is None:
        return None
    if not _INSTALLS:
        _INSTALLS[data_dir] = DATABASE_URL
    if data_dir not in _INSTALLS:
        assert NEW_DATABASE is not None
        _INSTALLS[data_dir] = NEW_DATABASE()
    return _INSTALLS[data_dir]


def reset_installs() -> None:
    _INSTALLS.clear()


# Store bounds for a test that is not marked `timing` (set per test by tests/conftest.py): the
# parallel passes share two cores with four workers, a PostgreSQL and mypy, so any default store
# bound — the 2 s deadline, the 1 s idle-in-transaction limit, the 5 s statement timeout (300
# reservations of one key queue on its counter row's lock: 42 of 300 got 503 in a CI run), the
# 2 s SQLite busy wait — can pass for want of CPU, not for anything the test does. Timing tests
# (run alone) keep the defaults; a test's own settings win over these.
LOADED_BOUNDS: dict[str, Any] = {
    "reserve_deadline_ms": 15_000,
    "pg_pool_timeout_s": 15.0,
    "pg_idle_tx_timeout_ms": 15_000,
    "pg_statement_timeout_ms": 15_000,
    "sqlite_busy_timeout_ms": 15_000,
}
STORE_BOUNDS: dict[str, Any] = {}
# The same bounds for a `keybrake serve` process (spawn_keybrake), as its environment spells them.
BOUND_ENV = {
    "reserve_deadline_ms": "KEYBRAKE_RESERVE_DEADLINE_MS",
    "pg_pool_timeout_s": "KEYBRAKE_PG_POOL_TIMEOUT",
    "pg_idle_tx_timeout_ms": "KEYBRAKE_PG_IDLE_TX_TIMEOUT_MS",
    "pg_statement_timeout_ms": "KEYBRAKE_PG_STATEMENT_TIMEOUT_MS",
    "sqlite_busy_timeout_ms": "KEYBRAKE_SQLITE_BUSY_TIMEOUT_MS",
}


def store_options() -> PGOptions:
    """The PostgreSQL options a store a test opens itself (`open_store(..., pg=store_options())`)
    should have: the running test's store bounds (STORE_BOUNDS — generous outside `timing` tests),
    else the defaults. A store opened with defaults in a parallel pass had a transaction killed by
    the 1 s idle-in-transaction limit for want of CPU (test_pg_reserve_diff, 2026-12-02)."""
    b = STORE_BOUNDS
    return PGOptions(
        pool_timeout_s=b.get("pg_pool_timeout_s", PGOptions.pool_timeout_s),
        statement_timeout_ms=b.get("pg_statement_timeout_ms", PGOptions.statement_timeout_ms),
        idle_tx_timeout_ms=b.get("pg_idle_tx_timeout_ms", PGOptions.idle_tx_timeout_ms),
    )


REAL_SECRET = "sk_test_fake_secret_1234567890"
STARTUP_S = 60.0  # how long a Keybrake (thread or process) may take to start: CI runs 2-4x slower


class LogCapture(logging.Handler):
    """Keeps every formatted log line, so tests can grep them for secrets."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def text(self) -> str:
        return "\n".join(self.lines)


class KeybrakeThread:
    """`keybrake serve` in-process: a real uvicorn server on loopback, in its own thread and loop."""

    def __init__(self, data_dir: Path, *, clock: Callable[[], int] | None = None, **settings: Any) -> None:
        base = Settings(
            data_dir=data_dir,
            database_url=database_for(data_dir),
            admin_token=ADMIN_TOKEN,
            allow_insecure_upstream=True,
            upstream_hosts=("127.0.0.1",),
            # as spawn_keybrake's: a fake vendor starved of CPU on a loaded pass once took over 5 s
            # (504 in CI); a test about upstream timeouts sets its own
            upstream_timeout_s=30.0,
            graceful_shutdown_s=5.0,
        )
        self.settings = replace(base, **{**STORE_BOUNDS, **settings})
        self.clock = clock
        self.logs = LogCapture()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        # Where the admin API answers: the proxy port, or the admin listener's TCP address.
        self.admin_url = self.url
        self.listeners: Listeners | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.app: KeybrakeApp | None = None

    def __enter__(self) -> KeybrakeThread:
        logging.getLogger().addHandler(self.logs)
        logging.getLogger().setLevel(logging.INFO)
        ready = threading.Event()

        def run() -> None:
            async def main() -> None:
                rt = await open_runtime(self.settings, create=True, clock=self.clock)
                await ensure_admin_token(rt)
                self.app = KeybrakeApp(rt)
                # The production listeners and uvicorn configuration (keybrake serve's own).
                self.listeners = bind_listeners(self.settings, proxy_sock=self._sock)
                admin = next((lst for lst in self.listeners.all if lst.role == "admin"), None)
                if admin is not None and admin.unix_path is None:
                    self.admin_url = admin.address
                self._server = KeybrakeServer(
                    server_config(self.app, self.settings, self.listeners), on_stop=self.app.begin_stop
                )
                self._server.config.setup_event_loop = lambda: None  # type: ignore[method-assign]
                task = asyncio.create_task(self._server.serve(sockets=self.listeners.sockets))
                while not self._server.started and not task.done():
                    await asyncio.sleep(0.01)
                ready.set()
                try:
                    await task
                finally:
                    self.listeners.close()
                    await rt.store.close()

            try:
                asyncio.run(main())
            except BaseException as exc:  # surfaced to the test
                self._error = exc
                ready.set()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        if not ready.wait(STARTUP_S):
            raise RuntimeError(f"keybrake did not start within {STARTUP_S:g} s")
        if self._error:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(15)
        logging.getLogger().removeHandler(self.logs)

    # -- the store underneath ---------------------------------------------------------------

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Read the server's own database directly (SQLite file or PostgreSQL), as an operator could."""
        if self.settings.database_url:
            with psycopg.connect(self.settings.database_url) as conn:
                return [tuple(r) for r in conn.execute(sql).fetchall()]
        with sqlite3.connect(self.settings.data_dir / "keybrake.db") as db:
            return [tuple(r) for r in db.execute(sql).fetchall()]

    @contextlib.contextmanager
    def write_lock_held(self) -> Iterator[None]:
        """Another client holds the store's write lock (SQLite) or locks the counters (PostgreSQL)."""
        if self.settings.database_url:
            with psycopg.connect(self.settings.database_url) as conn:
                conn.execute("LOCK TABLE counters, audit IN ACCESS EXCLUSIVE MODE")
                try:
                    yield
                finally:
                    conn.rollback()
            return
        blocker = sqlite3.connect(self.settings.data_dir / "keybrake.db", isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()

    # -- admin helpers --------------------------------------------------------------------

    def admin(self) -> httpx.Client:
        transport = None
        if self.settings.admin_socket is not None:
            transport = httpx.HTTPTransport(uds=str(self.settings.admin_socket))
        return httpx.Client(
            base_url=self.admin_url,
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=30,
            transport=transport,
        )

    def add_credential(
        self, base_url: str, *, name: str = "default", secret: Any = REAL_SECRET, vendor: str = "stripe"
    ) -> dict[str, Any]:
        with self.admin() as c:
            r = c.post("/v1/credentials", json={"vendor": vendor, "name": name, "secret": secret, "base_url": base_url})
            assert r.status_code == 201, r.text
            return r.json()  # type: ignore[no-any-return]

    def issue(self, policy: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
        body = {"vendor": "stripe", "label": "test:agent:run-1", "policy": policy or {}, **fields}
        with self.admin() as c:
            r = c.post("/v1/keys", json=body)
            assert r.status_code == 201, r.text
            return r.json()  # type: ignore[no-any-return]

    def key(self, key_id: str) -> dict[str, Any]:
        with self.admin() as c:
            r = c.get(f"/v1/keys/{key_id}")
            assert r.status_code == 200, r.text
            return r.json()  # type: ignore[no-any-return]

    def audit(self, **filters: Any) -> list[dict[str, Any]]:
        with self.admin() as c:
            r = c.get("/v1/audit", params={"limit": 1000, **filters})
            assert r.status_code == 200, r.text
            return r.json()["data"]  # type: ignore[no-any-return]


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Poll until `predicate()` is truthy and return its value; fail the test after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout} s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn_keybrake(
    data_dir: Path,
    port: int,
    *,
    env: dict[str, str] | None = None,
    log_path: Path | None = None,
    nofile: int | None = None,
    args: tuple[str, ...] = (),
) -> subprocess.Popen[bytes]:
    """`keybrake serve` as a real process (for kill -9, first start, graceful shutdown).

    `nofile`: the process's open-file limit (soft and hard), as `ulimit -n` would set it; `args`:
    more `serve` options.
    """
    full_env = {
        **os.environ,
        "KEYBRAKE_ALLOW_INSECURE_UPSTREAM": "1",
        "KEYBRAKE_UPSTREAM_HOSTS": "127.0.0.1",
        "KEYBRAKE_UPSTREAM_TIMEOUT": "30",
        **({"KEYBRAKE_DATABASE_URL": url} if (url := database_for(data_dir)) else {}),
        **{BOUND_ENV[name]: str(value) for name, value in STORE_BOUNDS.items()},
        **(env or {}),
    }
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL

    def limit_files() -> None:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    proc = subprocess.Popen(
        [sys.executable, "-m", "keybrake.cli", "serve", "--port", str(port), "--data-dir", str(data_dir), *args],
        env=full_env,
        stdout=out,
        stderr=out,
        preexec_fn=limit_files if nofile is not None else None,
    )
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"keybrake exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"keybrake did not become healthy within {STARTUP_S:g} s")
