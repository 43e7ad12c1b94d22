"""Human approval across replicas on one PostgreSQL database (docs/approvals.md, docs/scale-out.md):
a decision made through any replica reaches the one holding the call promptly, and a replica
that is not holding the call may restart meanwhile."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.stripe_server import FakeStripe
from tests.harness import wait_for
from tests.test_replicas import Replicas

pytestmark = [pytest.mark.multiprocess, pytest.mark.pg_cluster]
CHARGE_40 = {"amount": "4000", "currency": "usd", "source": "tok_visa"}


def _pending(rs: Replicas, i: int, n: int) -> list[dict[str, Any]]:
    def found() -> list[dict[str, Any]] | None:
        with rs.admin(i) as c:
            data = c.get("/v1/approvals", params={"state": "pending"}).json()["data"]
        return data if len(data) >= n else None

    return wait_for(found, 20)  # type: ignore[no-any-return]


def test_a_decision_through_another_replica_reaches_the_holder_even_across_a_restart(
    tmp_path: Path, pg_url: str, fake_stripe: FakeStripe
) -> None:
    with Replicas(tmp_path, pg_url, 3) as rs:
        key = rs.setup(
            fake_stripe.base_url, {"daily_usd_cap": 100, "approval_above_usd": 30, "approval_timeout_seconds": 120}
        )
        auth = {"Authorization": f"Bearer {key['key']}"}
        answers: list[httpx.Response] = []

        def agent() -> None:  # the call is held by replica 0
            answers.append(httpx.post(rs.url_of(0) + "/stripe/v1/charges", data=CHARGE_40, headers=auth, timeout=60))

        t = threading.Thread(target=agent)
        t.start()
        (a,) = _pending(rs, 1, 1)  # seen through another replica
        assert a["amount_usd"] == 40
        # Replica 2, which does not hold the call, restarts while it waits.
        rs.procs[2].send_signal(signal.SIGTERM)
        rs.procs[2].wait(15)
        rs.start(2)
        wait_for(lambda: httpx.get(rs.url_of(2) + "/healthz").status_code == 200, 30)
        assert t.is_alive() and not [r for r in fake_stripe.requests if r.path == "/v1/charges"]
        (still,) = _pending(rs, 2, 1)
        assert still["id"] == a["id"]
        decided = time.monotonic()
        with rs.admin(2) as c:
            r = c.post(f"/v1/approvals/{a['id']}/approve", json={"reason": "ok from replica 2"})
            assert r.status_code == 200, r.text
        t.join(10)
        assert not t.is_alive()
        assert time.monotonic() - decided < 2  # the holder polls the store, it does not wait for its hold to end
        assert answers[0].status_code == 200, answers[0].text
        assert len([r for r in fake_stripe.requests if r.path == "/v1/charges"]) == 1

        def row() -> dict[str, Any] | None:
            rows = rs.audit(key["id"], 1)
            return rows[0] if rows and rows[0]["verdict"] == "allowed" else None

        got = wait_for(row, 20)
        assert got["approval"]["state"] == "approved" and got["approval"]["reason"] == "ok from replica 2"
        assert rs.usage(key["id"], 1)["daily_usd"]["used"] == 40


def test_calls_held_by_a_replica_that_dies_are_released_by_another(
    tmp_path: Path, pg_url: str, fake_stripe: FakeStripe
) -> None:
    with Replicas(tmp_path, pg_url, 2) as rs:
        key = rs.setup(
            fake_stripe.base_url, {"daily_usd_cap": 100, "approval_above_usd": 30, "approval_timeout_seconds": 300}
        )
        auth = {"Authorization": f"Bearer {key['key']}"}

        def agent() -> None:  # held by replica 0, which is then killed
            with contextlib.suppress(httpx.HTTPError):
                httpx.post(rs.url_of(0) + "/stripe/v1/charges", data=CHARGE_40, headers=auth, timeout=60)

        threads = [threading.Thread(target=agent) for _ in range(2)]
        for t in threads:
            t.start()
        held = _pending(rs, 1, 2)
        assert rs.usage(key["id"], 1)["daily_usd"]["reserved"] == 80
        rs.procs[0].send_signal(signal.SIGKILL)
        rs.procs[0].wait(10)
        for t in threads:
            t.join(10)

        def released() -> dict[str, Any] | None:
            usage = rs.usage(key["id"], 1)["daily_usd"]
            return usage if usage["reserved"] == 0 else None

        usage = wait_for(released, 60)  # replica 1's housekeeping finds replica 0 dead
        assert usage["used"] == 0
        with rs.admin(1) as c:
            for a in held:
                got = c.get(f"/v1/approvals/{a['id']}").json()
                assert got["state"] == "cancelled" and "stopped" in got["reason"]
                assert c.post(f"/v1/approvals/{a['id']}/approve", json={}).status_code == 409
        rows = rs.audit(key["id"], 1)
        assert [r["verdict"] for r in rows] == ["denied_approval_timeout"] * 2
        assert all(r["approval"]["state"] == "cancelled" for r in rows)
        assert not [r for r in fake_stripe.requests if r.path == "/v1/charges"]
