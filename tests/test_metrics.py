"""/metrics (issue 14): requests by outcome, Keybrake's and the vendor's time, cap hits, USD
reserved and settled — exact increments, scraped and parsed as Prometheus reads them."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from keybrake.core.errors import EnforcementUnavailable
from keybrake.integrations.twilio import client as twilio_client
from keybrake.proxy.metrics import OVERHEAD_BUCKETS_S, ProxyMetrics
from keybrake.proxy.settler import SettleWriter
from keybrake.store.base import AuditRow, EarlierSettlement, SettleJob, Settlement
from tests.fakes.stripe_server import FakeStripe
from tests.fakes.twilio_server import FakeTwilioThread
from tests.harness import KeybrakeThread, wait_for

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(kb: KeybrakeThread) -> Samples:
    with kb.admin() as c:
        r = c.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    out: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def get(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(before: Samples, after: Samples) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """What moved, without the `_created` timestamps."""
    return {
        k: v - before.get(k, 0.0) for k, v in after.items() if not k[0].endswith("_created") and v != before.get(k, 0.0)
    }


def charge(kb: KeybrakeThread, key: dict[str, Any], cents: int) -> httpx.Response:
    return httpx.post(
        f"{kb.url}/stripe/v1/charges",
        data={"amount": cents, "currency": "usd", "source": "tok_visa"},
        headers={"Authorization": f"Bearer {key['key']}"},
    )


def test_an_allowed_call_counts_once_everywhere(kb: KeybrakeThread) -> None:
    key = kb.issue({"daily_usd_cap": 10})
    before = scrape(kb)
    assert charge(kb, key, 300).status_code == 200
    kb.audit(key_id=key["id"])  # reads flush the settle writer
    after = scrape(kb)
    moved = delta(before, after)
    stripe = {"vendor": "stripe"}
    assert get(moved, "keybrake_proxy_requests_total", vendor="stripe", verdict="allowed", status_class="2xx") == 1
    assert get(moved, "keybrake_proxy_overhead_seconds_count", **stripe) == 1
    assert get(moved, "keybrake_proxy_overhead_seconds_bucket", le="+Inf", **stripe) == 1
    assert get(moved, "keybrake_upstream_latency_seconds_count", **stripe) == 1
    assert get(moved, "keybrake_reserved_usd_total", **stripe) == 3.0  # the charge's own amount, reserved
    assert get(moved, "keybrake_settled_usd_total", **stripe) == 3.0
    row = kb.audit(key_id=key["id"])[0]
    assert abs(get(moved, "keybrake_proxy_overhead_seconds_sum", **stripe) - row["overhead_ms"] / 1000) < 1e-9
    assert abs(get(moved, "keybrake_upstream_latency_seconds_sum", **stripe) - row["upstream_latency_ms"] / 1000) < 1e-9
    assert get(moved, "keybrake_cap_hits_total", vendor="stripe", scope="key", cap="daily_usd_cap") == 0
    # a bucket per boundary, documented in docs/operations.md
    les = {dict(k[1])["le"] for k in after if k[0] == "keybrake_proxy_overhead_seconds_bucket"}
    assert les == {*(str(b) for b in OVERHEAD_BUCKETS_S), "+Inf"}


def test_a_cap_hit_and_a_denial_count_no_money_and_no_vendor_time(kb: KeybrakeThread) -> None:
    key = kb.issue({"total_usd_cap": 2})
    before = scrape(kb)
    assert charge(kb, key, 300).status_code == 429
    assert httpx.get(f"{kb.url}/stripe/v1/customers").status_code == 401  # no key: vendor unknown
    moved = delta(before, scrape(kb))
    requests = "keybrake_proxy_requests_total"
    assert moved == {
        (requests, frozenset({("vendor", "stripe"), ("verdict", "cap_exceeded"), ("status_class", "4xx")})): 1,
        (requests, frozenset({("vendor", "unknown"), ("verdict", "denied"), ("status_class", "4xx")})): 1,
        ("keybrake_cap_hits_total", frozenset({("vendor", "stripe"), ("scope", "key"), ("cap", "total_usd_cap")})): 1,
        **{k: v for k, v in moved.items() if k[0].startswith("keybrake_proxy_overhead_seconds")},
    }
    assert get(moved, "keybrake_proxy_overhead_seconds_count", vendor="stripe") == 1
    assert get(moved, "keybrake_proxy_overhead_seconds_count", vendor="unknown") == 1


def test_a_vendor_error_keeps_its_reservation_and_books_nothing(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    key = kb.issue({"daily_usd_cap": 10})
    before = scrape(kb)
    fake_stripe.next_status = [(500, {"error": {"type": "api_error", "message": "boom"}})]
    assert charge(kb, key, 400).status_code == 500
    kb.audit(key_id=key["id"])  # reads flush the settle writer
    moved = delta(before, scrape(kb))
    stripe = {"vendor": "stripe"}
    assert get(moved, "keybrake_proxy_requests_total", verdict="outcome_unknown", status_class="5xx", **stripe) == 1
    assert get(moved, "keybrake_upstream_latency_seconds_count", **stripe) == 1
    assert get(moved, "keybrake_reserved_usd_total", **stripe) == 4.0
    assert get(moved, "keybrake_settled_usd_total", **stripe) == 0  # kept reserved: outcome unknown


def test_an_estimate_is_booked_when_reconciliation_settles_it(
    kbt: KeybrakeThread, fake_twilio: FakeTwilioThread
) -> None:
    key = kbt.issue({"daily_usd_cap": 5, "allowed_to_prefixes": ["+1"]}, vendor="twilio", label="test:n:run-1")
    before = scrape(kbt)
    msg = twilio_client(kbt.url, key["key"]).messages.create(to="+14155550100", from_="+14155550199", body="hi")
    kbt.audit(key_id=key["id"])  # reads flush the settle writer
    moved = delta(before, scrape(kbt))
    twilio = {"vendor": "twilio"}
    assert get(moved, "keybrake_reserved_usd_total", **twilio) == 0.0113  # the estimate
    assert get(moved, "keybrake_settled_usd_total", **twilio) == 0  # kept reserved until reconciled
    fake_twilio.fake.set_price(msg.sid, "-0.00790")
    wait_for(lambda: get(delta(before, scrape(kbt)), "keybrake_settled_usd_total", **twilio))
    moved = delta(before, scrape(kbt))
    assert get(moved, "keybrake_settled_usd_total", **twilio) == 0.0079  # once, at the price Twilio charged
    assert get(moved, "keybrake_proxy_requests_total", verdict="allowed", status_class="2xx", **twilio) == 1


def test_a_retry_books_the_earlier_unknown_outcome_once(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    """A 500 leaves the charge's outcome unknown (reserved, not booked); the SDK's retry with the same
    Idempotency-Key reserves nothing and its answer books the first request's cost — once."""
    key = kb.issue({"daily_usd_cap": 50})
    before = scrape(kb)
    fake_stripe.next_status = [(500, {"error": {"type": "api_error", "message": "boom"}})]
    auth = {"Authorization": f"Bearer {key['key']}", "Idempotency-Key": "idem-1"}
    body = {"amount": 4000, "currency": "usd", "source": "tok_visa"}
    assert httpx.post(f"{kb.url}/stripe/v1/charges", data=body, headers=auth).status_code == 500
    for _ in range(2):  # the retry, and a second one the first already answered
        assert httpx.post(f"{kb.url}/stripe/v1/charges", data=body, headers=auth).status_code == 200
    kb.audit(key_id=key["id"])  # reads flush the settle writer
    moved = delta(before, scrape(kb))
    stripe = {"vendor": "stripe"}
    assert get(moved, "keybrake_reserved_usd_total", **stripe) == 40.0
    assert get(moved, "keybrake_settled_usd_total", **stripe) == 40.0
    assert kb.key(key["id"])["usage"]["daily_usd"]["used"] == 40  # the books agree


def test_concurrent_retries_book_the_earlier_unknown_outcome_once(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    """Red team F2: five retries (same Idempotency-Key) reserved while the earlier request is still
    outcome_unknown; each one's answer carries the earlier settlement, the store settles it once,
    and the metric books it once (it counted it five times)."""
    key = kb.issue({"daily_usd_cap": 50})
    before = scrape(kb)
    fake_stripe.next_status = [(500, {"error": {"type": "api_error", "message": "boom"}})]
    auth = {"Authorization": f"Bearer {key['key']}", "Idempotency-Key": "idem-5"}
    body = {"amount": 100, "currency": "usd", "source": "tok_visa"}
    assert httpx.post(f"{kb.url}/stripe/v1/charges", data=body, headers=auth).status_code == 500
    kb.audit(key_id=key["id"])  # the 500 is settled (outcome_unknown, reservation kept)
    charge_json = {"id": "ch_retry5", "object": "charge", "amount": 100, "currency": "usd", "status": "succeeded"}
    replayed = {"Idempotent-Replayed": "true"}
    fake_stripe.next_status = [(200, charge_json), *[(200, charge_json, replayed)] * 4]
    fake_stripe.delay_seconds = 0.5  # every retry is reserved before any answer comes back

    async def retries() -> list[int]:
        async with httpx.AsyncClient() as c:
            got = await asyncio.gather(
                *(c.post(f"{kb.url}/stripe/v1/charges", data=body, headers=auth, timeout=10) for _ in range(5))
            )
        return [r.status_code for r in got]

    assert asyncio.run(retries()) == [200] * 5
    fake_stripe.delay_seconds = 0
    rows = kb.audit(key_id=key["id"])  # reads flush the settle writer
    retry_rows = [r for r in rows if (r.get("metadata") or {}).get("retry_of")]
    assert len(retry_rows) == 5  # all five were reserved as retries of the unknown outcome
    moved = delta(before, scrape(kb))
    stripe = {"vendor": "stripe"}
    assert kb.key(key["id"])["usage"]["daily_usd"]["used"] == 1  # the store settled it once
    assert get(moved, "keybrake_settled_usd_total", **stripe) == 1.0  # and the metric agrees


def test_no_label_carries_an_unbounded_value(kb: KeybrakeThread) -> None:
    key = kb.issue({"total_usd_cap": 5}, label="acme:agent:7", metadata={"agent_run_id": "run-x"})
    for cents in (100, 900):
        charge(kb, key, cents)
    values = {v for _, labels in scrape(kb) for _, v in labels}
    assert not any(v.startswith(("vk_", "kbr_", "/", "acme", "run-")) for v in values), values


@pytest.mark.store_free
async def test_the_settle_writer_counts_a_settlement_once_even_when_its_commit_is_retried() -> None:
    """The store took the first COMMIT but its answer was lost: the batch is written again
    (idempotent) and the settled USD is counted once, after the commit that answered."""

    class LostAnswer:
        def __init__(self) -> None:
            self.calls = 0

        async def settle_many(self, jobs: list[SettleJob]) -> None:
            self.calls += 1
            if self.calls <= 4:  # the batch, then each job alone: the connection dropped at COMMIT
                raise EnforcementUnavailable("connection lost", commit_unknown=True, transient=True)
            for job in jobs:  # the earlier row names this job in settled_by: the store says True
                job.earlier_settled = job.settles_earlier is not None

    metrics = ProxyMetrics(CollectorRegistry())
    writer = SettleWriter(LostAnswer(), metrics)  # type: ignore[arg-type]
    row = AuditRow(id="kbr_1", ts=0, method="POST", path="/v1/charges", verdict="in_flight", vendor="stripe")
    earlier = EarlierSettlement("kbr_0", 2_500_000, "response", "charge")
    kept = Settlement("outcome_unknown", 7_000_000, "estimate", "charge", keep_reservation=True, forwarded=True)
    done = [
        writer.submit(SettleJob(row, [], Settlement("allowed", 1_250_000, "response", "charge", False, True), None)),
        writer.submit(SettleJob(row, [], kept, None)),  # booked when it is settled later, not now
        writer.submit(SettleJob(row, [], Settlement("allowed", 0, "none", "none", False, True), None, earlier)),
    ]
    await asyncio.wait_for(asyncio.gather(*done), 5)
    assert await writer.flush(5)
    assert metrics.settled_usd.labels("stripe")._value.get() == 1.25 + 2.5
