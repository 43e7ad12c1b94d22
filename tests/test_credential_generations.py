"""A credential's keys cannot outlive it (issue 12, kind 3), through the admin API and the proxy.

Two replicas (`keybrake serve` in threads) on one PostgreSQL database: keys are issued through B
while A deletes the credential with `revoke_keys=true`; then a new credential reuses the name for
another Stripe account (another fake), and no key of the old one can charge it. The same rule on
one embedded SQLite install is in the second test.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.fakes.stripe_server import FakeStripe, FakeStripeThread
from tests.harness import REAL_SECRET, KeybrakeThread
from tests.waits import wait_until

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def _charge(kb: KeybrakeThread, token: str) -> httpx.Response:
    return httpx.post(
        f"{kb.url}/stripe/v1/charges",
        content=b"amount=100&currency=usd&source=tok_visa",
        headers={**FORM, "Authorization": f"Bearer {token}"},
        timeout=30,
    )


def _charges(fake: FakeStripe) -> int:
    return len([r for r in fake.requests if r.path == "/v1/charges" and r.method == "POST"])


def _unrevoke(kb: KeybrakeThread, key_ids: list[str]) -> None:
    """What the race used to leave behind: keys still active after their credential was deleted."""
    sql = "UPDATE vault_keys SET status = 'active', revoked_at = NULL WHERE id = "
    if kb.settings.database_url:
        with psycopg.connect(kb.settings.database_url, autocommit=True) as conn:
            for k in key_ids:
                conn.execute(sql + "%s", (k,))
    else:
        with sqlite3.connect(kb.settings.data_dir / "keybrake.db") as db:
            for k in key_ids:
                db.execute(sql + "?", (k,))


@pytest.mark.pg_cluster
def test_keys_issued_during_a_delete_on_another_replica_never_outlive_it(pg_url: str, tmp_path: Path) -> None:
    """Issue 12, kind 3: 15 keys issued through B during A's DELETE stayed active and later charged
    the account of a new credential reusing the name. Now: after the DELETE returns no active key
    references the credential, and none of the keys can charge the new account."""
    with (
        FakeStripeThread(secret=REAL_SECRET) as old_acct,
        FakeStripeThread(secret=REAL_SECRET) as new_acct,
        KeybrakeThread(tmp_path / "a", database_url=pg_url) as a,
        KeybrakeThread(tmp_path / "b", database_url=pg_url, master_key_file=a.settings.master_key_path) as b,
    ):
        a.add_credential(old_acct.base_url)
        first = b.issue({"daily_usd_cap": 100})
        assert _charge(a, first["key"]).status_code == 200
        issued: list[dict[str, Any]] = []
        refused: list[int] = []
        stop = threading.Event()

        def issuer() -> None:
            with b.admin() as c:
                while not stop.is_set():
                    r = c.post("/v1/keys", json={"vendor": "stripe", "credential": "default", "policy": {}})
                    if r.status_code == 201:
                        issued.append(r.json())
                    else:
                        assert r.status_code == 422 and r.json()["error"]["field"] == "credential", r.text
                        refused.append(r.status_code)

        threads = [threading.Thread(target=issuer) for _ in range(8)]
        for t in threads:
            t.start()
        wait_until(lambda: len(issued) >= 15, "15 keys issued through replica B")
        with a.admin() as c:
            gone = c.delete("/v1/credentials/default", params={"revoke_keys": "true"})
        assert gone.status_code == 200, gone.text
        assert gone.json()["deleted"] is True and gone.json()["revoked_keys"] >= 16
        # right when the DELETE returns, with the issuers still running on B
        assert a.query("SELECT count(*) FROM vault_keys WHERE credential = 'default' AND status = 'active'") == [(0,)]
        wait_until(lambda: bool(refused), "issues sent after the delete to be refused")
        stop.set()
        for t in threads:
            t.join(30)
        assert a.query("SELECT count(*) FROM vault_keys WHERE credential = 'default' AND status = 'active'") == [(0,)]
        a.add_credential(new_acct.base_url)  # the same name, another Stripe account
        old_keys = [first, *issued]
        for k in old_keys[:20]:
            r = _charge(b, k["key"])
            assert r.status_code == 401 and r.json()["error"]["code"] == "key_revoked", r.text
        # even keys that escaped the revoke (as the race used to leave them) are another generation
        _unrevoke(a, [k["id"] for k in old_keys])
        for k in old_keys[:20]:
            r = _charge(a, k["key"])
            assert r.status_code == 503 and r.json()["error"]["code"] == "credential_unavailable", r.text
        assert _charges(new_acct.fake) == 0
        fresh = b.issue({"daily_usd_cap": 100})
        assert _charge(a, fresh["key"]).status_code == 200 and _charges(new_acct.fake) == 1


def test_a_key_of_a_deleted_credential_cannot_charge_a_new_one_of_the_same_name(
    kb: KeybrakeThread, tmp_path: Path
) -> None:
    """The same rule on the suite's engine (SQLite in the first pass, PostgreSQL in the second)."""
    key = kb.issue({"daily_usd_cap": 100})
    with kb.admin() as c:
        assert c.delete("/v1/credentials/default").status_code == 409  # active keys, no revoke_keys
        gone = c.delete("/v1/credentials/default", params={"revoke_keys": "true"})
        assert gone.status_code == 200 and gone.json()["revoked_keys"] == 1
        assert c.delete("/v1/credentials/default").status_code == 404
    with FakeStripeThread(secret=REAL_SECRET) as other:
        kb.add_credential(other.base_url)
        _unrevoke(kb, [key["id"]])
        r = _charge(kb, key["key"])
        assert r.status_code == 503 and r.json()["error"]["code"] == "credential_unavailable", r.text
        assert _charges(other.fake) == 0
