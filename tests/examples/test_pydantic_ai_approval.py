"""examples/pydantic_ai_approval.py against a real Keybrake and the fake Stripe: the $30 refund goes
through, the $250 one waits for a person, played by an operator thread of the test that decides
through the admin API (`GET /v1/approvals?state=pending`, `POST /v1/approvals/{id}/approve|deny`)."""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any

from examples import pydantic_ai_approval as recipe
from keybrake_client import idempotency_key
from keybrake_client.models import AuditRow
from tests.fakes.stripe_server import FakeStripe
from tests.harness import ADMIN_TOKEN, KeybrakeThread


class Operator:
    """A thread that lists the pending approvals every 50 ms and takes `verb` ("approve" or "deny",
    with `body`) on each of `run_id`'s: `seen` holds them as listed, `decided` the answers."""

    def __init__(self, kb: KeybrakeThread, run_id: str, verb: str, body: dict[str, Any]) -> None:
        self.kb, self.run_id, self.verb, self.body = kb, run_id, verb, body
        self.seen: list[dict[str, Any]] = []
        self.decided: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Operator:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)

    def _loop(self) -> None:
        with self.kb.admin() as c:
            while not self.stop.wait(0.05):
                r = c.get("/v1/approvals", params={"state": "pending"})
                if r.status_code != 200:
                    self.errors.append(r.text)
                    continue
                for approval in r.json()["data"]:
                    if approval["agent_run_id"] != self.run_id:
                        continue
                    self.seen.append(approval)
                    answer = c.post(f"/v1/approvals/{approval['id']}/{self.verb}", json=self.body)
                    if answer.status_code == 200:
                        self.decided.append(answer.json())
                    else:
                        self.errors.append(answer.text)


def _approval(row: AuditRow) -> dict[str, Any]:
    """The row's `approval` (how its hold went); the row must have been held."""
    assert row.approval is not None, row
    return row.approval


def _refunded_charges(fake_stripe: FakeStripe) -> list[str]:
    return [r.form["charge"][0] for r in fake_stripe.requests if r.path == "/v1/refunds"]


def test_an_approved_refund_is_made_and_its_row_says_who_approved_it(
    kb: KeybrakeThread, fake_stripe: FakeStripe
) -> None:
    with Operator(kb, "run-apr-1", "approve", {"reason": "checked the order"}) as op:
        report = recipe.main(kb.url, ADMIN_TOKEN, run_id="run-apr-1")

    assert op.errors == []
    assert report.output == "All 2 refunds are done."
    small, big = report.rows
    assert [(r.status, r.verdict, r.error_code) for r in (small, big)] == [(200, "allowed", None)] * 2
    assert [r.cost_usd for r in (small, big)] == [Decimal(30), Decimal(250)]
    assert report.spent_usd == Decimal(280) and report.forwarded == 2 and report.refused == []
    # the $30 refund was never held; the $250 one waited for the operator, who saw what it was
    assert small.approval is None
    [listed] = op.seen
    assert listed["amount_usd"] == 250 and listed["method"] == "POST" and listed["key_id"] == report.key_id
    assert listed["reasons"], listed
    [decided] = op.decided
    assert decided["id"] == listed["id"] and decided["state"] == "approved"
    approval = _approval(big)
    assert approval["id"] == listed["id"]
    assert approval["state"] == "approved"
    assert approval["decided_by"] == decided["decided_by"] and approval["decided_by"].startswith("adm_")
    assert approval["reason"] == "checked the order"
    assert isinstance(approval["waited_ms"], int) and approval["waited_ms"] >= 0
    # both refunds exist at Stripe, each sent once
    setup = sorted(kb.audit(agent_run_id="run-apr-1-setup"), key=lambda r: str(r["id"]))
    charges = [r["vendor_object_id"] for r in setup]
    assert _refunded_charges(fake_stripe) == charges
    assert sorted(r["amount"] for r in fake_stripe.refunds.values()) == [recipe.SMALL_CENTS, recipe.BIG_CENTS]
    assert kb.key(report.key_id)["status"] == "revoked"


def test_a_denied_refund_ends_the_run_with_the_persons_reason_and_is_never_sent(
    kb: KeybrakeThread, fake_stripe: FakeStripe
) -> None:
    with Operator(kb, "run-apr-2", "deny", {"reason": "not this customer"}) as op:
        report = recipe.main(kb.url, ADMIN_TOKEN, run_id="run-apr-2")

    assert op.errors == []
    # the tool's answer is a final STOP quoting the person; the model ended the run on it
    assert report.output.startswith("I stopped: STOP: a person denied this refund (not this customer); do not retry")
    small, big = report.rows  # no third call: the big refund was not asked for again
    assert (small.status, small.verdict) == (200, "allowed")
    assert (big.status, big.error_code, big.upstream_status) == (403, "approval_denied", None)
    assert [r for r in report.rows if r.verdict != "allowed"] == [big]  # exactly one denied row
    assert [code for code, _ in report.refused] == ["approval_denied"]
    [decided] = op.decided
    approval = _approval(big)
    assert approval["id"] == decided["id"]
    assert approval["state"] == "denied" and approval["reason"] == "not this customer"
    assert approval["decided_by"] == decided["decided_by"]
    # only the $30 refund reached Stripe; the reservation of the $250 one was released
    setup = sorted(kb.audit(agent_run_id="run-apr-2-setup"), key=lambda r: str(r["id"]))
    assert _refunded_charges(fake_stripe) == [setup[0]["vendor_object_id"]]
    assert [r["amount"] for r in fake_stripe.refunds.values()] == [recipe.SMALL_CENTS]
    assert report.spent_usd == Decimal(30)


def test_a_refund_no_one_decides_on_is_asked_for_once_more_then_stops(
    kb: KeybrakeThread, fake_stripe: FakeStripe
) -> None:
    report = recipe.main(kb.url, ADMIN_TOKEN, run_id="run-apr-3", approval_timeout_seconds=1)

    assert report.output.startswith("I stopped: STOP: the refund of ")
    assert "asked for twice and not approved: no one decided in time (approval_timeout)" in report.output
    small, *held = report.rows
    assert (small.status, small.verdict, small.approval) == (200, "allowed", None)
    # asked twice, held twice (two approvals), never sent
    assert len(held) == 2 and all(r.approval is not None for r in held)
    assert [(r.status, r.error_code, r.upstream_status) for r in held] == [(403, "approval_timeout", None)] * 2
    approvals = [_approval(r) for r in held]
    assert [(a["state"], a["decided_by"]) for a in approvals] == [("expired", "keybrake")] * 2
    assert approvals[0]["id"] != approvals[1]["id"]
    assert all(a["waited_ms"] >= 1000 for a in approvals)
    # the same step: the same Idempotency-Key, so one sent after an approval would never be sent twice
    setup = sorted(kb.audit(agent_run_id="run-apr-3-setup"), key=lambda r: str(r["id"]))
    big_id = setup[1]["vendor_object_id"]  # the charges were made small first
    assert [r.idempotency_key for r in held] == [idempotency_key("run-apr-3", f"refund-{big_id}")] * 2
    assert [r["amount"] for r in fake_stripe.refunds.values()] == [recipe.SMALL_CENTS]
    assert report.spent_usd == Decimal(30)
    with kb.admin() as c:
        pending = c.get("/v1/approvals", params={"state": "pending", "key_id": report.key_id}).json()["data"]
    assert pending == []
