"""The operator's decision surface of the admin API: /v1/approvals listed, read, approved, denied;
lost decisions are 409s naming the approval's state (docs/api.md, approvals)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import pytest
import stripe

from keybrake.core.timefmt import parse_rfc3339
from tests.approval_holds import HELD_POLICY, HeldCall, decide, hold, pending_for
from tests.fakes.stripe_server import FakeStripe
from tests.harness import KeybrakeThread, wait_for
from tests.stripe_sdk import code_of

FIELDS = [
    "id", "object", "state", "key_id", "label", "agent_run_id", "vendor", "method", "endpoint", "amount_usd",
    "summary", "reasons", "created_at", "expires_at", "decided_at", "decided_by", "reason", "grant_run_usd",
    "audit_id",
]  # fmt: skip


def customers_upstream(fake: FakeStripe) -> int:
    return len([r for r in fake.requests if r.path == "/v1/customers" and r.method == "POST"])


def test_a_held_call_is_listed_read_and_approved_then_goes(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    key, call, listed = hold(kb, metadata={"agent_run_id": "run-7"})
    assert list(listed) == FIELDS
    assert listed["state"] == "pending" and listed["object"] == "approval"
    assert (listed["key_id"], listed["label"], listed["agent_run_id"]) == (key["id"], "test:agent:run-1", "run-7")
    assert (listed["vendor"], listed["method"], listed["endpoint"]) == ("stripe", "POST", "/v1/customers")
    assert listed["reasons"] and listed["audit_id"].startswith("kbr_")
    assert listed["decided_at"] is listed["decided_by"] is listed["grant_run_usd"] is None
    created, expires = parse_rfc3339(listed["created_at"]), parse_rfc3339(listed["expires_at"])
    assert 29_000 <= expires - created <= 30_000
    assert customers_upstream(fake_stripe) == 0  # held: nothing sent yet
    with kb.admin() as c:
        got = c.get(f"/v1/approvals/{listed['id']}")
        assert got.status_code == 200 and got.json() == listed
        row = c.get(f"/v1/audit/{listed['audit_id']}").json()
    assert row["approval"]["state"] == "awaiting_approval" and row["approval"]["id"] == listed["id"]
    assert row["approval"]["expires_at"] == listed["expires_at"]

    r = decide(kb, listed["id"], "approve", {"reason": "looks right", "grant_run_usd": "50"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["state"] == "approved" and out["decided_by"].startswith("adm_") and out["reason"] == "looks right"
    assert out["grant_run_usd"] == 50 and parse_rfc3339(out["decided_at"]) >= created
    assert call.done().error is None and call.result.id.startswith("cus_")
    assert customers_upstream(fake_stripe) == 1
    # the grant for the rest of the run is stored, in µUSD
    assert kb.query("SELECT run_scope, granted_usd, approval_id FROM approval_grants") == [
        ("run:run-7", 50_000_000, listed["id"])
    ]

    def settled() -> dict[str, Any] | None:
        first = kb.audit(key_id=key["id"])[0]
        return first if first["verdict"] == "allowed" and first["approval"]["state"] == "approved" else None

    row = wait_for(settled)
    assert row["approval"]["state"] == "approved" and row["approval"]["decided_by"] == out["decided_by"]
    assert row["approval"]["grant_usd"] == 50 and row["approval"]["decided_at"] == out["decided_at"]
    assert "approval decided" in kb.logs.text() and listed["id"] in kb.logs.text()
    # a grant is money: a later call that reserves nothing (a customer create) is still asked
    # (docs/approvals.md, the rest of the run; priced calls on a grant: tests/test_approvals.py)
    with kb.admin() as c:
        assert [a["id"] for a in c.get("/v1/approvals", params={"state": "approved"}).json()["data"]] == [listed["id"]]


def test_deny_refuses_the_call_with_the_reason(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    _, call, listed = hold(kb)
    r = decide(kb, listed["id"], "deny", {"reason": "not this customer"})
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "denied" and r.json()["reason"] == "not this customer"
    assert r.json()["grant_run_usd"] is None
    err = call.done().error
    assert isinstance(err, stripe.StripeError) and code_of(err) == "approval_denied"
    assert customers_upstream(fake_stripe) == 0
    assert kb.query("SELECT COUNT(*) FROM approval_grants") == [(0,)]


def test_a_lost_decision_is_a_409_naming_what_won(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    _, call, listed = hold(kb)
    assert decide(kb, listed["id"], "approve").status_code == 200  # no body at all
    call.done()
    for verb, body in (("approve", {}), ("deny", {"reason": "late"})):
        r = decide(kb, listed["id"], verb, body)
        assert r.status_code == 409, r.text
        err = r.json()["error"]
        assert err["code"] == "conflict" and "already approved by adm_" in err["message"]
    with kb.admin() as c:
        assert c.get(f"/v1/approvals/{listed['id']}").json()["reason"] is None  # the loser changed nothing


def test_concurrent_decisions_exactly_one_wins(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    _, call, listed = hold(kb)
    bodies = [("approve", {"reason": f"a{i}"}) if i % 2 else ("deny", {"reason": f"d{i}"}) for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda vb: decide(kb, listed["id"], *vb), bodies))
    assert sorted(a.status_code for a in answers) == [200] + [409] * 7
    winner = next(a.json() for a in answers if a.status_code == 200)
    for lost in (a for a in answers if a.status_code == 409):
        assert f"already {winner['state']} by {winner['decided_by']}" in lost.json()["error"]["message"]
    call.done()
    assert (call.error is None) == (winner["state"] == "approved")


def test_a_hold_that_ended_cannot_be_approved(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    # Read after the hold ended (its one-second window is too short to catch it pending on a busy machine).
    key = kb.issue({**HELD_POLICY, "approval_timeout_seconds": 1})
    err = HeldCall(kb, key).done().error
    assert isinstance(err, stripe.StripeError) and code_of(err) == "approval_timeout"
    with kb.admin() as c:
        (listed,) = c.get("/v1/approvals", params={"key_id": key["id"]}).json()["data"]
    r = decide(kb, listed["id"], "approve")
    assert r.status_code == 409
    assert f"expired: the hold ended at {listed['expires_at']}" in r.json()["error"]["message"]
    with kb.admin() as c:
        assert c.get(f"/v1/approvals/{listed['id']}").json()["state"] == "expired"
        expired = c.get("/v1/approvals", params={"state": "expired", "key_id": key["id"]}).json()["data"]
    assert [a["id"] for a in expired] == [listed["id"]]
    assert customers_upstream(fake_stripe) == 0


def test_pages_are_newest_first_with_a_cursor(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    key = kb.issue({"approval_endpoints": ["POST /v1/customers"], "approval_timeout_seconds": 30})
    calls = []
    for _ in range(3):
        calls.append(HeldCall(kb, key))
        time.sleep(0.05)
    everything = pending_for(kb, key["id"], 3)
    ids = [a["id"] for a in everything]
    assert ids == sorted(ids, reverse=True)
    seen: list[str] = []
    cursor = None
    with kb.admin() as c:
        for size in (2, 2):
            params: dict[str, Any] = {"limit": size, "key_id": key["id"]}
            if cursor:
                params["cursor"] = cursor
            page = c.get("/v1/approvals", params=params).json()
            seen += [a["id"] for a in page["data"]]
            cursor = page["next_cursor"]
        assert cursor is None and seen == ids
        assert c.get("/v1/approvals", params={"key_id": "vk_other"}).json()["data"] == []
    for a in everything:
        assert decide(kb, a["id"], "deny", {"reason": "cleanup"}).status_code == 200
    for held in calls:
        held.done()


def test_bad_requests_are_refused_by_name(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    _, call, listed = hold(kb)
    aid = listed["id"]
    with kb.admin() as c:
        for params, name in (
            ({"nope": "1"}, "nope"),
            ({"state": "waiting"}, "state"),
            ({"limit": "0"}, "limit"),
            ({"cursor": "!!"}, "cursor"),
        ):
            r = c.get("/v1/approvals", params=params)
            assert (r.status_code, r.json()["error"]["field"]) == (400, name), r.text
        assert c.get(f"/v1/approvals/{aid}", params={"x": "1"}).status_code == 400
        missing = c.get("/v1/approvals/apr_missing")
        assert missing.status_code == 404 and "apr_missing" in missing.json()["error"]["message"]
        assert c.post("/v1/approvals/apr_missing/approve").status_code == 404
        assert c.post("/v1/approvals/apr_missing/deny", json={"reason": "x"}).status_code == 404
        bad_json = c.post(f"/v1/approvals/{aid}/approve", content=b"{", headers={"Content-Type": "application/json"})
        assert bad_json.status_code == 400
    refusals: list[tuple[str, Any, str | None]] = [
        ("deny", None, None),  # a reason is required: no body at all
        ("deny", {}, "reason"),
        ("deny", {"reason": ""}, "reason"),
        ("deny", {"reason": "x" * 501}, "reason"),
        ("deny", {"reason": "x", "grant_run_usd": 1}, "grant_run_usd"),
        ("approve", {"grant_run_usd": "lots"}, "grant_run_usd"),
        ("approve", {"grant_run_usd": -1}, "grant_run_usd"),
        ("approve", {"grant_run_usd": 0}, "grant_run_usd"),  # a $0 grant would cover no call
        ("approve", {"reason": "x" * 501}, "reason"),
        ("approve", {"why": "x"}, "why"),
        ("approve", [1], None),
    ]
    for verb, body, field in refusals:
        r = decide(kb, aid, verb, body)
        assert r.status_code in (400, 422) and r.json()["error"]["field"] == field, (verb, body, r.text)
    with kb.admin() as c:
        assert c.get(f"/v1/approvals/{aid}").json()["state"] == "pending"  # nothing was decided
    assert decide(kb, aid, "deny", {"reason": "done"}).status_code == 200
    call.done()


def test_only_admin_scope_tokens_decide(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    _, call, listed = hold(kb)
    _set_scope(kb, "issuer")
    try:
        r = decide(kb, listed["id"], "approve")
        assert r.status_code == 403 and r.json()["error"]["code"] == "insufficient_scope"
        with kb.admin() as c:
            assert c.get(f"/v1/approvals/{listed['id']}").json()["state"] == "pending"
    finally:
        _set_scope(kb, "admin")
    assert decide(kb, listed["id"], "approve").status_code == 200
    call.done()


def _set_scope(kb: KeybrakeThread, scope: str) -> None:
    """Change every admin token's scope in the database (no API makes another scope yet)."""
    import sqlite3

    import psycopg

    if kb.settings.database_url:
        with psycopg.connect(kb.settings.database_url) as conn:
            conn.execute("UPDATE admin_tokens SET scope = %s", (scope,))
    else:
        with sqlite3.connect(kb.settings.data_dir / "keybrake.db") as db:
            db.execute("UPDATE admin_tokens SET scope = ?", (scope,))


def test_budget_approval_above_usd_is_created_patched_and_rendered(kb: KeybrakeThread) -> None:
    with kb.admin() as c:
        made = c.post(
            "/v1/budgets", json={"name": "b", "scope": "all", "daily_usd_cap": 10, "approval_above_usd": "2.5"}
        )
        assert made.status_code == 201, made.text
        bid = made.json()["id"]
        assert made.json()["approval_above_usd"] == Decimal("2.5")
        assert kb.query(_above_sql(bid)) == [(2_500_000,)]
        patched = c.patch(f"/v1/budgets/{bid}", json={"approval_above_usd": 7})
        assert patched.status_code == 200 and patched.json()["approval_above_usd"] == 7
        renamed = c.patch(f"/v1/budgets/{bid}", json={"name": "c"})  # an unnamed field keeps its value
        assert renamed.json()["approval_above_usd"] == 7
        assert c.patch(f"/v1/budgets/{bid}", json={"approval_above_usd": "x"}).status_code == 422
        cleared = c.patch(f"/v1/budgets/{bid}", json={"approval_above_usd": None})
        assert cleared.json()["approval_above_usd"] is None
        assert c.get(f"/v1/budgets/{bid}").json()["approval_above_usd"] is None
        assert kb.query(_above_sql(bid)) == [(None,)]


def test_key_approval_policy_fields_render(kb: KeybrakeThread) -> None:
    key = kb.issue(
        {"approval_above_usd": "2.5", "approval_endpoints": ["POST /v1/refunds"], "approval_timeout_seconds": 60}
    )
    policy = kb.key(key["id"])["policy"]
    assert policy["approval_above_usd"] == Decimal("2.5")
    assert policy["approval_endpoints"] == ["POST /v1/refunds"] and policy["approval_timeout_seconds"] == 60


def _above_sql(budget_id: str) -> str:
    assert budget_id.replace("_", "").isalnum()  # an id the API made: safe to quote
    return f"SELECT approval_above_usd FROM budgets WHERE id = '{budget_id}'"  # noqa: S608


def test_a_decision_made_here_wakes_its_holder_at_once(
    kb: KeybrakeThread, fake_stripe: FakeStripe, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the store polled only every 60 s, the call still goes at once: the API woke its holder."""
    import keybrake.proxy.approval

    monkeypatch.setattr(keybrake.proxy.approval, "POLL_S", 60.0)
    _, call, listed = hold(kb)
    started = time.monotonic()
    assert decide(kb, listed["id"], "approve").status_code == 200
    assert call.done(timeout=20).error is None
    assert time.monotonic() - started < 20
