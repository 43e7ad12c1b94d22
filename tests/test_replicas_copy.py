"""Moving to PostgreSQL: an embedded (SQLite) install copies over with nothing lost, the copy refuses
while the embedded server runs, and `serve` refuses a PostgreSQL schema older or newer than itself.

Each test has a database of its own on the machine's PostgreSQL; Keybrake runs in this process
(KeybrakeThread) or as a real `keybrake serve` process.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from keybrake.cli import main
from keybrake.store.migrate import head_revision, upgrade_to_head
from keybrake.store.pg import sqlalchemy_pg_url
from tests.fakes.stripe_server import FakeStripe
from tests.harness import ADMIN_TOKEN, KeybrakeThread, free_port, spawn_keybrake, wait_for

pytestmark = [pytest.mark.multiprocess, pytest.mark.pg_cluster]
CHARGE = {"amount": "100", "currency": "usd", "source": "tok_visa"}  # $1


@pytest.fixture
def embedded(tmp_path: Path, fake_stripe: FakeStripe) -> Iterator[tuple[Path, dict[str, Any], dict[str, Any]]]:
    """An embedded (SQLite) install with a credential, two keys (one revoked), a budget and spend."""
    data = tmp_path / "embedded"
    with KeybrakeThread(data, database_url=None) as kb:
        kb.add_credential(fake_stripe.base_url)
        key = kb.issue({"daily_usd_cap": 10})
        gone = kb.issue({"daily_usd_cap": 10})
        with kb.admin() as c:
            assert c.delete(f"/v1/keys/{gone['id']}").status_code == 200
            b = c.post("/v1/budgets", json={"name": "all", "scope": "all", "daily_usd_cap": 50})
            assert b.status_code == 201, b.text
        for _ in range(3):
            r = httpx.post(
                f"{kb.url}/stripe/v1/charges", data=CHARGE, headers={"Authorization": f"Bearer {key['key']}"}
            )
            assert r.status_code == 200
        wait_for(lambda: kb.key(key["id"])["usage"]["daily_usd"]["used"] == 3)
    yield data, key, gone


def test_sqlite_install_copies_to_postgres_with_nothing_lost(
    embedded: tuple[Path, dict[str, Any], dict[str, Any]], pg_url: str
) -> None:
    data, key, gone = embedded
    runner = CliRunner()
    out = runner.invoke(main, ["migrate-sqlite-to-postgres", "--data-dir", str(data), "--to", pg_url])
    assert out.exit_code == 0, out.output
    with sqlite3.connect(data / "keybrake.db") as db:
        audit_rows = db.execute("SELECT count(*) FROM audit").fetchone()[0]
    assert audit_rows >= 3
    assert "vault_keys: 2" in out.output and f"audit: {audit_rows}" in out.output and "credentials: 1" in out.output
    again = runner.invoke(main, ["migrate-sqlite-to-postgres", "--data-dir", str(data), "--to", pg_url])
    assert again.exit_code != 0 and "not empty" in again.output

    with KeybrakeThread(data, database_url=pg_url) as kb:  # same data dir: same master key file
        auth = {"Authorization": f"Bearer {key['key']}"}
        before = kb.key(key["id"])["usage"]["daily_usd"]
        assert before["used"] == 3 and before["reserved"] == 0  # spend counters intact
        assert httpx.post(f"{kb.url}/stripe/v1/charges", data=CHARGE, headers=auth).status_code == 200
        r = httpx.post(f"{kb.url}/stripe/v1/charges", data=CHARGE, headers={"Authorization": f"Bearer {gone['key']}"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "key_revoked"
        wait_for(lambda: kb.key(key["id"])["usage"]["daily_usd"]["used"] == 4)
        rows = kb.audit(key_id=key["id"])
        assert [r["verdict"] for r in rows].count("allowed") == 4
        with kb.admin() as c:
            creds = c.get("/v1/credentials").json()["data"]
            assert [(x["name"], x["secret_hint"]) for x in creds] == [("default", "sk_test_…7890")]
            budgets = c.get("/v1/budgets").json()["data"]
            assert len(budgets) == 1 and budgets[0]["usage"]["daily_usd"]["used"] == 4


def test_copy_refuses_while_the_embedded_server_runs(tmp_path: Path, pg_url: str) -> None:
    with KeybrakeThread(tmp_path / "live", database_url=None):
        out = CliRunner().invoke(
            main, ["migrate-sqlite-to-postgres", "--data-dir", str(tmp_path / "live"), "--to", pg_url]
        )
    assert out.exit_code != 0 and "still running" in out.output


def test_serve_refuses_an_unmigrated_or_newer_postgres_schema(tmp_path: Path, pg_databases: Any) -> None:
    import psycopg

    url = pg_databases.create(migrated=False)
    upgrade_to_head(sqlalchemy_pg_url(url), "0004")  # a database left by an older Keybrake
    env = {"KEYBRAKE_DATABASE_URL": url, "KEYBRAKE_ADMIN_TOKEN": ADMIN_TOKEN}
    with pytest.raises(RuntimeError, match="exited"):
        spawn_keybrake(tmp_path / "d", free_port(), env=env, log_path=tmp_path / "old.log")
    assert "older than this Keybrake" in (tmp_path / "old.log").read_text()
    out = CliRunner().invoke(main, ["db", "upgrade"], env={"KEYBRAKE_DATABASE_URL": url})
    assert out.exit_code == 0, out.output
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == (head_revision(),)
        conn.execute("UPDATE alembic_version SET version_num = '0999'")
    with pytest.raises(RuntimeError, match="exited"):
        spawn_keybrake(tmp_path / "d", free_port(), env=env, log_path=tmp_path / "new.log")
    assert "newer than this Keybrake" in (tmp_path / "new.log").read_text()
