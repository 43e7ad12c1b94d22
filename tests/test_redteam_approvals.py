"""Red team of human approval (docs/approvals.md): a prompt-injected agent holding a vault key,
against a real Keybrake and the fake Stripe. Each test is an attack that once worked.

- The per-key queue of held calls (`KEYBRAKE_APPROVAL_MAX_PENDING`) was checked before the hold
  was written: concurrent calls all read "below the limit" and were all held.
- A call whose agent hung up freed its place at once: holding, hanging up and asking again sent
  an approval.requested message per cycle, without bound (80 a second), burying the real ones.
- An unpriceable call (a subscription) reserves the key's max_usd_per_call and was compared
  with approval_above_usd as if that were its amount: under the threshold, it went unasked.
- A transfer's destination and the Stripe account a call acts in were not shown to the approver.
- A grant for the rest of a run let any number of calls that reserve $0 go: a grant is money, it
  covers only calls that reserve a bounded amount above zero.
- The decision links' key was HMAC(pepper, a fixed label), the very construction of the audit
  row's `body_hash` (HMAC(pepper, body)) and of token hashes: a body equal to the label would
  publish the key to every audit reader. No vendor's parser accepts that label as a body today
  (it has no `=` and is not JSON), so this was latent; the key is now derived apart.
"""

from __future__ import annotations

import hashlib
import hmac
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from keybrake.core import approvals as core_approvals
from keybrake.core.approvals import approval_need, link_secret
from keybrake.core.params import parse_form
from keybrake.core.policy import Policy
from keybrake.jobs.approval_message import MAX_SUMMARY_FIELDS
from keybrake.vendors.base import VendorRequest
from keybrake.vendors.stripe import Stripe
from tests.fakes.receiver import ReceiverThread
from tests.fakes.stripe_server import FakeStripe
from tests.harness import KeybrakeThread, examples, wait_for

HOLD = {"approval_endpoints": ["POST /v1/customers"], "approval_timeout_seconds": 30}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
MAX_PENDING = 3


@pytest.fixture
def kbq(tmp_path: Path, fake_stripe: FakeStripe) -> Iterator[KeybrakeThread]:
    """A Keybrake whose keys may each have MAX_PENDING calls held at once."""
    with KeybrakeThread(tmp_path / "q", approval_max_pending=MAX_PENDING, alert_interval_s=0.05) as server:
        server.add_credential(fake_stripe.base_url)
        yield server


def pending(kb: KeybrakeThread, key_id: str) -> list[dict[str, Any]]:
    with kb.admin() as c:
        r = c.get("/v1/approvals", params={"state": "pending", "key_id": key_id})
    assert r.status_code == 200, r.text
    return r.json()["data"]  # type: ignore[no-any-return]


def deny_all(kb: KeybrakeThread, key_id: str) -> None:
    with kb.admin() as c:
        for a in pending(kb, key_id):
            c.post(f"/v1/approvals/{a['id']}/deny", json={"reason": "red team"})


def raw_call(kb: KeybrakeThread, key: dict[str, Any], body: bytes) -> socket.socket:
    """A customers.create sent on a raw socket (held); the agent can hang up at any time."""
    u = urlsplit(kb.url)
    assert u.hostname is not None and u.port is not None
    s = socket.create_connection((u.hostname, u.port))
    head = (
        f"POST /stripe/v1/customers HTTP/1.1\r\nHost: stripe\r\nAuthorization: Bearer {key['key']}\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    s.sendall(head.encode() + body)
    return s


def test_concurrent_calls_never_hold_more_than_the_pending_limit(kbq: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    key = kbq.issue(HOLD)
    answers: list[httpx.Response] = []

    def call(i: int) -> None:
        answers.append(
            httpx.post(
                f"{kbq.url}/stripe/v1/customers",
                content=f"email=c{i}@example.com",
                headers={"Authorization": f"Bearer {key['key']}", **FORM},
                timeout=60,
            )
        )

    threads = [threading.Thread(target=call, args=(i,), daemon=True) for i in range(24)]
    for t in threads:
        t.start()
    # Every call but the held ones is answered at once (queue full).
    time.sleep(3)
    held = pending(kbq, key["id"])
    assert len(held) <= MAX_PENDING, f"{len(held)} calls held, the limit is {MAX_PENDING}"
    refused = [a for a in answers if a.status_code == 403]
    assert len(refused) == 24 - len(held)
    assert all(a.json()["error"]["code"] == "approval_queue_full" for a in refused)
    deny_all(kbq, key["id"])
    for t in threads:
        t.join(30)
    assert not [r for r in fake_stripe.requests if r.path == "/v1/customers"]


def test_hanging_up_and_asking_again_cannot_flood_the_approvers(kbq: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    with ReceiverThread() as slack:
        with kbq.admin() as c:
            doc = {"type": "slack", "url": slack.base_url + "/in", "events": ["approval.requested"]}
            assert c.post("/v1/alerts", json=doc).status_code == 201
        key = kbq.issue(HOLD)
        asked = 0
        for rnd in range(4):
            socks = [raw_call(kbq, key, f"email=r{rnd}-{i}@example.com".encode()) for i in range(MAX_PENDING)]
            time.sleep(0.5)
            asked += len(pending(kbq, key["id"]))
            for s in socks:
                s.close()  # the agent hangs up: the hold is cancelled, nothing is sent
            wait_for(lambda: not pending(kbq, key["id"]), 10)
        # An abandoned hold keeps its place until it would have ended: the first round's calls
        # were held, the later rounds' were refused approval_queue_full, and the channel got
        # one message per held call, not one per reconnect.
        assert asked == MAX_PENDING
        answer = httpx.post(
            f"{kbq.url}/stripe/v1/customers",
            content=b"email=again@example.com",
            headers={"Authorization": f"Bearer {key['key']}", **FORM},
            timeout=10,
        )
        assert answer.status_code == 403 and answer.json()["error"]["code"] == "approval_queue_full"
        assert "hung up" in answer.json()["error"]["message"]
        rows = kbq.query("SELECT COUNT(*) FROM alert_outbox WHERE event_type = 'approval.requested'")
        assert rows[0][0] == MAX_PENDING
        assert not [r for r in fake_stripe.requests if r.path == "/v1/customers"]


def test_a_decided_hold_frees_its_place_at_once(kbq: KeybrakeThread) -> None:
    """Only calls whose agent hung up keep their place: a decision frees it (no lockout; expiry is
    covered on both engines by tests/store/test_role_approvals_queue.py)."""
    key = kbq.issue(HOLD)
    socks = [raw_call(kbq, key, f"email=d{i}@example.com".encode()) for i in range(MAX_PENDING)]
    wait_for(lambda: len(pending(kbq, key["id"])) == MAX_PENDING, 10)
    deny_all(kbq, key["id"])
    wait_for(lambda: not pending(kbq, key["id"]), 10)
    again = raw_call(kbq, key, b"email=after@example.com")
    wait_for(lambda: len(pending(kbq, key["id"])) == 1, 10)
    deny_all(kbq, key["id"])
    for s in [*socks, again]:
        s.close()


@settings(max_examples=examples(200), suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(pepper=st.binary(min_size=32, max_size=32), extra=st.binary(max_size=40))  # the pepper: 32 random bytes
def test_no_hmac_under_the_pepper_is_the_link_key(pepper: bytes, extra: bytes) -> None:
    """The class: every value Keybrake shows or stores as HMAC(pepper, data) (audit body_hash,
    token hashes) — for any data, the label itself included — differs from the link key."""
    secret = link_secret(pepper)
    label = core_approvals._LINK_SECRET_LABEL
    for data in (label, label + extra, extra, label.hex().encode(), label.decode().upper().encode()):
        assert hmac.new(pepper, data, hashlib.sha256).digest() != secret
        assert hmac.new(pepper, data, hashlib.sha256).hexdigest() != secret.hex()


def test_a_grant_never_lets_through_calls_that_reserve_nothing(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    """`grant_run_usd: 1` lets every later free call of approval_endpoints (customer creates,
    deletes) go without asking: $0 always "fits" in what is left of the grant."""
    key = kb.issue({**HOLD, "approval_endpoints": ["POST /v1/customers", "DELETE /v1/customers/*"]})
    first = raw_call(kb, key, b"email=first@example.com")
    (apr,) = wait_for(lambda: pending(kb, key["id"]), 10)
    with kb.admin() as c:
        assert c.post(f"/v1/approvals/{apr['id']}/approve", json={"grant_run_usd": 1}).status_code == 200
    assert b" 200 " in first.recv(4096)
    first.close()
    later = raw_call(kb, key, b"email=later@example.com")
    held = wait_for(lambda: pending(kb, key["id"]), 10)
    assert len(held) == 1, "a call that reserves nothing went on the grant without asking"
    deny_all(kb, key["id"])
    later.close()
    assert len([r for r in fake_stripe.requests if r.path == "/v1/customers"]) == 1


def test_the_approver_sees_where_the_money_goes(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    """A $1 transfer to the agent's own connected account, made in another Stripe account, was
    shown as `amount: 100, currency: usd` only: the person approved it blind."""
    key = kb.issue({"approval_above_usd": 0, "daily_usd_cap": 100})
    body = b"amount=100&currency=usd&destination=acct_ATTACKER1&transfer_group=refund-42"
    u = urlsplit(kb.url)
    assert u.hostname is not None and u.port is not None
    s = socket.create_connection((u.hostname, u.port))
    s.sendall(
        (
            f"POST /stripe/v1/transfers HTTP/1.1\r\nHost: stripe\r\nAuthorization: Bearer {key['key']}\r\n"
            f"Stripe-Account: acct_OTHER1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body
    )
    (apr,) = wait_for(lambda: pending(kb, key["id"]), 10)
    assert apr["summary"]["destination"] == "acct_ATTACKER1"
    assert apr["summary"]["stripe_account"] == "acct_OTHER1"
    deny_all(kb, key["id"])
    s.close()


ROUTED = st.sampled_from(["destination", "destination[account]", "transfer_data[destination]", "on_behalf_of"])
OTHER_PARAMS = st.sampled_from(
    ["customer", "charge", "payment_intent", "confirm", "capture_method", "description", "metadata[a]", "source"]
)


@settings(max_examples=examples(200), deadline=None)
@given(
    routed=st.lists(ROUTED, min_size=1, max_size=2, unique=True),
    others=st.lists(OTHER_PARAMS, max_size=8, unique=True),
    account=st.none() | st.just("acct_CTX1"),
    value=st.from_regex(r"acct_[A-Za-z0-9]{1,80}", fullmatch=True),
)
def test_routing_parameters_are_always_among_the_first_fields_shown(
    routed: list[str], others: list[str], account: str | None, value: str
) -> None:
    """The class: whatever else the request carries, every parameter that routes the money, and the
    account the call acts in, is in the summary within the six fields Slack shows."""
    assume(not {"destination", "destination[account]"} <= set(routed))  # Stripe takes one form or the other
    pairs = ["amount=100", "currency=usd"] + [f"{quote(n)}=x" for n in others] + [f"{quote(n)}={value}" for n in routed]
    vreq = VendorRequest("POST", ("v1", "charges"), parse_form(b"", "&".join(pairs).encode()), account)
    shown = list(Stripe().summary(vreq).items())[:MAX_SUMMARY_FIELDS]
    names = {k for k, _ in shown}
    for n in routed:
        canonical = n.replace("[", ".").rstrip("]")
        assert canonical in names and dict(shown)[canonical] == value[:64]
    if account is not None:
        assert ("stripe_account", account) in shown


def test_an_unpriceable_call_cannot_slip_under_approval_above_usd(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    """A subscription (unpriceable: it can charge any amount at once) was reserved at the key's
    max_usd_per_call ($50) and so never reached approval_above_usd ($100): it went without
    asking, whatever it charged."""
    key = kb.issue({"max_usd_per_call": 50, "approval_above_usd": 100, "daily_usd_cap": 1000})
    body = b"customer=cus_1&items[0][price]=price_enterprise_10000usd"
    u = urlsplit(kb.url)
    assert u.hostname is not None and u.port is not None
    s = socket.create_connection((u.hostname, u.port))
    s.settimeout(3)
    s.sendall(
        (
            f"POST /stripe/v1/subscriptions HTTP/1.1\r\nHost: stripe\r\nAuthorization: Bearer {key['key']}\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body
    )

    def sent() -> bool:
        return any("subscriptions" in x.path for x in fake_stripe.requests)

    wait_for(lambda: pending(kb, key["id"]) or sent())
    assert not sent(), "sent without a person's approval"
    (apr,) = pending(kb, key["id"])
    assert apr["amount_usd"] == 50 and any("unpriceable" in r for r in apr["reasons"])
    deny_all(kb, key["id"])
    s.close()


@settings(max_examples=examples(300), deadline=None)
@given(
    key_threshold=st.none() | st.integers(0, 10**13),
    budgets=st.dictionaries(st.sampled_from(["bud_a", "bud_b"]), st.integers(0, 10**13), max_size=2),
    estimate=st.integers(1, 10**13),
    unbounded=st.booleans(),
)
def test_a_call_whose_estimate_is_no_bound_is_above_every_threshold(
    key_threshold: int | None, budgets: dict[str, int], estimate: int, unbounded: bool
) -> None:
    """The class: an estimate that is no upper bound (unpriceable, reserved at max_usd_per_call)
    never lets a call pass under an approval_above_usd, the key's or a budget's, whatever the
    amounts; a bounded estimate waits exactly when it is above one."""
    policy = Policy(approval_above_usd=key_threshold)
    need = approval_need(policy, budgets, "POST", ("v1", "subscriptions"), estimate, 120, unbounded=unbounded)
    thresholds = [t for t in [key_threshold, *budgets.values()] if t is not None]
    applies = thresholds if unbounded else [t for t in thresholds if estimate > t]
    assert (need is not None) == bool(applies)
    if need is not None:
        assert len(need.reasons) == len(applies)
        assert all(("unpriceable" in r) == unbounded for r in need.reasons)
