"""A refused request's audit row survives a lost PostgreSQL connection (red-team R3, issue 14).

The row of a request that reserved nothing is written by `insert_audit`, idempotent (`ON CONFLICT
(id) DO NOTHING`) and so retried once on a fresh connection when its connection is lost mid-call.
The loss is made real: a trigger holds the row's first INSERT in pg_sleep and a second connection
terminates that session (`pg_terminate_backend`), as an operator or a failover would.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.fakes.stripe_server import FakeStripe
from tests.harness import KeybrakeThread, wait_for

pytestmark = pytest.mark.skipif(
    os.environ.get("KEYBRAKE_TEST_STORE", "sqlite") != "postgres", reason="lost connections are PostgreSQL's"
)


def _hold_first_denial_row(url: str, key_id: str) -> None:
    """BEFORE INSERT of the key's denial row sleeps 30 s the first time only (a sequence: not rolled back)."""
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("CREATE SEQUENCE IF NOT EXISTS t_once")
        db.execute(
            "CREATE OR REPLACE FUNCTION t_hold_once() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN IF nextval('t_once') = 1 THEN PERFORM pg_sleep(30); END IF; RETURN NEW; END $$"
        )
        db.execute(
            "CREATE TRIGGER t_hold BEFORE INSERT ON audit FOR EACH ROW "
            f"WHEN (NEW.key_id = '{key_id}' AND NEW.verdict LIKE 'denied%') EXECUTE FUNCTION t_hold_once()"
        )


def _terminate_when_held(url: str, killed: list[int]) -> None:
    """Terminate the first keybrake session found sleeping in the trigger (within 20 s)."""
    with psycopg.connect(url, autocommit=True) as db:

        def held() -> int | None:
            row = db.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                " AND application_name LIKE 'keybrake%' AND wait_event = 'PgSleep'"
            ).fetchone()
            return int(row[0]) if row else None

        pid = wait_for(held, timeout=20)
        db.execute("SELECT pg_terminate_backend(%s)", (pid,))
        killed.append(pid)


def test_a_denial_row_lost_with_its_connection_is_written_once(tmp_path: Path, fake_stripe: FakeStripe) -> None:
    """The denial's INSERT is killed with its session: the row is written again on a fresh
    connection, exactly once, and the answer names it (`x-keybrake-request-id`)."""
    with KeybrakeThread(tmp_path / "d") as kb:
        assert kb.settings.database_url
        kb.add_credential(fake_stripe.base_url)
        key = kb.issue({"allowed_endpoints": ["POST /v1/refunds"]})
        _hold_first_denial_row(kb.settings.database_url, str(key["id"]))
        killed: list[int] = []
        killer = threading.Thread(target=_terminate_when_held, args=(kb.settings.database_url, killed))
        killer.start()
        r = httpx.post(
            f"{kb.url}/stripe/v1/charges",
            data={"amount": "300", "currency": "usd", "source": "tok_visa"},
            headers={"Authorization": f"Bearer {key['key']}"},
            timeout=30,
        )
        killer.join()
        assert killed, "no session was terminated"
        assert r.status_code == 403, r.text
        rows = kb.query(f"SELECT id, verdict FROM audit WHERE key_id = '{key['id']}'")  # noqa: S608 (a test's own key id)
        assert len(rows) == 1 and str(rows[0][1]).startswith("denied"), rows
        assert r.headers.get("x-keybrake-request-id") == rows[0][0], (r.headers, rows)
        assert not [q for q in fake_stripe.requests if q.path == "/v1/charges"]
