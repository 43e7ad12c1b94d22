"""Human approval of risky calls through the official Stripe SDK and a real Keybrake server:
held calls reserve first (never past a cap), wait with the agent's request open, and are
forwarded exactly as received on approval; every other ending releases the reservation and
answers approval_denied / approval_timeout (docs/approvals.md)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import stripe

from tests.fakes.stripe_server import FakeStripe
from tests.harness import KeybrakeThread, wait_for
from tests.stripe_sdk import client, code_of

CHARGE_40: Any = {"amount": 4000, "currency": "usd", "source": "tok_visa"}  # $40


class Call(threading.Thread):
    """One SDK call run in the background: the agent waiting on a held request."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.fn = fn
        self.result: Any = None
        self.error: Exception | None = None
        self.start()

    def run(self) -> None:
        try:
            self.result = self.fn()
        except Exception as exc:
            self.error = exc

    def outcome(self, timeout: float = 20) -> Any:
        self.join(timeout)
        assert not self.is_alive(), "the held call never ended"
        return self.result


def pending(kb: KeybrakeThread, n: int, key_id: str | None = None) -> list[dict[str, Any]]:
    """Wait until `n` approvals are pending; returns them (API order, newest first)."""

    def found() -> list[dict[str, Any]] | None:
        with kb.admin() as c:
            params = {"state": "pending", **({"key_id": key_id} if key_id else {})}
            r = c.get("/v1/approvals", params=params)
            assert r.status_code == 200, r.text
            data = r.json()["data"]
            return data if len(data) >= n else None

    got = wait_for(found, 20)
    assert len(got) == n, got
    return got  # type: ignore[no-any-return]


def decide(kb: KeybrakeThread, approval_id: str, action: str, **body: Any) -> httpx.Response:
    with kb.admin() as c:
        return c.post(f"/v1/approvals/{approval_id}/{action}", json=body)


def usage(kb: KeybrakeThread, key_id: str) -> dict[str, Any]:
    return kb.key(key_id)["usage"]["daily_usd"]  # type: ignore[no-any-return]


def settled(kb: KeybrakeThread, key_id: str, n: int) -> list[dict[str, Any]]:
    """The key's audit rows once `n` of them are settled (none in flight)."""
    return wait_for(  # type: ignore[no-any-return]
        lambda: (
            (rows := kb.audit(key_id=key_id))
            and len(rows) == n
            and all(r["verdict"] != "in_flight" for r in rows)
            and rows
        ),
        20,
    )


def test_ten_held_40_dollar_calls_under_a_100_dollar_cap_let_at_most_two_through(
    kb: KeybrakeThread, fake_stripe: FakeStripe
) -> None:
    key = kb.issue({"daily_usd_cap": 100, "approval_above_usd": 30, "approval_timeout_seconds": 60})
    sc = client(kb, key)
    calls = [Call(lambda: sc.v1.charges.create(CHARGE_40)) for _ in range(10)]
    held = pending(kb, 2, key["id"])
    # The other eight were refused at once by the cap: the two held calls reserve $80.
    wait_for(lambda: len([c for c in calls if not c.is_alive()]) == 8, 20)
    refused = [c for c in calls if not c.is_alive()]
    assert len(refused) == 8
    for c in refused:
        assert isinstance(c.error, stripe.StripeError) and code_of(c.error) == "spend_cap_exceeded"
    assert usage(kb, key["id"])["reserved"] == 80
    assert not [r for r in fake_stripe.requests if r.path == "/v1/charges"]  # nothing sent while held
    for a in held:
        assert a["amount_usd"] == 40 and a["key_id"] == key["id"]
        assert decide(kb, a["id"], "approve").status_code == 200
    for c in calls:
        c.outcome()
    assert sorted(c.result.amount for c in calls if c.result is not None) == [4000, 4000]
    assert len([r for r in fake_stripe.requests if r.path == "/v1/charges"]) == 2
    wait_for(lambda: usage(kb, key["id"])["used"] == 80 and usage(kb, key["id"])["reserved"] == 0, 20)


# Compares Keybrake's own time with the hold (overhead_ms < waited_ms): on a loaded parallel pass its
# store calls took 5.8 s (CI, 2026-12-02), so it runs with the timing tests, alone.
@pytest.mark.timing
def test_an_approved_call_is_forwarded_exactly_as_received_and_its_row_says_who_decided(
    kb: KeybrakeThread, fake_stripe: FakeStripe
) -> None:
    key = kb.issue({"daily_usd_cap": 100, "approval_endpoints": ["POST /v1/charges"]})
    body = b"amount=1200&currency=usd&source=tok_visa&metadata[order]=A%2017&description=two%20words"
    call = Call(
        lambda: httpx.post(
            f"{kb.url}/stripe/v1/charges",
            content=body,
            headers={"Authorization": f"Bearer {key['key']}", "Content-Type": "application/x-www-form-urlencoded"},
            timeout=30,
        )
    )
    (a,) = pending(kb, 1)
    assert a["method"] == "POST" and a["endpoint"] == "/v1/charges" and a["amount_usd"] == 12
    assert any("approval_endpoints" in r for r in a["reasons"])
    row = next(r for r in kb.audit(key_id=key["id"]))
    assert row["verdict"] == "in_flight" and row["approval"]["state"] == "awaiting_approval"
    time.sleep(1.0)
    r = decide(kb, a["id"], "approve", reason="checked the order")
    assert r.status_code == 200 and r.json()["state"] == "approved", r.text
    resp = call.outcome()
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-keybrake-approval-id"] == a["id"]
    assert resp.headers["x-keybrake-approval-state"] == "approved"
    sent = [x for x in fake_stripe.requests if x.path == "/v1/charges"]
    assert len(sent) == 1 and sent[0].body == body  # the agent's bytes, not a re-encoding
    (row,) = settled(kb, key["id"], 1)
    assert row["verdict"] == "allowed" and row["cost_usd"] == 12
    ap = row["approval"]
    assert ap["state"] == "approved" and ap["decided_by"].startswith("adm_") and ap["reason"] == "checked the order"
    assert ap["waited_ms"] >= 1000
    # The hold is not Keybrake's own time: were it counted, the overhead would be at least the wait.
    assert row["overhead_ms"] < ap["waited_ms"], (row["overhead_ms"], ap["waited_ms"])
    # Exports carry the decision as the API shows it (USD, RFC 3339).
    with kb.admin() as c:
        lines = c.get("/v1/audit/export", params={"format": "jsonl", "key_id": key["id"]}).text.splitlines()
    (exported,) = [json.loads(x) for x in lines]
    assert exported["approval"] == ap and ap["decided_at"].endswith("Z")


def test_a_denied_call_is_refused_with_the_reason_and_its_reservation_released(
    kb: KeybrakeThread, fake_stripe: FakeStripe
) -> None:
    key = kb.issue({"daily_usd_cap": 100, "approval_above_usd": 30})
    call = Call(lambda: client(kb, key).v1.charges.create(CHARGE_40))
    (a,) = pending(kb, 1)
    assert usage(kb, key["id"])["reserved"] == 40
    time.sleep(1.0)
    assert decide(kb, a["id"], "deny", reason="not this customer").status_code == 200
    call.outcome()
    err = call.error
    assert isinstance(err, stripe.PermissionError) and code_of(err) == "approval_denied"
    assert "not this customer" in str(err.user_message) and "Do not ask again" in str(err.user_message)
    body: Any = err.json_body
    assert body["error"]["keybrake"]["ask_again"] is False
    assert err.headers is not None and err.headers["x-keybrake-approval-state"] == "denied"
    assert not [r for r in fake_stripe.requests if r.path == "/v1/charges"]
    (row,) = settled(kb, key["id"], 1)
    assert row["verdict"] == "denied_approval_denied" and row["cost_usd"] == 0
    assert row["approval"]["waited_ms"] >= 1000 and row["overhead_ms"] < row["approval"]["waited_ms"]  # not overhead
    assert row["approval"]["state"] == "denied" and row["approval"]["reason"] == "not this customer"
    assert usage(kb, key["id"])["reserved"] == 0 and usage(kb, key["id"])["used"] == 0
    # A second decision loses: the approval is no longer pending.
    r = decide(kb, a["id"], "approve")
    assert r.status_code == 409 and "denied" in r.text


def test_an_undecided_call_times_out_releases_and_can_no_longer_be_approved(
    kb: KeybrakeThread, fake_stripe: FakeStripe
) -> None:
    key = kb.issue({"daily_usd_cap": 100, "approval_above_usd": 30, "approval_timeout_seconds": 1})
    started = time.monotonic()
    call = Call(lambda: client(kb, key).v1.charges.create(CHARGE_40))
    call.outcome()
    assert 0.9 <= time.monotonic() - started < 10
    # Read after the hold ended (its one-second window is too short to catch it pending on a busy machine).
    with kb.admin() as c:
        (a,) = c.get("/v1/approvals", params={"key_id": key["id"]}).json()["data"]
    assert a["state"] == "expired"
    assert isinstance(call.error, stripe.PermissionError) and code_of(call.error) == "approval_timeout"
    assert "Asking again" in str(call.error.user_message)
    body: Any = call.error.json_body
    assert body["error"]["keybrake"]["ask_again"] is True
    assert decide(kb, a["id"], "approve").status_code == 409
    (row,) = settled(kb, key["id"], 1)
    assert row["verdict"] == "denied_approval_timeout" and row["approval"]["state"] == "expired"
    assert row["overhead_ms"] < row["approval"]["waited_ms"]  # the one-second hold is not Keybrake's own time
    assert usage(kb, key["id"])["reserved"] == 0
    assert not [r for r in fake_stripe.requests if r.path == "/v1/charges"]


def test_revoking_the_key_while_its_call_is_held_refuses_it_at_once(
    kb: KeybrakeThread, fake_stripe: FakeStripe
) -> None:
    key = kb.issue({"daily_usd_cap": 100, "approval_above_usd": 30, "approval_timeout_seconds": 60})
    call = Call(lambda: client(kb, key).v1.charges.create(CHARGE_40))
    (a,) = pending(kb, 1)
    with kb.admin() as c:
        assert c.delete(f"/v1/keys/{key['id']}").status_code == 200
    call.outcome(10)
    assert isinstance(call.error, stripe.PermissionError) and code_of(call.error) == "approval_denied"
    assert "revoked" in str(call.error.user_message)
    assert decide(kb, a["id"], "approve").status_code == 409  # no one can approve it any more
    (row,) = settled(kb, key["id"], 1)
    assert row["approval"]["state"] == "cancelled" and usage(kb, key["id"])["reserved"] == 0
    assert not [r for r in fake_stripe.requests if r.path == "/v1/charges"]


def test_an_agent_that_hangs_up_while_held_releases_the_reservation_and_nothing_is_sent(
    kb: KeybrakeThread, fake_stripe: FakeStripe
) -> None:
    key = kb.issue({"daily_usd_cap": 100, "approval_above_usd": 30, "approval_timeout_seconds": 60})
    body = b"amount=4000&currency=usd&source=tok_visa"
    sock = socket.create_connection(("127.0.0.1", kb.port))
    sock.sendall(
        b"POST /stripe/v1/charges HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key["key"].encode()
        + b"\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: "
        + str(len(body)).encode() + b"\r\n\r\n" + body
    )  # fmt: skip
    (a,) = pending(kb, 1)
    sock.close()
    wait_for(lambda: usage(kb, key["id"])["reserved"] == 0, 10)
    with kb.admin() as c:
        got = c.get(f"/v1/approvals/{a['id']}").json()
    assert got["state"] == "cancelled" and "disconnected" in got["reason"]
    assert decide(kb, a["id"], "approve").status_code == 409
    (row,) = settled(kb, key["id"], 1)
    assert row["approval"]["state"] == "cancelled" and row["cost_usd"] == 0
    assert not [r for r in fake_stripe.requests if r.path == "/v1/charges"]


def test_approving_the_rest_of_the_run_lets_later_calls_go_up_to_the_grant(
    kb: KeybrakeThread, fake_stripe: FakeStripe
) -> None:
    key = kb.issue({"daily_usd_cap": 500, "approval_above_usd": 30}, metadata={"agent_run_id": "run-grant-1"})
    sc = client(kb, key)
    first = Call(lambda: sc.v1.charges.create(CHARGE_40))
    (a,) = pending(kb, 1)
    r = decide(kb, a["id"], "approve", grant_run_usd=100)
    assert r.status_code == 200 and r.json()["grant_run_usd"] == 100, r.text
    assert first.outcome() is not None
    # $80 of the $100 grant: two more $40 calls go without asking.
    for _ in range(2):
        assert sc.v1.charges.create(CHARGE_40).amount == 4000
    # The third would take $120 of $100: it is held again.
    third = Call(lambda: sc.v1.charges.create(CHARGE_40))
    (b,) = pending(kb, 1)
    assert b["id"] != a["id"]
    assert decide(kb, b["id"], "deny", reason="enough for this run").status_code == 200
    third.outcome()
    assert code_of(third.error) == "approval_denied"  # type: ignore[arg-type]
    rows = settled(kb, key["id"], 4)
    by_grant = [r for r in rows if (r.get("approval") or {}).get("decided_by") == f"grant:{a['id']}"]
    assert len(by_grant) == 2
    assert by_grant[0]["approval"] == {
        "state": "approved", "decided_by": f"grant:{a['id']}", "reasons": a["reasons"], "waited_ms": 0
    }  # fmt: skip
    assert len([r for r in fake_stripe.requests if r.path == "/v1/charges"]) == 3


def test_too_many_held_calls_of_one_key_are_refused_not_held(tmp_path: Any, fake_stripe: FakeStripe) -> None:
    with KeybrakeThread(tmp_path / "kb", approval_max_pending=2) as kb:
        kb.add_credential(fake_stripe.base_url)
        key = kb.issue({"approval_endpoints": ["POST /v1/customers"], "approval_timeout_seconds": 30})
        sc = client(kb, key)
        calls = [Call(lambda: sc.v1.customers.create({"email": "a@example.com"})) for _ in range(2)]
        held = pending(kb, 2)
        with pytest.raises(stripe.PermissionError) as exc:
            sc.v1.customers.create({"email": "b@example.com"})
        assert code_of(exc.value) == "approval_queue_full"
        for a in held:
            assert decide(kb, a["id"], "deny", reason="test").status_code == 200
        for c in calls:
            c.outcome()


def test_a_stopping_server_ends_held_calls_at_once(tmp_path: Any, fake_stripe: FakeStripe) -> None:
    kb = KeybrakeThread(tmp_path / "kb")
    with kb:
        kb.add_credential(fake_stripe.base_url)
        key = kb.issue({"daily_usd_cap": 100, "approval_above_usd": 30, "approval_timeout_seconds": 300})
        call = Call(lambda: client(kb, key).v1.charges.create(CHARGE_40))
        pending(kb, 1)
        stopping = time.monotonic()
    call.outcome(10)
    assert time.monotonic() - stopping < 10  # not the hold's 300 s, nor the graceful period
    assert isinstance(call.error, stripe.PermissionError) and code_of(call.error) == "approval_timeout"
    assert not [r for r in fake_stripe.requests if r.path == "/v1/charges"]
    rows = kb.query("SELECT state, reason FROM approvals")
    assert rows == [("cancelled", "Keybrake stopped while the call waited")]
    assert kb.query("SELECT reserved FROM counters WHERE cap = 'daily_usd'") == [(0,)]


def test_a_policy_changed_while_the_call_waits_is_checked_again_not_bypassed(
    kb: KeybrakeThread, fake_stripe: FakeStripe
) -> None:
    key = kb.issue({"daily_usd_cap": 100, "approval_above_usd": 30, "approval_timeout_seconds": 60})
    sc = client(kb, key)
    call = Call(lambda: sc.v1.charges.create(CHARGE_40))
    (a,) = pending(kb, 1)
    with kb.admin() as c:  # the operator narrows the key while the call waits
        r = c.patch(f"/v1/keys/{key['id']}", json={"policy": {"allowed_endpoints": ["GET /v1/customers"]}})
        assert r.status_code == 200, r.text
    call.outcome(10)
    assert isinstance(call.error, stripe.PermissionError) and code_of(call.error) == "approval_timeout"
    assert "policy changed" in str(call.error.user_message)
    assert decide(kb, a["id"], "approve").status_code == 409
    # Asked again, the call meets the key's current policy.
    with pytest.raises(stripe.PermissionError) as exc:
        sc.v1.charges.create(CHARGE_40)
    assert code_of(exc.value) == "endpoint_not_allowed"
    assert not [r for r in fake_stripe.requests if r.path == "/v1/charges"]
    wait_for(lambda: usage(kb, key["id"])["reserved"] == 0, 10)


def test_a_budget_threshold_holds_the_calls_of_every_key_it_covers(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    with kb.admin() as c:
        r = c.post(
            "/v1/budgets",
            json={"name": "tenant", "scope": {"label_prefix": "tenant-a:"}, "daily_usd_cap": 500,
                  "approval_above_usd": 30},
        )  # fmt: skip
        assert r.status_code == 201, r.text
        bud = r.json()
    covered = kb.issue({"daily_usd_cap": 100}, label="tenant-a:agent:1")
    other = kb.issue({"daily_usd_cap": 100}, label="tenant-b:agent:1")
    assert client(kb, other).v1.charges.create(CHARGE_40).amount == 4000  # not covered: not held
    small: Any = {**CHARGE_40, "amount": 3000}
    assert client(kb, covered).v1.charges.create(small).amount == 3000  # $30 is not above $30
    call = Call(lambda: client(kb, covered).v1.charges.create(CHARGE_40))
    (a,) = pending(kb, 1)
    assert a["key_id"] == covered["id"] and any(bud["id"] in why for why in a["reasons"])
    assert decide(kb, a["id"], "approve").status_code == 200
    assert call.outcome().amount == 4000


def test_an_sdk_that_times_out_first_cancels_its_hold_and_nothing_is_sent(
    kb: KeybrakeThread, fake_stripe: FakeStripe
) -> None:
    """stripe-python gives up after its timeout (80 s by default, 1 s here) and closes the connection:
    the hold ends as cancelled and its reservation is released (docs/approvals.md, SDK timeouts)."""
    key = kb.issue({"daily_usd_cap": 100, "approval_above_usd": 30, "approval_timeout_seconds": 60})
    impatient = client(kb, key, http_client=stripe.RequestsClient(timeout=1))
    with pytest.raises(stripe.APIConnectionError):
        impatient.v1.charges.create(CHARGE_40)
    wait_for(lambda: usage(kb, key["id"])["reserved"] == 0, 10)
    with kb.admin() as c:
        (a,) = c.get("/v1/approvals", params={"key_id": key["id"]}).json()["data"]
    assert a["state"] == "cancelled" and "disconnected" in a["reason"]
    assert not [r for r in fake_stripe.requests if r.path == "/v1/charges"]
