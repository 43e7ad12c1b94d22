"""The approvals inbox in Chromium: a held call shows up without a reload (htmx polls the
pending list), Approve lets the agent's SDK call complete, Deny with a reason refuses it
(`approval_denied`), and a grant for the run lets the run's next call go without waiting."""

from __future__ import annotations

import re
import threading
from typing import Any

from tests.approval_holds import HeldCall, decide, hold, pending_for
from tests.console.conftest import Watched, axe_serious, shoot
from tests.harness import KeybrakeThread, wait_for
from tests.stripe_sdk import client, code_of

CHARGE_40: Any = {"amount": 4000, "currency": "usd", "source": "tok_visa"}  # $40


def _audit_row(kb: KeybrakeThread, key_id: str) -> dict[str, Any]:
    rows = wait_for(lambda: [r for r in kb.audit(key_id=key_id) if r["verdict"] != "in_flight"])
    return rows[0]  # type: ignore[no-any-return]


def test_a_held_call_appears_and_approve_completes_it(web: Watched, ckb: KeybrakeThread) -> None:
    page = web.page
    _, earlier, first = hold(ckb, label="billing:refunds:run-2a")  # one already decided, for the screenshot
    assert decide(ckb, first["id"], "deny", {"reason": "duplicate refund"}).status_code == 200
    earlier.done()
    page.goto(f"{ckb.admin_url}/console/approvals")
    page.get_by_text("No call is waiting").wait_for()
    key = ckb.issue(
        {"approval_endpoints": ["POST /v1/customers"], "approval_timeout_seconds": 30},
        label="support:refunds:run-8f3c",
        metadata={"agent_run_id": "run-8f3c"},
    )
    call = HeldCall(ckb, key)
    (apr,) = pending_for(ckb, key["id"])
    card = page.locator(f"#apr-{apr['id']}")
    card.wait_for(timeout=10_000)  # no reload: the pending list refreshes itself every 3 s
    assert "run-8f3c" in card.inner_text() and "/v1/customers" in card.inner_text()
    assert axe_serious(page) == []
    shoot(page, "approvals")
    card.get_by_label("Reason (optional)").fill("checked the customer")
    card.get_by_role("button", name=f"Approve {apr['id']}", exact=True).click()
    page.get_by_role("status").filter(has_text=f"Approved {apr['id']}").wait_for()
    call.done()
    assert call.error is None and call.result.email == "held@example.com"
    row = _audit_row(ckb, key["id"])
    assert row["verdict"] == "allowed" and row["approval"]["state"] == "approved"
    assert row["approval"]["decided_by"].startswith("console:adm_")
    decided = page.get_by_role("table", name="Recently decided")
    assert apr["id"] in decided.inner_text() and "approved" in decided.inner_text()
    assert axe_serious(page) == []
    assert web.errors == []


def test_deny_with_a_reason_refuses_the_agent(web: Watched, ckb: KeybrakeThread) -> None:
    page = web.page
    key = ckb.issue({"approval_endpoints": ["POST /v1/customers"], "approval_timeout_seconds": 30})
    call = HeldCall(ckb, key)
    (apr,) = pending_for(ckb, key["id"])
    page.goto(f"{ckb.admin_url}/console/approvals")
    card = page.locator(f"#apr-{apr['id']}")
    card.get_by_label("Reason for denying (required; the agent is told it)").fill("not this customer")
    card.get_by_role("button", name=f"Deny {apr['id']}").click()
    page.get_by_role("status").filter(has_text=f"Denied {apr['id']}").wait_for()
    call.done()
    assert call.error is not None and code_of(call.error) == "approval_denied"  # type: ignore[arg-type]
    assert "not this customer" in str(call.error)
    assert _audit_row(ckb, key["id"])["approval"]["state"] == "denied"
    assert web.errors == []


def test_approve_and_grant_lets_the_runs_next_call_go_without_waiting(web: Watched, ckb: KeybrakeThread) -> None:
    page = web.page
    key = ckb.issue({"daily_usd_cap": 500, "approval_above_usd": 30}, metadata={"agent_run_id": "run-grant-9"})
    sc = client(ckb, key)
    first: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: first.update(charge=sc.v1.charges.create(CHARGE_40)), daemon=True)
    thread.start()
    (apr,) = pending_for(ckb, key["id"])
    page.goto(f"{ckb.admin_url}/console/approvals")
    card = page.locator(f"#apr-{apr['id']}")
    assert "$40" in card.inner_text()
    card.get_by_label("Grant the rest of the run up to (USD)").fill("100")
    card.get_by_role("button", name=re.compile(r"^Approve \+ grant for the run")).click()
    page.get_by_role("status").filter(has_text="may reserve up to $100").wait_for()
    thread.join(20)
    assert first["charge"].amount == 4000
    second = sc.v1.charges.create(CHARGE_40)  # covered by the grant: not held
    assert second.amount == 4000
    rows = wait_for(lambda: (r := ckb.audit(key_id=key["id"])) and len(r) == 2 and r)
    assert rows[0]["approval"]["decided_by"] == f"grant:{apr['id']}"
    assert web.errors == []


def test_the_inbox_goes_to_sign_in_once_the_session_ends(web: Watched, ckb: KeybrakeThread) -> None:
    page = web.page
    page.goto(f"{ckb.admin_url}/console/approvals")
    token = page.locator('form.signout input[name="csrf_token"]').get_attribute("value")
    r = page.context.request.post(f"{ckb.admin_url}/console/sign-out", form={"csrf_token": token})
    assert r.ok  # the session ends elsewhere (another tab); the inbox's next poll notices
    page.wait_for_url(re.compile(r"/console/sign-in\?next=/console/approvals"), timeout=10_000)
    assert page.get_by_label("Admin token").is_visible()
    assert web.errors == []
