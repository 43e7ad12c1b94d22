"""`keybrake approvals …`: the admin API's /v1/approvals from the command line, through the same
operations (docs/cli.md)."""

from __future__ import annotations

import json
from typing import Any

import stripe
from click.testing import CliRunner, Result

from keybrake.cli import main
from tests.approval_holds import hold
from tests.fakes.stripe_server import FakeStripe
from tests.harness import KeybrakeThread
from tests.stripe_sdk import code_of


def cli(kb: KeybrakeThread, *args: str) -> Result:
    return CliRunner().invoke(main, [*args, "--data-dir", str(kb.settings.data_dir)])


def ok_json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_list_get_and_approve_with_a_grant(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    key, call, listed = hold(kb)
    rows = ok_json(cli(kb, "approvals", "list", "--state", "pending", "--json"))
    with kb.admin() as c:
        assert rows == c.get("/v1/approvals", params={"state": "pending"}).json()["data"]
    assert [r["id"] for r in rows] == [listed["id"]]
    assert ok_json(cli(kb, "approvals", "list", "--key-id", "vk_other", "--json")) == []
    table = cli(kb, "approvals", "list", "--key-id", key["id"])
    assert table.exit_code == 0 and listed["id"] in table.output and "pending" in table.output
    assert table.output.splitlines()[0].split()[:3] == ["id", "state", "key_id"]
    assert ok_json(cli(kb, "approvals", "get", listed["id"]))["id"] == listed["id"]

    out = ok_json(cli(kb, "approvals", "approve", listed["id"], "--reason", "fine", "--grant-run-usd", "50"))
    assert out["state"] == "approved" and out["reason"] == "fine" and out["grant_run_usd"] == 50
    assert out["decided_by"].startswith("cli")
    assert call.done().error is None and call.result.id.startswith("cus_")
    assert kb.query("SELECT granted_usd FROM approval_grants") == [(50_000_000,)]
    again = cli(kb, "approvals", "deny", listed["id"], "--reason", "late")
    assert again.exit_code != 0 and "conflict" in again.output and "already approved by cli" in again.output


def test_deny_and_refusals(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    _, call, listed = hold(kb)
    missing_reason = cli(kb, "approvals", "deny", listed["id"])
    assert missing_reason.exit_code != 0 and "--reason" in missing_reason.output
    empty = cli(kb, "approvals", "deny", listed["id"], "--reason", "")
    assert empty.exit_code != 0 and "(reason)" in empty.output
    bad_grant = cli(kb, "approvals", "approve", listed["id"], "--grant-run-usd", "lots")
    assert bad_grant.exit_code != 0 and "(grant_run_usd)" in bad_grant.output
    unknown = cli(kb, "approvals", "get", "apr_missing")
    assert unknown.exit_code != 0 and "not_found" in unknown.output and "apr_missing" in unknown.output
    bad_state = cli(kb, "approvals", "list", "--state", "waiting")
    assert bad_state.exit_code != 0
    out = ok_json(cli(kb, "approvals", "deny", listed["id"], "--reason", "not now"))
    assert out["state"] == "denied" and out["reason"] == "not now"
    err = call.done().error
    assert isinstance(err, stripe.StripeError) and code_of(err) == "approval_denied"
    assert [r["id"] for r in ok_json(cli(kb, "approvals", "list", "--state", "denied", "--json"))] == [listed["id"]]


def test_budgets_take_approval_above_usd(kb: KeybrakeThread) -> None:
    made = ok_json(
        cli(kb, "budgets", "create", "--name", "b", "--all", "--daily-usd-cap", "10", "--approval-above-usd", "2.5")
    )
    assert str(made["approval_above_usd"]) == "2.5"
    updated = ok_json(cli(kb, "budgets", "update", made["id"], "--remove", "approval_above_usd"))
    assert updated["approval_above_usd"] is None
