"""`Keybrake.run(...)`: a per-run vault key against a real Keybrake and the fake Stripe, used through
the official stripe SDK; revoked on exit, on an exception and on KeyboardInterrupt."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
import stripe

from keybrake_client import Keybrake, KeybrakeAPIError, Run, denial, idempotency_key
from tests.fakes.stripe_server import FakeStripe
from tests.harness import ADMIN_TOKEN, KeybrakeThread

PAY = {"amount": 2000, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True}


@pytest.fixture
def admin(kb: KeybrakeThread) -> Iterator[Keybrake]:
    with Keybrake(kb.url, ADMIN_TOKEN, timeout=10) as client:
        yield client


def test_a_run_spends_through_the_sdk_and_its_key_is_revoked_after(admin: Keybrake, fake_stripe: FakeStripe) -> None:
    with admin.run(
        vendor="stripe",
        run_id="run-8f3c",
        label="tenant-a:billing:run-8f3c",
        ttl="10m",
        daily_usd_cap=30,
        allowed_endpoints=["POST /v1/payment_intents"],
    ) as run:
        assert isinstance(run, Run) and run.run_id == "run-8f3c"
        assert run.key.id.startswith("vk_") and run.key.secret.startswith("vault_key_")
        assert run.key.metadata == {"agent_run_id": "run-8f3c"}
        assert run.key.policy["daily_usd_cap"] == 30
        assert run.key.secret not in repr(run) and run.key.secret not in repr(run.key)
        sc = run.stripe(max_network_retries=0)
        pi = sc.v1.payment_intents.create(PAY, {"idempotency_key": run.idempotency_key("pay-1")})
        again = sc.v1.payment_intents.create(PAY, {"idempotency_key": run.idempotency_key("pay-1")})
        assert again.id == pi.id  # the same step replays: charged once
        with pytest.raises(stripe.StripeError) as info:  # $20 more would pass the $30 cap
            sc.v1.payment_intents.create(PAY, {"idempotency_key": run.idempotency_key("pay-2")})
        d = denial(info.value)
        assert d is not None and (d.code, d.kind, d.retryable) == ("spend_cap_exceeded", "cap", False)
        assert d.cap is not None and d.cap["name"] == "daily_usd_cap"
        assert admin.get_key(run.key.id).status == "active"
    assert run.revoked
    key = admin.get_key(run.key.id)
    assert key.status == "revoked" and key.revoke_reason == "run finished (run-8f3c)"
    with pytest.raises(stripe.StripeError) as after:
        sc.v1.payment_intents.create(PAY)
    revoked = denial(after.value)
    assert revoked is not None and (revoked.code, revoked.kind, revoked.retryable) == ("key_revoked", "revoked", False)

    rows = run.audit()
    assert [r.verdict for r in rows] == ["allowed", "allowed", "cap_exceeded", "denied_key_revoked"]
    assert [r.ts for r in rows] == sorted(r.ts for r in rows)  # oldest first
    assert all(r.agent_run_id == "run-8f3c" and r.key_id == run.key.id for r in rows)
    spent = run.spend()
    assert spent.group == run.key.id and spent.gross_usd == Decimal(20)
    assert (spent.requests, spent.denied, spent.cap_hits) >= (2, 2, 1)


def test_an_exception_in_the_run_revokes_and_propagates(admin: Keybrake) -> None:
    with pytest.raises(RuntimeError, match="agent crashed"), admin.run(vendor="stripe", run_id="run-err") as run:
        raise RuntimeError("agent crashed")
    key = admin.get_key(run.key.id)
    assert key.status == "revoked" and key.revoke_reason == "run failed: RuntimeError (run-err)"


def test_keyboard_interrupt_revokes(admin: Keybrake) -> None:
    with pytest.raises(KeyboardInterrupt), admin.run(vendor="stripe", run_id="run-int", daily_usd_cap=1) as run:
        raise KeyboardInterrupt
    key = admin.get_key(run.key.id)
    assert key.status == "revoked" and key.revoke_reason == "run interrupted: KeyboardInterrupt (run-int)"


def test_a_policy_refused_by_the_server_issues_nothing(admin: Keybrake) -> None:
    with pytest.raises(KeybrakeAPIError) as info, admin.run(vendor="stripe", run_id="r", daily_usd_cap=-1):
        pytest.fail("the block must not run")
    assert (info.value.status, info.value.code, info.value.field) == (422, "validation_error", "policy.daily_usd_cap")
    assert list(admin.iter_keys(metadata={"agent_run_id": "r"})) == []


def test_run_arguments_are_checked_before_anything_is_issued(admin: Keybrake) -> None:
    with pytest.raises(ValueError, match="daily_usd_cap given both"):
        admin.run(vendor="stripe", run_id="r", policy={"daily_usd_cap": 1}, daily_usd_cap=2)
    with pytest.raises(ValueError, match="run_id"):
        admin.run(vendor="stripe", run_id=" ")


def test_idempotency_keys_are_deterministic_per_run_and_step() -> None:
    a = idempotency_key("run-1", "charge")
    assert a == idempotency_key("run-1", "charge") and a.startswith("kb_") and len(a) == 51
    assert len({a, idempotency_key("run-2", "charge"), idempotency_key("run-1", "refund")}) == 3
    assert idempotency_key("a:b", "c") != idempotency_key("a", "b:c")
    with pytest.raises(ValueError, match="step"):
        idempotency_key("run-1", "")
