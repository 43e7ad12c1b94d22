"""Reconciliation sends only with the credential generation the row's key was bound to."""

from __future__ import annotations

from pathlib import Path

from keybrake.jobs.reconcile import ReconcileJob
from tests.fakes.stripe_server import FakeStripeThread
from tests.harness import KeybrakeThread
from tests.waits import wait_until


def test_reconciliation_never_sends_a_later_credentials_secret_for_a_deleted_generations_row(tmp_path: Path) -> None:
    """Red team k12: a PaymentIntent left `requires_action` by a key of `default` (account A)
    outlives `DELETE /v1/credentials/default?revoke_keys=true`; a new `default` (account B) is
    added. The reconciler must send nothing to B (it used to GET A's object with B's secret),
    and the row keeps its reservation (settled only by the 48-hour rule)."""
    import stripe

    secret_b = "sk_test_other_account_0987654321"
    with (
        FakeStripeThread(secret="sk_test_fake_secret_1234567890") as acct_a,
        FakeStripeThread(secret=secret_b) as acct_b,
        KeybrakeThread(tmp_path / "d", reconcile_interval_s=0.1) as kb,
    ):
        kb.add_credential(acct_a.base_url)
        key = kb.issue({"daily_usd_cap": 100})
        client = stripe.StripeClient(key["key"], base_addresses={"api": f"{kb.url}/stripe"}, max_network_retries=0)
        pending = client.v1.payment_intents.create(
            {"amount": 1200, "currency": "usd", "confirm": True, "payment_method": "pm_card_authenticationRequired"}
        )
        assert pending.status == "requires_action"
        with kb.admin() as c:
            assert c.delete("/v1/credentials/default", params={"revoke_keys": "true"}).status_code == 200
        assert kb.app is not None
        (job,) = [j for j in kb.app.jobs.jobs if isinstance(j, ReconcileJob)]
        passes: list[str] = []
        run_once = job.reconciler.run_once

        async def counted(vendor: str | None = None) -> int:
            settled = await run_once(vendor)
            passes.append(vendor or "")  # a pass that ran to its end
            return settled

        job.reconciler.run_once = counted  # type: ignore[method-assign]  # this app's reconciler only
        kb.add_credential(acct_b.base_url, secret=secret_b)
        wait_until(lambda: passes.count("stripe") >= 10, "ten Stripe reconciliation passes with B added")
        seen = [(r.method, r.path) for r in acct_b.fake.requests]
        with kb.admin() as c:
            rows = c.get("/v1/audit", params={"key_id": key["id"]}).json()["data"]
    assert seen == []
    (row,) = [r for r in rows if r["vendor_object_id"] == pending.id]
    assert row["cost_source"] == "estimate" and row["reserved_usd"] == 12
