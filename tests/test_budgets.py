"""Budgets: caps shared by many keys, reserved atomically with the keys' own (docs/api.md, budgets)."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.fakes.stripe_server import FakeStripe
from tests.harness import KeybrakeThread

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def charge(kb: KeybrakeThread, key: dict[str, Any], amount: int = 100) -> httpx.Response:
    return httpx.post(
        f"{kb.url}/stripe/v1/charges",
        content=f"amount={amount}&currency=usd&source=tok_visa".encode(),
        headers={**FORM, "Authorization": f"Bearer {key['key']}"},
        timeout=30,
    )


def budget(kb: KeybrakeThread, **body: Any) -> dict[str, Any]:
    with kb.admin() as c:
        r = c.post("/v1/budgets", json={"name": "b", **body})
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]


def charges_upstream(fake: FakeStripe) -> int:
    return len([r for r in fake.requests if r.path == "/v1/charges" and r.method == "POST"])


def test_three_keys_share_a_tenant_budget_exactly(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    bud = budget(kb, scope={"label_prefix": "tenant-a:"}, daily_usd_cap=10)
    keys = [kb.issue({"daily_usd_cap": 100}, label=f"tenant-a:agent:{i}") for i in range(3)]
    other = kb.issue({"daily_usd_cap": 100}, label="tenant-b:agent:1")
    with ThreadPoolExecutor(30) as pool:
        answers = list(pool.map(lambda i: charge(kb, keys[i % 3]), range(30)))
    assert [a.status_code for a in answers].count(200) == 10
    refused = [a for a in answers if a.status_code == 429]
    assert len(refused) == 20
    assert {a.headers["x-keybrake-cap"] for a in refused} == {f"budget:{bud['id']}:daily_usd_cap"}
    cap = refused[0].json()["error"]["keybrake"]["cap"]
    assert (cap["scope"], cap["id"], cap["limit_usd"]) == ("budget", bud["id"], 10)
    assert bud["id"] in refused[0].json()["error"]["message"]
    assert charges_upstream(fake_stripe) == 10
    assert charge(kb, other).status_code == 200  # another tenant is not covered
    with kb.admin() as c:
        usage = c.get(f"/v1/budgets/{bud['id']}").json()["usage"]["daily_usd"]
    assert (usage["used"], usage["reserved"], usage["limit"]) == (10, 0, 10)
    assert usage["resets_at"].endswith("T00:00:00.000Z")


def test_the_tighter_of_key_and_vendor_budget_wins(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    bud = budget(kb, scope={"vendor": "stripe"}, daily_usd_cap=5, daily_request_cap=100)
    tight_key = kb.issue({"daily_usd_cap": 2}, label="x:1")
    loose_key = kb.issue({"daily_usd_cap": 50}, label="x:2")
    with ThreadPoolExecutor(10) as pool:
        tight = list(pool.map(lambda _: charge(kb, tight_key), range(10)))
    assert [a.status_code for a in tight].count(200) == 2
    assert {a.headers["x-keybrake-cap"] for a in tight if a.status_code == 429} == {"key:daily_usd_cap"}
    with ThreadPoolExecutor(10) as pool:
        loose = list(pool.map(lambda _: charge(kb, loose_key), range(10)))
    assert [a.status_code for a in loose].count(200) == 3  # the budget had $3 left
    assert {a.headers["x-keybrake-cap"] for a in loose if a.status_code == 429} == {f"budget:{bud['id']}:daily_usd_cap"}
    assert charges_upstream(fake_stripe) == 5
    # refused requests reserved nothing anywhere: the key's own counter shows only what passed
    assert kb.key(loose_key["id"])["usage"]["daily_usd"]["used"] == 3


def test_a_new_budget_counts_spend_already_recorded(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    key = kb.issue({"daily_usd_cap": 100}, label="tenant-c:a")
    for _ in range(4):
        assert charge(kb, key).status_code == 200
    bud = budget(kb, scope={"label_prefix": "tenant-c:"}, daily_usd_cap=5, monthly_usd_cap=100)
    assert bud["usage"]["daily_usd"]["used"] == 4 and bud["usage"]["monthly_usd"]["used"] == 4
    assert charge(kb, key).status_code == 200
    assert charge(kb, key).status_code == 429


def test_budget_crud_and_validation(kb: KeybrakeThread) -> None:
    bud = budget(kb, scope="all", total_usd_cap="250.5", timezone="Europe/Paris")
    assert bud["scope"] == "all" and bud["total_usd_cap"] == 250.5 and bud["usage"]["total_usd"]["resets_at"] is None
    with kb.admin() as c:
        assert c.get("/v1/budgets").json()["data"][0]["id"] == bud["id"]
        r = c.patch(f"/v1/budgets/{bud['id']}", json={"daily_usd_cap": 20, "total_usd_cap": None})
        assert r.status_code == 200 and r.json()["daily_usd_cap"] == 20 and r.json()["total_usd_cap"] is None
        assert r.json()["usage"]["daily_usd"]["resets_at"].endswith(("T22:00:00.000Z", "T23:00:00.000Z"))
        assert c.patch(f"/v1/budgets/{bud['id']}", json={"scope": {"vendor": "twilio"}}).status_code == 422
        assert c.patch(f"/v1/budgets/{bud['id']}", json={"timezone": "Mars/Olympus"}).status_code == 422
        bad = [
            {"name": "x", "scope": "all"},  # no cap
            {"name": "x", "scope": {"label_prefix": "a:", "vendor": "stripe"}, "daily_usd_cap": 1},
            {"name": "x", "scope": {"vendor": "paypal"}, "daily_usd_cap": 1},
            {"name": "x", "scope": "all", "daily_usd_cap": -1},
            {"name": "x", "scope": "all", "daily_usd_cap": 1, "weekly_usd_cap": 1},
        ]
        for body in bad:
            assert c.post("/v1/budgets", json=body).status_code == 422, body
        warned = c.post("/v1/keys", json={"vendor": "stripe", "policy": {"daily_usd_cap": 500}}).json()
        assert any(bud["id"] in w for w in warned["warnings"])
        gone = c.delete(f"/v1/budgets/{bud['id']}")
        assert gone.status_code == 200 and gone.json()["deleted"] is True
        assert c.get(f"/v1/budgets/{bud['id']}").status_code == 404


def test_a_new_york_budget_rolls_over_at_local_midnight(tmp_path: Path, fake_stripe: FakeStripe) -> None:
    ny = ZoneInfo("America/New_York")
    now = [int(dt.datetime(2026, 11, 20, 23, 30, tzinfo=ny).timestamp() * 1000)]  # 04:30 UTC on the 21st
    with KeybrakeThread(tmp_path / "d", clock=lambda: now[0]) as kb:
        kb.add_credential(fake_stripe.base_url)
        bud = budget(kb, scope={"vendor": "stripe"}, daily_usd_cap=3, timezone="America/New_York")
        assert bud["usage"]["daily_usd"]["resets_at"] == "2026-11-21T05:00:00.000Z"
        key = kb.issue({"daily_usd_cap": 100}, expires_in="7d")
        assert [charge(kb, key).status_code for _ in range(4)] == [200, 200, 200, 429]
        refused = charge(kb, key)
        assert refused.headers["x-keybrake-cap-resets-at"] == "2026-11-21T05:00:00.000Z"
        assert refused.headers["retry-after"] == str(30 * 60)
        now[0] = int(dt.datetime(2026, 11, 20, 23, 59, tzinfo=ny).timestamp() * 1000)
        assert charge(kb, key).status_code == 429  # still the 20th in New York (already the 21st in UTC)
        now[0] = int(dt.datetime(2026, 11, 21, 0, 1, tzinfo=ny).timestamp() * 1000)
        assert charge(kb, key).status_code == 200  # local midnight passed


@pytest.mark.parametrize("tz", ["UTC", "Asia/Kolkata"])
def test_monthly_windows(tmp_path: Path, fake_stripe: FakeStripe, tz: str) -> None:
    zone = ZoneInfo(tz)
    now = [int(dt.datetime(2026, 11, 30, 23, 0, tzinfo=zone).timestamp() * 1000)]
    with KeybrakeThread(tmp_path / "d", clock=lambda: now[0]) as kb:
        kb.add_credential(fake_stripe.base_url)
        budget(kb, scope="all", monthly_usd_cap=2, timezone=tz)
        key = kb.issue({"daily_usd_cap": 100}, expires_in="7d")
        assert [charge(kb, key).status_code for _ in range(3)] == [200, 200, 429]
        now[0] = int(dt.datetime(2026, 12, 1, 0, 5, tzinfo=zone).timestamp() * 1000)
        assert charge(kb, key).status_code == 200


def test_budgets_cli(tmp_path: Path) -> None:
    import json as _json

    from click.testing import CliRunner

    from keybrake.cli import main

    data = str(tmp_path / "cli")
    with KeybrakeThread(tmp_path / "cli"):
        pass  # a first start creates the database and the master key
    cli = CliRunner()
    made = cli.invoke(
        main,
        ["budgets", "create", "--name", "tenant a", "--label-prefix", "tenant-a:", "--daily-usd-cap", "12.5",
         "--timezone", "America/New_York", "--data-dir", data],
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    bud = _json.loads(made.output)
    assert bud["scope"] == {"label_prefix": "tenant-a:"} and bud["daily_usd_cap"] == 12.5
    listed = cli.invoke(main, ["budgets", "list", "--data-dir", data])
    assert bud["id"] in listed.output and "daily_usd 0/12.5" in listed.output
    assert listed.exit_code == 0 and '{"label_prefix": "tenant-a:"}' in listed.output  # the scope cell, as JSON
    changed = cli.invoke(
        main,
        ["budgets", "update", bud["id"], "--monthly-usd-cap", "100", "--remove", "daily_usd_cap", "--data-dir", data],
    )
    assert changed.exit_code == 0, changed.output
    assert _json.loads(changed.output)["daily_usd_cap"] is None
    assert _json.loads(changed.output)["monthly_usd_cap"] == 100
    both = cli.invoke(main, ["budgets", "create", "--name", "x", "--all", "--vendor", "stripe", "--data-dir", data])
    assert both.exit_code != 0 and "validation_error" in both.output
    gone = cli.invoke(main, ["budgets", "delete", bud["id"], "--data-dir", data])
    assert gone.exit_code == 0 and _json.loads(gone.output)["deleted"] is True


def test_a_time_zone_round_trip_does_not_reuse_the_old_utc_day(tmp_path: Path, fake_stripe: FakeStripe) -> None:
    """Issue 12, 1(a): $60, → Asia/Tokyo, $30, → UTC, $30: the last $30 is refused (it made $120 in
    one UTC day under a $100 budget when going back reused the UTC-day counter at $60)."""
    now = [int(dt.datetime(2026, 3, 10, 16, 0, tzinfo=dt.UTC).timestamp() * 1000)]
    with KeybrakeThread(tmp_path / "d", clock=lambda: now[0]) as kb:
        kb.add_credential(fake_stripe.base_url)
        key = kb.issue({"daily_usd_cap": 1000}, label="tz:1")
        bud = budget(kb, scope="all", daily_usd_cap=100, timezone="UTC")
        assert charge(kb, key, 6000).status_code == 200
        with kb.admin() as c:
            assert c.patch(f"/v1/budgets/{bud['id']}", json={"timezone": "Asia/Tokyo"}).status_code == 200
        now[0] += 60_000
        assert charge(kb, key, 3000).status_code == 200
        with kb.admin() as c:
            back = c.patch(f"/v1/budgets/{bud['id']}", json={"timezone": "UTC"})
        assert back.status_code == 200 and back.json()["usage"]["daily_usd"]["used"] == 90
        now[0] += 60_000
        last = charge(kb, key, 3000)
        assert last.status_code == 429 and last.headers["x-keybrake-cap"] == f"budget:{bud['id']}:daily_usd_cap"
        assert charges_upstream(fake_stripe) == 2
        assert charge(kb, key, 1000).status_code == 200  # exactly up to $100


def test_bulk_revoke_by_label_prefix_is_case_sensitive(kb: KeybrakeThread) -> None:
    """Issue 12, kind 2: `label_prefix` "acme:" revoked `ACME:billing:2` (another tenant) on SQLite."""
    mine = kb.issue({"daily_usd_cap": 1}, label="acme:billing:1")
    other = kb.issue({"daily_usd_cap": 1}, label="ACME:billing:2")
    with kb.admin() as c:
        r = c.post("/v1/keys/revoke", json={"label_prefix": "acme:"})
        assert r.status_code == 200 and r.json()["revoked"] == 1
        listed = c.get("/v1/keys", params={"label_prefix": "ACME:"}).json()["data"]
    assert [k["id"] for k in listed] == [other["id"]]
    assert kb.key(mine["id"])["status"] == "revoked"
    assert kb.key(other["id"])["status"] == "active"


def test_a_capture_for_less_after_a_budget_was_created_releases_from_the_budget_too(
    kb: KeybrakeThread, fake_stripe: FakeStripe
) -> None:
    """A $70 authorisation counted before the budget existed, captured for $30 after: the budget's
    counters hold $30, what its keys' audit rows now count (the seed re-points the object ledger)."""
    import stripe

    key = kb.issue({"daily_usd_cap": 1000}, label="cap:1")
    sc = stripe.StripeClient(key["key"], base_addresses={"api": f"{kb.url}/stripe"}, max_network_retries=0)
    pi = sc.v1.payment_intents.create(
        {
            "amount": 7000,
            "currency": "usd",
            "payment_method": "pm_card_visa",
            "capture_method": "manual",
            "confirm": True,
        }
    )
    bud = budget(kb, scope={"label_prefix": "cap:"}, daily_usd_cap=500, monthly_usd_cap=900)
    assert bud["usage"]["daily_usd"]["used"] == 70
    sc.v1.payment_intents.capture(pi.id, {"amount_to_capture": 3000})
    spent = sum(r["cost_usd"] for r in kb.audit(key_id=key["id"]))
    assert spent == 30
    with kb.admin() as c:
        usage = c.get(f"/v1/budgets/{bud['id']}").json()["usage"]
    assert (usage["daily_usd"]["used"], usage["monthly_usd"]["used"]) == (30, 30)
    assert kb.key(key["id"])["usage"]["daily_usd"]["used"] == 30


def test_a_relabel_moves_the_keys_spend_into_and_out_of_label_prefix_budgets(
    kb: KeybrakeThread, fake_stripe: FakeStripe
) -> None:
    """Issue 12, kind 1 (label changes): key "x:1" spends $90, is relabelled "acme:1" under an
    "acme:" budget with a $100 daily cap: the budget holds $90 at once and admits $10 more, not
    $100 (it stayed at $0). Relabelled back out, the budget holds $0 again, and another acme key
    gets the whole $100 (the key's $100 left with it)."""
    bud = budget(kb, scope={"label_prefix": "acme:"}, daily_usd_cap=100, monthly_usd_cap=1000)
    key = kb.issue({"daily_usd_cap": 1000}, label="x:1")
    assert charge(kb, key, 9000).status_code == 200
    with kb.admin() as c:
        moved = c.patch(f"/v1/keys/{key['id']}", json={"label": "acme:1"})
        assert moved.status_code == 200 and moved.json()["label"] == "acme:1"
        usage = c.get(f"/v1/budgets/{bud['id']}").json()["usage"]
    assert (usage["daily_usd"]["used"], usage["monthly_usd"]["used"], usage["daily_usd"]["reserved"]) == (90, 90, 0)
    refused = charge(kb, key, 2000)
    assert refused.status_code == 429 and refused.headers["x-keybrake-cap"] == f"budget:{bud['id']}:daily_usd_cap"
    assert charge(kb, key, 1000).status_code == 200  # exactly up to $100
    assert charges_upstream(fake_stripe) == 2
    with kb.admin() as c:
        assert c.patch(f"/v1/keys/{key['id']}", json={"label": "x:1"}).status_code == 200
        usage = c.get(f"/v1/budgets/{bud['id']}").json()["usage"]
    assert (usage["daily_usd"]["used"], usage["monthly_usd"]["used"]) == (0, 0)
    other = kb.issue({"daily_usd_cap": 1000}, label="acme:2")
    assert charge(kb, other, 10000).status_code == 200
    assert charge(kb, key, 50000).status_code == 200  # no longer under the budget
    with kb.admin() as c:
        assert c.patch(f"/v1/keys/{key['id']}", json={"label": None}).status_code == 200  # no label: no prefix
        usage = c.get(f"/v1/budgets/{bud['id']}").json()["usage"]
    assert (usage["daily_usd"]["used"], usage["monthly_usd"]["used"]) == (100, 100)
    assert charge(kb, other, 100).status_code == 429


def test_a_capture_for_less_after_a_relabel_releases_only_from_the_budgets_the_key_is_in(
    kb: KeybrakeThread, fake_stripe: FakeStripe
) -> None:
    """A $70 authorisation by "x:1", relabelled into an "acme:" budget (which then holds it), out
    again, and captured for $30: the budget keeps exactly the other acme key's $20 (the release no
    longer names it); relabelled in once more, it holds $20 + $30."""
    import stripe

    bud = budget(kb, scope={"label_prefix": "acme:"}, daily_usd_cap=500)
    key = kb.issue({"daily_usd_cap": 1000}, label="x:1")
    other = kb.issue({"daily_usd_cap": 1000}, label="acme:2")
    assert charge(kb, other, 2000).status_code == 200
    sc = stripe.StripeClient(key["key"], base_addresses={"api": f"{kb.url}/stripe"}, max_network_retries=0)
    pi = sc.v1.payment_intents.create(
        {
            "amount": 7000,
            "currency": "usd",
            "payment_method": "pm_card_visa",
            "capture_method": "manual",
            "confirm": True,
        }
    )

    def used() -> Any:
        with kb.admin() as c:
            return c.get(f"/v1/budgets/{bud['id']}").json()["usage"]["daily_usd"]["used"]

    def relabel(label: str) -> None:
        with kb.admin() as c:
            assert c.patch(f"/v1/keys/{key['id']}", json={"label": label}).status_code == 200

    relabel("acme:1")
    assert used() == 90
    relabel("x:1")
    assert used() == 20
    sc.v1.payment_intents.capture(pi.id, {"amount_to_capture": 3000})
    assert sum(r["cost_usd"] for r in kb.audit(key_id=key["id"])) == 30
    assert used() == 20
    relabel("acme:1")
    assert used() == 50
