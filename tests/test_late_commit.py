"""A reservation's COMMIT that lands late never leaves a reservation held (issue 12, fail closed).

The watchdog times COMMIT like every statement, and a connection it shuts (or any lost connection
with a transaction perhaps running) has its server session terminated and waited for before the
call ends, so the late release of a request answered 503 reads the transaction's final outcome.
Slow statements are made real with triggers on the audit table (PostgreSQL only).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.fakes.stripe_server import FakeStripe
from tests.harness import KeybrakeThread, wait_for

pytestmark = [
    pytest.mark.store_defaults,  # the documented 2 s reservation deadline is what these tests cross
    pytest.mark.skipif(
        os.environ.get("KEYBRAKE_TEST_STORE", "sqlite") != "postgres",
        reason="the watchdog and sessions are PostgreSQL's",
    ),
]


def _slow_triggers(kb: KeybrakeThread, key_id: str, insert_s: float, commit_sql: str) -> None:
    """BEFORE INSERT sleeps `insert_s`; a deferred constraint trigger runs `commit_sql` at COMMIT."""
    assert kb.settings.database_url
    cond = f"WHEN (NEW.key_id = '{key_id}' AND NEW.verdict = 'in_flight')"
    with psycopg.connect(kb.settings.database_url, autocommit=True) as db:
        db.execute(
            "CREATE OR REPLACE FUNCTION t_slow_insert() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN PERFORM pg_sleep({insert_s}); RETURN NEW; END $$"
        )
        db.execute(
            "CREATE OR REPLACE FUNCTION t_slow_commit() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN {commit_sql} RETURN NULL; END $$"
        )
        db.execute("DROP TRIGGER IF EXISTS t_a ON audit")
        db.execute("DROP TRIGGER IF EXISTS t_b ON audit")
        db.execute(f"CREATE TRIGGER t_a BEFORE INSERT ON audit FOR EACH ROW {cond} EXECUTE FUNCTION t_slow_insert()")
        db.execute(
            "CREATE CONSTRAINT TRIGGER t_b AFTER INSERT ON audit DEFERRABLE INITIALLY DEFERRED "
            f"FOR EACH ROW {cond} EXECUTE FUNCTION t_slow_commit()"
        )


def _charge(kb: KeybrakeThread, key: dict[str, object]) -> httpx.Response:
    return httpx.post(
        f"{kb.url}/stripe/v1/charges",
        data={"amount": "300", "currency": "usd", "source": "tok_visa"},
        headers={"Authorization": f"Bearer {key['key']}"},
        timeout=30,
    )


def _held(kb: KeybrakeThread, key_id: str) -> tuple[list[tuple[object, ...]], dict[str, object]]:
    rows = kb.query(f"SELECT verdict, reserved_usd FROM audit WHERE key_id = '{key_id}'")  # noqa: S608 (a test's own key id)
    return rows, kb.key(key_id)["usage"]["daily_usd"]


def _held_once_answered(kb: KeybrakeThread, key_id: str) -> tuple[list[tuple[object, ...]], dict[str, object]] | None:
    """`_held`, or None while the admin API cannot read the key (its store calls keep the default
    2 s bound here, and the late COMMIT holds the key's rows: it answered 503 once in CI) — for
    polling; the assertions after it read `_held` itself."""
    try:
        return _held(kb, key_id)
    except AssertionError:
        return None


def test_commit_landing_after_the_late_release_leaves_a_reservation_held(
    tmp_path: Path, fake_stripe: FakeStripe
) -> None:
    """Red-team case: INSERT 3 s, COMMIT 4 s (deadline 2 s, statement timeout 5 s). The watchdog
    timed from the INSERT and shut the socket mid-COMMIT; the COMMIT landed after the late release:
    row in_flight, $3 reserved forever. Now: 503, never forwarded, $0 reserved, no in_flight row.

    The reservation is one statement on PostgreSQL (`keybrake_reserve`): the watchdog times it
    whole, shuts it at 5 + 1 s, and its session is ended before the late release: nothing lands,
    no row at all (the denial row of a reservation that landed is the next test's case)."""
    with KeybrakeThread(tmp_path / "d") as kb:
        kb.add_credential(fake_stripe.base_url)
        key = kb.issue({"daily_usd_cap": 5})
        _slow_triggers(kb, str(key["id"]), 3, "PERFORM pg_sleep(4);")
        r = _charge(kb, key)
        assert r.status_code == 503 and r.json()["error"]["code"] == "enforcement_unavailable"
        time.sleep(8)  # past the COMMIT's end, had it been let run
        rows, usage = _held(kb, str(key["id"]))
        assert usage["reserved"] == 0 and usage["used"] == 0, usage
        assert [v for v, _ in rows] in ([], ["denied_enforcement_unavailable"]), rows
        assert not [q for q in fake_stripe.requests if q.path == "/v1/charges"]


def test_a_reservation_landing_after_its_503_is_released(tmp_path: Path, fake_stripe: FakeStripe) -> None:
    """INSERT 1.5 s, COMMIT 2 s: past the request's 2 s deadline (503 at once), within the statement
    timeout and the watchdog: the reservation commits late, and the late release settles it: one
    denial row, $0 reserved, nothing forwarded."""
    with KeybrakeThread(tmp_path / "d") as kb:
        kb.add_credential(fake_stripe.base_url)
        key = kb.issue({"daily_usd_cap": 5})
        _slow_triggers(kb, str(key["id"]), 1.5, "PERFORM pg_sleep(2);")
        r = _charge(kb, key)
        assert r.status_code == 503 and r.json()["error"]["code"] == "enforcement_unavailable"
        rows, usage = wait_for(
            lambda: (
                (h := _held_once_answered(kb, str(key["id"]))) and h[0] and all(v != "in_flight" for v, _ in h[0]) and h
            ),
            timeout=15,
        )
        time.sleep(1)  # nothing lands afterwards
        rows, usage = _held(kb, str(key["id"]))
        assert usage["reserved"] == 0 and usage["used"] == 0, usage
        assert [v for v, _ in rows] == ["denied_enforcement_unavailable"], rows
        assert not [q for q in fake_stripe.requests if q.path == "/v1/charges"]


def test_a_commit_cut_by_the_watchdog_is_final_before_the_late_release(tmp_path: Path, fake_stripe: FakeStripe) -> None:
    """A COMMIT the server keeps running past statement_timeout (here: a deferred trigger that
    survives its cancel, as a commit waiting on a synchronous standby does) has its socket shut by
    the watchdog (1 s + 1 s); its session is then terminated and gone before the late release reads
    the row — no COMMIT lands afterwards: $0 reserved, no in_flight row, nothing forwarded."""
    with KeybrakeThread(tmp_path / "d", pg_statement_timeout_ms=1000) as kb:
        kb.add_credential(fake_stripe.base_url)
        key = kb.issue({"daily_usd_cap": 5})
        _slow_triggers(
            kb,
            str(key["id"]),
            0.5,
            "BEGIN PERFORM pg_sleep(2); EXCEPTION WHEN query_canceled THEN PERFORM pg_sleep(4); END;",
        )
        r = _charge(kb, key)
        assert r.status_code == 503 and r.json()["error"]["code"] == "enforcement_unavailable"
        time.sleep(6)  # without the session ended, its COMMIT would land about now
        rows, usage = _held(kb, str(key["id"]))
        assert usage["reserved"] == 0 and usage["used"] == 0, usage
        assert all(v != "in_flight" for v, _ in rows), rows
        assert not [q for q in fake_stripe.requests if q.path == "/v1/charges"]
