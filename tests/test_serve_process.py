"""`keybrake serve` as a real process: first start, master key, kill -9 recovery, graceful drain."""

from __future__ import annotations

import base64
import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.stripe_server import FakeStripe
from tests.harness import ADMIN_TOKEN, REAL_SECRET, free_port, spawn_keybrake

pytestmark = pytest.mark.multiprocess


def _setup(
    port: int, fake: FakeStripe, token: str = ADMIN_TOKEN, policy: dict[str, Any] | None = None
) -> dict[str, Any]:
    h = {"Authorization": f"Bearer {token}"}
    r = httpx.post(
        f"http://127.0.0.1:{port}/v1/credentials",
        headers=h,
        json={"vendor": "stripe", "name": "default", "secret": REAL_SECRET, "base_url": fake.base_url},
    )
    assert r.status_code == 201, r.text
    r = httpx.post(
        f"http://127.0.0.1:{port}/v1/keys",
        headers=h,
        json={"vendor": "stripe", "label": "t:kill", "policy": policy or {"daily_usd_cap": 100}},
    )
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


@pytest.mark.sqlite_only
def test_first_start_creates_everything_and_prints_the_token_once(tmp_path: Path, fake_stripe: FakeStripe) -> None:
    data, log = tmp_path / "data", tmp_path / "serve.log"
    env = {k: v for k, v in os.environ.items() if k != "KEYBRAKE_ADMIN_TOKEN"}
    port = free_port()
    proc = spawn_keybrake(data, port, env={"KEYBRAKE_ADMIN_TOKEN": ""}, log_path=log)
    try:
        assert stat.S_IMODE((data / "master.key").stat().st_mode) == 0o600
        assert stat.S_IMODE((data / "bootstrap-admin-token").stat().st_mode) == 0o600
        token = (data / "bootstrap-admin-token").read_text().strip()
        assert token.startswith("kb_admin_") and log.read_text().count(token) == 1
        for name in ("keybrake.db", "keybrake.db-wal"):
            assert stat.S_IMODE((data / name).stat().st_mode) == 0o600, name
        with sqlite3.connect(data / "keybrake.db") as db:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        admin = {"Authorization": f"Bearer {token}"}
        failed = httpx.post(f"http://127.0.0.1:{port}/v1/keys", json={"vendor": "nope"}, headers=admin)
        assert failed.status_code == 422
        key = _setup(port, fake_stripe, token=token)
        # kept after use (a new shell's `$(cat …)` still works) until the operator makes their own
        assert (data / "bootstrap-admin-token").read_text().strip() == token
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
    del env
    # second start: no new token, the old one still works, keys still authenticate
    proc = spawn_keybrake(data, port, env={"KEYBRAKE_ADMIN_TOKEN": ""}, log_path=log)
    try:
        assert log.read_text().count("kb_admin_") == 1
        r = httpx.get(f"http://127.0.0.1:{port}/stripe/v1/customers", headers={"Authorization": f"Bearer {key['key']}"})
        assert r.status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) in (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM after a clean stop


def test_a_wrong_master_key_refuses_to_start(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    proc = spawn_keybrake(data, port, env={"KEYBRAKE_ADMIN_TOKEN": ADMIN_TOKEN})
    proc.send_signal(signal.SIGTERM)
    proc.wait(10)
    wrong = base64.b64encode(os.urandom(32)).decode()
    out = subprocess.run(
        [sys.executable, "-m", "keybrake.cli", "serve", "--port", str(port), "--data-dir", str(data)],
        env={**os.environ, "KEYBRAKE_MASTER_KEY": wrong, "KEYBRAKE_ADMIN_TOKEN": ADMIN_TOKEN},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode != 0
    assert "master key cannot decrypt the store" in out.stderr


def test_short_admin_token_refuses_to_start(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "keybrake.cli", "serve", "--data-dir", str(tmp_path)],
        env={**os.environ, "KEYBRAKE_ADMIN_TOKEN": "short"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode != 0 and "at least 32 characters" in out.stderr


def test_kill_9_mid_flight_leaves_outcome_unknown_and_keeps_the_reservation(
    tmp_path: Path, fake_stripe: FakeStripe
) -> None:
    data = tmp_path / "data"
    port = free_port()
    env = {"KEYBRAKE_ADMIN_TOKEN": ADMIN_TOKEN}
    proc = spawn_keybrake(data, port, env=env)
    key = _setup(port, fake_stripe)
    fake_stripe.hang = threading.Event()  # the fake holds the request until released
    result: dict[str, object] = {}

    def agent() -> None:
        try:
            result["r"] = httpx.post(
                f"http://127.0.0.1:{port}/stripe/v1/charges",
                data={"amount": 2500, "currency": "usd"},
                headers={"Authorization": f"Bearer {key['key']}"},
                timeout=10,
            )
        except httpx.HTTPError as exc:
            result["error"] = exc

    t = threading.Thread(target=agent)
    t.start()
    deadline = time.monotonic() + 10
    while not fake_stripe.requests and time.monotonic() < deadline:
        time.sleep(0.02)
    assert fake_stripe.requests, "the request never reached the fake Stripe"
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    t.join(10)
    assert "error" in result  # the agent saw the connection drop
    fake_stripe.hang.set()

    proc = spawn_keybrake(data, port, env=env)
    try:
        h = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        rows = httpx.get(f"http://127.0.0.1:{port}/v1/audit", params={"key_id": key["id"]}, headers=h).json()["data"]
        assert len(rows) == 1
        assert rows[0]["verdict"] == "outcome_unknown" and rows[0]["reserved_usd"] == 25
        usage = httpx.get(f"http://127.0.0.1:{port}/v1/keys/{key['id']}", headers=h).json()["usage"]["daily_usd"]
        assert usage["reserved"] == 25 and usage["used"] == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


def test_graceful_shutdown_drains_in_flight_requests(tmp_path: Path, fake_stripe: FakeStripe) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    proc = spawn_keybrake(tmp_path / "data", port, env={"KEYBRAKE_ADMIN_TOKEN": ADMIN_TOKEN}, log_path=log)
    key = _setup(port, fake_stripe)
    fake_stripe.delay_seconds = 1.0
    result: dict[str, httpx.Response] = {}

    def agent() -> None:
        result["r"] = httpx.post(
            f"http://127.0.0.1:{port}/stripe/v1/charges",
            data={"amount": 100, "currency": "usd"},
            headers={"Authorization": f"Bearer {key['key']}"},
            timeout=10,
        )

    t = threading.Thread(target=agent)
    t.start()
    deadline = time.monotonic() + 5
    while not fake_stripe.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    t.join(10)
    assert proc.wait(10) in (0, -signal.SIGTERM)
    assert result["r"].status_code == 200
    assert '"msg":"keybrake stopped"' in log.read_text()


def test_a_clean_stop_removes_the_admin_socket(tmp_path: Path) -> None:
    """A server stopped by SIGTERM re-raises it once serving ends: the socket goes in the shutdown."""
    short = Path(tempfile.mkdtemp(prefix="kb", dir="/tmp"))  # unix socket paths are short
    path = short / "admin.sock"
    proc = spawn_keybrake(tmp_path / "d", free_port(), env={"KEYBRAKE_ADMIN_SOCKET": str(path)})
    try:
        assert stat.S_ISSOCK(path.lstat().st_mode)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
    assert not path.exists()
    os.rmdir(short)


def test_an_admin_socket_in_a_missing_directory_says_so(tmp_path: Path) -> None:
    from keybrake.listener import ListenerError, bind_unix

    with pytest.raises(ListenerError, match="does not exist: create it first"):
        bind_unix(tmp_path / "missing" / "admin.sock")


def test_serve_freezes_the_long_lived_heap_before_serving(tmp_path: Path) -> None:
    """`keybrake serve` moves what lives as long as the process out of the collector's sight
    (`gc.freeze`) before it answers: the log says how many objects, and a call is then served."""
    data, log = tmp_path / "data", tmp_path / "serve.log"
    port = free_port()
    proc = spawn_keybrake(data, port, log_path=log)
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        frozen = [json.loads(line) for line in log.read_text().splitlines() if '"heap frozen"' in line]
        assert len(frozen) == 1, log.read_text()[-2000:]
        assert frozen[0]["objects"] > 10_000  # modules, the runtime and the app: tens of thousands
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
